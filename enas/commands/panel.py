"""The architectures that rank and compare train alone: uniform draws from a space, the same ones
for every run of that space and panel seed, so that panels of several searches can be compared
and share their trainings."""

from __future__ import annotations

import torch

from enas.config import ControllerConfig
from enas.spaces import space_type
from enas.spaces.architecture import Architecture
from enas.spaces.base import SearchSpace
from enas.strategies.controller import Controller

DRAWS_PER_ARCHITECTURE = 20   # give up on distinct architectures after this many draws each (tiny spaces)


def uniform_architectures(space: SearchSpace, n: int, seed: int) -> list[Architecture]:
    """n distinct networks of `space` (fewer if it has fewer), drawn uniformly one at a time from
    `seed`: the first n of a longer list are the same n."""
    controller = Controller.for_space(space, ControllerConfig()).make_uniform()
    generator = torch.Generator().manual_seed(seed)
    canonical = space_type(space.name).canonical
    seen: set = set()
    drawn: list[Architecture] = []
    with torch.no_grad():
        for _ in range(DRAWS_PER_ARCHITECTURE * n):
            if len(drawn) == n:
                break
            arch = controller(1, generator).architectures[0]
            if canonical(arch) not in seen:
                seen.add(canonical(arch))
                drawn.append(arch)
    return drawn
