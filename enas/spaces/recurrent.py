"""The recurrent cell search space of ENAS (paper section 2.1) and the language model around it.

A cell has N nodes. Node 1 reads x_t and h_{t-1}; node j > 1 reads one earlier node i. Every node
applies a chosen activation through a highway (ENAS eqs. 1-2):
    c_j = sigmoid(h_i W^c_{j,i}),   h_j = c_j * f_j(h_i W^h_{j,i}) + (1 - c_j) * h_i
and the cell output h_t is the mean of the loose ends (nodes that no other node reads), or of every
node but node 1 (`output`, enas_lm). The cell's computation itself is in recurrent_cell.py.

Choices, in controller order: f_1, then (i_j, f_j) for j = 2..N, with i_j a 0-based node index.
That is exactly the official ENAS PTB string; `enas_lm` strings are also read and written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from enas.errors import UserError
from enas.fields import option
from enas.spaces.architecture import Architecture, Choice, parse_ints
from enas.spaces.base import Decision, TextShape, check_choices, check_space, check_style, index, op
from enas.spaces.graph import Edge, Graph, Node
from enas.spaces.language_model import LanguageModelConfig, TiedLanguageModel
from enas.spaces.recurrent_cell import ACTIVATIONS, OUTPUTS, RecurrentPlan, run_cell

# google-research/enas_lm numbers the activations tanh, relu, sigmoid, identity; ours (and the
# original melodyguan/enas PTB code) use tanh, relu, identity, sigmoid.
_ENAS_LM_ORDER = ("tanh", "relu", "sigmoid", "identity")
# enas: melodyguan/enas PTB, f_1 then (prev, func) per node; funcs tanh, relu, identity, sigmoid.
# enas_lm: google-research/enas_lm, (prev, func) per node after the tanh base node; funcs tanh,
# relu, sigmoid, identity.
STYLES = ("enas", "enas_lm")


@dataclass
class RecurrentConfig(LanguageModelConfig):
    nodes: int = option(8, "nodes in the recurrent cell (12 in the paper's PTB search)", min=1)
    dropout_every_node: bool = option(True, "dropout_hidden's mask also drops the input of every later node before "
                                      "its product, one mask for all nodes and steps of a sequence (both official "
                                      "PTB codes: prev_s * s_mask, enas_lm's layer_mask); off: only h_(t-1)")
    weights_per_function: bool = option(False, "the supernet keeps one weight per (node, input, activation), node 1's "
                                        "too, as both official codes do (melodyguan/enas src/ptb/ptb_enas_child.py:"
                                        "335-341, 369-371, 521-531; enas_lm src/child.py _build_params: w of shape "
                                        "[num_functions, layer_id, H, 2H]); off: one per (node, input) serves every "
                                        "activation (the paper's W_(j,i))")
    output: str = option("loose_ends", "the cell output h_t averages the loose ends (the paper; melodyguan/enas "
                         "ptb_enas_child.py:393-398) or all_nodes, every node but node 1 (enas_lm src/child.py and "
                         "src/fixed_lib.py _rnn_fn: next_s = add_n(layers[1:]) / num_layers)", choices=OUTPUTS)
    first_activation: str = option("searched", "node 1's activation: searched (the paper) or tanh, fixed, its "
                                   "decision left with that one option (enas_lm src/child.py _rnn_fn: \"first input "
                                   "uses a tanh()\")", choices=("searched", "tanh"))


class RecurrentLM(TiedLanguageModel):
    """Embedding -> recurrent cell over time -> decoder tied to the embedding.

    One class serves both roles: the supernet holds an edge weight for every (node, input) pair (and
    activation, with `weights_per_function`) and runs whichever architecture `forward` is given; a
    child holds only its own N-1 edges and a fixed plan. Both run the very same cell code, so a
    child given the supernet's weights for its architecture (`cell_weights`) computes exactly what
    the supernet computes.
    """

    def __init__(self, vocab_size: int, nodes: int, cfg: RecurrentConfig, plan: RecurrentPlan | None = None):
        super().__init__()
        hidden = cfg.hidden
        self.cfg, self.plan, self.nodes = cfg, plan, nodes
        self.copies = len(ACTIVATIONS) if plan is None and cfg.weights_per_function else 1   # per edge
        first_copies = 1 if cfg.first_activation == "tanh" else self.copies
        edges = nodes - 1 if plan is not None else self.copies * nodes * (nodes - 1) // 2
        # One parameter per edge: a step's gradients, clipping and update touch only the edges its
        # architecture uses (at the paper's size the 66 edges of 12 nodes weigh 528 MB, of which a
        # step uses 11), and the weights of unused edges stay exactly as they were.
        self.embedding = nn.Parameter(torch.empty(vocab_size, hidden))
        self.w_x = _weights(first_copies, hidden)   # x_t -> (c, h) of node 1
        self.w_h = _weights(first_copies, hidden)   # h_{t-1} -> (c, h) of node 1
        self.edges = nn.ParameterList(nn.Parameter(torch.empty(hidden, 2 * hidden)) for _ in range(edges))
        self.decoder_bias = nn.Parameter(torch.zeros(vocab_size))
        for weight in (self.embedding, *_each(self.w_x), *_each(self.w_h), *self.edges):
            nn.init.uniform_(weight, -cfg.init_range, cfg.init_range)

    def init_hidden(self, batch_size: int) -> torch.Tensor:
        return self.embedding.new_zeros(batch_size, self.cfg.hidden)

    def plan_of(self, arch: Architecture | None) -> RecurrentPlan:
        """A child's own plan, or the supernet's for `arch`."""
        if self.plan is not None:
            return self.plan
        if arch is None:
            raise ValueError("the supernet needs the architecture to run")
        return RecurrentPlan.of(arch, self.cfg.output)

    def cell_weights(self, plan: RecurrentPlan) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """w_x, w_h (H, 2H) and the edge weights (H, 2H) of nodes 2..N that `plan`'s cell multiplies by:
        a child's own, or the supernet's rows for the plan (with weights_per_function: for its activations)."""
        if self.plan is not None:
            return self.w_x, self.w_h, list(self.edges)
        first = plan.activations[0]
        rows = [row * self.copies + _copy(self.copies, act) for row, act in zip(plan.edge_rows, plan.activations[1:])]
        return _pick(self.w_x, first), _pick(self.w_h, first), [self.edges[row] for row in rows]

    def forward(self, tokens: torch.Tensor, hidden: torch.Tensor | None, targets: torch.Tensor | None = None,
                arch: Architecture | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """tokens (T, B) int64, hidden (B, H) or None for zeros, targets (T, B) int64 or None
        -> logits (T, B, V), or with targets their mean cross-entropy (a scalar, computed without
        the logits: decoder_loss.py); last hidden (B, H); cell outputs (T, B, H)."""
        if hidden is None:
            hidden = self.init_hidden(tokens.shape[1])
        plan = self.plan_of(arch)
        w_x, w_h, edges = self.cell_weights(plan)
        x_proj = self.embed(tokens) @ w_x  # all time steps at once: one matmul instead of T
        mask = self.hidden_mask(hidden)
        output = run_cell(x_proj, hidden, w_h, edges, plan, mask, mask if self.cfg.dropout_every_node else None)
        return self.decode(output, targets), output[-1], output


def _weights(copies: int, hidden: int) -> nn.Parameter | nn.ParameterList:
    """One (H, 2H) weight, or a list of one per activation."""
    if copies == 1:
        return nn.Parameter(torch.empty(hidden, 2 * hidden))
    return nn.ParameterList(nn.Parameter(torch.empty(hidden, 2 * hidden)) for _ in range(copies))


def _each(weights: nn.Parameter | nn.ParameterList) -> list[nn.Parameter]:
    return [weights] if isinstance(weights, nn.Parameter) else list(weights)


def _copy(copies: int, activation: str) -> int:
    """Which of an edge's `copies` weights serves `activation`."""
    return ACTIVATIONS.index(activation) if copies > 1 else 0


def _pick(weights: nn.Parameter | nn.ParameterList, activation: str) -> torch.Tensor:
    """Node 1's weight for `activation` (its only one when it has a single copy)."""
    return weights if isinstance(weights, nn.Parameter) else weights[_copy(len(weights), activation)]


class RecurrentSpace:
    """The recurrent cell space for language modelling, sized from the config and the vocabulary."""

    name = "recurrent"
    config = RecurrentConfig
    data = TextShape
    initial_anchors = 0
    aux_weight = 0.0

    def __init__(self, cfg: RecurrentConfig, shape: TextShape, train_steps: int = 0):
        self.cfg, self.vocab_size = cfg, shape.vocab_size

    def decisions(self) -> list[Decision]:
        return _decisions(self.cfg.nodes, ("tanh",) if self.cfg.first_activation == "tanh" else ACTIVATIONS)

    def supernet(self) -> RecurrentLM:
        return RecurrentLM(self.vocab_size, self.cfg.nodes, self.cfg)

    def child(self, arch: Architecture) -> RecurrentLM:
        check_space(arch, self.name)
        plan = RecurrentPlan.of(arch, self.cfg.output)
        return RecurrentLM(self.vocab_size, len(plan.activations), self.cfg, plan)

    @classmethod
    def check(cls, choices: Sequence[Choice]) -> None:
        if len(choices) % 2 == 0:
            raise UserError(f"a recurrent architecture has 2N-1 choices for N nodes, got {len(choices)}")
        check_choices(cls.name, _decisions((len(choices) + 1) // 2), choices)

    @classmethod
    def to_official(cls, choices: Sequence[Choice], style: str | None) -> str:
        if check_style(cls.name, style, STYLES) == "enas":
            return " ".join(str(c) for c in choices)
        if ACTIVATIONS[choices[0]] != "tanh":
            raise UserError("an enas_lm string fixes node 1 to tanh; this architecture uses "
                            f"{ACTIVATIONS[choices[0]]}")
        pairs = [(choices[k], _ENAS_LM_ORDER.index(ACTIVATIONS[choices[k + 1]]))
                 for k in range(1, len(choices), 2)]
        return " ".join(f"{prev} {func}" for prev, func in pairs)

    @classmethod
    def from_official(cls, text: str, style: str | None) -> tuple[int, ...]:
        numbers = parse_ints(text, "a recurrent architecture string")
        # The two styles differ in parity: enas has f_1 first (odd length), enas_lm has pairs only.
        style = check_style(cls.name, style or ("enas" if len(numbers) % 2 else "enas_lm"), STYLES)
        if style == "enas":
            return tuple(numbers)
        if len(numbers) % 2:
            raise UserError(f"an enas_lm string has (prev, func) pairs, got {len(numbers)} numbers")
        choices = [ACTIVATIONS.index("tanh")]
        for prev, func in zip(numbers[::2], numbers[1::2]):
            if not 0 <= func < len(_ENAS_LM_ORDER):
                raise UserError(f"enas_lm function {func} is out of range 0..{len(_ENAS_LM_ORDER) - 1}")
            choices += [prev, ACTIVATIONS.index(_ENAS_LM_ORDER[func])]
        return tuple(choices)

    @classmethod
    def canonical(cls, arch: Architecture) -> tuple[Choice, ...]:
        """Every encoding is its own network: a node reads one input, and the nodes are ordered."""
        return arch.choices

    @classmethod
    def render(cls, arch: Architecture) -> tuple[str, Graph]:
        """The cell as text and as a graph."""
        plan = RecurrentPlan.of(arch)
        lines = [f"node 1: {plan.activations[0]}(x_t, h_(t-1))"]
        lines += [f"node {j + 1}: {plan.activations[j]}(node {plan.inputs[j - 1] + 1})"
                  for j in range(1, len(plan.activations))]
        lines.append("h_t = mean(" + ", ".join(f"node {n + 1}" for n in plan.loose_ends) + ")")
        nodes = [Node("x", "x_t", terminal=True), Node("h_prev", "h_(t-1)", terminal=True)]
        nodes += [Node(f"n{j}", f"{j + 1}: {act}") for j, act in enumerate(plan.activations)]
        edges = [Edge("x", "n0"), Edge("h_prev", "n0")]
        edges += [Edge(f"n{plan.inputs[j - 1]}", f"n{j}") for j in range(1, len(plan.activations))]
        edges += [Edge(f"n{n}", "out") for n in plan.loose_ends]
        return "\n".join(lines), Graph("cell", "LR", (*nodes, Node("out", "h_t", terminal=True)), tuple(edges))


def _decisions(nodes: int, first: tuple[str, ...] = ACTIVATIONS) -> list[Decision]:
    """f_1 among `first`, then for each later node its input among the earlier nodes and its activation.
    A fixed f_1 keeps its decision, with one option, so that every architecture has the same choices."""
    decisions = [op("node1.activation", first, ends_node=True)]
    for j in range(2, nodes + 1):
        decisions += [index(f"node{j}.input", j - 1),
                      op(f"node{j}.activation", ACTIVATIONS, ends_node=True)]
    return decisions
