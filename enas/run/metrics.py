"""metrics.jsonl: one JSON object per line, appended and flushed as the run goes.

A checkpoint records how many lines were written when it was saved; a run resumed or rolled back
from it cuts the file back to that many lines, so every step appears exactly once. With `events`
(logging.tensorboard) every line's numbers also go to TensorBoard (events.py).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from enas.run.distributed import is_main
from enas.run.events import Events


class MetricsLog:
    def __init__(self, path: Path, keep_lines: int | None = None, events: Events | None = None):
        """Open `path` for appending; `keep_lines` first drops lines written after a checkpoint.
        The other ranks of a distributed run only count the lines rank 0 writes."""
        self.path = path
        self.lines = 0
        self.events = events
        self._handle = open(path, "a") if is_main() else None
        self.rewind(keep_lines)

    def rewind(self, keep_lines: int | None) -> None:
        """Keep only the first `keep_lines` lines (all of them when None)."""
        if self._handle is None:
            self.lines = keep_lines or 0
            return
        self._handle.flush()
        with open(self.path, "rb") as handle:
            lines = handle.readlines()
        complete = [line for line in lines if line.endswith(b"\n")]  # a cut-off last line goes too
        kept = complete if keep_lines is None else complete[:keep_lines]
        if len(kept) < len(lines):
            os.truncate(self.path, sum(len(line) for line in kept))  # one call: no window for a crash
        self.lines = len(kept)
        if self.events is not None:
            self.events.count(json.loads(line) for line in kept)

    def write(self, phase: str, epoch: int, step: int, **figures: Any) -> None:
        self.lines += 1
        if self._handle is None:
            return
        record = {"phase": phase, "epoch": epoch, "step": step, "time": round(time.time(), 3), **figures}
        self._handle.write(json.dumps(record) + "\n")
        self._handle.flush()
        if self.events is not None:
            self.events.scalars(phase, figures)

    def sync(self) -> None:
        """Force the lines to disk, so that a checkpoint never counts lines a power cut could lose."""
        if self._handle is not None:
            self._handle.flush()
            os.fsync(self._handle.fileno())

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
        if self.events is not None:
            self.events.close()


WALL_CLOCK = ("time", "search_s", "seconds")   # the figures a resumed run may not repeat exactly


def without_wall_clock(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records with their wall-clock figures left out (what an exact resume must reproduce)."""
    return [{k: v for k, v in record.items() if k not in WALL_CLOCK} for record in records]


def read_metrics(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
