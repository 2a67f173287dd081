"""The ground truth that rank and compare hold a search against: each panel architecture's score
under each of several training seeds, wherever it comes from (trained alone: standalone.py; a
benchmark table's seeds would be another source of the same `GroundTruth`).

The seeds give the truth its noise: each architecture's spread over them, and the noise ceiling,
Kendall's tau between two seeds' orders of the panel (the mean over pairs with more seeds). No
proxy can be expected to order the panel better than the truth orders itself. A training that
diverged counts as the worst score (as NAS-RL's reward 0 does), in every order.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

from enas.ranking import percentile, seed_agreement


@dataclass(frozen=True)
class Truth:
    """One architecture's ground truth: its score under each training seed, nan where it diverged."""

    values: tuple[float, ...]     # in the panel's metric, one per seed
    params: int | None            # None where no training of it got as far as a result
    bpc: tuple[float, ...] = ()   # character-level text: test bits per character, one per seed

    @property
    def diverged(self) -> bool:
        """Whether a training of it diverged (under any seed)."""
        return not all(map(math.isfinite, self.values))

    def mean(self) -> float | None:
        """The score averaged over the seeds; None where a seed diverged."""
        return None if self.diverged else statistics.fmean(self.values)

    def spread(self) -> float | None:
        """The standard deviation over the seeds; None with one seed or a diverged one."""
        return None if self.diverged or len(self.values) < 2 else statistics.stdev(self.values)

    def mean_bpc(self) -> float | None:
        """Bits per character averaged over the seeds; None off character-level text or where a seed diverged."""
        return statistics.fmean(self.bpc) if self.bpc and not self.diverged else None


@dataclass(frozen=True)
class GroundTruth:
    """The truth of a panel: one `Truth` per architecture, in the panel's order."""

    metric: str                # e.g. test_ppl, test_acc
    lower_is_better: bool
    seeds: tuple[int, ...]     # the training seeds, in the order of each Truth's values
    members: list[Truth]

    def scores(self) -> list[float]:
        """Each member's mean score with larger better (a diverged one -inf): what the statistics order."""
        return [self._larger_is_better(t.mean()) for t in self.members]

    def seed_scores(self) -> list[list[float]]:
        """Per seed, each member's score with larger better (a diverged one -inf)."""
        return [[self._larger_is_better(t.values[s]) for t in self.members] for s in range(len(self.seeds))]

    def noise_ceiling(self) -> float | None:
        """Kendall's tau between the seeds' orders (their mean over pairs); None with one seed, or
        where a seed orders nothing (every member tied)."""
        if len(self.seeds) < 2:
            return None
        tau = seed_agreement(self.seed_scores())
        return tau if math.isfinite(tau) else None

    def percentiles(self, index: int) -> list[float]:
        """Member `index`'s percentile among the others under each seed alone."""
        return [percentile(scores[index], scores[:index] + scores[index + 1:]) for scores in self.seed_scores()]

    @property
    def diverged(self) -> int:
        """How many members diverged."""
        return sum(t.diverged for t in self.members)

    def row(self, index: int, prefix: str = "") -> dict[str, Any]:
        """Member `index` as the fields of a record's row: <prefix><metric> (the mean), its _std and
        _seeds, <prefix>test_bpc on character-level text, <prefix>params, and whether it diverged."""
        truth, key = self.members[index], prefix + self.metric
        row: dict[str, Any] = {key: truth.mean(), f"{key}_std": truth.spread(),
                               f"{key}_seeds": [v if math.isfinite(v) else None for v in truth.values]}
        if any(t.bpc for t in self.members):   # character-level text: every row has the column
            row[f"{prefix}test_bpc"] = truth.mean_bpc()
        return row | {f"{prefix}params": truth.params, "diverged": truth.diverged}

    def _larger_is_better(self, value: float | None) -> float:
        if value is None or not math.isfinite(value):
            return -math.inf
        return -value if self.lower_is_better else value
