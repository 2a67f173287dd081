"""rank.json and compare.json: how a search measures up against architectures trained alone.

Version 2: the ground truth is a mean over training seeds (budget.train_seeds) with its noise
ceiling, and a panel member whose training diverged is a row of its own ("diverged": true, its
scores null). Below the records: how their rows read in a table (rank, compare, the report).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

from enas.folder.names import COMPARE_FILE, RANK_FILE
from enas.records.record import Record


def _rows_problem(rows: list[dict[str, Any]], numbers: tuple[str, ...], name: str) -> str:
    """What is wrong with a panel's rows: each needs its architecture and finite numbers (null
    where the row's training diverged)."""
    for index, row in enumerate(rows):
        if not isinstance(row.get("arch"), str):
            return f"{name} row {index + 1} has no architecture"
        for key in numbers:
            value = row.get(key)
            if value is None and row.get("diverged") is True:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
                return f"{name} row {index + 1} has {key}={value!r}"
    return ""


@dataclass(frozen=True)
class RankReport(Record):
    """enas rank: shared-weight scores against training alone over a panel."""

    file: ClassVar[str] = RANK_FILE
    version: ClassVar[int] = 2
    remedy: ClassVar[str] = "run `enas rank RUN_DIR` again (the trained panel is cached)"

    metric: str                    # the shared-weight score: "ppl" or "acc"
    lower_is_better: bool
    budget: dict[str, Any]         # epochs, seed, train_seeds, cache
    kendall_tau: float
    spearman_rho: float
    top_k: int
    top_k_overlap: float
    panel: list[dict[str, Any]]    # arch, choices, source, shared_valid_<metric>, alone_<truth> (the seeds' mean),
                                   # alone_<truth>_std, alone_<truth>_seeds, [alone_test_bpc], alone_params, diverged
    kendall_tau_uniform: float | None = None
    truth_metric: str = ""              # the stand-alone score, e.g. test_ppl ("" in version 1: see alone_metric)
    noise_ceiling: float | None = None  # Kendall tau between the training seeds' orders (None: one seed)
    diverged: int = 0                   # panel members whose training alone diverged

    @property
    def alone_metric(self) -> str:
        """The stand-alone score's key in the panel's rows, e.g. alone_test_ppl."""
        if self.truth_metric:
            return f"alone_{self.truth_metric}"
        return next(k for k in self.panel[0] if k.startswith("alone_") and k != "alone_params")   # version 1

    def problem(self) -> str:
        if len(self.panel) < 2:
            return "a panel of fewer than 2 architectures"
        alone = [k for k in self.panel[0] if k.startswith("alone_") and k != "alone_params"]
        if not alone:
            return "no stand-alone score in the panel"
        return _rows_problem(self.panel, (f"shared_valid_{self.metric}", self.alone_metric), "panel")


@dataclass(frozen=True)
class CompareReport(Record):
    """enas compare: the derived architecture against random ones, all trained alone."""

    file: ClassVar[str] = COMPARE_FILE
    version: ClassVar[int] = 2
    remedy: ClassVar[str] = "run `enas compare RUN_DIR` again (the trained panel is cached)"

    metric: str                       # the stand-alone score, e.g. test_ppl
    lower_is_better: bool
    budget: dict[str, Any]            # epochs, seed, train_seeds, cache
    percentile: float                 # of the derived architecture among the random ones, by the seeds' mean
    beaten: int
    random: int
    derived: dict[str, Any]           # arch, <metric> (the seeds' mean), <metric>_std, <metric>_seeds, [test_bpc],
                                      # params, diverged
    random_panel: list[dict[str, Any]]   # arch, choices and the same as derived
    noise_ceiling: float | None = None   # Kendall tau between the training seeds' orders of the whole panel
    percentile_seeds: list[float] = field(default_factory=list)   # the percentile under each seed alone
    diverged: int = 0                    # architectures (the derived one included) whose training diverged
    figures: dict[str, float] = field(default_factory=dict)   # the task's references (floor, chance, ...)

    def problem(self) -> str:
        return _rows_problem([self.derived, *self.random_panel], (self.metric, "params"), "panel")


# --------------------------------------------------------------------------- as tables show them

def ceiling_text(ceiling: float | None) -> str:
    """The noise ceiling as it stands beside a tau or a percentile."""
    return "noise ceiling n/a: one training seed" if ceiling is None else f"noise ceiling {ceiling:.3f}"


def seeds_text(percentiles: list[float]) -> str:
    """The percentile under each training seed alone, where there are several."""
    return f", per seed {', '.join(f'{p:.0f}' for p in percentiles)}" if len(percentiles) > 1 else ""


def diverged_text(count: int) -> str:
    """How many members diverged, where any did, as a title's last clause."""
    return f"; {count} diverged" if count else ""


def truth_headers(row: dict[str, Any], key: str) -> list[str]:
    """The table headers of a record row's ground truth under `key` (e.g. alone_test_ppl): the
    score (with its spread over the seeds), and bits per character where the row has them."""
    spread = " ± seed std" if len(row.get(f"{key}_seeds") or []) > 1 else ""
    return [key.replace("_", " ") + spread, *([_bpc_key(key).replace("_", " ")] if _bpc_key(key) in row else [])]


def truth_cells(row: dict[str, Any], key: str) -> list[str]:
    """The cells under `truth_headers(row, key)`."""
    mean, spread = row.get(key), row.get(f"{key}_std")
    cells = ["diverged" if mean is None else f"{mean:.4g}" + (f" ± {spread:.2g}" if spread is not None else "")]
    if _bpc_key(key) in row:
        cells.append("diverged" if row[_bpc_key(key)] is None else f"{row[_bpc_key(key)]:.4g}")
    return cells


def truth_order(key: str, lower_is_better: bool) -> Callable[[dict[str, Any]], tuple[bool, float]]:
    """The sort key of record rows by their ground truth under `key`: the best first, diverged last."""
    def order(row: dict[str, Any]) -> tuple[bool, float]:
        value = row.get(key)
        if value is None:
            return True, 0.0
        return False, value if lower_is_better else -value
    return order


def _bpc_key(key: str) -> str:
    """test_ppl -> test_bpc, alone_test_ppl -> alone_test_bpc."""
    return key.rsplit("_", 1)[0] + "_bpc"
