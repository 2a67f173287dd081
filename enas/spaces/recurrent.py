"""The recurrent cell search space of ENAS (paper section 2.1) and the language model around it.

A cell has N nodes. Node 1 reads x_t and h_{t-1}; node j > 1 reads one earlier node i. Every node
applies a chosen activation through a highway (ENAS eqs. 1-2):
    c_j = sigmoid(h_i W^c_{j,i}),   h_j = c_j * f_j(h_i W^h_{j,i}) + (1 - c_j) * h_i
and the cell output h_t is the mean of the loose ends (nodes that no other node reads).

Choices, in controller order: f_1, then (i_j, f_j) for j = 2..N, with i_j a 0-based node index.
That is exactly the official ENAS PTB string; `enas_lm` strings are also read and written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from enas.arch import Architecture, Choice, parse_ints
from enas.config import RecurrentConfig
from enas.errors import UserError
from enas.spaces.base import Decision, check_choices, index, op

ACTIVATIONS = ("tanh", "relu", "identity", "sigmoid")
_FUNCTIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "tanh": torch.tanh, "relu": torch.relu, "identity": lambda x: x, "sigmoid": torch.sigmoid}
# google-research/enas_lm numbers the activations tanh, relu, sigmoid, identity; ours (and the
# original melodyguan/enas PTB code) use tanh, relu, identity, sigmoid.
_ENAS_LM_ORDER = ("tanh", "relu", "sigmoid", "identity")
OFFICIAL_STYLES = {
    "enas": "melodyguan/enas PTB: f_1 then (prev, func) per node; funcs tanh, relu, identity, sigmoid",
    "enas_lm": "google-research/enas_lm: (prev, func) per node after the tanh base node; "
               "funcs tanh, relu, sigmoid, identity",
}


@dataclass(frozen=True)
class CellPlan:
    """An architecture decoded for execution: per node its input, activation and weight row."""

    inputs: tuple[int, ...]        # inputs[j-1] = node read by node j (0-based, for j >= 1)
    activations: tuple[str, ...]   # one per node
    loose_ends: tuple[int, ...]    # nodes averaged into h_t
    edge_rows: tuple[int, ...]     # row of the supernet's edge weights used by node j >= 1

    @classmethod
    def of(cls, arch: Architecture) -> CellPlan:
        choices = arch.choices
        activations = [ACTIVATIONS[choices[0]]]
        inputs = []
        for node in range(1, (len(choices) + 1) // 2):
            inputs.append(choices[2 * node - 1])
            activations.append(ACTIVATIONS[choices[2 * node]])
        read = set(inputs)
        loose = tuple(n for n in range(len(activations)) if n not in read)
        rows = tuple(edge_row(node, prev) for node, prev in enumerate(inputs, start=1))
        return cls(tuple(inputs), tuple(activations), loose, rows)


def edge_row(node: int, prev: int) -> int:
    """Row of the (node, input) pair in the supernet's stacked edge weights (0-based nodes)."""
    return node * (node - 1) // 2 + prev


class RecurrentLM(nn.Module):
    """Embedding -> recurrent cell over time -> decoder tied to the embedding.

    One class serves both roles: the supernet holds an edge weight for every (node, input) pair and
    runs whichever architecture `forward` is given; a child holds only its own N-1 edges and a
    fixed plan. Both run the very same cell code, so a child given the supernet's weights for its
    architecture computes exactly what the supernet computes.
    """

    def __init__(self, vocab_size: int, nodes: int, cfg: RecurrentConfig, plan: CellPlan | None = None):
        super().__init__()
        hidden = cfg.hidden
        self.cfg, self.plan, self.nodes = cfg, plan, nodes
        edges = nodes - 1 if plan is not None else nodes * (nodes - 1) // 2
        self.embedding = nn.Parameter(torch.empty(vocab_size, hidden))
        self.w_x = nn.Parameter(torch.empty(hidden, 2 * hidden))   # x_t -> (c, h) of node 1
        self.w_h = nn.Parameter(torch.empty(hidden, 2 * hidden))   # h_{t-1} -> (c, h) of node 1
        self.edges = nn.Parameter(torch.empty(edges, hidden, 2 * hidden))
        self.decoder_bias = nn.Parameter(torch.zeros(vocab_size))
        for weight in (self.embedding, self.w_x, self.w_h, self.edges):
            nn.init.uniform_(weight, -cfg.init_range, cfg.init_range)

    def init_hidden(self, batch_size: int) -> torch.Tensor:
        return self.embedding.new_zeros(batch_size, self.cfg.hidden)

    def forward(self, tokens: torch.Tensor, hidden: torch.Tensor | None, arch: Architecture | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """tokens (T, B) int64, hidden (B, H) or None for zeros
        -> logits (T, B, V), last hidden (B, H), cell outputs (T, B, H)."""
        if hidden is None:
            hidden = self.init_hidden(tokens.shape[1])
        if self.plan is None:
            if arch is None:
                raise ValueError("the supernet needs the architecture to run")
            plan = CellPlan.of(arch)
            edge_weights = list(self.edges[list(plan.edge_rows)])  # gather once per batch
        else:
            plan, edge_weights = self.plan, list(self.edges)
        cfg, training = self.cfg, self.training
        embedding = self.embedding
        if training and cfg.dropout_embedding > 0:  # drop whole words (same word, same mask)
            embedding = embedding * _mask(embedding[:, :1], cfg.dropout_embedding)
        x = F.embedding(tokens, embedding)
        if training and cfg.dropout_input > 0:
            x = x * _mask(x[:1], cfg.dropout_input)
        x_proj = x @ self.w_x  # all time steps at once: one large matmul instead of T small ones
        hidden_mask = _mask(hidden, cfg.dropout_hidden) if training and cfg.dropout_hidden > 0 else None
        outputs = []
        for t in range(tokens.shape[0]):
            hidden = run_cell(x_proj[t], hidden, self.w_h, edge_weights, plan, hidden_mask)
            outputs.append(hidden)
        output = torch.stack(outputs)
        dropped = output * _mask(output[:1], cfg.dropout_output) \
            if training and cfg.dropout_output > 0 else output
        logits = dropped @ self.embedding.t() + self.decoder_bias
        return logits, hidden, output

    def load_from_supernet(self, supernet: RecurrentLM) -> None:
        """Copy the supernet's weights for this child's architecture into the child."""
        assert self.plan is not None and supernet.plan is None
        with torch.no_grad():
            for name in ("embedding", "w_x", "w_h", "decoder_bias"):
                getattr(self, name).copy_(getattr(supernet, name))
            self.edges.copy_(supernet.edges[list(self.plan.edge_rows)])


def run_cell(x_proj: torch.Tensor, hidden: torch.Tensor, w_h: torch.Tensor,
             edge_weights: Sequence[torch.Tensor], plan: CellPlan, hidden_mask: torch.Tensor | None
             ) -> torch.Tensor:
    """One time step. x_proj (B, 2H) = x_t W_x; hidden (B, H) = h_{t-1} -> h_t (B, H)."""
    recurrent = hidden if hidden_mask is None else hidden * hidden_mask
    nodes = [_highway(x_proj + recurrent @ w_h, hidden, plan.activations[0])]
    for j, weight in enumerate(edge_weights, start=1):
        prev = nodes[plan.inputs[j - 1]]
        nodes.append(_highway(prev @ weight, prev, plan.activations[j]))
    if len(plan.loose_ends) == 1:
        return nodes[plan.loose_ends[0]]
    return torch.stack([nodes[n] for n in plan.loose_ends]).mean(0)


def _highway(pre: torch.Tensor, carry: torch.Tensor, activation: str) -> torch.Tensor:
    # ENAS eq. 2: h = c * f(pre_h) + (1 - c) * carry, written as carry + c * (f - carry)
    pre_c, pre_h = pre.chunk(2, dim=-1)
    gate = torch.sigmoid(pre_c)
    return carry + gate * (_FUNCTIONS[activation](pre_h) - carry)


def _mask(like: torch.Tensor, p: float) -> torch.Tensor:
    """Inverted-dropout mask shaped like `like`, broadcast over the dims where `like` has size 1."""
    return like.new_empty(like.shape).bernoulli_(1 - p) / (1 - p)


class RecurrentSpace:
    """The recurrent cell space for language modelling, sized from the config and the vocabulary."""

    name = "recurrent"
    initial_anchors = 0
    official_styles = OFFICIAL_STYLES

    def __init__(self, cfg: RecurrentConfig, vocab_size: int):
        self.cfg, self.vocab_size = cfg, vocab_size

    def decisions(self) -> list[Decision]:
        return decisions_for(self.cfg.nodes)

    def supernet(self) -> RecurrentLM:
        return RecurrentLM(self.vocab_size, self.cfg.nodes, self.cfg)

    def child(self, arch: Architecture) -> RecurrentLM:
        plan = CellPlan.of(arch)
        return RecurrentLM(self.vocab_size, len(plan.activations), self.cfg, plan)

    @staticmethod
    def check(choices: Sequence[Choice]) -> None:
        if len(choices) % 2 == 0:
            raise UserError(f"a recurrent architecture has 2N-1 choices for N nodes, got {len(choices)}")
        check_choices("recurrent", decisions_for((len(choices) + 1) // 2), choices)

    @staticmethod
    def to_official(choices: Sequence[Choice], style: str | None) -> str:
        style = style or "enas"
        if style == "enas":
            return " ".join(str(c) for c in choices)
        if style != "enas_lm":
            raise UserError(f"unknown recurrent string style {style!r}; choose one of {', '.join(OFFICIAL_STYLES)}")
        if ACTIVATIONS[choices[0]] != "tanh":
            raise UserError("an enas_lm string fixes node 1 to tanh; this architecture uses "
                            f"{ACTIVATIONS[choices[0]]}")
        pairs = [(choices[k], _ENAS_LM_ORDER.index(ACTIVATIONS[choices[k + 1]]))
                 for k in range(1, len(choices), 2)]
        return " ".join(f"{prev} {func}" for prev, func in pairs)

    @staticmethod
    def from_official(text: str, style: str | None) -> tuple[int, ...]:
        numbers = parse_ints(text, "a recurrent architecture string")
        # The two styles differ in parity: enas has f_1 first (odd length), enas_lm has pairs only.
        style = style or ("enas" if len(numbers) % 2 else "enas_lm")
        if style == "enas":
            return tuple(numbers)
        if style != "enas_lm":
            raise UserError(f"unknown recurrent string style {style!r}; choose one of {', '.join(OFFICIAL_STYLES)}")
        if len(numbers) % 2:
            raise UserError(f"an enas_lm string has (prev, func) pairs, got {len(numbers)} numbers")
        choices = [ACTIVATIONS.index("tanh")]
        for prev, func in zip(numbers[::2], numbers[1::2]):
            if not 0 <= func < len(_ENAS_LM_ORDER):
                raise UserError(f"enas_lm function {func} is out of range 0..{len(_ENAS_LM_ORDER) - 1}")
            choices += [prev, ACTIVATIONS.index(_ENAS_LM_ORDER[func])]
        return tuple(choices)

    @staticmethod
    def render(arch: Architecture) -> tuple[str, str]:
        """(text, graphviz dot) pictures of the cell."""
        plan = CellPlan.of(arch)
        lines = [f"node 1: {plan.activations[0]}(x_t, h_(t-1))"]
        lines += [f"node {j + 1}: {plan.activations[j]}(node {plan.inputs[j - 1] + 1})"
                  for j in range(1, len(plan.activations))]
        lines.append("h_t = mean(" + ", ".join(f"node {n + 1}" for n in plan.loose_ends) + ")")
        dot = ["digraph cell {", "  rankdir=LR;", '  x [label="x_t", shape=box];',
               '  h_prev [label="h_(t-1)", shape=box];', '  out [label="h_t", shape=box];']
        for j, act in enumerate(plan.activations):
            dot.append(f'  n{j} [label="{j + 1}: {act}"];')
        dot += ["  x -> n0;", "  h_prev -> n0;"]
        dot += [f"  n{plan.inputs[j - 1]} -> n{j};" for j in range(1, len(plan.activations))]
        dot += [f"  n{n} -> out;" for n in plan.loose_ends]
        dot.append("}")
        return "\n".join(lines), "\n".join(dot) + "\n"


def decisions_for(nodes: int) -> list[Decision]:
    """f_1, then for each later node its input among the earlier nodes and its activation."""
    decisions = [op("node1.activation", ACTIVATIONS, ends_node=True)]
    for j in range(2, nodes + 1):
        decisions += [index(f"node{j}.input", j - 1),
                      op(f"node{j}.activation", ACTIVATIONS, ends_node=True)]
    return decisions
