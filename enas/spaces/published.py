"""The architectures the papers published, by name: `enas retrain --arch NAME` trains one.

Each is its paper's string in this tool's encoding; retrain it with the preset of its final
recipe (README, Presets).
"""

from __future__ import annotations

from enas.spaces.nas_cell import PUBLISHED_PTB

# name -> (space, official string)
PUBLISHED: dict[str, tuple[str, str]] = {
    # ENAS (Pham et al. 2018), Fig. 7: the normal cell, then the reduction cell
    # (melodyguan/enas scripts/cifar10_micro_final.sh)
    "enas_micro_cifar10": ("micro", "0 2 0 0 0 4 0 1 0 4 1 1 1 0 0 1 0 2 1 1 "
                                    "1 0 1 0 0 3 0 2 1 1 3 1 1 0 0 4 0 3 1 1"),
    # ENAS, Fig. 6: the 24-layer macro network, per layer an op id then a bit per earlier output
    # (melodyguan/enas scripts/cifar10_macro_final.sh)
    "enas_macro_cifar10": ("macro", (
    "0 "
    "3 0 "
    "0 1 0 "
    "2 0 0 1 "
    "2 0 0 0 0 "
    "3 1 1 0 1 0 "
    "2 0 0 0 0 0 1 "
    "2 0 1 1 0 1 1 1 "
    "1 0 1 1 1 0 1 0 1 "
    "0 0 0 0 0 0 0 0 0 0 "
    "2 0 0 0 0 0 1 0 0 0 0 "
    "0 1 0 0 1 1 0 0 0 0 1 1 "
    "2 0 1 0 0 0 0 0 1 0 1 1 0 "
    "1 0 0 1 0 0 0 1 1 1 0 1 0 1 "
    "0 1 1 0 1 0 1 0 0 0 0 0 1 0 0 "
    "2 0 0 1 0 0 0 0 0 0 0 1 0 1 0 1 "
    "2 0 1 0 0 0 1 0 0 1 1 1 1 0 0 1 0 "
    "2 0 0 0 0 1 0 1 0 1 0 0 1 0 1 0 0 1 "
    "3 0 1 1 0 1 0 0 0 0 0 1 0 1 0 1 0 0 0 "
    "3 0 1 1 0 0 0 0 0 0 0 0 0 1 1 0 0 0 0 1 "
    "0 1 0 0 1 0 1 1 0 0 0 1 0 0 0 0 0 1 1 0 0 "
    "3 0 1 0 1 1 0 0 1 0 1 1 0 1 1 0 1 0 0 1 0 0 "
    "0 1 0 1 0 1 0 0 0 0 0 0 0 0 1 0 1 0 0 1 0 0 0 "
    "0 1 1 0 0 0 1 1 1 0 1 0 0 0 1 0 1 0 0 1 1 0 0 0 "
    ).strip()),
    # NAS-RL (Zoph & Le 2017), Fig. 8 and appendix: the Penn Treebank cell (TensorFlow's NASCell)
    "nas_rl_ptb": ("nas_cell", PUBLISHED_PTB),
}
