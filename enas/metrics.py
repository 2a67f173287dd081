"""metrics.jsonl: one JSON object per line, appended and flushed as the run goes."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any


class MetricsLog:
    def __init__(self, path: Path, keep_lines: int | None = None):
        """Open `path` for appending; `keep_lines` first drops lines written after a checkpoint."""
        self.path = path
        lines = path.read_text().splitlines(keepends=True) if path.exists() else []
        if keep_lines is not None and len(lines) > keep_lines:
            lines = lines[:keep_lines]
            path.write_text("".join(lines))
        self.lines = len(lines)
        self._handle = open(path, "a")

    def write(self, phase: str, epoch: int, step: int, **figures: Any) -> None:
        record = {"phase": phase, "epoch": epoch, "step": step, "time": round(time.time(), 3), **figures}
        self._handle.write(json.dumps(record) + "\n")
        self._handle.flush()
        self.lines += 1

    def close(self) -> None:
        self._handle.close()


def read_metrics(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
