"""The NAS-Bench-201 ops and the residual block between its stages (Dong & Yang, ICLR 2020), as
the benchmark's code builds them (D-X-Y/AutoDL-Projects, xautodl/models/cell_operations.py), so
that a network built here is the network the benchmark's tables describe.

Every op keeps the width and the size of its input: the cells of a stage never reduce; the
stride-2 residual block between stages does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from enas.spaces.conv_ops import pool, relu_conv_bn

# The benchmark's op order: an op's id is its position, as in the benchmark's tables.
NB201_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")


@dataclass(frozen=True)
class Norm:
    """How the cells' batch norms are built. The benchmark's search model takes both from its
    arguments (ENAS: no affine parameters, batch statistics); its evaluation network uses affine
    batch norms with running statistics (`EVALUATION`)."""

    affine: bool
    track_running_stats: bool


EVALUATION = Norm(affine=True, track_running_stats=True)


class Zero(nn.Module):
    """The `none` op: zeros of the input's shape. Written as x * 0 like the benchmark's `Zero`, so
    that a non-finite input stays visible."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


def nb201_op(name: str, channels: int, norm: Norm) -> nn.Module:
    """One op of NB201_OPS at a fixed width, stride 1."""
    if name == "none":
        return Zero()
    if name == "skip_connect":
        return nn.Identity()
    if name in ("nor_conv_1x1", "nor_conv_3x3"):   # ReLU-conv-BN
        return relu_conv_bn(channels, channels, int(name[-1]), 1, norm.affine, norm.track_running_stats)
    if name == "avg_pool_3x3":                     # stride 1, padding 1, count_include_pad=False
        return pool("avg")
    raise ValueError(f"unknown NAS-Bench-201 op {name!r}; ops: {', '.join(NB201_OPS)}")


class ResidualBlock(nn.Module):
    """The benchmark's stride-2 ResNetBasicblock between stages: ReLU-conv3x3(stride 2)-BN then
    ReLU-conv3x3-BN, plus a shortcut of 2x2 average pooling and a 1x1 convolution (no BN in it).
    Its batch norms are affine with running statistics in the search model too, as the benchmark's."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv_a = relu_conv_bn(c_in, c_out, 3, 2)
        self.conv_b = relu_conv_bn(c_out, c_out, 3, 1)
        self.shortcut = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C_in, H, W) -> (B, C_out, H/2, W/2)."""
        return self.shortcut(x) + self.conv_b(self.conv_a(x))
