"""retrain's result.json: an architecture's test score after training it from scratch; diverged.json:
a training of a panel architecture (rank, compare) that diverged instead."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from enas.folder.names import DIVERGED_FILE, RESULT_FILE
from enas.records.record import Record


@dataclass(frozen=True)
class Result(Record):
    """The score of the kept weights on the test split, and what it depends on."""

    file: ClassVar[str] = RESULT_FILE
    remedy: ClassVar[str] = "retrain again: enas retrain RUN_DIR (or delete its folder from a panel cache)"

    metric: str                # "test_ppl" or "test_acc"
    value: float               # the test score in `metric`
    params: int                # the child's parameters (an auxiliary head's apart)
    time_s: float              # seconds of training, over all its sessions
    arch: str                  # the official string of the architecture
    aux_params: int | None = None   # an auxiliary head's parameters, apart as the official code reports them
    averaged: bool = False          # the kept weights are an average (retrain.average_after)
    figures: dict[str, float] = field(default_factory=dict)   # valid_<metric>, other units, references

    def figure(self, name: str) -> float | None:
        return self.figures.get(name)

    def problem(self) -> str:
        return "" if self.metric.startswith("test_") else f"'metric' is {self.metric!r}, not test_<metric>"


@dataclass(frozen=True)
class Divergence(Record):
    """A panel architecture whose training alone diverged: a result of its own (the worst score),
    kept so that the panel's next run does not train it again."""

    file: ClassVar[str] = DIVERGED_FILE
    remedy: ClassVar[str] = "delete its folder from the panel cache to train it again"

    arch: str     # the official string of the architecture
    error: str    # what diverged, as the training said it
