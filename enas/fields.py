"""How a config field is declared: its default, its help text and the values it accepts.

Every config section (config.py, and each search space's own in its module) declares its fields
with `option`, so that the CLI help, the README table and `config.validate` read one source, and
`field_problem` checks a value against it.
"""

from __future__ import annotations

import math
from dataclasses import field
from typing import Any


def option(default: Any, help: str, *, min: float | None = None, max: float | None = None,
           choices: tuple[str, ...] | None = None) -> Any:
    """A config field with its help text and the range `validate` enforces."""
    meta = {"help": help, "min": min, "max": max, "choices": choices}
    return field(default=default, metadata=meta)


def field_problem(key: str, value: Any, meta: dict) -> str:
    """What is wrong with one value: outside its choices or range, or what no tensor or generator
    holds (NaN, infinity, beyond 64 bits); "" when nothing is."""
    if isinstance(value, float) and not math.isfinite(value):   # NaN passes every comparison with a bound
        return f"{key}={value} must be a finite number"
    if meta.get("choices") and value not in meta["choices"]:
        return f"{key}={value!r} is not one of {', '.join(meta['choices'])}"
    if meta.get("min") is not None and value < meta["min"]:
        return f"{key}={value} must be at least {meta['min']}"
    if meta.get("max") is not None and value > meta["max"]:
        return f"{key}={value} must be at most {meta['max']}"
    if isinstance(value, int) and not -2**63 <= value < 2**63:
        return f"{key}={value} does not fit in a 64-bit integer"
    return ""

