"""Atomic save and safe load of a run's whole state.

Saving refuses a state holding a non-finite number, writes a temporary file in the checkpoint
folder, flushes and fsyncs it, and only then turns `last.pt` into `previous.pt`, renames the
temporary file to `last.pt` and fsyncs the folder. A crash at any moment therefore leaves a whole
`last.pt` (or, between the two renames, a whole `previous.pt`). A full disk removes the temporary
file and raises DiskFullError naming the checkpoint that is still good.

Loading uses `torch.load(weights_only=True)` with no fallback to full unpickling, so a foreign
pickle can never run code. A damaged `last.pt` is moved aside, with a warning, and `previous.pt`
is loaded instead.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Any, Callable

import torch

from enas.errors import DiskFullError, NonFiniteError, UserError, is_disk_full
from enas.folder.atomic import fsync_folder, write_synced
from enas.folder.loading import Unreadable, load_torch_file
from enas.folder.names import LAST, PREVIOUS
from enas.run.distributed import is_main
from enas.run.signals import fault_point
from enas.run.state import CONFIG, KIND, SCHEMA, SCHEMA_VERSION, schema_problem

DAMAGED = LAST + ".damaged"


def save_checkpoint(folder: Path, state: dict[str, Any], label: str = "") -> Path:
    """Save `state` as `folder/last.pt`; `label` names the save for the test-only fault hook."""
    problem = nonfinite_entry(state)
    if problem:
        raise NonFiniteError(f"refusing to checkpoint a non-finite value in {problem}")
    last = folder / LAST
    if not is_main():   # rank 0 saves the state of every rank
        return last
    temporary = folder / (LAST + ".tmp")
    payload = {SCHEMA: SCHEMA_VERSION, **state}
    try:
        write_synced(temporary, lambda handle: torch.save(payload, handle))
    except Exception as error:
        if not is_disk_full(error):
            raise
        raise DiskFullError(f"disk full while saving a checkpoint in {folder}; the last good "
                            f"checkpoint is {newest_checkpoint(folder) or 'none yet'}") from None
    fault_point("written", label)
    if last.exists():  # only now, with the new state durable, may the oldest one go
        os.replace(last, folder / PREVIOUS)
    os.replace(temporary, last)
    fsync_folder(folder)
    fault_point("renamed", label)
    return last


def load_checkpoint(folder: Path, kind: str = "search", warn: Callable[[str], object] | None = None
                    ) -> dict[str, Any]:
    """The newest whole checkpoint of `kind` in `folder`, or a one-line UserError saying why none is."""
    warn = warn or _to_stderr
    problems = []
    for name in (LAST, PREVIOUS):
        path = folder / name
        if not path.is_file():
            continue
        state, problem = _read(path, kind)
        if problem:
            problems.append(problem)
            continue
        if problems:
            # Out of the way, so that the next save keeps this good checkpoint as previous.pt.
            os.replace(folder / LAST, folder / DAMAGED)
            warn(f"warning: {problems[0]}; moved it to {folder / DAMAGED} and resumed from {path}")
        return state
    detail = "; ".join(problems) if problems else f"no {LAST} or {PREVIOUS} there"
    raise UserError(f"no valid checkpoint in {folder}: {detail}")


def _read(path: Path, kind: str) -> tuple[dict[str, Any], str]:
    """The state in `path` and "", or an empty state and what is wrong with the file."""
    try:
        state = load_torch_file(path)
    except Unreadable as error:
        return {}, f"{path} is {error}"
    problem = schema_problem(state, path)
    if problem:
        return {}, problem
    if state.get(KIND) != kind:
        return {}, f"{path} is a {state.get(KIND)} checkpoint, not a {kind} one"
    return state, ""


def newest_checkpoint(folder: Path) -> Path | None:
    for name in (LAST, PREVIOUS):
        if (folder / name).exists():
            return folder / name
    return None


def nonfinite_entry(state: Any, where: str = "state") -> str | None:
    """The key path of the first NaN or infinity in `state` (the config aside), or None."""
    if isinstance(state, torch.Tensor):
        finite = not state.is_floating_point() or bool(torch.isfinite(state).all())
        return None if finite else where
    if isinstance(state, float):
        return None if math.isfinite(state) else where
    if isinstance(state, dict):
        items = ((f"{where}.{key}", value) for key, value in state.items() if key != CONFIG)
    elif isinstance(state, (list, tuple)):
        items = ((f"{where}[{i}]", value) for i, value in enumerate(state))
    else:
        return None
    return next((found for path, value in items if (found := nonfinite_entry(value, path))), None)


def _to_stderr(message: str) -> None:
    print(message, file=sys.stderr)
