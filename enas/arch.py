"""Architecture values: immutable, validated on construction, with JSON and official-string codecs.

An `Architecture` is the space's name plus one choice per decision of that space, in the order
the controller makes them: an int for an op or an input index, a tuple of 0/1 bits for a set of
skip connections. The space validates the choices, so an `Architecture` that exists is valid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union

from enas.errors import UserError

FORMAT_VERSION = 1
Choice = Union[int, tuple[int, ...]]


@dataclass(frozen=True)
class Architecture:
    space: str
    choices: tuple[Choice, ...]

    def __post_init__(self) -> None:
        from enas.spaces import space_class  # spaces import this module

        normalised = tuple(tuple(int(b) for b in c) if isinstance(c, (list, tuple)) else int(c)
                           for c in self.choices)
        object.__setattr__(self, "choices", normalised)
        space_class(self.space).check(normalised)

    def to_json(self) -> dict[str, Any]:
        return {"format_version": FORMAT_VERSION, "space": self.space,
                "choices": [list(c) if isinstance(c, tuple) else c for c in self.choices]}

    @classmethod
    def from_json(cls, data: Any) -> Architecture:
        if not isinstance(data, dict) or "space" not in data or "choices" not in data:
            raise UserError("an architecture JSON needs the keys 'space' and 'choices' "
                            "(as written by `enas derive` in arch.json)")
        version = data.get("format_version", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            raise UserError(f"architecture format_version {version} is not supported "
                            f"(this enas reads version {FORMAT_VERSION})")
        return cls(str(data["space"]), tuple(data["choices"]))

    def to_official(self, style: str | None = None) -> str:
        """The string the official ENAS scripts take; `style` picks among the space's formats."""
        from enas.spaces import space_class

        return space_class(self.space).to_official(self.choices, style)

    @classmethod
    def from_official(cls, text: str, space: str, style: str | None = None) -> Architecture:
        from enas.spaces import space_class

        return cls(space, space_class(space).from_official(text, style))


def parse_ints(text: str, what: str) -> list[int]:
    """Whitespace- or comma-separated integers, or a one-line error naming `what`."""
    try:
        return [int(token) for token in text.replace(",", " ").split()]
    except ValueError:
        raise UserError(f"{what} must be whitespace-separated integers, got {text!r}") from None
