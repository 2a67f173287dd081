"""The search spaces, by name, and what enters through them: spaces built from the config, and
architectures read from JSON or official strings, each checked by its space.

Registering a space is one entry in `SPACES`; its config section, `space=` value and presets
follow from the class (enas/spaces/base.py says what it implements).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from enas.errors import UserError
from enas.folder.loading import read_json_file
from enas.spaces.architecture import FORMAT_VERSION, Architecture, Choice
from enas.spaces.base import DataShape, SearchSpace
from enas.spaces.macro import MacroSpace
from enas.spaces.micro import MicroSpace
from enas.spaces.nas_cell import NasCellSpace
from enas.spaces.nas_conv import NasConvSpace
from enas.spaces.nb201 import Nb201Space
from enas.spaces.published import PUBLISHED
from enas.spaces.recurrent import RecurrentSpace

SPACES: dict[str, type[SearchSpace]] = {space.name: space for space in (
    RecurrentSpace,    # ENAS, section 2.1
    MicroSpace,        # ENAS, section 2.4
    MacroSpace,        # ENAS, section 2.3
    NasCellSpace,      # NAS-RL, section 3.4
    NasConvSpace,      # NAS-RL, sections 3.3 and 4.1
    Nb201Space,        # NAS-Bench-201 (Dong & Yang 2020)
)}


def space_type(name: str) -> type[SearchSpace]:
    try:
        return SPACES[name]
    except KeyError:
        raise UserError(f"unknown search space {name!r}; choose one of {', '.join(SPACES)}") from None


def build_space(config: Any, shape: DataShape, train_steps: int = 0) -> SearchSpace:
    """The space `config.space`, sized by its config section and the data's shape."""
    kind = space_type(config.space)
    if not isinstance(shape, kind.data):
        raise UserError(f"space={config.space} reads {kind.data.__name__.removesuffix('Shape').lower()} data; "
                        f"choose a dataset of that kind or another space")
    return kind(getattr(config, config.space), shape, train_steps)


def checked_architecture(space: str, choices: Sequence[Choice]) -> Architecture:
    """An architecture of `space`, checked by it."""
    arch = Architecture(space, tuple(choices))
    space_type(space).check(arch.choices)
    return arch


def from_json(data: Any) -> Architecture:
    """An architecture from its JSON form (as `enas derive` writes it in arch.json)."""
    if not isinstance(data, dict) or "space" not in data or "choices" not in data:
        raise UserError("an architecture JSON needs the keys 'space' and 'choices' "
                        "(as written by `enas derive` in arch.json)")
    version = data.get("format_version", FORMAT_VERSION)
    if version not in (1, FORMAT_VERSION):
        raise UserError(f"architecture format_version {version} is not supported "
                        f"(this enas reads versions 1 and {FORMAT_VERSION})")
    if not isinstance(data["choices"], list) or not all(map(_is_choice, data["choices"])):
        raise UserError("an architecture JSON's 'choices' must be a list of integers, and of lists of 0/1 bits "
                        "for skip decisions")
    space, choices = str(data["space"]), data["choices"]
    if version == 1 and space == MicroSpace.name:   # version 1 kept the official string's order
        choices = MicroSpace.from_official(" ".join(map(str, choices)), None)
    return checked_architecture(space, choices)


def _is_choice(value: Any) -> bool:
    """An int (an op or an input), or a list of ints (skip bits); the space checks their ranges."""
    return type(value) is int or isinstance(value, list) and all(type(bit) is int for bit in value)


def from_official(text: str, space: str, style: str | None = None) -> Architecture:
    """An architecture from the string the official ENAS scripts use."""
    return checked_architecture(space, space_type(space).from_official(text, style))


def official(arch: Architecture, style: str | None = None) -> str:
    """The official string of `arch`; `style` picks among its space's formats."""
    return space_type(arch.space).to_official(arch.choices, style)


def load_architecture(source: str | Path, space: str | None = None) -> Architecture:
    """An architecture from an arch.json file (as `enas derive` and `enas retrain` write it), a
    published architecture's name (enas_micro_cifar10, ...) or an official string of `space`."""
    text = str(source)
    if text in PUBLISHED:
        return from_official(PUBLISHED[text][1], PUBLISHED[text][0])
    path = Path(source)
    # An official string is digits and spaces (the macro ones are longer than a file name may be),
    # or NAS-Bench-201's |op~0|+|...| groups.
    official = set(text) <= set("0123456789, \t\n") or text.strip().startswith("|")
    if not official and (path.suffix == ".json" or _is_file(path)):
        return from_json(_read_json(path))
    if not official:
        raise UserError(f"{text!r} is no ARCH.json file, published architecture ({', '.join(PUBLISHED)}) "
                        "or official string (numbers, or nb201's |op~0|+...)")
    if space is None:
        raise UserError(f"{text!r} is no arch.json file or published name; an official string needs its space "
                        f"({', '.join(SPACES)})")
    return from_official(text, space)


def _is_file(path: Path) -> bool:
    """Path.is_file, False also for a name the system refuses (longer than a file name may be)."""
    try:
        return path.is_file()
    except OSError:
        return False


def _read_json(path: Path) -> Any:
    """The JSON value in the architecture file `path`, or a one-line error saying what is wrong with it."""
    if not _is_file(path) and path.exists():
        raise UserError(f"architecture file {path} is not a file; give an arch.json written by `enas derive`")
    return read_json_file(path, "give an arch.json written by `enas derive RUN_DIR`")
