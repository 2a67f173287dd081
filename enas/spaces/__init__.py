"""The search spaces, by name. Each module gives its decisions, supernet and standalone child."""

from __future__ import annotations

from enas.errors import UserError
from enas.spaces.recurrent import RecurrentSpace

SPACES = {RecurrentSpace.name: RecurrentSpace}


def space_class(name: str) -> type:
    try:
        return SPACES[name]
    except KeyError:
        raise UserError(f"unknown search space {name!r}; choose one of {', '.join(SPACES)}") from None
