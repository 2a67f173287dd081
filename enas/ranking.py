"""Rank statistics of search quality: does the shared-weight score order architectures the way
training them alone does, and where does the derived one stand among random ones?

Plain functions on lists of numbers; larger is better in all of them (negate perplexities first).
Tau and rho are scipy's.
"""

from __future__ import annotations

import itertools
import statistics
import warnings
from typing import Sequence

from scipy import stats


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b: (concordant - discordant) pairs over the pairs each ordering leaves untied.
    1 when both orderings agree, -1 when reversed; nan when either is constant."""
    _check_pairs(x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.ConstantInputWarning)   # nan says it
        return float(stats.kendalltau(x, y).statistic)


def spearman_rho(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho: the Pearson correlation of the ranks (ties at their mean rank); nan when
    either is constant."""
    _check_pairs(x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        return float(stats.spearmanr(x, y).statistic)


def top_k_overlap(x: Sequence[float], y: Sequence[float], k: int) -> float:
    """The share of the k best by `x` that are also among the k best by `y` (ties by position)."""
    _check_pairs(x, y)
    k = min(k, len(x))
    best_x = sorted(range(len(x)), key=lambda i: -x[i])[:k]
    best_y = sorted(range(len(y)), key=lambda i: -y[i])[:k]
    return len(set(best_x) & set(best_y)) / k


def seed_agreement(orders: Sequence[Sequence[float]]) -> float:
    """Kendall's tau between the orders of the same items under different seeds, the mean over
    every pair of seeds: how well the measure agrees with itself (1 for identical orders), the most
    that any other ordering can be expected to agree with it."""
    if len(orders) < 2:
        raise ValueError(f"seed agreement needs the orders of at least 2 seeds, got {len(orders)}")
    return statistics.fmean(kendall_tau(a, b) for a, b in itertools.combinations(orders, 2))


def percentile(value: float, others: Sequence[float]) -> float:
    """The percentage of `others` that `value` beats, ties counting half: 100 beats them all."""
    if not others:
        raise ValueError("percentile of a value among no others")
    beaten = sum(1.0 if value > o else 0.5 if value == o else 0.0 for o in others)
    return 100.0 * beaten / len(others)


def _check_pairs(x: Sequence[float], y: Sequence[float]) -> None:
    if len(x) != len(y) or len(x) < 2:
        raise ValueError(f"rank statistics need two equally long lists of at least 2 values, got {len(x)} and {len(y)}")
