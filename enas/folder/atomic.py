"""Atomic writes: a file is replaced so that a reader sees the old one or the new one, never a
half-written one, even after a crash or a full disk.

Only one process of a distributed run writes: rank 0. torchrun gives each process its RANK in the
environment, so this module can tell without asking the process group (enas/run/distributed.py).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, BinaryIO, Callable


def writes_run_folder() -> bool:
    """Whether this process writes: the only one, or rank 0 of a torchrun job."""
    return os.environ.get("RANK", "0") == "0"


def write_json(path: Path, value: Any) -> None:
    """`value` as indented JSON, replacing `path` atomically."""
    write_text(path, json.dumps(value, indent=2) + "\n")


def write_text(path: Path, text: str) -> None:
    """`text` in UTF-8, replacing `path` atomically."""
    data = text.encode()
    write_file(path, lambda handle: handle.write(data))


def write_file(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Replace `path` atomically with what `write` writes (on rank 0 only)."""
    if not writes_run_folder():
        return
    temporary = path.with_name(path.name + ".tmp")
    write_synced(temporary, write)
    os.replace(temporary, path)
    fsync_folder(path.parent)


def write_synced(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write a file and force it to disk, so that a rename of it is durable once the folder is
    synced; on any failure the partial file is removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(path, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def fsync_folder(folder: Path) -> None:
    """Make the renames in `folder` durable (a rename is an update of the folder)."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
