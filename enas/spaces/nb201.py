"""The NAS-Bench-201 search space (Dong & Yang, ICLR 2020): one cell, repeated, whose 6 edges each
pick one of 5 ops, so that every searched architecture is one row of the benchmark's tables.

Cell: 4 nodes; node 0 is the cell's input, node j (1..3) the sum of op(node i) over i < j, node 3
the output. Ops (nb201_ops.py, in the benchmark's order): none, skip_connect, nor_conv_1x1,
nor_conv_3x3, avg_pool_3x3.

Network (the benchmark's TinyNetwork): a 3x3 convolution to C channels and BN; three stages of N
cells at C, 2C and 4C channels, joined by a stride-2 residual block; BN, ReLU, global average
pooling and a linear classifier.

Choices, in controller order: one op per edge in the order of the benchmark's string, edges
1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2. The official string names them node by node:
`|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`.

The supernet is the benchmark's search model for ENAS and random search with shared weights
(xautodl cell_searchs, `forward_dynamic`): one weight per (edge, op), and a forward pass runs only
the op each edge picks. Its cells' batch norms follow `nb201.affine` and
`nb201.track_running_stats`; a child (retrain, or a network trained alone) is the benchmark's
evaluation network, whose batch norms are affine with running statistics whatever those say.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from enas.errors import UserError
from enas.fields import option
from enas.spaces import graph
from enas.spaces.architecture import Architecture, Choice
from enas.spaces.base import Decision, ImageShape, check_choices, check_space, check_style, op
from enas.spaces.conv_ops import global_pool
from enas.spaces.nb201_ops import EVALUATION, NB201_OPS, Norm, ResidualBlock, nb201_op

STYLES = ("nb201",)   # the benchmark's own architecture string
EDGES = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))   # (node, input), the string's order
MIRROR = (1, 0, 2, 3, 5, 4)   # EDGES[MIRROR[k]] takes EDGES[k]'s place when nodes 1 and 2 swap
NODES = 3             # nodes after the input; the last is the output
STRING_FORM = "|op~0|+|op~0|op~1|+|op~0|op~1|op~2| with ops " + ", ".join(NB201_OPS)


@dataclass
class Nb201Config:
    """The NAS-Bench-201 space; the benchmark's search runs at C=16, N=5."""

    channels: int = option(16, "C: width of the first stage's cells; the second stage has 2C, the third 4C", min=1)
    cells: int = option(5, "N: cells per stage (3 stages, a stride-2 residual block between them)", min=1)
    affine: bool = option(False, "supernet: affine batch norms in the cells (the benchmark's ENAS search: off); "
                          "a child (retrain) always has them, as the benchmark's evaluation network")
    track_running_stats: bool = option(False, "supernet: batch norms in the cells keep running statistics; off, "
                                       "they always normalise with the batch's own (the benchmark's ENAS search, "
                                       "which its authors found much better); a child always keeps them")


class Cell(nn.Module):
    """One cell at a fixed width. The supernet's holds every op on every edge; a child's only the
    op its architecture picks, under the same name, so a child loads the supernet's weights."""

    def __init__(self, channels: int, norm: Norm, ops: Sequence[str] | None):
        super().__init__()
        self.edges = nn.ModuleDict({
            _edge_name(edge): nn.ModuleDict({name: nb201_op(name, channels, norm)
                                             for name in (NB201_OPS if ops is None else (ops[k],))})
            for k, edge in enumerate(EDGES)})

    def forward(self, x: torch.Tensor, ops: Sequence[str]) -> torch.Tensor:
        """x (B, C, H, W), an op name per edge -> node 3 (B, C, H, W)."""
        nodes = [x]
        for node in range(1, NODES + 1):
            terms = [self.edges[_edge_name(edge)][ops[k]](nodes[edge[1]])
                     for k, edge in enumerate(EDGES) if edge[0] == node]
            nodes.append(sum(terms[1:], terms[0]))
        return nodes[-1]


def _edge_name(edge: tuple[int, int]) -> str:
    return f"node{edge[0]}_from{edge[1]}"


class Nb201Network(nn.Module):
    """Stem, three stages of cells, classifier. `ops` None builds the supernet, which runs the
    architecture `forward` is given; else a child of that one cell. Weights keep PyTorch's default
    initialisation, as the benchmark's."""

    def __init__(self, cfg: Nb201Config, shape: ImageShape, norm: Norm, ops: Sequence[str] | None = None):
        super().__init__()
        self.ops = None if ops is None else tuple(ops)
        width = cfg.channels
        self.stem = nn.Sequential(nn.Conv2d(shape.channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width))
        layers: list[nn.Module] = []
        for stage in range(3):
            if stage:
                layers.append(ResidualBlock(width, 2 * width))
                width *= 2
            layers += [Cell(width, norm, ops) for _ in range(cfg.cells)]
        self.cells = nn.ModuleList(layers)
        self.lastact = nn.Sequential(nn.BatchNorm2d(width), nn.ReLU())
        self.classifier = nn.Linear(width, shape.classes)

    def forward(self, images: torch.Tensor, arch: Architecture | None = None) -> tuple[torch.Tensor, None]:
        """images (B, C, H, W) -> logits (B, classes), and no auxiliary logits."""
        if self.ops is None and arch is None:
            raise ValueError("the supernet needs the architecture to run")
        ops = self.ops or _ops(arch.choices)
        x = self.stem(images)
        for layer in self.cells:
            x = layer(x, ops) if isinstance(layer, Cell) else layer(x)
        return self.classifier(global_pool(self.lastact(x))), None


class Nb201Space:
    """The NAS-Bench-201 space on images of a given shape."""

    name = "nb201"
    config = Nb201Config
    data = ImageShape
    initial_anchors = 0   # op decisions only: the controller reads no anchors
    aux_weight = 0.0

    def __init__(self, cfg: Nb201Config, shape: ImageShape, train_steps: int = 0):
        if shape.height % 4 or shape.width % 4:
            raise UserError(f"space=nb201 needs images whose sides are multiples of 4 (two stride-2 residual "
                            f"blocks pool 2x2), got {shape.height}x{shape.width}; e.g. data.image_size=16")
        self.cfg, self.shape = cfg, shape

    def decisions(self) -> list[Decision]:
        return _decisions()

    def supernet(self) -> Nb201Network:
        return Nb201Network(self.cfg, self.shape, Norm(self.cfg.affine, self.cfg.track_running_stats))

    def child(self, arch: Architecture) -> Nb201Network:
        check_space(arch, self.name)
        return Nb201Network(self.cfg, self.shape, EVALUATION, _ops(arch.choices))

    @classmethod
    def check(cls, choices: Sequence[Choice]) -> None:
        check_choices(cls.name, _decisions(), choices)

    @classmethod
    def to_official(cls, choices: Sequence[Choice], style: str | None) -> str:
        check_style(cls.name, style, STYLES)
        ops = _ops(choices)
        return "+".join("|" + "".join(f"{ops[k]}~{i}|" for k, (j, i) in enumerate(EDGES) if j == node)
                        for node in range(1, NODES + 1))

    @classmethod
    def from_official(cls, text: str, style: str | None) -> tuple[int, ...]:
        check_style(cls.name, style, STYLES)
        return _parse(text)

    @classmethod
    def canonical(cls, arch: Architecture) -> tuple[int, ...]:
        """One key for the cells that compute the same function: edges that carry nothing (none,
        or a zero-keeping op of a node that is always zero) and edges into nodes nothing reads are
        set to none, and of a cell and its mirror (nodes 1 and 2 swapped, where no edge joins
        them) the smaller is kept. A convolution of a zero node still counts: its batch norm adds
        a constant."""
        ops = _prune(_ops(arch.choices))
        if ops[EDGES.index((2, 1))] == "none":
            ops = min(ops, _prune(tuple(ops[m] for m in MIRROR)),
                      key=lambda o: [NB201_OPS.index(name) for name in o])
        return tuple(NB201_OPS.index(name) for name in ops)

    @classmethod
    def render(cls, arch: Architecture) -> tuple[str, graph.Graph]:
        """The cell as text (node by node) and as a graph whose edges are its ops (none left out)."""
        ops = _ops(arch.choices)
        lines = [f"node {node} = " + " + ".join(f"{ops[k]}(node {i})" for k, (j, i) in enumerate(EDGES) if j == node)
                 for node in range(1, NODES + 1)]
        labels = {0: "node 0 (input)", NODES: f"node {NODES} (output)"}
        nodes = tuple(graph.Node(f"n{n}", labels.get(n, f"node {n}"), terminal=n in labels) for n in range(NODES + 1))
        edges = tuple(graph.Edge(f"n{i}", f"n{j}", ops[k]) for k, (j, i) in enumerate(EDGES) if ops[k] != "none")
        return "\n".join(lines), graph.Graph("cell", "LR", nodes, edges)


def _decisions() -> list[Decision]:
    return [op(f"edge{j}<-{i}", NB201_OPS) for j, i in EDGES]


def _ops(choices: Sequence[Choice]) -> tuple[str, ...]:
    return tuple(NB201_OPS[int(c)] for c in choices)


def _parse(text: str) -> tuple[int, ...]:
    """The op ids of a benchmark string, edge by edge, or a one-line UserError."""
    groups = text.strip().split("+")
    if len(groups) != NODES or not all(g.startswith("|") and g.endswith("|") and len(g) > 1 for g in groups):
        raise UserError(f"an nb201 architecture string is three |...| groups joined by +, {STRING_FORM}; "
                        f"got {text!r}")
    found: dict[tuple[int, int], int] = {}
    for node, group in enumerate(groups, start=1):
        for token in group[1:-1].split("|"):
            name, _, source = token.partition("~")
            if name not in NB201_OPS or not source.isdigit() or (node, int(source)) in found \
                    or int(source) >= node:
                raise UserError(f"{token!r} in node {node} of {text!r} is not one op~input with an op of "
                                f"{', '.join(NB201_OPS)} and each input 0..{node - 1} once; expected {STRING_FORM}")
            found[(node, int(source))] = NB201_OPS.index(name)
    missing = [f"{j}<-{i}" for j, i in EDGES if (j, i) not in found]
    if missing:
        raise UserError(f"the nb201 string {text!r} lacks edge(s) {', '.join(missing)}; expected {STRING_FORM}")
    return tuple(found[edge] for edge in EDGES)


def _prune(ops: tuple[str, ...]) -> tuple[str, ...]:
    """`ops` with none on every edge that carries nothing or feeds a node nothing reads."""
    ops_list = list(ops)
    zero = [False]
    for node in range(1, NODES + 1):   # zeros forward: none, skip and pooling keep a zero node zero
        for k, (j, i) in enumerate(EDGES):
            if j == node and zero[i] and ops_list[k] in ("skip_connect", "avg_pool_3x3"):
                ops_list[k] = "none"
        zero.append(all(ops_list[k] == "none" for k, (j, _) in enumerate(EDGES) if j == node))
    for node in range(NODES - 1, 0, -1):   # unread nodes backward: node 2's inputs may be node 1's only reader
        if all(ops_list[k] == "none" for k, (_, i) in enumerate(EDGES) if i == node):
            ops_list = [("none" if j == node else o) for o, (j, _) in zip(ops_list, EDGES)]
    return tuple(ops_list)
