"""The steps the benchmarks time, as search and retrain take them, for any task (text or images)."""

from __future__ import annotations

from functools import partial
from typing import Any, Callable

from torch import nn

from enas.arch import Architecture
from enas.config import TrainConfig
from enas.training import sgd, train_step

Forward = Callable[..., Any]


def trainer(model: nn.Module, task: Any, train: TrainConfig, forward_of: Callable[[int], Forward]
            ) -> Callable[[], None]:
    """One training step per call (`task.train_loss` + `train_step`), each on the next window or
    batch, the model called as `forward_of(index)` returns it."""
    optimizer, params, index = sgd(model, train), list(model.parameters()), [0]
    model.train()

    def step() -> None:
        train_step(partial(task.train_loss, forward_of(index[0]), index[0]), params, optimizer, train.grad_clip)
        index[0] += 1
    return step


def rewarder(supernet: nn.Module, task: Any, architectures: list[Architecture],
             as_run: Callable[[Forward], Forward] = lambda forward: forward) -> Callable[[], None]:
    """One reward per call, as the controller phase takes them: the supernet in eval mode on the
    next validation window or batch, for the next of `architectures` (called through `as_run`,
    e.g. under autocast); training mode after."""
    index = [0]

    def reward() -> None:
        supernet.eval()
        task.reward(as_run(partial(supernet, arch=architectures[index[0] % len(architectures)])), index[0])
        supernet.train()
        index[0] += 1
    return reward
