"""The micro (cell) search space of ENAS (paper section 2.4) and the network built from its cells.

A cell has two inputs, the outputs of the two cells before it (positions 0 and 1), and B nodes
(positions 2..B+1). Node j picks two inputs among the positions before it and an op for each,
and is their sum. The cell's loose ends are the positions no node reads, unused cell inputs
included (official `used` counts all B+2 positions). A normal cell keeps the size; a reduction
cell doubles the width and applies its ops with stride 2 where they read the cell inputs (an
unused input in it is halved by a factorized reduction before it joins the loose ends). The
normal and the reduction cell are searched together.

Choices, in controller order: (x input, y input, x op, y op) per node of the normal cell, then the
same for the reduction cell: the official micro controller picks both inputs of a node before its
ops. The official string lists them `idx1 op1 idx2 op2 ...` (ops: 0 sep3, 1 sep5, 2 avg, 3 max,
4 identity); `to_official` and `from_official` reorder.

Child and supernet differ where the official fixed and searched layers differ:
- a child's cell (official `_fixed_layer`) passes on the concatenation of its loose ends, k x C
  channels for k loose ends; the next cell brings each input to its width C with a ReLU-1x1
  conv-BN where the width differs (a factorized reduction for input 0 after a reduction cell:
  `_maybe_calibrate_size`) and always mixes input 1 once more with a ReLU-1x1 conv-BN
  (`layer_base`);
- the supernet's cell (official `_enas_layer`) mixes the concatenated loose ends back to C with
  ReLU, a 1x1 convolution and BN (`final_conv`), and has no `layer_base`.
The ops themselves are the same modules under the same names in both.

Shared weights are kept per node, input slot (x or y) and op; in a reduction cell, the ops that
read the cell inputs (with stride 2) have their own, apart from those that read its nodes. (The
official `_enas_conv` also keeps them per input position: `Cell._name` is where that would go.)

Network (official micro_child.py `_model`): a 3x3 stem to 3F channels, L+2 cells with the
reduction cells at L//3 and 2(L//3)+1, then ReLU, global average pooling, dropout and a linear
classifier. The auxiliary head reads the cell after the second reduction cell.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from enas.errors import UserError
from enas.fields import option
from enas.spaces import graph
from enas.spaces.architecture import Architecture, Choice, parse_ints
from enas.spaces.base import Decision, ImageShape, check_choices, check_space, check_style, index, op
from enas.spaces.conv_ops import (
    MICRO_OPS,
    FactorizedReduction,
    drop_path,
    global_pool,
    init_weights,
    micro_op,
    relu_conv_bn,
)

STYLES = ("enas",)  # melodyguan/enas: idx1 op1 idx2 op2 per node, normal cell then reduction cell


@dataclass
class MicroConfig:
    """The micro (cell) space: a stem, then cells; the paper's CIFAR-10 cell search (section 2.4)."""

    layers: int = option(2, "L: normal cells; 2 reduction cells go at L//3 and 2*(L//3)+1 (official num_layers)",
                         min=1)
    filters: int = option(8, "width of the first cells (official out_filters); doubles at each reduction", min=1)
    nodes: int = option(5, "B: nodes per cell (official num_cells)", min=1)
    dropout: float = option(0.0, "dropout before the classifier (official 1 - keep_prob)", min=0.0, max=0.99)
    drop_path: float = option(0.0, "drop-path probability reached by the last cell at the end of training "
                              "(official 1 - drop_path_keep_prob); ramps with depth and step; children only",
                              min=0.0, max=0.99)
    aux_weight: float = option(0.0, "weight of the auxiliary head's loss, the head after the second reduction "
                               "(0.4 in the paper); 0 builds no head", min=0.0)


Edge = tuple[int, str, int, int]  # (node position, input slot "x" or "y", input position, op id)


@dataclass(frozen=True)
class CellPlan:
    """One cell decoded for execution: per node (x input, x op, y input, y op)."""

    nodes: tuple[tuple[int, int, int, int], ...]

    @property
    def loose_ends(self) -> tuple[int, ...]:
        """The positions no node reads, the cell inputs included (official `used == 0`)."""
        read = {node[0] for node in self.nodes} | {node[2] for node in self.nodes}
        return tuple(p for p in range(2 + len(self.nodes)) if p not in read)

    def edges(self) -> list[Edge]:
        return [edge for position, (x, x_op, y, y_op) in enumerate(self.nodes, start=2)
                for edge in ((position, "x", x, x_op), (position, "y", y, y_op))]


@dataclass(frozen=True)
class MicroPlan:
    normal: CellPlan
    reduce: CellPlan

    @classmethod
    def of(cls, arch: Architecture) -> MicroPlan:
        quads = [(x, x_op, y, y_op) for x, y, x_op, y_op in _nodes(arch.choices)]
        half = len(quads) // 2
        return cls(CellPlan(tuple(quads[:half])), CellPlan(tuple(quads[half:])))


def reduction_cells(layers: int) -> tuple[int, int]:
    """Positions of the two reduction cells among the L+2 cells (official `pool_layers`)."""
    return layers // 3, 2 * (layers // 3) + 1


def all_edges(nodes: int) -> Iterator[Edge]:
    for position in range(2, 2 + nodes):
        for slot in ("x", "y"):
            for source in range(position):
                for op_id in range(len(MICRO_OPS)):
                    yield position, slot, source, op_id


class Cell(nn.Module):
    """A normal or reduction cell; the supernet's holds every edge, a child's only its own.

    A child's cell outputs the concatenated loose ends (`width` = k x C channels); the supernet's
    mixes them back to C (see the module docstring)."""

    def __init__(self, c_pp: int, c_p: int, c: int, reduction: bool, reduction_prev: bool, nodes: int,
                 plan: CellPlan | None):
        super().__init__()
        self.reduction, self.fixed = reduction, plan is not None
        # Inputs are brought to the cell width, and input 0 to input 1's size after a reduction
        # (official `_maybe_calibrate_size`: pool_x, pool_y).
        self.pre0 = nn.Sequential(nn.ReLU(), FactorizedReduction(c_pp, c)) if reduction_prev else \
            relu_conv_bn(c_pp, c) if c_pp != c else nn.Identity()
        self.pre1 = relu_conv_bn(c_p, c) if c_p != c else nn.Identity()
        # official `layer_base`: the fixed cell mixes input 1 once more, whatever its width
        self.base = relu_conv_bn(c, c) if self.fixed else nn.Identity()
        self.edges = nn.ModuleDict()
        for edge in plan.edges() if plan is not None else all_edges(nodes):
            if self._name(edge) not in self.edges:
                self.edges[self._name(edge)] = micro_op(MICRO_OPS[edge[3]], c, self._stride(edge[2]))
        outputs = plan.loose_ends if plan is not None else range(2 + nodes)
        # An unused input of a reduction cell is still at full size (official `_fixed_combine`).
        self.calibrate = nn.ModuleDict({_position(p): FactorizedReduction(c, c)
                                        for p in outputs if p < 2 and reduction})
        self.width = len(outputs) * c if self.fixed else c
        if not self.fixed:
            # The 1x1 convolution over the concatenated loose ends is a sum of one c x c block per
            # loose end, so the supernet keeps a block per position and uses those of the loose
            # ends (official `final_conv`, gathered by `indices`).
            self.combine = nn.ParameterDict({_position(p): nn.Parameter(torch.empty(c, c, 1, 1)) for p in outputs})
            for weight in self.combine.values():
                nn.init.kaiming_normal_(weight, mode="fan_in", nonlinearity="relu")
            self.combine_bn = nn.BatchNorm2d(c)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, plan: CellPlan, keep: float | torch.Tensor
                ) -> torch.Tensor:
        """s0, s1: outputs of the two cells before (B, C', H', W') -> (B, width, H, W)."""
        states = self.nodes([self.pre0(s0), self.base(self.pre1(s1))], plan, keep)
        loose = plan.loose_ends
        out = torch.cat([self.calibrate[_position(p)](states[p]) if _position(p) in self.calibrate else states[p]
                         for p in loose], dim=1)
        if self.fixed:
            return out
        weight = torch.cat([self.combine[_position(p)] for p in loose], dim=1)
        return self.combine_bn(F.conv2d(F.relu(out), weight))

    def nodes(self, inputs: list[torch.Tensor], plan: CellPlan, keep: float | torch.Tensor = 1.0
              ) -> list[torch.Tensor]:
        """The two cell inputs at the cell width -> the states of all B+2 positions."""
        states = list(inputs)
        for position, (x, x_op, y, y_op) in enumerate(plan.nodes, start=2):
            states.append(self._edge((position, "x", x, x_op), states, keep) +
                          self._edge((position, "y", y, y_op), states, keep))
        return states

    def _stride(self, source: int) -> int:
        return 2 if self.reduction and source < 2 else 1

    def _name(self, edge: Edge) -> str:
        """The module an edge runs: one per node, slot and op (and stride, in a reduction cell)."""
        position, slot, source, op_id = edge
        return f"node{position}_{slot}_{MICRO_OPS[op_id]}" + ("_stride2" if self._stride(source) == 2 else "")

    def _edge(self, edge: Edge, states: list[torch.Tensor], keep: float | torch.Tensor) -> torch.Tensor:
        out = self.edges[self._name(edge)](states[edge[2]])
        # The official fixed cells drop every op's path but identity's.
        return out if MICRO_OPS[edge[3]] == "identity" else drop_path(out, keep)


def _position(p: int) -> str:
    """A position's name in module dicts: input0, input1, node2, ..."""
    return f"input{p}" if p < 2 else f"node{p}"


class AuxHead(nn.Sequential):
    """The official auxiliary classifier: ReLU, 5x5 average pooling with stride 3, 1x1 conv to 128,
    BN, ReLU, a convolution over the whole remaining map to 768, BN, ReLU, linear.
    Maps smaller than 5x5 (small built-in images) are pooled whole."""

    def __init__(self, channels: int, height: int, width: int, classes: int):
        kernel = (min(5, height), min(5, width))
        pooled = ((height - kernel[0]) // 3 + 1, (width - kernel[1]) // 3 + 1)
        super().__init__(nn.ReLU(), nn.AvgPool2d(kernel, 3), nn.Conv2d(channels, 128, 1, bias=False),
                         nn.BatchNorm2d(128), nn.ReLU(), nn.Conv2d(128, 768, pooled, bias=False),
                         nn.BatchNorm2d(768), nn.ReLU(), nn.Flatten(), nn.Linear(768, classes))


class MicroNetwork(nn.Module):
    """Stem, cells, classifier. The supernet (plan None) runs any architecture given to `forward`;
    a child (plan given) holds only its own edges and joins its cells as the official fixed cells
    do (module docstring), so each cell's width is that of the one before's loose ends."""

    def __init__(self, cfg: MicroConfig, shape: ImageShape, plan: MicroPlan | None = None,
                 drop_path_steps: int = 0):
        super().__init__()
        self.cfg, self.plan, self.drop_path_steps = cfg, plan, drop_path_steps
        nodes = len(plan.normal.nodes) if plan is not None else cfg.nodes
        stem_width = 3 * cfg.filters
        self.stem = nn.Sequential(nn.Conv2d(shape.channels, stem_width, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(stem_width))
        reductions = reduction_cells(cfg.layers)
        self.aux_at = reductions[1] + 1 if cfg.aux_weight > 0 else -1
        c_pp, c_p, c, reduction_prev = stem_width, stem_width, cfg.filters, False
        height, width = shape.height, shape.width
        self.cells = nn.ModuleList()
        for i in range(cfg.layers + 2):
            reduction = i in reductions
            if reduction:
                c, height, width = 2 * c, math.ceil(height / 2), math.ceil(width / 2)
            cell_plan = None if plan is None else plan.reduce if reduction else plan.normal
            cell = Cell(c_pp, c_p, c, reduction, reduction_prev, nodes, cell_plan)
            self.cells.append(cell)
            if i == self.aux_at:
                self.aux_head = AuxHead(cell.width, height, width, shape.classes)
            c_pp, c_p, reduction_prev = c_p, cell.width, reduction
        self.dropout = nn.Dropout(cfg.dropout)
        self.classifier = nn.Linear(c_p, shape.classes)
        # Training steps taken, for the drop-path schedule; a buffer, so checkpoints keep it.
        self.register_buffer("steps_trained", torch.zeros((), dtype=torch.long))
        init_weights(self)

    def forward(self, images: torch.Tensor, arch: Architecture | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """images (B, C, H, W) -> logits (B, classes), auxiliary logits (B, classes) in training or None."""
        if self.plan is None and arch is None:
            raise ValueError("the supernet needs the architecture to run")
        plan = self.plan or MicroPlan.of(arch)
        drop = self._drop_path_rate()
        s0 = s1 = self.stem(images)
        aux = None
        for i, cell in enumerate(self.cells):
            keep = 1.0 - drop * (i + 1) / len(self.cells)  # official: the rate grows with depth
            s0, s1 = s1, cell(s0, s1, plan.reduce if cell.reduction else plan.normal, keep)
            if i == self.aux_at and self.training:
                aux = self.aux_head(s1)
        if self.training:
            self.steps_trained += 1
        return self.classifier(self.dropout(global_pool(F.relu(s1)))), aux

    def _drop_path_rate(self) -> float | torch.Tensor:
        """The last cell's drop-path probability now: it grows linearly with the training step up to
        `cfg.drop_path` (official `_apply_drop_path`); a tensor computed where the step count lives,
        so that no step waits to read it. The supernet never drops paths, as the official ENAS
        layers do not."""
        if not (self.training and self.plan is not None and self.cfg.drop_path > 0):
            return 0.0
        progress = ((self.steps_trained + 1) / max(1, self.drop_path_steps)).clamp(max=1.0)
        return progress * self.cfg.drop_path


class MicroSpace:
    """The micro space on images of a given shape; a child's drop path ramps over `drop_path_steps`."""

    name = "micro"
    config = MicroConfig
    data = ImageShape
    initial_anchors = 2  # the two cell inputs

    def __init__(self, cfg: MicroConfig, shape: ImageShape, train_steps: int = 0):
        self.cfg, self.shape, self.drop_path_steps = cfg, shape, train_steps
        self.aux_weight = cfg.aux_weight

    def decisions(self) -> list[Decision]:
        return _decisions(self.cfg.nodes)

    def supernet(self) -> MicroNetwork:
        return MicroNetwork(self.cfg, self.shape)

    def child(self, arch: Architecture) -> MicroNetwork:
        check_space(arch, self.name)
        return MicroNetwork(self.cfg, self.shape, MicroPlan.of(arch), self.drop_path_steps)

    @classmethod
    def check(cls, choices: Sequence[Choice]) -> None:
        _check_count(len(choices))
        check_choices(cls.name, _decisions(len(choices) // 8), choices)

    @classmethod
    def to_official(cls, choices: Sequence[Choice], style: str | None) -> str:
        check_style(cls.name, style, STYLES)
        return " ".join(str(c) for x, y, x_op, y_op in _nodes(choices) for c in (x, x_op, y, y_op))

    @classmethod
    def from_official(cls, text: str, style: str | None) -> tuple[int, ...]:
        check_style(cls.name, style, STYLES)
        numbers = parse_ints(text, "a micro architecture string")
        _check_count(len(numbers))
        return tuple(c for x, x_op, y, y_op in _nodes(numbers) for c in (x, y, x_op, y_op))

    @classmethod
    def canonical(cls, arch: Architecture) -> tuple[Choice, ...]:
        """A node is the sum of its two (input, op) terms, in either order: each node's pair sorted."""
        return tuple(c for x, y, x_op, y_op in _nodes(arch.choices) for c in sorted([(x, x_op), (y, y_op)]))

    @classmethod
    def render(cls, arch: Architecture) -> tuple[str, graph.Graph]:
        """The normal and the reduction cell as text and as one graph, a cluster each."""
        plan = MicroPlan.of(arch)
        lines, nodes, edges = [], [], []
        for title, cell in (("normal", plan.normal), ("reduction", plan.reduce)):
            lines.append(f"{title} cell:")
            cluster = f"{title} cell"
            nodes += [graph.Node(f"{title}_{p}", f"input {p}", terminal=True, cluster=cluster) for p in (0, 1)]
            for position, (x, x_op, y, y_op) in enumerate(cell.nodes, start=2):
                lines.append(f"  node {position} = {MICRO_OPS[x_op]}({_source(x)}) + "
                             f"{MICRO_OPS[y_op]}({_source(y)})")
                nodes.append(graph.Node(f"{title}_{position}", f"node {position}", cluster=cluster))
                edges += [graph.Edge(f"{title}_{src}", f"{title}_{position}", MICRO_OPS[o])
                          for src, o in ((x, x_op), (y, y_op))]
            lines.append("  output = concat(" + ", ".join(_source(p) for p in cell.loose_ends) + ")")
            nodes.append(graph.Node(f"{title}_out", "output", terminal=True, cluster=cluster))
            edges += [graph.Edge(f"{title}_{p}", f"{title}_out") for p in cell.loose_ends]
        return "\n".join(lines), graph.Graph("cells", "LR", tuple(nodes), tuple(edges))


def _source(position: int) -> str:
    return f"input {position}" if position < 2 else f"node {position}"


def _check_count(count: int) -> None:
    if not count or count % 8:
        raise UserError(f"a micro architecture has 4 numbers per node for B nodes in each of two cells "
                        f"(8B in all), got {count}")


def _nodes(choices: Sequence) -> list[tuple]:
    """Choices (or an official string's numbers) four by four: one tuple per node."""
    return [tuple(choices[k:k + 4]) for k in range(0, len(choices), 4)]


def _decisions(nodes: int) -> list[Decision]:
    """Per node of the normal then the reduction cell: x input, y input, x op, y op (the official
    micro controller's order).

    The controller stores an anchor for the two cell inputs, then one per node. A node of the
    reduction cell chooses among the inputs and the reduction cell's own earlier nodes, whose
    anchors follow the normal cell's.
    """
    decisions = []
    for cell, first_node_anchor in (("normal", 2), ("reduce", 2 + nodes)):
        for k in range(nodes):
            position = k + 2
            anchors = (0, 1, *range(first_node_anchor, first_node_anchor + k))
            decisions += [index(f"{cell}.node{position}.{slot}_input", position, anchors=anchors)
                          for slot in ("x", "y")]
            decisions += [op(f"{cell}.node{position}.{slot}_op", MICRO_OPS, ends_node=slot == "y")
                          for slot in ("x", "y")]
    return decisions
