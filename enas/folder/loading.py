"""Reading back what the tool wrote before (issue 27: nothing read back can crash the tool): torch
files through the weights-only loader, small text files, and the checks a loaded value passes
before it is trusted. A reader turns what these report into a one-line error, or, for a cache,
into a warning and a rebuild.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch

from enas.errors import UserError


class Unreadable(ValueError):
    """A file that cannot be loaded at all: cut off, foreign, unsafe, or not a file. Its message
    says why, to follow "PATH is"."""


def load_torch_file(path: Path) -> Any:
    """What `path` holds, on the CPU, read by torch's weights-only loader (nothing in it runs)."""
    with warnings.catch_warnings():
        # A raw pickle draws torch's "Detected pickle protocol" warning and a source line; the
        # caller's one line says all there is to say.
        warnings.simplefilter("ignore")
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:   # torch reports a cut-off, foreign or unsafe file as many unrelated errors
            raise Unreadable("truncated, foreign or unsafe (refused by the weights-only loader; nothing in it "
                             "ran)") from error


def tensor_problem(value: Any, name: str, dtype: torch.dtype, dims: int, below: int | None = None) -> str:
    """"" when `value` is a tensor of `dtype` with `dims` dimensions (integers: all in 0..below-1),
    else what is wrong with it, naming it `name`."""
    if value is None:
        return f"{name}: missing"
    if not isinstance(value, torch.Tensor):
        return f"{name}: a {type(value).__name__}, not a tensor"
    if value.dtype != dtype or value.dim() != dims:
        return f"{name}: a {value.dim()}-D {value.dtype} tensor, not a {dims}-D {dtype} one"
    if below is not None and value.numel() and not 0 <= int(value.min()) <= int(value.max()) < below:
        return f"{name}: values outside 0..{below - 1}"
    return ""


def read_text_file(path: Path, holds: str) -> str:
    """The UTF-8 text of `path`, a file of the run folder that holds `holds`; a one-line UserError
    when it is a folder, unreadable or not UTF-8."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = problem_of(error)
    raise UserError(f"{path} should hold {holds}, but it {reason}; restore it from a copy, or delete it "
                    "to have it written again from data.root")


def read_json_file(path: Path, remedy: str) -> Any:
    """The JSON value in `path`; a one-line UserError naming the file, what is wrong with it and
    `remedy` (what to do) when it is absent, not a file, unreadable, not UTF-8, not JSON or nested
    too deeply to parse. The one reader of every JSON file a run wrote (records, architectures)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as error:   # ValueError: not UTF-8, not JSON, 4300+ digits
        reason = problem_of(error)
    raise UserError(f"{path} {reason}; {remedy}")


def problem_of(error: Exception) -> str:
    """What an error of reading a file says of the file, to follow "it" or its path."""
    if isinstance(error, FileNotFoundError):
        return "does not exist"
    if isinstance(error, IsADirectoryError):
        return "is a folder, not a file"
    if isinstance(error, json.JSONDecodeError):
        return f"is damaged (not valid JSON: {error.msg} at line {error.lineno})"
    if isinstance(error, UnicodeDecodeError):
        return f"is not UTF-8 text ({error.reason} at byte {error.start})"
    if isinstance(error, RecursionError):
        return "nests its brackets too deeply"
    if isinstance(error, ValueError):
        return f"is damaged ({str(error).splitlines()[0]})"
    return f"cannot be read ({getattr(error, 'strerror', None) or error})"
