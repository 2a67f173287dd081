"""arch.json: derive's choice (the architecture, its validation score, how many candidates were
scored, its rendering, where a benchmark table places it); a retrain's own arch.json holds the
architecture alone. Its architecture is checked by its space on reading."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from enas.errors import UserError
from enas.folder.names import ARCH_FILE
from enas.records.record import Record
from enas.spaces import from_json, official
from enas.spaces.architecture import FORMAT_VERSION, Architecture


@dataclass(frozen=True)
class ArchRecord(Record):
    file: ClassVar[str] = ARCH_FILE
    remedy: ClassVar[str] = "derive again: enas derive RUN_DIR"

    space: str
    choices: list[Any]
    format_version: int = FORMAT_VERSION   # of the choices' order (spaces/architecture.py)
    official: str = ""               # the official string
    sampled: int = 0                 # candidates derive looked at
    cell: list[str] = field(default_factory=list)     # the rendering, a line each
    bench: dict[str, Any] = field(default_factory=dict)   # bench.table: the cell's figures (tables/figures.py)
    figures: dict[str, float] = field(default_factory=dict)   # its score: valid_<metric> or reward

    @classmethod
    def of(cls, arch: Architecture, **extra: Any) -> ArchRecord:
        """The record of `arch` (with derive's `extra` fields and figures)."""
        return cls(arch.space, list(arch.to_json()["choices"]), FORMAT_VERSION, official(arch), **extra)

    def architecture(self) -> Architecture:
        return from_json({"space": self.space, "choices": self.choices, "format_version": self.format_version})

    @property
    def score(self) -> tuple[str, float] | None:
        """(name, value) of the score derive kept it by, where it has one."""
        return next(iter(self.figures.items()), None)

    def problem(self) -> str:
        try:
            self.architecture()
        except UserError as error:
            return str(error)
        return ""
