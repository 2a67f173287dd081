"""The steps the benchmarks time, as search and retrain take them, for any task (text or images)."""

from __future__ import annotations

from functools import partial
from typing import Any, Callable

from torch import nn

from enas.config import TrainConfig
from enas.run.training import sgd, train_step
from enas.spaces.architecture import Architecture
from enas.spaces.base import Model


def trainer(module: nn.Module, task: Any, train: TrainConfig, model_at: Callable[[int], Model]
            ) -> Callable[[], None]:
    """One training step per call (`task.train_loss` + `train_step`), each on the next window or
    batch, with the model of `module` that `model_at(index)` returns."""
    optimizer, params, index = sgd(module, train), list(module.parameters()), [0]
    module.train()

    def step() -> None:
        train_step(partial(task.train_loss, model_at(index[0]), index[0]), params, optimizer, train.grad_clip)
        index[0] += 1
    return step


def rewarder(supernet: nn.Module, task: Any, architectures: list[Architecture],
             bind: Callable[[Architecture], Model] | None = None) -> Callable[[], None]:
    """One reward per call, as the controller phase takes them: the supernet in eval mode on the
    next validation window or batch, for the next of `architectures` (bound by `bind`, e.g. under
    autocast as a run binds it; plainly by default); training mode after."""
    index = [0]
    bind = bind or partial(Model, supernet)

    def reward() -> None:
        supernet.eval()
        task.reward(bind(architectures[index[0] % len(architectures)]), index[0])
        supernet.train()
        index[0] += 1
    return reward
