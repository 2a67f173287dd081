"""The JSON-lines files of a run: metrics.jsonl and trials.jsonl (appended line by line by
enas/run/metrics.py's MetricsLog) and candidates.jsonl (written whole by derive). Each line is one
record, checked like any other (record.py) when `enas.run.metrics.read_metrics` reads it back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from enas.folder.names import CANDIDATES_FILE, METRICS_FILE, TRIALS_FILE
from enas.records.record import Record, Score

_EDIT = "restore it from a copy, or delete that line"


@dataclass(frozen=True)
class MetricsLine(Record):
    """One logged step or epoch of a phase; its figures vary by phase (README, "Run folder")."""

    file: ClassVar[str] = METRICS_FILE
    remedy: ClassVar[str] = _EDIT

    phase: str
    epoch: int
    step: int
    time: float
    figures: dict[str, Any] = field(default_factory=dict)   # loss, reward, valid_<metric>, arch, policy figures


@dataclass(frozen=True)
class Trial(Record):
    """NAS-RL: one child trained from scratch (or looked up in the cache of trials)."""

    file: ClassVar[str] = TRIALS_FILE
    remedy: ClassVar[str] = f"{_EDIT} (a resumed search cuts the file back to its checkpoint)"

    phase: str
    epoch: int                  # the update
    step: int                   # the child within it
    time: float
    cached: bool                # looked up, not trained again
    arch: str                   # the official string
    choices: list[Any]          # the decisions (a macro skip decision is a list)
    reward: float               # what the controller learned from: finite
    curve: list[Score] = field(default_factory=list)   # the validation score after each epoch
    params: int | None = None
    seconds: float | None = None
    figures: dict[str, Score] = field(default_factory=dict)   # valid_<metric>: infinite for a child that diverged


@dataclass(frozen=True)
class Candidate(Record):
    """derive: one scored architecture (NAS-RL: a trial, less its log fields)."""

    file: ClassVar[str] = CANDIDATES_FILE
    remedy: ClassVar[str] = "run `enas derive RUN_DIR` again"

    arch: str
    choices: list[Any]
    curve: list[Score] = field(default_factory=list)
    figures: dict[str, Score] = field(default_factory=dict)   # valid_<metric> or reward, params, seconds, ...


LINE_RECORDS: dict[str, type[Record]] = {kind.file: kind for kind in (MetricsLine, Trial, Candidate)}
