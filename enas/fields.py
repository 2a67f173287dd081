"""How a config field is declared: its default, its help text and the values it accepts.

Every config section (config.py, and each search space's own in its module) declares its fields
with `option`, so that the CLI help, the README table and `config.validate` read one source.
"""

from __future__ import annotations

from dataclasses import field
from typing import Any


def option(default: Any, help: str, *, min: float | None = None, max: float | None = None,
           choices: tuple[str, ...] | None = None) -> Any:
    """A config field with its help text and the range `validate` enforces."""
    meta = {"help": help, "min": min, "max": max, "choices": choices}
    return field(default=default, metadata=meta)
