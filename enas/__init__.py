"""enas: Efficient Neural Architecture Search via Parameter Sharing (Pham et al., 2018) in PyTorch.

`enas.load(RUN_DIR)` gives the retrained child as a PyTorch module; `enas.load_architecture(...)`
an architecture (README, "Using the found model elsewhere"). Both import torch only when called.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

    from enas.spaces.architecture import Architecture

__version__ = "0.1.0"

# Before anything imports torch, whose OpenMP runtime reads this once when it loads: threads that
# wait for work sleep instead of spinning, so on a machine other jobs share they do not burn the
# cores those jobs (and the other threads of the same op) need. A setting of the user's stands.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def load(path: str | Path) -> nn.Module:
    """The retrained child in eval mode with its weights, from an export folder (model.json and
    model.safetensors of `enas export`), a retrain folder, or a search run folder holding retrain/."""
    from enas.export import load as load_child

    return load_child(path)


def load_architecture(source: str | Path, space: str | None = None) -> Architecture:
    """An architecture from an arch.json path, a published architecture's name (enas_micro_cifar10,
    enas_macro_cifar10, nas_rl_ptb) or an official string of `space` (recurrent, micro, macro, ...)."""
    from enas.spaces import load_architecture as read

    return read(source, space)
