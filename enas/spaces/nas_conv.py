"""The convolutional search space of Zoph & Le 2017 (Neural Architecture Search with Reinforcement
Learning, sections 3.3 and 4.1): a stack of L convolutions whose sizes and inputs the controller picks.

Per layer the controller picks a filter height and a filter width from {1, 3, 5, 7}, a number of
filters from {24, 36, 48, 64} (times `filters_scale`) and, with `strides`, a stride from {1, 2, 3}.
From the second layer on it picks the set of earlier layers the layer reads: the paper's anchor
sigmoids, the controller's skip decision. Bit j of layer i (0-based, j < i) is set when layer i
reads layer j's output; the image is no bit.

The paper's rules for building the network, and the choices made where it is silent:
- A layer's inputs are concatenated along depth, smaller maps zero-padded to the largest. The
  padding goes at the bottom and right: with "same" padding, pixel (r, c) of a stride-s output is
  centred on input pixel (s*r, s*c), so maps of every stride agree at the top-left corner.
- A layer that reads no earlier layer reads the image (the first layer always does).
- Every output that no later layer reads is concatenated, padded likewise, for the classifier:
  global average pooling over the padded map, dropout, one linear layer.
- A layer is a k_h x k_w convolution ("same" padding, k // 2 per dimension), batch norm, ReLU; the
  paper says only "ReLU and batch norm", this is the order of the ENAS macro branches.

Choices, in controller order: per layer its height, width and filters (and stride) as option
indices, then from the second layer on its skip bits: 4L-1 choices for L layers, 5L-1 with strides.
Flattened, that is the official string (style zoph_le): per layer `height width filters [stride]`
indices, then its skip bits; L(L+5)/2 numbers, L(L+7)/2 with strides.

Supernet (ENAS weight sharing): layer i holds one 7x7 weight over input blocks: the image, then the
widest output of each earlier layer. An architecture uses the centred k_h x k_w window, the first
`filters` output channels and, of each block it reads, as many channels as that input has. Batch
norm keeps the widest layer's statistics and uses the first `filters`; the classifier has one block
of columns per layer, sliced the same way.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from enas.errors import UserError
from enas.fields import option
from enas.spaces.architecture import Architecture, Choice, parse_ints
from enas.spaces.base import Decision, ImageShape, check_choices, check_space, check_style, op, skip
from enas.spaces.conv_ops import global_pool, init_weights
from enas.spaces.graph import Edge, Graph, Node

HEIGHTS = (1, 3, 5, 7)       # the paper's options (section 4.1); option indices are the choices
WIDTHS = (1, 3, 5, 7)
FILTERS = (24, 36, 48, 64)   # before `filters_scale`
STRIDES = (1, 2, 3)
MAX_KERNEL = 7               # the supernet's window, cropped to every height and width
STYLES = ("zoph_le",)        # per layer height, width, filters [, stride] indices, then its skip bits


@dataclass
class NasConvConfig:
    """The Zoph & Le convolutional space: L layers of chosen kernels, filters, strides and inputs."""

    layers: int = option(4, "L: convolutional layers (the paper grew the depth during its search, "
                         "up to 15)", min=1)
    strides: bool = option(False, "the controller also picks each layer's stride from 1, 2, 3 (the "
                           "paper's second experiment); off: stride 1 everywhere, as in its first")
    filters_scale: float = option(1.0, "multiplies the filter counts 24, 36, 48, 64 (rounded, at least 1); "
                                  "0.25 gives 6, 9, 12, 16 for CPU runs", min=0.01)
    dropout: float = option(0.0, "dropout before the classifier", min=0.0, max=0.99)


def filter_counts(scale: float) -> tuple[int, ...]:
    """The filter counts the options stand for at `filters_scale`."""
    return tuple(max(1, round(count * scale)) for count in FILTERS)


@dataclass(frozen=True)
class LayerSpec:
    """One layer of an architecture, in sizes."""

    height: int
    width: int
    filters: int
    stride: int
    inputs: tuple[int, ...]   # the earlier layers it reads (0-based); () reads the image


@dataclass(frozen=True)
class NasConvPlan:
    """An architecture decoded for execution."""

    layers: tuple[LayerSpec, ...]

    @classmethod
    def of(cls, arch: Architecture, scale: float = 1.0) -> NasConvPlan:
        counts = filter_counts(scale)
        return cls(tuple(LayerSpec(HEIGHTS[h], WIDTHS[w], counts[f], STRIDES[s],
                                   tuple(j for j, bit in enumerate(bits) if bit))
                         for h, w, f, s, bits in _per_layer(arch.choices)))

    def loose_ends(self) -> tuple[int, ...]:
        """The layers no later layer reads: the classifier's inputs (the last layer among them)."""
        read = {j for layer in self.layers for j in layer.inputs}
        return tuple(i for i in range(len(self.layers)) if i not in read)


class SlicedBatchNorm(nn.BatchNorm2d):
    """Batch norm of the supernet's widest layer that normalises the first C channels of whatever it
    is given, updating those channels' running statistics in place (the buffers' slices are views)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C, H, W), C <= num_features -> the same shape."""
        c = x.shape[1]
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # a plain average over the batches (the task's calibration)
                factor = 1.0 / float(self.num_batches_tracked)
        return F.batch_norm(x, self.running_mean[:c], self.running_var[:c], self.weight[:c], self.bias[:c],
                            self.training, factor, self.eps)


class NasConvLayer(nn.Module):
    """Convolution -> batch norm -> ReLU over a layer's concatenated inputs.

    A child's layer (`spec` given) is an nn.Conv2d and nn.BatchNorm2d of its own sizes, `blocks` its
    inputs' widths. The supernet's holds a 7x7 convolution over `blocks` (the widest each input can
    be) and `filters` outputs, and slices it to the layer it is given."""

    def __init__(self, blocks: Sequence[int], filters: int, spec: LayerSpec | None = None):
        super().__init__()
        self.spec = spec
        if spec is not None:
            self.conv = nn.Conv2d(sum(blocks), spec.filters, (spec.height, spec.width), spec.stride,
                                  (spec.height // 2, spec.width // 2), bias=False)
            self.bn = nn.BatchNorm2d(spec.filters)
            init_weights(self)
            return
        self.offsets = tuple(itertools.accumulate(blocks, initial=0))
        self.conv = nn.Conv2d(sum(blocks), filters, MAX_KERNEL, bias=False)
        self.bn = SlicedBatchNorm(filters)
        # He-normal per block, as for a convolution of that input alone: the fan-in of every block
        # at once would start most architectures at a tiny scale.
        for start, end in zip(self.offsets, self.offsets[1:]):
            nn.init.kaiming_normal_(self.conv.weight[:, start:end], mode="fan_in", nonlinearity="relu")

    def forward(self, x: torch.Tensor, spec: LayerSpec, reads: Sequence[tuple[int, int]]) -> torch.Tensor:
        """x (B, C_in, H, W) -> (B, filters, ceil(H / stride), ceil(W / stride)).

        `reads`: (block, channels) of each input concatenated in x, in order (the supernet's slices)."""
        if self.spec is not None:
            return F.relu(self.bn(self.conv(x)))
        out = F.conv2d(x, self.kernel(spec, reads), None, spec.stride, (spec.height // 2, spec.width // 2))
        return F.relu(self.bn(out))

    def kernel(self, spec: LayerSpec, reads: Sequence[tuple[int, int]]) -> torch.Tensor:
        """The supernet's weight for `spec`: (filters, C_in, height, width)."""
        top, left = (MAX_KERNEL - spec.height) // 2, (MAX_KERNEL - spec.width) // 2
        window = self.conv.weight[:spec.filters, :, top:top + spec.height, left:left + spec.width]
        return _columns(window, [(self.offsets[block], channels) for block, channels in reads])


class NasConvNetwork(nn.Module):
    """Layers and classifier. The supernet (plan None) runs any architecture given to `forward`; a
    child (plan given) holds only its own sizes and runs the same code."""

    def __init__(self, cfg: NasConvConfig, shape: ImageShape, plan: NasConvPlan | None = None):
        super().__init__()
        self.plan, self.scale = plan, cfg.filters_scale
        self.widest = max(filter_counts(cfg.filters_scale))
        self.layers = nn.ModuleList()
        if plan is None:
            for i in range(cfg.layers):
                self.layers.append(NasConvLayer([shape.channels] + [self.widest] * i, self.widest))
            self.classifier = nn.Linear(self.widest * cfg.layers, shape.classes)  # a block per layer
        else:
            for i, spec in enumerate(plan.layers):
                widths = [plan.layers[j].filters for j in spec.inputs] or [shape.channels]
                self.layers.append(NasConvLayer(widths, spec.filters, spec))
            self.classifier = nn.Linear(sum(plan.layers[j].filters for j in plan.loose_ends()), shape.classes)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, images: torch.Tensor, arch: Architecture | None = None) -> tuple[torch.Tensor, None]:
        """images (B, C, H, W) -> logits (B, classes), None (the network has no auxiliary head)."""
        if self.plan is None and arch is None:
            raise ValueError("the supernet needs the architecture to run")
        plan = self.plan or NasConvPlan.of(arch, self.scale)
        if len(plan.layers) != len(self.layers):
            raise ValueError(f"an architecture of {len(plan.layers)} layers in a network of {len(self.layers)}")
        outputs: list[torch.Tensor] = []
        for layer, spec in zip(self.layers, plan.layers):
            inputs = [outputs[j] for j in spec.inputs] or [images]
            reads = [(j + 1, plan.layers[j].filters) for j in spec.inputs] or [(0, images.shape[1])]
            outputs.append(layer(pad_concat(inputs), spec, reads))
        ends = plan.loose_ends()
        features = self.dropout(global_pool(pad_concat([outputs[j] for j in ends])))
        if self.plan is not None:
            return self.classifier(features), None
        weight = _columns(self.classifier.weight, [(j * self.widest, plan.layers[j].filters) for j in ends])
        return F.linear(features, weight, self.classifier.bias), None


def pad_concat(maps: Sequence[torch.Tensor]) -> torch.Tensor:
    """Maps (B, C_k, H_k, W_k) -> (B, sum C_k, max H_k, max W_k): each zero-padded at the bottom and
    right to the largest, then concatenated along depth (paper section 3.3)."""
    height, width = max(m.shape[2] for m in maps), max(m.shape[3] for m in maps)
    padded = [m if m.shape[2:] == (height, width) else F.pad(m, (0, width - m.shape[3], 0, height - m.shape[2]))
              for m in maps]
    return padded[0] if len(padded) == 1 else torch.cat(padded, dim=1)


def _columns(weight: torch.Tensor, blocks: Sequence[tuple[int, int]]) -> torch.Tensor:
    """The columns (dim 1) of `weight` from each (start, count) block, concatenated in order."""
    parts = [weight[:, start:start + count] for start, count in blocks]
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


class NasConvSpace:
    """The Zoph & Le convolutional space on images of a given shape."""

    name = "nas_conv"
    config = NasConvConfig
    data = ImageShape
    initial_anchors = 0
    aux_weight = 0.0  # no auxiliary head

    def __init__(self, cfg: NasConvConfig, shape: ImageShape, train_steps: int = 0):
        self.cfg, self.shape = cfg, shape

    def decisions(self) -> list[Decision]:
        return _decisions(self.cfg.layers, self.cfg.strides)

    def supernet(self) -> NasConvNetwork:
        return NasConvNetwork(self.cfg, self.shape)

    def child(self, arch: Architecture) -> NasConvNetwork:
        check_space(arch, self.name)
        return NasConvNetwork(self.cfg, self.shape, NasConvPlan.of(arch, self.cfg.filters_scale))

    @classmethod
    def check(cls, choices: Sequence[Choice]) -> None:
        layers, strides = _layout(choices)
        check_choices(cls.name, _decisions(layers, strides), choices)

    @classmethod
    def to_official(cls, choices: Sequence[Choice], style: str | None) -> str:
        check_style(cls.name, style, STYLES)
        return " ".join(" ".join(map(str, c)) if isinstance(c, tuple) else str(c) for c in choices)

    @classmethod
    def from_official(cls, text: str, style: str | None) -> tuple[Choice, ...]:
        check_style(cls.name, style, STYLES)
        numbers = parse_ints(text, "a nas_conv architecture string")
        # the two length series never meet: L(L+5)/2 = M(M+7)/2 has no solution in whole numbers
        for strides in (False, True):
            layers = next((n for n in range(1, len(numbers) + 1) if _string_length(n, strides) == len(numbers)), 0)
            if layers:
                break
        else:
            raise UserError(f"a nas_conv string has L(L+5)/2 numbers for L layers, L(L+7)/2 with strides (per "
                            f"layer height, width, filters [, stride] indices, then one bit per earlier layer); "
                            f"got {len(numbers)}, the nearest are {_nearest(len(numbers), _string_length, False)}, "
                            f"or {_nearest(len(numbers), _string_length, True)} with strides")
        choices: list[Choice] = []
        position, sizes = 0, 3 + strides
        for i in range(layers):
            choices += numbers[position:position + sizes]
            if i:
                choices.append(tuple(numbers[position + sizes:position + sizes + i]))
            position += sizes + i
        return tuple(choices)

    @classmethod
    def canonical(cls, arch: Architecture) -> tuple[Choice, ...]:
        """The choices as they are: every layer's sizes and skips name one network."""
        return arch.choices

    @classmethod
    def render(cls, arch: Architecture) -> tuple[str, Graph]:
        """The network as text and as a graph, with the paper's filter counts (scale 1)."""
        plan = NasConvPlan.of(arch)
        lines, nodes, edges = [], [Node("image", "image", terminal=True)], []
        for i, spec in enumerate(plan.layers):
            stride = f", stride {spec.stride}" if spec.stride > 1 else ""
            reads = " + ".join(f"layer {j + 1}" for j in spec.inputs) or "image"
            lines.append(f"layer {i + 1}: conv {spec.height}x{spec.width}, {spec.filters} filters{stride} ({reads})")
            nodes.append(Node(f"layer{i + 1}", f"{i + 1}: {spec.height}x{spec.width}, {spec.filters}{stride}"))
            edges += [Edge(source, f"layer{i + 1}") for source in [f"layer{j + 1}" for j in spec.inputs] or ["image"]]
        ends = plan.loose_ends()
        lines.append("classifier: " + " + ".join(f"layer {j + 1}" for j in ends))
        nodes.append(Node("classifier", "classifier", terminal=True))
        edges += [Edge(f"layer{j + 1}", "classifier") for j in ends]
        return "\n".join(lines), Graph("network", "TB", tuple(nodes), tuple(edges))


def _string_length(layers: int, strides: bool) -> int:
    """Numbers in the official string of `layers` layers: their sizes, then i skip bits for layer i."""
    return (3 + strides) * layers + layers * (layers - 1) // 2


def _choice_count(layers: int, strides: bool) -> int:
    return (4 + strides) * layers - 1


def _nearest(count: int, length: Callable[[int, bool], int], strides: bool) -> str:
    """The valid lengths next to `count`, e.g. '7 or 11'."""
    below = [length(n, strides) for n in range(1, count + 1) if length(n, strides) < count]
    above = next(length(n, strides) for n in itertools.count(1) if length(n, strides) > count)
    return f"{below[-1]} or {above}" if below else str(above)


def _layout(choices: Sequence[Choice]) -> tuple[int, bool]:
    """(layers, strides) of an architecture's choices, told apart by their count."""
    count = len(choices)
    fits = [(n, strides) for strides in (False, True) for n in range(1, count + 1)
            if _choice_count(n, strides) == count]
    if not fits:
        raise UserError(f"a nas_conv architecture has 4L-1 choices for L layers, 5L-1 with strides (per layer "
                        f"height, width, filters [, stride], then skip bits from the second layer on); got "
                        f"{count}, the nearest are {_nearest(count, _choice_count, False)}, or "
                        f"{_nearest(count, _choice_count, True)} with strides")
    if len(fits) == 2:  # 20k-1 choices: 5k layers, or 4k with strides; the second layer's skips tell
        return fits[0] if isinstance(choices[6], tuple) else fits[1]
    return fits[0]


def _per_layer(choices: Sequence[Choice]) -> list[tuple[int, int, int, int, tuple[int, ...]]]:
    """(height, width, filters, stride, skip bits) option indices per layer; stride 0 without strides."""
    layers, strides = _layout(choices)
    sizes, position, out = 3 + strides, 0, []
    for i in range(layers):
        h, w, f, *s = choices[position:position + sizes]
        bits = choices[position + sizes] if i else ()
        out.append((h, w, f, s[0] if strides else 0, bits))
        position += sizes + (1 if i else 0)
    return out


def _decisions(layers: int, strides: bool) -> list[Decision]:
    """Per layer its height, width, filters (and stride), then from the second layer on its skip bits,
    one per earlier layer. A layer's last decision stores its anchor, so layer i's skips attend over
    the anchors of layers 0..i-1 (paper: sigmoid(v^T tanh(W_prev h_j + W_curr h_i)))."""
    decisions: list[Decision] = []
    for i in range(layers):
        name = f"layer{i + 1}"
        own = [op(f"{name}.height", [f"height_{k}" for k in HEIGHTS]),
               op(f"{name}.width", [f"width_{k}" for k in WIDTHS]),
               op(f"{name}.filters", [f"filters_{k}" for k in FILTERS])]
        if strides:
            own.append(op(f"{name}.stride", [f"stride_{k}" for k in STRIDES]))
        if i:
            own.append(skip(f"{name}.skips", i))
        decisions += own[:-1] + [replace(own[-1], ends_node=True)]
    return decisions
