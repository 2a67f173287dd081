"""The tree-structured recurrent cell space of Zoph & Le 2017 (NAS, section 3.4, Fig. 5) and the
language model around it.

The cell reads x_t, h_{t-1} and c_{t-1} and is a full binary tree over B leaves (B a power of 2;
"base 8" in the paper), 2B-1 nodes numbered as the paper does: leaves 0..B-1, then each level
above left to right, the root last (base 2: leaves 0, 1, root 2; base 8: root 14). Internal node
k >= B reads nodes 2(k-B) and 2(k-B)+1. Every node picks a combination (add, elem_mult) and an
activation (identity, tanh, sigmoid, relu), the paper's PTB search space:
    leaf i:     a_i = f_i(W_i x_t  o_i  U_i h_{t-1})        (o_i: + or elementwise *)
    internal k: a_k = f_k(a_left  o_k  a_right)             (no parameters)
Cell inject: one node's value is replaced by a_j^new = g(a_j  o  c_{t-1}) (paper: "a_0^new =
ReLU(a_0 + c_{t-1})"); the nodes above read a_j^new. c_t is one node's value *before its
activation* (paper: "c_t = (W_3 x_t) . (W_4 h_{t-1})", tree index 1 before the activation), and
h_t is the root (after its injection, if the root is the one injected).

Choices, in controller order (Fig. 5: the tree blocks, then Cell Inject, then Cell Indices):
    per tree index k = 0..2B-2: combination (0 add, 1 elem_mult), activation (0 identity,
    1 tanh, 2 sigmoid, 3 relu); then the inject combination and activation; then the two cell
    indices: first the node whose pre-activation value is c_t, second the node c_{t-1} is
    injected into, each a tree index 0..2B-2. That is 4B+2 choices, 34 for base 8.
The paper does not say which nodes the cell indices may name; here both may name any tree node,
the root included. When both name the same node, c_t is that node's value before the injection.

`PUBLISHED_PTB` is the paper's PTB cell (Fig. 8 and the appendix; the NASCell of TensorFlow),
exactly. The hidden state is one (B, 2H) tensor [h | c], so that tasks carry it as one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn

from enas.errors import UserError
from enas.fields import option
from enas.spaces.architecture import Architecture, Choice, parse_ints
from enas.spaces.base import Decision, TextShape, check_choices, check_space, check_style, index, op
from enas.spaces.graph import Edge, Graph, Node
from enas.spaces.language_model import LanguageModelConfig, TiedLanguageModel

COMBINATIONS = ("add", "elem_mult")
ACTIVATIONS = ("identity", "tanh", "sigmoid", "relu")
STYLES = ("zoph_le",)   # the choices as whitespace-separated integers, in the order above

# Zoph & Le's PTB cell (NASCell). Per tree index (combination, activation):
#   leaves 0-7: add sigmoid, add relu, add sigmoid, mult relu, add tanh, add sigmoid, add tanh, add sigmoid
#   8: mult tanh   9: add tanh   10: mult tanh   11: add sigmoid   12: mult identity   13: add tanh
#   root 14: mult tanh;  inject add tanh;  c_t = node 12;  c_{t-1} injected into node 8.
PUBLISHED_PTB = "0 2 0 3 0 2 1 3 0 1 0 2 0 1 0 2 1 1 0 1 1 1 0 2 1 0 0 1 1 1 0 1 12 8"


@dataclass
class NasCellConfig(LanguageModelConfig):
    base: int = option(8, "leaves of the cell's binary tree, a power of 2 (8 in the paper)", min=2)


@dataclass(frozen=True)
class NasCellPlan:
    """An architecture decoded for execution."""

    base: int
    combinations: tuple[str, ...]   # one per tree node, in tree-index order
    activations: tuple[str, ...]
    inject_combination: str
    inject_activation: str
    cell_node: int                  # c_t is this node's value before its activation
    inject_node: int                # c_{t-1} is merged into this node's value

    @classmethod
    def of(cls, arch: Architecture) -> NasCellPlan:
        choices = arch.choices
        nodes = (len(choices) - 4) // 2
        return cls((nodes + 1) // 2,
                   tuple(COMBINATIONS[c] for c in choices[0:2 * nodes:2]),
                   tuple(ACTIVATIONS[c] for c in choices[1:2 * nodes:2]),
                   COMBINATIONS[choices[-4]], ACTIVATIONS[choices[-3]], choices[-2], choices[-1])


def children(node: int, base: int) -> tuple[int, int]:
    """The two nodes an internal node (node >= base) reads."""
    first = 2 * (node - base)
    return first, first + 1


_COMBINE: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "add": torch.add, "elem_mult": torch.mul}
_ACTIVATE: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "identity": lambda x: x, "tanh": torch.tanh, "sigmoid": torch.sigmoid, "relu": torch.relu}


def cell_step(x_proj: torch.Tensor, h_proj: torch.Tensor, c_prev: torch.Tensor, plan: NasCellPlan
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of the tree cell. x_proj (B, base*H) = x_t [W_0 .. W_{B-1}], h_proj (B, base*H)
    = h_{t-1} [U_0 .. U_{B-1}], c_prev (B, H) -> h_t (B, H), c_t (B, H)."""
    xs, hs = x_proj.chunk(plan.base, 1), h_proj.chunk(plan.base, 1)
    values: list[torch.Tensor] = []
    c_t = c_prev
    for node, (combination, activation) in enumerate(zip(plan.combinations, plan.activations)):
        left, right = (xs[node], hs[node]) if node < plan.base else \
            [values[k] for k in children(node, plan.base)]
        pre = _COMBINE[combination](left, right)
        if node == plan.cell_node:
            c_t = pre
        value = _ACTIVATE[activation](pre)
        if node == plan.inject_node:  # NAS Fig. 5: a_j^new = g(a_j o c_{t-1})
            value = _ACTIVATE[plan.inject_activation](_COMBINE[plan.inject_combination](value, c_prev))
        values.append(value)
    return values[-1], c_t


class NasCellLM(TiedLanguageModel):
    """Embedding -> tree cell over time -> decoder tied to the embedding.

    One class serves both roles. Every architecture reads every leaf, so the leaf weights W (x_t)
    and U (h_{t-1}), one (H, base*H) matrix each, are all the weights there are to share: the
    supernet runs the architecture `forward` is given, a child its fixed plan, with the same code.
    """

    def __init__(self, vocab_size: int, base: int, cfg: NasCellConfig, plan: NasCellPlan | None = None):
        super().__init__()
        hidden = cfg.hidden
        self.cfg, self.base, self.plan = cfg, base, plan
        self.embedding = nn.Parameter(torch.empty(vocab_size, hidden))
        self.w_x = nn.Parameter(torch.empty(hidden, base * hidden))   # x_t -> leaves' W_i x_t
        self.w_h = nn.Parameter(torch.empty(hidden, base * hidden))   # h_{t-1} -> leaves' U_i h_{t-1}
        self.decoder_bias = nn.Parameter(torch.zeros(vocab_size))
        for weight in (self.embedding, self.w_x, self.w_h):
            nn.init.uniform_(weight, -cfg.init_range, cfg.init_range)

    def init_hidden(self, batch_size: int) -> torch.Tensor:
        """Zero state [h | c], (B, 2H)."""
        return self.embedding.new_zeros(batch_size, 2 * self.cfg.hidden)

    def forward(self, tokens: torch.Tensor, hidden: torch.Tensor | None, targets: torch.Tensor | None = None,
                arch: Architecture | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """tokens (T, B) int64, hidden [h | c] (B, 2H) or None for zeros, targets (T, B) int64 or None
        -> logits (T, B, V), or with targets their mean cross-entropy (a scalar); last hidden
        [h | c] (B, 2H); cell outputs h_t (T, B, H)."""
        plan = self._plan(arch)
        if hidden is None:
            hidden = self.init_hidden(tokens.shape[1])
        x_proj = self.embed(tokens) @ self.w_x  # all time steps at once: one matmul instead of T
        # one dtype throughout the cell (the autocast one, if on), whatever state was carried in
        h, c = hidden.to(x_proj.dtype).chunk(2, 1)
        hidden_mask = self.hidden_mask(h)
        outputs = []
        for x_t in x_proj.unbind(0):
            recurrent = h if hidden_mask is None else h * hidden_mask
            h, c = cell_step(x_t, recurrent @ self.w_h, c, plan)
            outputs.append(h)
        output = torch.stack(outputs)
        return self.decode(output, targets), torch.cat([h, c], 1), output

    def _plan(self, arch: Architecture | None) -> NasCellPlan:
        if self.plan is not None:
            return self.plan
        if arch is None:
            raise ValueError("the supernet needs the architecture to run")
        plan = NasCellPlan.of(arch)
        if plan.base != self.base:
            raise ValueError(f"a base-{plan.base} architecture given to a base-{self.base} supernet")
        return plan


class NasCellSpace:
    """Zoph & Le's tree cell space for language modelling, sized from the config and the vocabulary."""

    name = "nas_cell"
    config = NasCellConfig
    data = TextShape
    initial_anchors = 0
    aux_weight = 0.0

    def __init__(self, cfg: NasCellConfig, shape: TextShape, train_steps: int = 0):
        if not _is_base(cfg.base):
            raise UserError(f"nas_cell.base={cfg.base} must be a power of 2 (2, 4, 8, ...): "
                            "the cell is a full binary tree over its leaves")
        self.cfg, self.vocab_size = cfg, shape.vocab_size

    def decisions(self) -> list[Decision]:
        return _decisions(self.cfg.base)

    def supernet(self) -> NasCellLM:
        return NasCellLM(self.vocab_size, self.cfg.base, self.cfg)

    def child(self, arch: Architecture) -> NasCellLM:
        """A child is sized by its architecture (its base from its length), not by nas_cell.base."""
        check_space(arch, self.name)
        plan = NasCellPlan.of(arch)
        return NasCellLM(self.vocab_size, plan.base, self.cfg, plan)

    @classmethod
    def check(cls, choices: Sequence[Choice]) -> None:
        base, extra = divmod(len(choices) - 2, 4)
        if extra or not _is_base(base):
            raise UserError(f"a nas_cell architecture has 4B+2 choices for B leaves, B a power of 2 "
                            f"(nas_cell.base; 34 for the paper's 8), got {len(choices)}")
        check_choices(cls.name, _decisions(base), choices)

    @classmethod
    def to_official(cls, choices: Sequence[Choice], style: str | None) -> str:
        check_style(cls.name, style, STYLES)
        return " ".join(str(c) for c in choices)

    @classmethod
    def from_official(cls, text: str, style: str | None) -> tuple[int, ...]:
        check_style(cls.name, style, STYLES)
        return tuple(parse_ints(text, "a nas_cell architecture string"))

    @classmethod
    def canonical(cls, arch: Architecture) -> tuple[Choice, ...]:
        """The choices as they are: leaves that swap places keep their own weights in a child's
        training, and the cell indices name tree positions, so no two encodings are merged."""
        return arch.choices

    @classmethod
    def render(cls, arch: Architecture) -> tuple[str, Graph]:
        """The cell as text and as a graph."""
        plan = NasCellPlan.of(arch)
        lines, edges = [], []
        nodes = [Node("x", "x_t", terminal=True), Node("h_prev", "h_(t-1)", terminal=True),
                 Node("c_prev", "c_(t-1)", terminal=True)]
        for node, (combination, activation) in enumerate(zip(plan.combinations, plan.activations)):
            inputs = (f"W_{node} x_t", f"U_{node} h_(t-1)") if node < plan.base else \
                tuple(f"tree {k}" for k in children(node, plan.base))
            line = f"tree {node}: {activation}({combination}({inputs[0]}, {inputs[1]}))"
            if node == plan.inject_node:
                line += f", then {plan.inject_activation}({plan.inject_combination}(., c_(t-1)))"
            lines.append(line)
            nodes.append(Node(f"n{node}", f"{node}: {combination}, {activation}"))
            sources = ("x", "h_prev") if node < plan.base else tuple(f"n{k}" for k in children(node, plan.base))
            edges += [Edge(source, f"n{node}") for source in sources]
        lines += [f"c_t = tree {plan.cell_node} before its activation", f"h_t = tree {len(plan.activations) - 1}"]
        nodes += [Node("h", "h_t", terminal=True), Node("c", "c_t", terminal=True)]
        edges += [Edge("c_prev", f"n{plan.inject_node}", f"{plan.inject_combination}, {plan.inject_activation}"),
                  Edge(f"n{plan.cell_node}", "c", "pre-activation"), Edge(f"n{len(plan.activations) - 1}", "h")]
        return "\n".join(lines), Graph("cell", "BT", tuple(nodes), tuple(edges))


def _is_base(base: int) -> bool:
    return base >= 2 and base & (base - 1) == 0


def _decisions(base: int) -> list[Decision]:
    """Per tree node its combination and activation (each node leaves one controller anchor), the
    cell inject's combination and activation, then c_t's node and c_{t-1}'s node among them."""
    nodes = 2 * base - 1
    decisions = []
    for node in range(nodes):
        decisions += [op(f"tree{node}.combination", COMBINATIONS),
                      op(f"tree{node}.activation", ACTIVATIONS, ends_node=True)]
    decisions += [op("inject.combination", COMBINATIONS), op("inject.activation", ACTIVATIONS),
                  index("cell_index.c_t", nodes, anchors=range(nodes)),
                  index("cell_index.inject", nodes, anchors=range(nodes))]
    return decisions
