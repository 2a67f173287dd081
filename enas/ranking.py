"""Rank statistics of search quality: does the shared-weight score order architectures the way
training them alone does, and where does the derived one stand among random ones?

Plain functions on lists of numbers; larger is better in all of them (negate perplexities first).
"""

from __future__ import annotations

import math
from typing import Sequence


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b: (concordant - discordant) pairs over the pairs each ordering leaves untied.
    1 when both orderings agree, -1 when reversed; nan when either is constant."""
    _check_pairs(x, y)
    concordant = discordant = ties_x = ties_y = 0
    for i in range(len(x)):
        for j in range(i):
            dx, dy = x[i] - x[j], y[i] - y[j]
            if dx == 0 and dy == 0:
                continue
            if dx == 0:
                ties_x += 1
            elif dy == 0:
                ties_y += 1
            elif (dx > 0) == (dy > 0):
                concordant += 1
            else:
                discordant += 1
    untied_x, untied_y = concordant + discordant + ties_y, concordant + discordant + ties_x
    if untied_x == 0 or untied_y == 0:
        return math.nan
    return (concordant - discordant) / math.sqrt(untied_x * untied_y)


def ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks, ascending; tied values share the mean of their ranks."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    result = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for k in range(start, end + 1):
            result[order[k]] = (start + end) / 2 + 1
        start = end + 1
    return result


def spearman_rho(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho: the Pearson correlation of the ranks (ties at their mean rank)."""
    _check_pairs(x, y)
    rx, ry = ranks(x), ranks(y)
    mean = (len(x) + 1) / 2
    cov = sum((a - mean) * (b - mean) for a, b in zip(rx, ry))
    var_x, var_y = sum((a - mean) ** 2 for a in rx), sum((b - mean) ** 2 for b in ry)
    return cov / math.sqrt(var_x * var_y) if var_x and var_y else math.nan


def top_k_overlap(x: Sequence[float], y: Sequence[float], k: int) -> float:
    """The share of the k best by `x` that are also among the k best by `y` (ties by position)."""
    _check_pairs(x, y)
    k = min(k, len(x))
    best_x = sorted(range(len(x)), key=lambda i: -x[i])[:k]
    best_y = sorted(range(len(y)), key=lambda i: -y[i])[:k]
    return len(set(best_x) & set(best_y)) / k


def percentile(value: float, others: Sequence[float]) -> float:
    """The percentage of `others` that `value` beats, ties counting half: 100 beats them all."""
    if not others:
        raise ValueError("percentile of a value among no others")
    beaten = sum(1.0 if value > o else 0.5 if value == o else 0.0 for o in others)
    return 100.0 * beaten / len(others)


def _check_pairs(x: Sequence[float], y: Sequence[float]) -> None:
    if len(x) != len(y) or len(x) < 2:
        raise ValueError(f"rank statistics need two equally long lists of at least 2 values, got {len(x)} and {len(y)}")
