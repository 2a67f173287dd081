"""The mechanism every record shares: a frozen dataclass written as one flat JSON object with a
schema version, and read back through one reader that checks each field against its annotation
(a float must be a finite number, an int an integer, ...). A file that is absent, cut off or
damaged is a one-line `UserError` naming the file and what to do, never a traceback.

A record may keep figures whose names depend on the run (`valid_ppl`, `test_bpc`, `floor`) in a
`figures` field: they are written flat beside the fixed fields and read back as its annotation
says (`dict[str, float]`: finite numbers).

A `Score` is a number that may be infinite but never NaN: the validation score of a child that
diverged (its perplexity is infinite).
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from functools import cache
from pathlib import Path
from typing import Any, ClassVar, NewType, TypeVar

from enas.errors import UserError
from enas.folder.atomic import write_json
from enas.folder.loading import problem_of, read_json_file

SCHEMA = "schema"   # the key of the version; a file without one is version 1
FIGURES = "figures"
R = TypeVar("R", bound="Record")
Score = NewType("Score", float)   # a number, infinite for a diverged child; never NaN


class Record:
    """Base of the records; subclasses are frozen dataclasses."""

    file: ClassVar[str]            # its name in a run folder
    version: ClassVar[int] = 1     # the schema this enas writes (and the newest it reads)
    remedy: ClassVar[str] = ""     # what a user does about a damaged one

    def to_json(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != FIGURES}
        return {SCHEMA: self.version, **data, **getattr(self, FIGURES, {})}

    def write(self, folder: Path) -> Path:
        path = folder / self.file
        write_json(path, self.to_json())
        return path

    @classmethod
    def read(cls: type[R], folder: Path) -> R:
        """The record in `folder`, checked; a one-line error when it is absent or damaged."""
        path = folder / cls.file
        return cls.from_json(read_json_file(path, cls.remedy), path)

    @classmethod
    def parse(cls, text: str | bytes, where: Path | str) -> Any:
        """The JSON value of `text`, unchecked; `where` names it (a file, or a line of one) in the
        one-line error when it is not JSON."""
        try:
            return json.loads(text)
        except (ValueError, RecursionError) as error:   # ValueError: not UTF-8, not JSON, an integer of 4300+ digits
            raise UserError(f"{where} {problem_of(error)}; {cls.remedy}") from None

    @classmethod
    def read_if_any(cls: type[R], folder: Path) -> R | None:
        """The record in `folder`, or None where there is none yet."""
        return cls.read(folder) if (folder / cls.file).exists() else None

    @classmethod
    def from_json(cls: type[R], data: Any, path: Path | str = "") -> R:
        def damaged(what: str) -> UserError:
            return UserError(f"{path or cls.file} is damaged ({what}); {cls.remedy}")

        if not isinstance(data, dict):
            raise damaged("not a JSON object")
        version = data.get(SCHEMA, 1)
        if not isinstance(version, int) or not 1 <= version <= cls.version:
            raise UserError(f"{path or cls.file} has schema version {version!r}; this enas reads versions 1 to "
                            f"{cls.version}: use the enas that wrote it, or run that command again")
        hints = _hints(cls)
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name == FIGURES:
                continue
            if f.name not in data:
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    raise damaged(f"no {f.name!r}")
                continue
            if not _fits(data[f.name], hints[f.name]):
                raise damaged(f"{f.name!r} is {data[f.name]!r}, not {_describe(hints[f.name])}")
            values[f.name] = data[f.name]
        if FIGURES in hints:
            rest = {k: v for k, v in data.items() if k not in values and k != SCHEMA}
            _, kind = typing.get_args(hints[FIGURES])
            if bad := [k for k, v in rest.items() if not _fits(v, kind)]:
                raise damaged(f"{bad[0]!r} is {rest[bad[0]]!r}, not {_describe(kind)}")
            values[FIGURES] = rest
        record = cls(**values)
        if problem := record.problem():
            raise damaged(problem)
        return record

    def problem(self) -> str:
        """What is wrong with the record beyond its fields' types ("" for nothing)."""
        return ""


@cache
def _hints(cls: type) -> dict[str, Any]:
    """The annotations of a record class (looked up once: a log has many lines)."""
    return typing.get_type_hints(cls)


def _fits(value: Any, kind: Any) -> bool:
    """Whether a JSON value fits an annotation: float (a finite number), Score (a number, not NaN),
    int, str, bool, list[...], dict[...], a union with None."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, option) for option in typing.get_args(kind))
    if kind is type(None):
        return value is None
    if kind in (float, Score):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        try:
            number = float(value)
        except OverflowError:   # an integer past 1e308: no float holds it
            return False
        return math.isfinite(number) if kind is float else not math.isnan(number)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind in (str, bool):
        return isinstance(value, kind)
    if origin is list:
        (item,) = typing.get_args(kind) or (Any,)
        return isinstance(value, list) and all(_fits(v, item) for v in value)
    if origin is dict:
        _, item = typing.get_args(kind) or (str, Any)
        return isinstance(value, dict) and all(isinstance(k, str) and _fits(v, item) for k, v in value.items())
    return kind is Any


def _describe(kind: Any) -> str:
    names = {float: "a finite number", Score: "a number", int: "an integer", str: "a string", bool: "true or false"}
    return names.get(kind, str(kind).replace("typing.", ""))
