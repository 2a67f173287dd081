"""arch.json: the architecture derive chose, with its score and renderings (a retrain's own folder
holds a copy of the architecture it trained, without them). enas.spaces.from_json checks that
the architecture fits its space; this record checks the rest."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from enas.folder.names import ARCH_FILE
from enas.records.record import Record


@dataclass(frozen=True)
class ArchFile(Record):
    file: ClassVar[str] = ARCH_FILE
    remedy: ClassVar[str] = "run `enas derive RUN_DIR` again"

    space: str
    choices: list[Any]             # the decisions (a macro skip decision is a list)
    format_version: int = 1        # of the architecture's JSON form (enas.spaces)
    official: str = ""
    sampled: int | None = None     # candidates derive scored
    cell: list[str] = field(default_factory=list)   # the cell as text
    figures: dict[str, float] = field(default_factory=dict)   # valid_<metric>: the derived score
