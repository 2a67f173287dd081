"""The eval line of metrics.jsonl: what a weight-sharing search says at the end of each epoch (its
most likely architecture's validation score, the seconds searched so far, what the policy samples).
Written by the ENAS loop, read by the report and `enas runs`; its reader checks it like any record."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from enas.records.record import Record


@dataclass(frozen=True)
class EvalLine(Record):
    file: ClassVar[str] = "metrics.jsonl (an eval line)"
    remedy: ClassVar[str] = "the search's log is damaged: run the search again, or resume it from its checkpoint"

    arch: str                 # the official string of the controller's most likely architecture
    search_s: float           # seconds searched so far, over all sessions
    decision_entropy: dict[str, float] = field(default_factory=dict)   # watch.py: the policy, per decision
    entropy_share: float = 0.0
    op_frequency: dict[str, float] = field(default_factory=dict)
    input_frequency: dict[str, float] = field(default_factory=dict)
    top_op: dict[str, Any] = field(default_factory=dict)
    top_arch_share: float = 0.0
    warning: str | None = None     # watch.py: the policy collapsed too early, or has not learned
    replicas: int | None = None   # torchrun: processes whose weights were checked alike
    figures: dict[str, float] = field(default_factory=dict)   # valid_<metric> of the most likely architecture

    def score(self, metric: str) -> float | None:
        """The validation score in `metric` ("ppl", "acc")."""
        return self.figures.get(f"valid_{metric}")

    def fields(self) -> dict[str, Any]:
        """The line's figures as MetricsLog.write takes them (the record's schema key left out)."""
        return {key: value for key, value in self.to_json().items() if key != "schema" and value is not None}
