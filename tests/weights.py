"""Giving a child the supernet's weights for its architecture, to test that both compute the same.

A convolutional child is built from the same classes as the supernet with only its
architecture's modules, so each of its state-dict entries has the same name and shape in the
supernet. A recurrent child holds its N-1 edges where the supernet keeps one per (node, input), or
per (node, input, activation): the supernet's `cell_weights` picks them.
"""

from __future__ import annotations

import torch
from torch import nn

from enas.spaces.recurrent import RecurrentLM


def copy_supernet_weights(child: nn.Module, supernet: nn.Module) -> None:
    """Copy the supernet's weights (and batch-norm statistics) for the child's architecture."""
    if isinstance(child, RecurrentLM):
        with torch.no_grad():
            for name in ("embedding", "decoder_bias"):
                getattr(child, name).copy_(getattr(supernet, name))
            w_x, w_h, edges = supernet.cell_weights(child.plan)
            for mine, shared in zip((child.w_x, child.w_h, *child.edges), (w_x, w_h, *edges)):
                mine.copy_(shared)
        return
    shared = supernet.state_dict()
    child.load_state_dict({name: shared[name] for name in child.state_dict()})
    if hasattr(child, "steps_trained"):
        child.steps_trained.zero_()  # the child's own training, and its drop-path schedule, start now
