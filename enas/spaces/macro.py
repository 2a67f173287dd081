"""The macro (whole network) search space of ENAS (paper section 2.3).

The network is a stem and L layers. Layer i applies an op to the output before it and joins a
chosen set of earlier outputs to the result (skip connections). Skip bits are read as the
official code reads them: bit j of layer i (0-based, j < i) joins entry j of [stem, layer 0,
layer 1, ...], so a layer may skip from the stem and from every layer but the one it reads anyway.

Child and supernet differ where the official fixed and searched layers differ:
- a child's layer (official `_fixed_layer`): the op is ReLU-1x1 conv-BN then ReLU-k x k conv-BN;
  from the second layer on, the skipped outputs and the op's output are concatenated and mixed
  back to the width by ReLU-1x1 conv-BN;
- the supernet's layer (official `_enas_layer`, `_conv_branch`): the op is 1x1 conv-BN-ReLU then
  k x k conv-BN-ReLU; from the second layer on, batch norm of the sum of the op's output and the
  skipped outputs.
The op modules are the same under the same names in both. Unlike the official fixed layers,
separable ops are separable and pooling ops work (ReLU-1x1 conv-BN, then 3x3 pooling).

After layers L//3-1 and 2(L//3)-1 a factorized reduction halves every earlier output that is
still to be read and doubles the width (official `pool_layers`).

Choices, in controller order: the op of layer 0, then per later layer its op and its skip bits.
Flattened, that is the official string: per layer an op id (0 conv3, 1 sep3, 2 conv5, 3 sep5,
4 avgpool, 5 maxpool), then its skip bits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import torch
from torch import nn

from enas.errors import UserError
from enas.fields import option
from enas.spaces.architecture import Architecture, Choice, parse_ints
from enas.spaces.base import Decision, ImageShape, check_choices, check_space, check_style, op, skip
from enas.spaces.conv_ops import MACRO_OPS, FactorizedReduction, MacroBranch, global_pool, init_weights, relu_conv_bn
from enas.spaces.graph import Edge, Graph, Node

STYLES = ("enas",)  # melodyguan/enas: per layer an op id, then one skip bit per earlier output but the input


@dataclass
class MacroConfig:
    """The macro (whole network) space: L layers, each an op plus skip connections (section 2.3)."""

    layers: int = option(6, "L: layers; factorized reductions after layers L//3-1 and 2*(L//3)-1", min=1)
    filters: int = option(8, "width of the first layers (official out_filters); doubles at each reduction", min=1)
    ops: int = option(6, "the controller picks among the first N of conv_3x3, sep_conv_3x3, conv_5x5, "
                      "sep_conv_5x5, avg_pool_3x3, max_pool_3x3 (official num_branches)", min=1, max=6)
    dropout: float = option(0.0, "dropout before the classifier (official 1 - keep_prob)", min=0.0, max=0.99)


@dataclass(frozen=True)
class MacroPlan:
    """An architecture decoded for execution."""

    ops: tuple[int, ...]                 # op id per layer
    skips: tuple[tuple[int, ...], ...]   # per layer, the outputs added: 0 is the stem, k is layer k-1

    @classmethod
    def of(cls, arch: Architecture) -> MacroPlan:
        # choices: op of layer 0, then (op, skip bits) per later layer
        ops = (arch.choices[0],) + tuple(arch.choices[1::2])
        bits = ((),) + tuple(arch.choices[2::2])
        return cls(ops, tuple(tuple(j for j, b in enumerate(layer) if b) for layer in bits))

    def last_reader(self, output: int) -> int:
        """The last layer that reads `output`: the layer it is the input of, or a later skip."""
        return max([output] + [i for i, added in enumerate(self.skips) if output in added])


def pool_layers(layers: int) -> tuple[int, ...]:
    """The layers followed by a factorized reduction (official `pool_layers`; none below 3 layers)."""
    distance = layers // 3
    return (distance - 1, 2 * distance - 1) if distance else ()


class MacroLayer(nn.Module):
    """One layer: its op branches (all of them in the supernet) and how it joins its skips.

    supernet (official `_enas_layer`): BN of the sum of the op's output and the skipped outputs;
    child (official `_fixed_layer`): ReLU-1x1 conv-BN of the concatenated skipped outputs and the
    op's output, (skips + 1) x C channels back to C. The first layer has no skips, and neither."""

    def __init__(self, channels: int, op_ids: Iterable[int], first: bool, skips: int | None = None):
        super().__init__()
        fixed = skips is not None
        self.branches = nn.ModuleDict({MACRO_OPS[i]: MacroBranch(MACRO_OPS[i], channels, fixed) for i in op_ids})
        self.bn = None if first or fixed else nn.BatchNorm2d(channels)
        self.skip = None if first or not fixed else relu_conv_bn((skips + 1) * channels, channels)

    def forward(self, x: torch.Tensor, op_id: int, skips: list[torch.Tensor]) -> torch.Tensor:
        """x and skips (B, C, H, W) -> (B, C, H, W)."""
        out = self.branches[MACRO_OPS[op_id]](x)
        if self.skip is not None:
            return self.skip(torch.cat(skips + [out], dim=1))
        return out if self.bn is None else self.bn(sum(skips, out))


class MacroNetwork(nn.Module):
    """Stem, layers, classifier. The supernet (plan None) runs any architecture given to `forward`;
    a child (plan given) holds only its own ops and reductions, and its layers are the official
    fixed layers (module docstring)."""

    def __init__(self, cfg: MacroConfig, shape: ImageShape, plan: MacroPlan | None = None):
        super().__init__()
        self.plan = plan
        layers = len(plan.ops) if plan is not None else cfg.layers
        c = cfg.filters
        self.stem = nn.Sequential(nn.Conv2d(shape.channels, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c))
        self.layers = nn.ModuleList()
        self.reductions = nn.ModuleDict()
        for i in range(layers):
            if plan is None:
                self.layers.append(MacroLayer(c, range(cfg.ops), i == 0))
            else:
                self.layers.append(MacroLayer(c, [plan.ops[i]], i == 0, len(plan.skips[i])))
            if i in pool_layers(layers):
                kept = [k for k in range(i + 2) if plan is None or plan.last_reader(k) > i]
                self.reductions[f"after{i}"] = nn.ModuleDict(
                    {f"output{k}": FactorizedReduction(c, 2 * c) for k in kept})
                c *= 2
        self.dropout = nn.Dropout(cfg.dropout)
        self.classifier = nn.Linear(c, shape.classes)
        init_weights(self)

    def forward(self, images: torch.Tensor, arch: Architecture | None = None) -> tuple[torch.Tensor, None]:
        """images (B, C, H, W) -> logits (B, classes), None (the macro network has no auxiliary head)."""
        if self.plan is None and arch is None:
            raise ValueError("the supernet needs the architecture to run")
        plan = self.plan or MacroPlan.of(arch)
        outputs: list[torch.Tensor | None] = [self.stem(images)]
        for i, layer in enumerate(self.layers):
            outputs.append(layer(outputs[i], plan.ops[i], [outputs[k] for k in plan.skips[i]]))
            if f"after{i}" in self.reductions:
                reduce = self.reductions[f"after{i}"]
                # Only outputs still to be read are reduced; the others are never needed again.
                outputs = [reduce[f"output{k}"](out) if plan.last_reader(k) > i else None
                           for k, out in enumerate(outputs)]
        return self.classifier(self.dropout(global_pool(outputs[-1]))), None


class MacroSpace:
    """The macro space on images of a given shape."""

    name = "macro"
    config = MacroConfig
    data = ImageShape
    initial_anchors = 0
    aux_weight = 0.0  # no auxiliary head in the official macro network

    def __init__(self, cfg: MacroConfig, shape: ImageShape, train_steps: int = 0):
        self.cfg, self.shape = cfg, shape

    def decisions(self) -> list[Decision]:
        return _decisions(self.cfg.layers, self.cfg.ops)

    def supernet(self) -> MacroNetwork:
        return MacroNetwork(self.cfg, self.shape)

    def child(self, arch: Architecture) -> MacroNetwork:
        check_space(arch, self.name)
        return MacroNetwork(self.cfg, self.shape, MacroPlan.of(arch))

    @classmethod
    def check(cls, choices: Sequence[Choice]) -> None:
        if len(choices) % 2 == 0:
            raise UserError(f"a macro architecture has 2L-1 choices for L layers (an op per layer, skip bits "
                            f"from the second on), got {len(choices)}")
        check_choices(cls.name, _decisions((len(choices) + 1) // 2, len(MACRO_OPS)), choices)

    @classmethod
    def to_official(cls, choices: Sequence[Choice], style: str | None) -> str:
        check_style(cls.name, style, STYLES)
        return " ".join(" ".join(map(str, c)) if isinstance(c, tuple) else str(c) for c in choices)

    @classmethod
    def from_official(cls, text: str, style: str | None) -> tuple[Choice, ...]:
        check_style(cls.name, style, STYLES)
        numbers = parse_ints(text, "a macro architecture string")
        layers = (math.isqrt(8 * len(numbers) + 1) - 1) // 2
        if not numbers or layers * (layers + 1) // 2 != len(numbers):
            raise UserError(f"a macro string has L(L+1)/2 numbers for L layers (per layer an op id, then one "
                            f"skip bit per earlier layer), got {len(numbers)}")
        choices: list[Choice] = []
        for i in range(layers):
            start = i * (i + 1) // 2
            choices.append(numbers[start])
            if i:
                choices.append(tuple(numbers[start + 1:start + 1 + i]))
        return tuple(choices)

    @classmethod
    def canonical(cls, arch: Architecture) -> tuple[Choice, ...]:
        """Every encoding is its own network: a layer's op and skips are each named once."""
        return arch.choices

    @classmethod
    def render(cls, arch: Architecture) -> tuple[str, Graph]:
        """The network as text and as a graph (skip connections dashed)."""
        plan = MacroPlan.of(arch)
        pools = pool_layers(len(plan.ops))
        lines, nodes, edges = [], [Node("out0", "stem", terminal=True)], []
        for i, op_id in enumerate(plan.ops):
            added = "".join(f" + {_output(k)}" for k in plan.skips[i])
            lines.append(f"layer {i + 1}: {MACRO_OPS[op_id]}({_output(i)}){added}")
            nodes.append(Node(f"out{i + 1}", f"{i + 1}: {MACRO_OPS[op_id]}"))
            edges.append(Edge(f"out{i}", f"out{i + 1}"))
            edges += [Edge(f"out{k}", f"out{i + 1}", dashed=True) for k in plan.skips[i]]
            if i in pools:
                lines.append("  (factorized reduction: half the size, twice the width)")
        return "\n".join(lines), Graph("network", "TB", tuple(nodes), tuple(edges))


def _output(k: int) -> str:
    return "stem" if k == 0 else f"layer {k}"


def _decisions(layers: int, ops: int) -> list[Decision]:
    """The op of layer 1, then per later layer its op and its skip bits; one anchor per layer."""
    options = MACRO_OPS[:ops]
    decisions = [op("layer1.op", options, ends_node=True)]
    for i in range(1, layers):
        decisions += [op(f"layer{i + 1}.op", options), skip(f"layer{i + 1}.skips", i, ends_node=True)]
    return decisions
