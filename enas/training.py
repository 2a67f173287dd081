"""What search and retrain share: device and threads, seeding, SGD with its schedule, one step."""

from __future__ import annotations

import os
import random
from typing import Callable, Iterable

import torch
from torch import nn

from enas.config import Config, TrainConfig
from enas.errors import NonFiniteError, UserError

MAX_NONFINITE_IN_A_ROW = 5


def setup_runtime(config: Config) -> torch.device:
    """Threads, seeds and the device of a run."""
    torch.set_num_threads(config.threads or os.cpu_count() or 1)
    random.seed(config.seed)
    torch.manual_seed(config.seed)
    if config.device == "cuda" and not torch.cuda.is_available():
        raise UserError("device=cuda but no CUDA device is available; use device=cpu or device=auto")
    if config.device == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    return torch.device("cuda")


def sgd(model: nn.Module, cfg: TrainConfig) -> torch.optim.SGD:
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                           nesterov=cfg.nesterov and cfg.momentum > 0, weight_decay=cfg.weight_decay)


def learning_rate(cfg: TrainConfig, epoch: int) -> float:
    """Exponential decay per epoch from `lr_decay_start`, bounded below by `lr_min`."""
    decays = max(0, epoch - cfg.lr_decay_start + 1) if cfg.lr_decay < 1 else 0
    return max(cfg.lr * cfg.lr_decay ** decays, cfg.lr_min)


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


class StepGuard:
    """Counts non-finite steps; too many in a row is an error (exit 3) rather than a silent run."""

    def __init__(self, where: str):
        self.where, self.in_a_row, self.total = where, 0, 0

    def check(self, finite: bool, step: int) -> bool:
        if finite:
            self.in_a_row = 0
            return True
        self.in_a_row += 1
        self.total += 1
        if self.in_a_row >= MAX_NONFINITE_IN_A_ROW:
            raise NonFiniteError(f"{self.in_a_row} non-finite steps in a row in the {self.where} "
                                 f"(last at step {step}); lower the learning rate or grad_clip")
        return False


def train_step(loss_of: Callable[[], torch.Tensor], params: Iterable[nn.Parameter],
               optimizer: torch.optim.Optimizer, grad_clip: float, guard: StepGuard, step: int
               ) -> torch.Tensor | None:
    """Forward, backward, clip, update. Returns the detached loss, or None for a skipped step.

    A step whose loss or gradient norm is not finite leaves the parameters untouched.
    """
    params = list(params)
    optimizer.zero_grad(set_to_none=True)
    loss = loss_of()
    loss.backward()
    norm = nn.utils.clip_grad_norm_(params, grad_clip if grad_clip > 0 else float("inf"))
    if not guard.check(bool(torch.isfinite(loss) & torch.isfinite(norm)), step):
        optimizer.zero_grad(set_to_none=True)
        return None
    optimizer.step()
    return loss.detach()


def rng_state() -> dict:
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
