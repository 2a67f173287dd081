"""Convolutional building blocks shared by the micro, macro and nb201 spaces, and their op tables.

The blocks follow the official ENAS code (melodyguan/enas, src/cifar10/*_child.py): separable
convolutions are depthwise then pointwise with no activation in between, pooling is 3x3 with
"SAME" padding (padding not counted in averages), and a factorized reduction halves the spatial
size with two 1x1 convolutions on offset grids instead of one strided convolution that would skip
every other pixel. A supernet and a child are the same classes; a child holds only the modules its
architecture uses, under the same names as in the supernet.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# Op ids are the positions in these tuples: the numbers of the official architecture strings.
MICRO_OPS = ("sep_conv_3x3", "sep_conv_5x5", "avg_pool_3x3", "max_pool_3x3", "identity")
MACRO_OPS = ("conv_3x3", "sep_conv_3x3", "conv_5x5", "sep_conv_5x5", "avg_pool_3x3", "max_pool_3x3")


def relu_conv_bn(c_in: int, c_out: int, kernel: int = 1, stride: int = 1, affine: bool = True,
                 track_running_stats: bool = True) -> nn.Sequential:
    """ReLU -> k x k convolution -> batch norm: how the official code adapts widths between layers.

    A batch norm without affine parameters leaves the convolution its bias, as NAS-Bench-201's
    ReLUConvBN does (`bias=not affine`); with them, the norm's shift makes a bias redundant."""
    return nn.Sequential(nn.ReLU(), nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=not affine),
                         nn.BatchNorm2d(c_out, affine=affine, track_running_stats=track_running_stats))


def separable(c_in: int, c_out: int, kernel: int, stride: int = 1) -> nn.Sequential:
    """Depthwise k x k then pointwise 1x1 (tf.nn.separable_conv2d), no activation in between."""
    return nn.Sequential(nn.Conv2d(c_in, c_in, kernel, stride, kernel // 2, groups=c_in, bias=False),
                         nn.Conv2d(c_in, c_out, 1, bias=False))


def sep_conv_stack(channels: int, kernel: int, stride: int = 1, repeats: int = 2) -> nn.Sequential:
    """The micro op: (ReLU -> separable -> BN) stacked `repeats` times, the stride on the first."""
    layers: list[nn.Module] = []
    for i in range(repeats):
        layers += [nn.ReLU(), separable(channels, channels, kernel, stride if i == 0 else 1),
                   nn.BatchNorm2d(channels)]
    return nn.Sequential(*layers)


def pool(kind: str, stride: int = 1) -> nn.Module:
    """3x3 pooling with "SAME" padding; TF averages only the pixels inside the image."""
    if kind == "avg":
        return nn.AvgPool2d(3, stride, 1, count_include_pad=False)
    return nn.MaxPool2d(3, stride, 1)


class FactorizedReduction(nn.Module):
    """Halve height and width without dropping pixels: a 1x1 convolution of the even grid and one of
    the grid shifted by a pixel, concatenated, then batch norm.

    The official code writes each half as a 1x1 convolution with stride 2. Here each grid is taken
    first (`x[:, :, ::2, ::2]`) and convolved with stride 1: the same numbers, and no call of a
    oneDNN kernel that corrupts the heap on AVX2-only CPUs for channels-last 1x1 stride-2
    convolutions at small widths (README, Known issues). It costs the block some 10-20% (the
    gathered grids are copied), a small share of a step."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        if c_out % 2:
            raise ValueError(f"a factorized reduction needs an even output width, got {c_out}")
        self.even = nn.Conv2d(c_in, c_out // 2, 1, bias=False)
        self.odd = nn.Conv2d(c_in, c_out // 2, 1, bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C_in, H, W) -> (B, C_out, ceil(H/2), ceil(W/2))."""
        # the official pad-right-bottom-then-crop shift: odd rows and columns, a zero row or
        # column where H or W is odd
        shifted = F.pad(x, (0, 1, 0, 1))[:, :, 1::2, 1::2]
        return self.bn(torch.cat([self.even(x[:, :, ::2, ::2]), self.odd(shifted)], dim=1))


def micro_op(name: str, channels: int, stride: int) -> nn.Module:
    """One micro op at a fixed width; stride 2 where a reduction cell reads its inputs."""
    if name == "identity":
        return nn.Identity() if stride == 1 else FactorizedReduction(channels, channels)
    if name.startswith("sep_conv"):
        return sep_conv_stack(channels, int(name[-1]), stride)
    return pool(name[:3], stride)


class MacroBranch(nn.Module):
    """One macro op: a 1x1 input convolution, then the op (official `_conv_branch`, `_pool_branch`,
    `_fixed_layer`). The searched and the fixed layers order the same modules differently:

    supernet (`_conv_branch`): conv1x1-BN-ReLU -> k x k (dense or separable)-BN-ReLU;
    child (`_fixed_layer`):    ReLU-conv1x1-BN -> ReLU-k x k (dense or separable)-BN.
    A pooling op replaces the k x k convolution and what follows it by 3x3 pooling.
    """

    def __init__(self, name: str, channels: int, fixed: bool):
        super().__init__()
        kind, kernel = name.rsplit("_", 1)[0], int(name[-1])
        self.fixed = fixed
        self.inp_conv = nn.Conv2d(channels, channels, 1, bias=False)
        self.inp_bn = nn.BatchNorm2d(channels)
        if kind in ("avg_pool", "max_pool"):
            self.op, self.out_bn = pool(kind[:3]), None
        else:
            self.op = separable(channels, channels, kernel) if kind == "sep_conv" else \
                nn.Conv2d(channels, channels, kernel, 1, kernel // 2, bias=False)
            self.out_bn = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C, H, W) -> (B, C, H, W)."""
        if self.fixed:
            x = self.inp_bn(self.inp_conv(F.relu(x)))
            return self.op(x) if self.out_bn is None else self.out_bn(self.op(F.relu(x)))
        x = F.relu(self.inp_bn(self.inp_conv(x)))
        return self.op(x) if self.out_bn is None else F.relu(self.out_bn(self.op(x)))


def drop_path(x: torch.Tensor, keep: float | torch.Tensor) -> torch.Tensor:
    """Zero whole examples of a branch with probability 1 - keep, rescaling the rest (FractalNet).
    `keep` may be a tensor on x's device, so that a schedule kept there is never read on the host."""
    if isinstance(keep, float) and keep >= 1.0:
        return x
    kept = torch.rand(x.shape[0], 1, 1, 1, device=x.device) < keep
    return x * kept / keep


def init_weights(model: nn.Module) -> None:
    """He-normal convolutions as in the official code (`create_weight` uses he_normal)."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")


def global_pool(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C): the mean over all positions."""
    return x.mean(dim=(2, 3))

