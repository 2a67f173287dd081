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
from torch import nn

from enas.errors import UserError
from enas.fields import option
from enas.spaces.architecture import Architecture, Choice, parse_ints
from enas.spaces.base import Decision, TextShape, check_choices, check_space, check_style, index, op
from enas.spaces.decoder_loss import in_autocast_dtype
from enas.spaces.graph import Edge, Graph, Node
from enas.spaces.language_model import LanguageModelConfig, TiedLanguageModel

ACTIVATIONS = ("tanh", "relu", "identity", "sigmoid")
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


@dataclass(frozen=True)
class RecurrentPlan:
    """An architecture decoded for execution: per node its input, activation and weight row."""

    inputs: tuple[int, ...]        # inputs[j-1] = node read by node j (0-based, for j >= 1)
    activations: tuple[str, ...]   # one per node
    loose_ends: tuple[int, ...]    # nodes averaged into h_t
    edge_rows: tuple[int, ...]     # row of the supernet's edge weights used by node j >= 1

    @classmethod
    def of(cls, arch: Architecture) -> RecurrentPlan:
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


class RecurrentLM(TiedLanguageModel):
    """Embedding -> recurrent cell over time -> decoder tied to the embedding.

    One class serves both roles: the supernet holds an edge weight for every (node, input) pair and
    runs whichever architecture `forward` is given; a child holds only its own N-1 edges and a
    fixed plan. Both run the very same cell code, so a child given the supernet's weights for its
    architecture computes exactly what the supernet computes.
    """

    def __init__(self, vocab_size: int, nodes: int, cfg: RecurrentConfig, plan: RecurrentPlan | None = None):
        super().__init__()
        hidden = cfg.hidden
        self.cfg, self.plan, self.nodes = cfg, plan, nodes
        edges = nodes - 1 if plan is not None else nodes * (nodes - 1) // 2
        # One parameter per edge: a step's gradients, clipping and update touch only the edges its
        # architecture uses (at the paper's size the 66 edges of 12 nodes weigh 528 MB, of which a
        # step uses 11), and the weights of unused edges stay exactly as they were.
        self.embedding = nn.Parameter(torch.empty(vocab_size, hidden))
        self.w_x = nn.Parameter(torch.empty(hidden, 2 * hidden))   # x_t -> (c, h) of node 1
        self.w_h = nn.Parameter(torch.empty(hidden, 2 * hidden))   # h_{t-1} -> (c, h) of node 1
        self.edges = nn.ParameterList(nn.Parameter(torch.empty(hidden, 2 * hidden)) for _ in range(edges))
        self.decoder_bias = nn.Parameter(torch.zeros(vocab_size))
        for weight in (self.embedding, self.w_x, self.w_h, *self.edges):
            nn.init.uniform_(weight, -cfg.init_range, cfg.init_range)

    def init_hidden(self, batch_size: int) -> torch.Tensor:
        return self.embedding.new_zeros(batch_size, self.cfg.hidden)

    def forward(self, tokens: torch.Tensor, hidden: torch.Tensor | None, targets: torch.Tensor | None = None,
                arch: Architecture | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """tokens (T, B) int64, hidden (B, H) or None for zeros, targets (T, B) int64 or None
        -> logits (T, B, V), or with targets their mean cross-entropy (a scalar, computed without
        the logits: decoder_loss.py); last hidden (B, H); cell outputs (T, B, H)."""
        if hidden is None:
            hidden = self.init_hidden(tokens.shape[1])
        if self.plan is None:
            if arch is None:
                raise ValueError("the supernet needs the architecture to run")
            plan = RecurrentPlan.of(arch)
            rows = plan.edge_rows
        else:
            plan, rows = self.plan, tuple(range(len(self.plan.inputs)))
        x_proj = self.embed(tokens) @ self.w_x  # all time steps at once: one matmul instead of T
        edges = [self.edges[row] for row in rows]
        mask = self.hidden_mask(hidden)
        output = run_cell(x_proj, hidden, self.w_h, edges, plan, mask, mask if self.cfg.dropout_every_node else None)
        return self.decode(output, targets), output[-1], output


def run_cell(x_proj: torch.Tensor, hidden: torch.Tensor, w_h: torch.Tensor, weights: Sequence[torch.Tensor],
             plan: RecurrentPlan, hidden_mask: torch.Tensor | None,
             node_mask: torch.Tensor | None = None) -> torch.Tensor:
    """The cell over all time steps. x_proj (T, B, 2H) = x W_x; hidden (B, H) = h_0;
    w_h (H, 2H); weights[j-1] (H, 2H) the edge weight of node j >= 1; hidden_mask (B, H) or None
    multiplies h_(t-1) before its product with w_h, node_mask (B, H) or None the input of every
    node j >= 1 before its product with the edge weight (the highway's carry stays unmasked, as
    in the official code) -> cell outputs (T, B, H).

    Under autocast the whole cell runs in the autocast dtype (its buffers and products share one
    dtype); the casts are ordinary autograd ops, so float32 weights get float32 gradients."""
    if torch.jit.is_tracing() or torch.compiler.is_exporting():
        # a trace cannot follow the writes into preallocated buffers (it would record constants)
        return _traceable_cell(x_proj, hidden, w_h, weights, plan, hidden_mask, node_mask)
    (x_proj, hidden, w_h, hidden_mask, node_mask, *weights), no_autocast = in_autocast_dtype(
        x_proj, hidden, w_h, hidden_mask, node_mask, *weights)
    with no_autocast:
        return _CellRecurrence.apply(x_proj, hidden, w_h, plan, hidden_mask, node_mask, *weights)


_ACTIVATE: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "tanh": torch.tanh, "relu": torch.relu, "identity": lambda x: x, "sigmoid": torch.sigmoid}


def _traceable_cell(x_proj: torch.Tensor, hidden: torch.Tensor, w_h: torch.Tensor, weights: Sequence[torch.Tensor],
                    plan: RecurrentPlan, hidden_mask: torch.Tensor | None,
                    node_mask: torch.Tensor | None) -> torch.Tensor:
    """`run_cell` in plain tensor ops, for torch.jit.trace and torch.export (enas export): the same
    arguments and result, the time loop unrolled into the graph."""
    outputs, h_prev = [], hidden
    for x_t in x_proj.unbind(0):
        recurrent = h_prev if hidden_mask is None else h_prev * hidden_mask
        nodes = [_plain_highway(x_t + recurrent @ w_h, h_prev, plan.activations[0])]
        for j, weight in enumerate(weights, start=1):
            prev = nodes[plan.inputs[j - 1]]
            read = prev if node_mask is None else prev * node_mask
            nodes.append(_plain_highway(read @ weight, prev, plan.activations[j]))
        h_prev = torch.stack([nodes[n] for n in plan.loose_ends]).mean(0)
        outputs.append(h_prev)
    return torch.stack(outputs)


def _plain_highway(gates: torch.Tensor, carry: torch.Tensor, activation: str) -> torch.Tensor:
    """ENAS eq. 2 out of place: gates [pre_c | pre_h] (B, 2H), carry (B, H) -> h (B, H)."""
    gate, value = gates.chunk(2, dim=-1)
    return torch.lerp(carry, _ACTIVATE[activation](value), torch.sigmoid(gate))


class _CellRecurrence(torch.autograd.Function):
    """ENAS eqs. 1-2 unrolled over time, with a hand-written backward.

    Why not plain autograd: per time step the cell is one small matmul and a few element-wise ops
    per node, so autograd's per-op bookkeeping, its temporary tensors and above all its per-step
    weight gradients (T small (H, B) x (B, 2H) products per edge, each added into the running sum)
    cost as much as the matmuls themselves. Here the forward writes into preallocated buffers, the
    backward walks time in reverse only for the gradients that must flow through time, and each
    weight gradient is one (H, T*B) x (T*B, 2H) product over the whole window.

    Saved between the passes: per node and step the activated pre-activations [c | f] (the
    backward overwrites them with their gradients) and the node outputs.
    """

    @staticmethod
    def forward(ctx, x_proj: torch.Tensor, hidden: torch.Tensor, w_h: torch.Tensor, plan: RecurrentPlan,
                hidden_mask: torch.Tensor | None, node_mask: torch.Tensor | None,
                *weights: torch.Tensor) -> torch.Tensor:
        steps, batch, width = x_proj.shape
        cell = _CellBuffers(x_proj.new_empty(len(plan.activations), steps, batch, width),
                            x_proj.new_empty(len(plan.activations), steps, batch, width // 2))
        output = x_proj.new_empty(steps, batch, width // 2)
        outputs, inputs = output.unbind(0), x_proj.unbind(0)
        dropped = x_proj.new_empty(batch, width // 2) if node_mask is not None else None  # a node's masked input
        for t in range(steps):
            h_prev = hidden if t == 0 else outputs[t - 1]
            recurrent = h_prev if hidden_mask is None else h_prev * hidden_mask
            torch.addmm(inputs[t], recurrent, w_h, out=cell.gates[0][t])
            _highway(cell.gate[0][t], cell.value[0][t], h_prev, plan.activations[0], out=cell.nodes[0][t])
            for j, weight in enumerate(weights, start=1):
                prev = cell.nodes[plan.inputs[j - 1]][t]
                read = prev if node_mask is None else torch.mul(prev, node_mask, out=dropped)
                torch.mm(read, weight, out=cell.gates[j][t])
                _highway(cell.gate[j][t], cell.value[j][t], prev, plan.activations[j], out=cell.nodes[j][t])
            _mean_of([cell.nodes[n][t] for n in plan.loose_ends], out=outputs[t])
        ctx.save_for_backward(hidden, w_h, output, *weights)
        ctx.cell, ctx.plan, ctx.hidden_mask, ctx.node_mask = cell, plan, hidden_mask, node_mask
        return output

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        if ctx.cell is None:
            raise RuntimeError("the recurrent cell's backward ran twice; its saved values are spent "
                               "(retain_graph=True is not supported through the cell)")
        hidden, w_h, output, *weights = ctx.saved_tensors
        cell, plan, hidden_mask, node_mask = ctx.cell, ctx.plan, ctx.hidden_mask, ctx.node_mask
        ctx.cell = None
        # Transposed copies: a product with a contiguous matrix runs ~15% faster than with a .t() view.
        weights_t = [weight.t().contiguous() for weight in weights]
        w_h_t = w_h.t().contiguous()
        steps, batch, size = output.shape
        outputs, grad_outputs = output.unbind(0), grad_output.unbind(0)
        all_grad_nodes = output.new_empty(len(plan.activations), batch, size)  # dL/dh_j at step t
        grad_nodes = all_grad_nodes.unbind(0)
        grad_hidden = output.new_zeros(batch, size)                            # dL/dh_{t-1}
        grad_cell_output = output.new_empty(batch, size)                       # dL/dh_t
        scratch = output.new_empty(3, batch, size).unbind(0)
        loose_share = 1 / len(plan.loose_ends)
        for t in reversed(range(steps)):
            torch.add(grad_outputs[t], grad_hidden, out=grad_cell_output)
            all_grad_nodes.zero_()
            for n in plan.loose_ends:
                grad_nodes[n].add_(grad_cell_output, alpha=loose_share)
            grad_hidden.zero_()
            # Readers come after the nodes they read, so reverse node order meets every reader first.
            for j in reversed(range(1, len(plan.activations))):
                prev = plan.inputs[j - 1]
                _highway_backward(cell.gate[j][t], cell.value[j][t], cell.nodes[prev][t], grad_nodes[j],
                                  plan.activations[j], grad_nodes[prev], scratch)
                if node_mask is None:
                    grad_nodes[prev].addmm_(cell.gates[j][t], weights_t[j - 1])
                else:
                    grad_nodes[prev].addcmul_(torch.mm(cell.gates[j][t], weights_t[j - 1], out=scratch[2]),
                                              node_mask)
            h_prev = hidden if t == 0 else outputs[t - 1]
            _highway_backward(cell.gate[0][t], cell.value[0][t], h_prev, grad_nodes[0], plan.activations[0],
                              grad_hidden, scratch)
            if hidden_mask is None:
                grad_hidden.addmm_(cell.gates[0][t], w_h_t)
            else:
                grad_hidden.addcmul_(cell.gates[0][t] @ w_h_t, hidden_mask)
        # The gates now hold dL/d(pre-activation) of every node and step: one matmul per weight.
        flat = cell.all_gates.flatten(1, 2)    # (n, T*B, 2H)
        grad_w_h = None
        if ctx.needs_input_grad[2]:
            recurrent = torch.cat([hidden[None], output[:-1]])
            if hidden_mask is not None:
                recurrent = recurrent * hidden_mask
            grad_w_h = recurrent.flatten(0, 1).t() @ flat[0]
        read = {n: cell.all_nodes[n] if node_mask is None else cell.all_nodes[n] * node_mask
                for n in set(plan.inputs)}   # what the edges multiplied: each read node once
        grad_weights = [read[plan.inputs[j - 1]].flatten(0, 1).t() @ flat[j]
                        if ctx.needs_input_grad[5 + j] else None for j in range(1, len(weights) + 1)]
        # node 1's pre-activation is x_proj[t] + (...): its gradient is the x projection's
        return cell.all_gates[0], grad_hidden, grad_w_h, None, None, None, *grad_weights


class _CellBuffers:
    """The cell's saved values, with per node and step views made once: indexing inside the time
    loops would create some ten thousand views per training step."""

    def __init__(self, gates: torch.Tensor, nodes: torch.Tensor):
        size = nodes.shape[-1]
        self.all_gates, self.all_nodes = gates, nodes             # (n, T, B, 2H) and (n, T, B, H)
        self.gates = [node.unbind(0) for node in gates]           # [j][t]: [c | f] of node j at step t
        self.gate = [node.unbind(0) for node in gates[..., :size]]
        self.value = [node.unbind(0) for node in gates[..., size:]]
        self.nodes = [node.unbind(0) for node in nodes]           # [j][t]: h_j at step t


_ACTIVATE_IN_PLACE: dict[str, Callable[[torch.Tensor], object]] = {
    "tanh": torch.Tensor.tanh_, "relu": torch.Tensor.relu_, "identity": lambda x: None,
    "sigmoid": torch.Tensor.sigmoid_}


def _highway(gate: torch.Tensor, value: torch.Tensor, carry: torch.Tensor, activation: str,
             out: torch.Tensor) -> None:
    """ENAS eq. 2: h = c * f(pre_h) + (1 - c) * carry = lerp(carry, f, c), written into `out`.
    `gate` and `value` hold pre_c and pre_h; they are activated in place to c and f for the backward."""
    gate.sigmoid_()
    _ACTIVATE_IN_PLACE[activation](value)
    torch.lerp(carry, value, gate, out=out)


def _highway_backward(gate: torch.Tensor, value: torch.Tensor, carry: torch.Tensor, grad: torch.Tensor,
                      activation: str, grad_carry: torch.Tensor, scratch: Sequence[torch.Tensor]) -> None:
    """Backward of `_highway` given dL/dh (`grad`): adds dL/dcarry into `grad_carry` and overwrites
    `gate` and `value` (c and f) with dL/dpre_c and dL/dpre_h. Derivatives are taken from outputs."""
    grad_c = torch.mul(grad, gate, out=scratch[0])                      # dL/dh * c
    grad_carry.add_(grad).sub_(grad_c)                                  # dL/dh * (1 - c)
    grad_gate = torch.sub(value, carry, out=scratch[1]).mul_(grad)     # dL/dc = dL/dh * (f - carry)
    if activation == "tanh":      # f' = 1 - f^2
        torch.addcmul(grad_c, grad_c, value.mul_(value), value=-1, out=value)
    elif activation == "sigmoid":  # f' = f (1 - f)
        torch.addcmul(value, value, value, value=-1, out=value).mul_(grad_c)
    elif activation == "relu":    # f' = 1 where f > 0
        value.sign_().mul_(grad_c)
    else:                         # identity
        value.copy_(grad_c)
    torch.addcmul(gate, gate, gate, value=-1, out=gate).mul_(grad_gate)  # sigmoid' = c (1 - c)


def _mean_of(loose_ends: Sequence[torch.Tensor], out: torch.Tensor) -> None:
    """h_t = mean of the loose ends, as a running sum then one scale (no stacked copy)."""
    if len(loose_ends) == 1:
        out.copy_(loose_ends[0])
        return
    torch.add(loose_ends[0], loose_ends[1], out=out)
    for node in loose_ends[2:]:
        out.add_(node)
    out.mul_(1 / len(loose_ends))


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
        return _decisions(self.cfg.nodes)

    def supernet(self) -> RecurrentLM:
        return RecurrentLM(self.vocab_size, self.cfg.nodes, self.cfg)

    def child(self, arch: Architecture) -> RecurrentLM:
        check_space(arch, self.name)
        plan = RecurrentPlan.of(arch)
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


def _decisions(nodes: int) -> list[Decision]:
    """f_1, then for each later node its input among the earlier nodes and its activation."""
    decisions = [op("node1.activation", ACTIVATIONS, ends_node=True)]
    for j in range(2, nodes + 1):
        decisions += [index(f"node{j}.input", j - 1),
                      op(f"node{j}.activation", ACTIVATIONS, ends_node=True)]
    return decisions
