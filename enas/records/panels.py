"""rank.json and compare.json: how a search measures up against architectures trained alone."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from enas.folder.names import COMPARE_FILE, RANK_FILE
from enas.records.record import Record


def _rows_problem(rows: list[dict[str, Any]], numbers: tuple[str, ...], name: str) -> str:
    """What is wrong with a panel's rows: each needs its architecture and finite numbers."""
    for index, row in enumerate(rows):
        if not isinstance(row.get("arch"), str):
            return f"{name} row {index + 1} has no architecture"
        for key in numbers:
            value = row.get(key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
                return f"{name} row {index + 1} has {key}={value!r}"
    return ""


@dataclass(frozen=True)
class RankReport(Record):
    """enas rank: shared-weight scores against training alone over a panel."""

    file: ClassVar[str] = RANK_FILE
    remedy: ClassVar[str] = "run `enas rank RUN_DIR` again (the trained panel is cached)"

    metric: str                    # the shared-weight score: "ppl" or "acc"
    lower_is_better: bool
    budget: dict[str, Any]         # epochs, seed, cache
    kendall_tau: float
    spearman_rho: float
    top_k: int
    top_k_overlap: float
    panel: list[dict[str, Any]]    # arch, choices, source, shared_valid_<metric>, alone_<metric>, alone_params
    kendall_tau_uniform: float | None = None

    @property
    def alone_metric(self) -> str:
        """The stand-alone score's key in the panel's rows, e.g. alone_test_ppl."""
        return next(k for k in self.panel[0] if k.startswith("alone_") and k != "alone_params")

    def problem(self) -> str:
        if len(self.panel) < 2:
            return "a panel of fewer than 2 architectures"
        alone = [k for k in self.panel[0] if k.startswith("alone_") and k != "alone_params"]
        if not alone:
            return "no stand-alone score in the panel"
        return _rows_problem(self.panel, (f"shared_valid_{self.metric}", alone[0]), "panel")


@dataclass(frozen=True)
class CompareReport(Record):
    """enas compare: the derived architecture against random ones, all trained alone."""

    file: ClassVar[str] = COMPARE_FILE
    remedy: ClassVar[str] = "run `enas compare RUN_DIR` again (the trained panel is cached)"

    metric: str                       # the stand-alone score, e.g. test_ppl
    lower_is_better: bool
    budget: dict[str, Any]
    percentile: float                 # of the derived architecture among the random ones
    beaten: int
    random: int
    derived: dict[str, Any]           # arch, <metric>, params
    random_panel: list[dict[str, Any]]   # arch, choices, <metric>, params
    figures: dict[str, float] = field(default_factory=dict)   # the task's references (floor, chance, ...)

    def problem(self) -> str:
        return _rows_problem([self.derived, *self.random_panel], (self.metric, "params"), "panel")
