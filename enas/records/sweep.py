"""seeds.json: enas search --seeds, the mean and spread over the seeds' retrained architectures."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from enas.folder.names import SEEDS_FILE
from enas.records.record import Record


@dataclass(frozen=True)
class SweepSummary(Record):
    file: ClassVar[str] = SEEDS_FILE
    remedy: ClassVar[str] = "run the same enas search --seeds command again"

    metric: str                  # the retrains' test score, e.g. test_ppl
    seeds: list[int]
    runs: list[dict[str, Any]]   # per seed: run_dir, arch, metric, value, search_s, retrain_s, seed
    value_mean: float
    value_std: float
    search_s_mean: float
    search_s_std: float
