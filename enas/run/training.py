"""What search and retrain share: device and threads, seeding, SGD with its schedule, one step."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Callable, Iterable

import torch
from torch import nn

from enas.config import Config, TrainConfig
from enas.errors import UserError
from enas.run import distributed
from enas.run.threads import thread_count
from enas.spaces.architecture import Architecture
from enas.spaces.base import Model


def setup_runtime(config: Config) -> torch.device:
    """Threads, seeds and the device of a run; under torchrun, this process's place in the job.
    Every rank seeds alike, so that they build the same networks (Session then gives each rank
    its own random numbers for training)."""
    torch.set_num_threads(thread_count(config.threads))
    if config.device == "cuda" and not torch.cuda.is_available():
        raise UserError("device=cuda but no CUDA device is available; use device=cpu or device=auto")
    on_cuda = config.device != "cpu" and torch.cuda.is_available()
    distributed.start("cuda" if on_cuda else "cpu")
    random.seed(config.seed)
    torch.manual_seed(config.seed)
    if not on_cuda:
        return torch.device("cpu")
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = config.cuda.tf32
    torch.backends.cudnn.benchmark = config.cuda.cudnn_benchmark
    device = torch.device("cuda", distributed.local_rank())
    torch.cuda.set_device(device)
    return device


def place(model: nn.Module, config: Config, device: torch.device) -> nn.Module:
    """The model on its device, with channels-last convolution weights if the config asks (tensors
    of other ranks are left as they are, so this is safe for every space)."""
    model = model.to(device)
    return model.to(memory_format=torch.channels_last) if config.channels_last else model


def model_of(module: nn.Module, config: Config, device: torch.device, arch: Architecture | None = None) -> Model:
    """`module` as a model of one architecture (the supernet bound to `arch`, or a child), under
    bf16 autocast on CUDA when the config asks for it."""
    return Model(module, arch, autocast=device.type == "cuda" and config.cuda.amp)


def sgd(model: nn.Module, cfg: TrainConfig) -> torch.optim.SGD:
    """Fused SGD: one kernel for all parameters, and it can skip a step on the device (`train_step`).

    Momentum buffers start at zero rather than being created by the first step: fused SGD creates
    them uninitialised, and a first step skipped on the device would leave them so. With no
    dampening, a zero buffer makes the first update exactly what a fresh one would.

    SGD decays the weights itself unless the decay is inside the clipping (`clipped_decay`) or a
    term of the loss (weight_decay_form quartic)."""
    decay = 0.0 if cfg.decay_in_clip or cfg.weight_decay_form == "quartic" else cfg.weight_decay
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, fused=True,
                                nesterov=cfg.nesterov and cfg.momentum > 0, weight_decay=decay)
    if cfg.momentum > 0:
        for param in model.parameters():
            optimizer.state[param]["momentum_buffer"] = torch.zeros_like(param)
    return optimizer


def clipped_decay(cfg: TrainConfig) -> float:
    """The weight decay `train_step` adds to the gradients before clipping them (decay_in_clip), else 0."""
    return cfg.weight_decay if cfg.decay_in_clip and cfg.weight_decay_form == "l2" else 0.0


def learning_rate(cfg: TrainConfig, epoch: int) -> float:
    """Exponential decay per epoch from `lr_decay_start`, bounded below by `lr_min`; or cosine."""
    if cfg.lr_schedule == "cosine":
        return cosine_learning_rate(cfg, epoch)
    decays = max(0, epoch - cfg.lr_decay_start + 1) if cfg.lr_decay < 1 else 0
    return max(cfg.lr * cfg.lr_decay ** decays, cfg.lr_min)


def cosine_learning_rate(cfg: TrainConfig, epoch: int) -> float:
    """SGDR (Loshchilov & Hutter 2017), per epoch as in the official ENAS CIFAR-10 code:
    lr = lr_min + (lr - lr_min) (1 + cos(pi T_cur / T_i)) / 2, restarting when T_cur reaches T_i,
    with T_0 = cosine_period (0: all epochs) and T_(i+1) = T_i * cosine_period_mult."""
    period, start = cfg.cosine_period or cfg.epochs, 0
    while epoch >= start + period:
        start, period = start + period, period * cfg.cosine_period_mult
    return cfg.lr_min + 0.5 * (cfg.lr - cfg.lr_min) * (1 + math.cos(math.pi * (epoch - start) / period))


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


@dataclass
class StepOutcome:
    """What one training step did, as tensors on the device (reading them waits for it)."""

    loss: torch.Tensor      # detached
    skipped: torch.Tensor   # bool: the loss or the gradient norm was not finite, nothing was updated


def train_step(loss_of: Callable[[], torch.Tensor], params: Iterable[nn.Parameter],
               optimizer: torch.optim.SGD, grad_clip: float, decay_unused: bool = False,
               decay: float = 0.0) -> StepOutcome:
    """Forward, backward, clip, update, without the host ever waiting for the device.

    A step whose loss or gradient norm is not finite is skipped on the device: fused SGD (`sgd`)
    takes it as `found_inf`, as it does from a gradient scaler, and leaves the parameters and its
    momentum exactly as they were.

    `decay_unused`: a parameter the step did not use (a supernet weight off the sampled
    architecture) gets a zero gradient, so that weight decay and momentum move it as the official
    code's L2 over every variable does; else SGD leaves it exactly as it was.

    `decay` (`clipped_decay`): decay * w joins each gradient before the clipping, as the gradient
    of the official codes' loss + L2 does (melodyguan/enas src/utils.py:118-140); SGD then has none.
    """
    params = list(params)
    optimizer.zero_grad(set_to_none=True)
    loss = loss_of()
    loss.backward()
    if decay > 0:
        _add_decay(params, decay, decay_unused)
    norm = nn.utils.clip_grad_norm_(params, grad_clip if grad_clip > 0 else float("inf"))
    if decay_unused:   # after the clipping, which the zeros would not change
        for param in params:
            if param.grad is None:
                param.grad = torch.zeros_like(param)
    loss = loss.detach()
    skipped = ~(torch.isfinite(loss) & torch.isfinite(norm))
    optimizer.found_inf = skipped.float()  # type: ignore[attr-defined]  # read by fused SGD's step
    optimizer.step()
    return StepOutcome(loss, skipped)


@torch.no_grad()
def _add_decay(params: list[nn.Parameter], decay: float, decay_unused: bool) -> None:
    """Add decay * w to every gradient; with `decay_unused`, an unused parameter's gradient is decay * w."""
    for param in params:
        if param.grad is not None:
            param.grad.add_(param, alpha=decay)
        elif decay_unused:
            param.grad = param.detach() * decay


def rng_state() -> dict:
    """Every global generator a run draws from (numpy's is never used)."""
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
    """The parameters of the network a model is at test time, counted as the official code counts
    them: an auxiliary head (a module named `aux_head`, used only in training) is left out."""
    return sum(p.numel() for name, p in model.named_parameters() if not name.startswith("aux_head."))


def auxiliary_parameters(model: nn.Module) -> int:
    """The parameters of a model's auxiliary head; 0 for none."""
    head = getattr(model, "aux_head", None)
    return 0 if head is None else sum(p.numel() for p in head.parameters())
