"""What searches and the quality commands compute from a benchmark table: how well a panel's
scores order the architectures the way the table does (Kendall tau, from enas/ranking.py), and
the reward a table-backed strategy gives a looked-up accuracy.
"""

from __future__ import annotations

from typing import Sequence

from enas.errors import UserError
from enas.ranking import kendall_tau
from enas.tables.config import REWARD_MAPPINGS
from enas.tables.table import BenchTable


def table_tau(archs: Sequence[str], scores: Sequence[float], table: BenchTable, column: str,
              lower_is_better_scores: bool = False) -> float:
    """Kendall's tau-b between `scores` of `archs` (e.g. shared-weight rewards, or perplexities with
    `lower_is_better_scores`) and the table's `column`: 1 when both order the panel alike. Every
    arch must be in the table."""
    ours = [-score for score in scores] if lower_is_better_scores else list(scores)
    return kendall_tau(ours, table.scores(archs, column))


def reward(value: float, mapping: str) -> float:
    """The reward of a table accuracy `value` in % (0..100), read as the fraction value / 100:
    `identity` gives the fraction, `cube` its cube (NAS-RL, Zoph & Le 2017: the
    maximum validation accuracy of the last 5 epochs, cubed). Only for higher-is-better
    percentage columns; a loss or perplexity column needs a mapping of its own."""
    if mapping not in REWARD_MAPPINGS:
        raise ValueError(f"unknown reward mapping {mapping!r}; choose one of {', '.join(REWARD_MAPPINGS)}")
    if not 0.0 <= value <= 100.0:
        raise UserError(f"a table reward reads an accuracy in % (0..100), got {value:g}; "
                        "bench.metric must name a percentage column")
    fraction = value / 100.0
    return fraction ** 3 if mapping == "cube" else fraction
