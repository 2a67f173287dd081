"""The JSON-lines files of a run (metrics.jsonl, trials.jsonl, candidates.jsonl): one JSON object
per line. MetricsLog appends the logs' lines and flushes each; `read_metrics` is the one reader of
all three, and checks every line as its file's record (enas/records/lines.py).

A checkpoint records how many lines were written when it was saved; a run resumed or rolled back
from it cuts the file back to that many lines, so every step appears exactly once. A file with
fewer whole lines than that, or a damaged one among them, is a one-line error: resuming would
append to a log that no longer matches the checkpoint. A last line without its newline was cut off
by a kill mid-write: every reader leaves it out. With `events` (logging.tensorboard) every line's
numbers also go to TensorBoard (events.py).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from enas.errors import UserError
from enas.records.lines import LINE_RECORDS
from enas.run.distributed import is_main
from enas.run.events import Events


class MetricsLog:
    def __init__(self, path: Path, keep_lines: int | None = None, events: Events | None = None):
        """Open `path` for appending; `keep_lines` (a checkpoint's count) first drops the lines
        written after it. The other ranks of a distributed run only count the lines rank 0 writes."""
        self.path = path
        self.lines = 0
        self.events = events
        self._handle = None
        if is_main():
            self._cut_back(keep_lines)   # checked before the file is opened: a refused resume creates nothing
            self._handle = open(path, "a")
        else:
            self.lines = keep_lines or 0

    def rewind(self, keep_lines: int | None) -> None:
        """Keep only the first `keep_lines` lines (all of them when None)."""
        if self._handle is None:
            self.lines = keep_lines or 0
            return
        self._handle.flush()
        self._cut_back(keep_lines)

    def _cut_back(self, keep_lines: int | None) -> None:
        records, size = kept_lines(self.path, keep_lines)
        if self.path.exists() and size < self.path.stat().st_size:
            os.truncate(self.path, size)  # one call: no window for a crash
        self.lines = len(records)
        if self.events is not None:
            self.events.count(records)

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
    """The lines of a JSON-lines file of a run folder, each checked as its file's record; [] where
    the file does not exist. A cut-off last line is left out; any other damaged line is a one-line
    error naming the file and the line."""
    return _checked(path, _whole_lines(path))


def kept_lines(path: Path, keep_lines: int | None) -> tuple[list[dict[str, Any]], int]:
    """The first `keep_lines` lines of the log `path` (all of them when None), checked, and their
    size in bytes; a one-line error where the file holds fewer whole lines than that."""
    lines = _whole_lines(path)
    if keep_lines is not None and len(lines) < keep_lines:
        raise UserError(f"{path} holds {len(lines)} whole line(s) where its checkpoint counts {keep_lines}: it was "
                        "cut or replaced since; restore it from a copy, or start the run again in a new folder")
    kept = lines if keep_lines is None else lines[:keep_lines]
    return _checked(path, kept), sum(len(line) + 1 for line in kept)


def _whole_lines(path: Path) -> list[bytes]:
    """The lines of `path` that end with a newline, without it: the writer ends each line with one,
    so a last line without it was cut off by a kill mid-write."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as error:
        raise UserError(f"{path} cannot be read ({error.strerror or error}); restore it from a copy") from None
    return data.split(b"\n")[:-1]


def _checked(path: Path, lines: list[bytes]) -> list[dict[str, Any]]:
    """Each line's JSON object, checked as the record of `path`'s file (records/lines.py)."""
    kind = LINE_RECORDS[path.name]
    objects = []
    for number, line in enumerate(lines, start=1):
        where = f"{path} line {number}"
        objects.append(kind.parse(line, where))
        kind.from_json(objects[-1], where)
    return objects
