"""Atomic save and safe load of a run's whole state.

A checkpoint is written to a temporary file in the same folder, flushed and fsynced, and renamed
over `last.pt`; the checkpoint it replaces is kept as `previous.pt` until the next save. Loading
uses `torch.load(weights_only=True)`, so a foreign pickle can never run code.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import torch

from enas.errors import DiskFullError, UserError

LAST, PREVIOUS = "last.pt", "previous.pt"
SCHEMA_VERSION = 1


def save_checkpoint(folder: Path, state: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    temporary = folder / (LAST + ".tmp")
    try:
        with open(temporary, "wb") as handle:
            torch.save({"schema_version": SCHEMA_VERSION, **state}, handle)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as error:
        temporary.unlink(missing_ok=True)
        if error.errno == errno.ENOSPC:
            raise DiskFullError(f"disk full while saving a checkpoint in {folder}; "
                                f"the last good checkpoint is {_newest(folder) or 'none'}") from None
        raise
    last = folder / LAST
    if last.exists():
        os.replace(last, folder / PREVIOUS)
    os.replace(temporary, last)
    _fsync_folder(folder)
    return last


def load_checkpoint(folder: Path, warn=print) -> dict[str, Any]:
    """The newest loadable checkpoint in `folder`; falls back to the previous one if the last is bad."""
    problems = []
    for name in (LAST, PREVIOUS):
        path = folder / name
        if not path.exists():
            continue
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # truncated, foreign or unsafe: all mean "not a checkpoint of ours"
            problems.append(f"{path} is unreadable ({type(error).__name__})")
            continue
        if not isinstance(state, dict) or state.get("schema_version") != SCHEMA_VERSION:
            problems.append(f"{path} is not an enas checkpoint of schema {SCHEMA_VERSION}")
            continue
        if problems:
            warn(f"warning: {problems[0]}; resuming from {path}")
        return state
    detail = "; ".join(problems) if problems else f"no {LAST} or {PREVIOUS} there"
    raise UserError(f"no valid checkpoint in {folder}: {detail}")


def _newest(folder: Path) -> Path | None:
    for name in (LAST, PREVIOUS):
        if (folder / name).exists():
            return folder / name
    return None


def _fsync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
