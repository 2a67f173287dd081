"""What every search space shares: the decision list the controller walks, and its validation.

A space is a class with a `name`, the number of `initial_anchors` (inputs that exist before any
node is decided, e.g. the two cell inputs of a convolutional cell), `decisions()`, `supernet()`
(whose `forward` takes the `Architecture` to run) and `child(arch)` (a standalone module), plus
the codec class methods `check`, `to_official` and `from_official`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from enas.arch import Architecture
from enas.errors import UserError


@dataclass(frozen=True)
class Decision:
    """One choice the controller makes.

    kind "op":    pick one of `options` (op names).
    kind "index": pick one of the first `size` anchors (earlier nodes or cell inputs).
    kind "skip":  pick any subset of the first `size` anchors (one bit each).
    `ends_node`:  the controller stores an anchor for the node this decision completes.
    `anchors`:    index and skip: the positions (in storing order) of the anchors to choose
                  among, when they are not simply the first `size` (e.g. a second cell whose
                  nodes follow the first cell's in the controller's anchor list).
    """

    name: str
    kind: str
    size: int
    options: tuple[str, ...] = ()
    ends_node: bool = False
    anchors: tuple[int, ...] = ()


def op(name: str, options: Sequence[str], ends_node: bool = False) -> Decision:
    return Decision(name, "op", len(options), tuple(options), ends_node)


def index(name: str, size: int, ends_node: bool = False, anchors: Sequence[int] = ()) -> Decision:
    if anchors and len(anchors) != size:
        raise ValueError(f"{name}: {len(anchors)} anchor positions for {size} options")
    return Decision(name, "index", size, (), ends_node, tuple(anchors))


def skip(name: str, size: int, ends_node: bool = False) -> Decision:
    return Decision(name, "skip", size, (), ends_node)


def check_choices(space: str, decisions: Sequence[Decision], choices: Sequence) -> None:
    """Raise a one-line UserError unless `choices` answers `decisions` one by one, in range."""
    if len(choices) != len(decisions):
        raise UserError(f"a {space} architecture with these settings has {len(decisions)} choices, "
                        f"got {len(choices)}")
    for decision, choice in zip(decisions, choices):
        if decision.kind == "skip":
            if not isinstance(choice, tuple) or len(choice) != decision.size or set(choice) - {0, 1}:
                raise UserError(f"{decision.name} must be {decision.size} bits of 0/1, got {choice}")
        elif isinstance(choice, tuple) or not 0 <= choice < decision.size:
            allowed = ", ".join(f"{i}={n}" for i, n in enumerate(decision.options)) or \
                f"0..{decision.size - 1}"
            raise UserError(f"{decision.name}={choice} is out of range (allowed: {allowed})")


def check_space(arch: Architecture, space: str) -> None:
    """A child is built only from an architecture of its own space."""
    if arch.space != space:
        raise UserError(f"a {arch.space} architecture cannot be built in the {space} space; set space={arch.space}")
