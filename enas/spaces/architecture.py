"""Architecture values: the space's name plus one choice per decision, immutable.

The choices come in the order the controller makes them: an int for an op or an input index, a
tuple of 0/1 bits for a set of skip connections. An `Architecture` is checked by its space where it
enters from outside (`enas.spaces.architecture`, `from_json`, `from_official`); the controller
builds them from its space's own decisions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence, Union

from enas.errors import UserError

FORMAT_VERSION = 2   # 2: micro choices in the controller's order (1: the official string's)
Choice = Union[int, tuple[int, ...]]


@dataclass(frozen=True)
class Architecture:
    space: str
    choices: tuple[Choice, ...]

    def __post_init__(self) -> None:
        normalised = tuple(tuple(int(b) for b in c) if isinstance(c, (list, tuple)) else int(c)
                           for c in self.choices)
        object.__setattr__(self, "choices", normalised)

    def to_json(self) -> dict[str, Any]:
        return {"format_version": FORMAT_VERSION, "space": self.space, "choices": json_choices(self.choices)}


def json_choices(choices: Sequence[Choice]) -> list:
    """Choices as JSON lists (skip bits as lists of 0/1)."""
    return [list(c) if isinstance(c, tuple) else c for c in choices]


def parse_ints(text: str, what: str) -> list[int]:
    """Whitespace- or comma-separated integers, or a one-line error naming `what`."""
    try:
        return [int(token) for token in text.replace(",", " ").split()]
    except ValueError:
        raise UserError(f"{what} must be whitespace-separated integers, got {text!r}") from None
