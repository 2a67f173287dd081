"""The recurrent cell's computation: an architecture decoded for execution (`RecurrentPlan`) and
the cell run over time (ENAS eqs. 1-2), with a hand-written backward and a traceable twin for export.

The language model around the cell, the supernet's weights and the search space are in recurrent.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from enas.spaces.architecture import Architecture
from enas.spaces.decoder_loss import in_autocast_dtype

ACTIVATIONS = ("tanh", "relu", "identity", "sigmoid")
OUTPUTS = ("loose_ends", "all_nodes")


@dataclass(frozen=True)
class RecurrentPlan:
    """An architecture decoded for execution: per node its input, activation and weight row."""

    inputs: tuple[int, ...]        # inputs[j-1] = node read by node j (0-based, for j >= 1)
    activations: tuple[str, ...]   # one per node
    loose_ends: tuple[int, ...]    # nodes that no other node reads
    edge_rows: tuple[int, ...]     # row of the supernet's (node, input) edge used by node j >= 1
    outputs: tuple[int, ...]       # nodes averaged into h_t

    @classmethod
    def of(cls, arch: Architecture, output: str = "loose_ends") -> RecurrentPlan:
        """`output`: which nodes h_t averages, loose_ends (the paper, melodyguan/enas) or all_nodes
        (every node but node 1: enas_lm)."""
        choices = arch.choices
        activations = [ACTIVATIONS[choices[0]]]
        inputs = []
        for node in range(1, (len(choices) + 1) // 2):
            inputs.append(choices[2 * node - 1])
            activations.append(ACTIVATIONS[choices[2 * node]])
        read = set(inputs)
        loose = tuple(n for n in range(len(activations)) if n not in read)
        rows = tuple(edge_row(node, prev) for node, prev in enumerate(inputs, start=1))
        # enas_lm src/child.py _rnn_fn: next_s = add_n(layers[1:]) / num_layers (a 1-node cell has only node 1)
        every = tuple(range(1, len(activations))) or (0,)
        return cls(tuple(inputs), tuple(activations), loose, rows, loose if output == "loose_ends" else every)


def edge_row(node: int, prev: int) -> int:
    """Row of the (node, input) pair in the supernet's stacked edge weights (0-based nodes)."""
    return node * (node - 1) // 2 + prev


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
        h_prev = torch.stack([nodes[n] for n in plan.outputs]).mean(0)
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
            _mean_of([cell.nodes[n][t] for n in plan.outputs], out=outputs[t])
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
        output_share = 1 / len(plan.outputs)
        for t in reversed(range(steps)):
            torch.add(grad_outputs[t], grad_hidden, out=grad_cell_output)
            all_grad_nodes.zero_()
            for n in plan.outputs:
                grad_nodes[n].add_(grad_cell_output, alpha=output_share)
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


def _mean_of(outputs: Sequence[torch.Tensor], out: torch.Tensor) -> None:
    """h_t = mean of the output nodes, as a running sum then one scale (no stacked copy)."""
    if len(outputs) == 1:
        out.copy_(outputs[0])
        return
    torch.add(outputs[0], outputs[1], out=out)
    for node in outputs[2:]:
        out.add_(node)
    out.mul_(1 / len(outputs))

