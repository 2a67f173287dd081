"""The seam between a search space and everything else: the `SearchSpace` protocol, the decisions
the controller walks, the data shapes a space is built for, and `Model`, one architecture ready
to run.

A new space is one module under `enas/spaces/` with a class that implements `SearchSpace`, one
entry in the registry (`enas/spaces/__init__.py`) and its presets in `conf/`: the config section,
the controller, the tasks, the loop, derive, retrain and the resume checks all read the registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Hashable, Protocol, Sequence, Union

import torch
from torch import nn

from enas.errors import UserError
from enas.spaces.architecture import Architecture, Choice
from enas.spaces.graph import Graph


@dataclass(frozen=True)
class TextShape:
    """What a language model needs to know of its data."""

    vocab_size: int


@dataclass(frozen=True)
class ImageShape:
    """What an image network needs to know of its data."""

    channels: int
    height: int
    width: int
    classes: int


DataShape = Union[TextShape, ImageShape]


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


class SearchSpace(Protocol):
    """What every search space implements.

    Class attributes say what the space is; an instance is the space sized by its config section
    and the data's shape. The class methods are the architecture codecs, which need no sizes.
    """

    name: ClassVar[str]              # the registry key, the `space=` value and the config section
    config: ClassVar[type]           # the dataclass of the config section `name`
    data: ClassVar[type]             # TextShape or ImageShape: the data its networks read
    initial_anchors: ClassVar[int]   # controller anchors that exist before any decision (cell inputs)
    aux_weight: float                # weight of an auxiliary head's loss in training; 0 for none

    def __init__(self, cfg: Any, shape: Any, train_steps: int) -> None:
        """`train_steps`: a child's whole training, for schedules that ramp over it (drop path)."""

    def decisions(self) -> list[Decision]:
        """The decisions the controller makes, in order; an architecture has one choice each."""

    def supernet(self) -> nn.Module:
        """All architectures' weights; `forward(*inputs, arch=...)` runs the one it is given."""

    def child(self, arch: Architecture) -> nn.Module:
        """A standalone network of `arch` alone; `forward(*inputs)`, the supernet's inputs."""

    @classmethod
    def check(cls, choices: Sequence[Choice]) -> None:
        """Raise a one-line UserError unless `choices` are an architecture of this space."""

    @classmethod
    def to_official(cls, choices: Sequence[Choice], style: str | None) -> str:
        """The string the official scripts take; `style` picks among the space's formats."""

    @classmethod
    def from_official(cls, text: str, style: str | None) -> tuple[Choice, ...]:
        """The choices of an official string, unchecked."""

    @classmethod
    def render(cls, arch: Architecture) -> tuple[str, Graph]:
        """The architecture as text and as a graph (enas/spaces/graph.py) of its nodes and edges."""

    @classmethod
    def canonical(cls, arch: Architecture) -> Hashable:
        """One value for all the encodings of one network (e.g. a sum's two terms in either order)."""


@dataclass(frozen=True)
class Model:
    """One architecture ready to run: the supernet bound to `arch`, or a child (`arch` None).

    Tasks call it with their inputs and reach `module` for what lives in it (batch norms). Under
    `autocast` (bf16, CUDA) the floating-point outputs come back as float32, so that losses,
    rewards and scores are computed at full precision whatever ran inside."""

    module: nn.Module
    arch: Architecture | None = None
    autocast: bool = False

    def __call__(self, *inputs: Any) -> Any:
        extra = {} if self.arch is None else {"arch": self.arch}
        if not self.autocast:
            return self.module(*inputs, **extra)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            outputs = self.module(*inputs, **extra)
        return tuple(_float32(out) for out in outputs) if isinstance(outputs, tuple) else _float32(outputs)


def _float32(value: Any) -> Any:
    return value.float() if isinstance(value, torch.Tensor) and value.is_floating_point() else value


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


def check_style(space: str, style: str | None, styles: Sequence[str]) -> str:
    """The official-string style asked for (the first of `styles` when None), or a one-line error."""
    if style is None:
        return styles[0]
    if style not in styles:
        raise UserError(f"unknown {space} string style {style!r}; choose one of {', '.join(styles)}")
    return style
