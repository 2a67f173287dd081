"""The search spaces, by name. Each module gives its decisions, supernet and standalone child."""

from __future__ import annotations

from enas.errors import UserError
from enas.spaces.macro import MacroSpace
from enas.spaces.micro import MicroSpace
from enas.spaces.recurrent import RecurrentSpace

SPACES = {space.name: space for space in (RecurrentSpace, MicroSpace, MacroSpace)}


def space_class(name: str) -> type:
    try:
        return SPACES[name]
    except KeyError:
        raise UserError(f"unknown search space {name!r}; choose one of {', '.join(SPACES)}") from None
