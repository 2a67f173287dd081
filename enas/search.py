"""The ENAS search loop (paper section 2.2): shared-weight phase, controller phase, eval, checkpoint.

Each epoch: one pass of the supernet over the training split, every batch with a freshly sampled
architecture; then `controller.steps` REINFORCE updates whose rewards come from validation batches
run through the shared weights; then the controller's most likely architecture is evaluated, a
line is logged and the whole state is checkpointed.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch

from enas.checkpoint import load_checkpoint, save_checkpoint
from enas.config import Config, to_dict
from enas.controller import Controller, build_optimizer, reinforce_update
from enas.metrics import MetricsLog
from enas.progress import Reporter
from enas.runs import CHECKPOINTS, METRICS_FILE, write_config
from enas.tasks import Task, build_task
from enas.training import (StepGuard, learning_rate, rng_state, set_learning_rate, set_rng_state,
                           setup_runtime, sgd, train_step)


@dataclass
class SearchState:
    """Everything besides module and optimiser states that a resumed search needs."""

    epoch: int = 0               # epochs completed
    baseline: float | None = None
    reward_index: int = 0        # next validation window used for a reward
    controller_updates: int = 0


class Search:
    """The objects of one search run, built from its config."""

    def __init__(self, config: Config, device: torch.device):
        self.config, self.device = config, device
        self.task: Task = build_task(config, config.search).to(device)
        space = self.task.space
        self.supernet = space.supernet().to(device)
        # The controller is tiny and sequential: it runs on the CPU whatever the device.
        self.controller = Controller(space.name, space.decisions(), space.initial_anchors, config.controller)
        self.shared_optimizer = sgd(self.supernet, config.search)
        self.controller_optimizer = build_optimizer(self.controller)
        self.sampler = torch.Generator().manual_seed(config.seed + 1)    # architectures
        self.shuffler = torch.Generator().manual_seed(config.seed + 2)   # data order
        self.state = SearchState()

    def bind(self, arch) -> partial:
        return partial(self.supernet, arch=arch)

    def state_dict(self, metrics_lines: int) -> dict:
        return {"config": to_dict(self.config), "search": vars(self.state).copy(),
                "supernet": self.supernet.state_dict(), "controller": self.controller.state_dict(),
                "shared_optimizer": self.shared_optimizer.state_dict(),
                "controller_optimizer": self.controller_optimizer.state_dict(),
                "sampler": self.sampler.get_state(), "shuffler": self.shuffler.get_state(),
                "task": self.task.state_dict(), "rng": rng_state(), "metrics_lines": metrics_lines}

    def load_state_dict(self, state: dict) -> None:
        self.state = SearchState(**state["search"])
        self.supernet.load_state_dict(state["supernet"])
        self.controller.load_state_dict(state["controller"])
        self.shared_optimizer.load_state_dict(state["shared_optimizer"])
        self.controller_optimizer.load_state_dict(state["controller_optimizer"])
        self.sampler.set_state(state["sampler"])
        self.shuffler.set_state(state["shuffler"])
        self.task.load_state_dict(state["task"])
        set_rng_state(state["rng"])


def run_search(config: Config, run_dir: Path, resume: bool, reporter: Reporter) -> Search:
    device = setup_runtime(config)
    search = Search(config, device)
    keep_lines = None
    if resume:
        saved = load_checkpoint(run_dir / CHECKPOINTS, warn=reporter.print)
        search.load_state_dict(saved)
        keep_lines = saved["metrics_lines"]
    else:
        write_config(run_dir, config)
    metrics = MetricsLog(run_dir / METRICS_FILE, keep_lines)
    try:
        for epoch in range(search.state.epoch, config.search.epochs):
            shared_phase(search, epoch, metrics, reporter)
            controller_phase(search, epoch, metrics, reporter)
            evaluate(search, epoch, metrics, reporter)
            search.state.epoch = epoch + 1
            save_checkpoint(run_dir / CHECKPOINTS, search.state_dict(metrics.lines))
    finally:
        metrics.close()
    return search


def shared_phase(search: Search, epoch: int, metrics: MetricsLog, reporter: Reporter) -> None:
    """Train the shared weights for one pass, a freshly sampled architecture per batch."""
    cfg, task = search.config.search, search.task
    steps = task.batches("train") if cfg.shared_steps == 0 else cfg.shared_steps
    lr = learning_rate(cfg, epoch)
    set_learning_rate(search.shared_optimizer, lr)
    task.start_epoch(search.shuffler)
    search.controller.eval()
    with torch.no_grad():  # the controller is fixed during this phase: sample the epoch's archs at once
        architectures = search.controller(steps, search.sampler).architectures
    search.supernet.train()
    guard = StepGuard("shared-weight phase")
    total = torch.zeros((), device=search.device)
    done = 0
    with reporter.phase(f"epoch {epoch + 1} shared", steps) as update:
        for step, arch in enumerate(architectures):
            loss = train_step(partial(task.train_loss, search.bind(arch), step), search.supernet.parameters(),
                              search.shared_optimizer, cfg.grad_clip, guard, step)
            if loss is not None:
                total += loss
                done += 1
            if step % 10 == 9 or step == steps - 1:  # reading the loss syncs with the device
                update(advance=10 if step % 10 == 9 else steps % 10, loss=total.item() / max(done, 1))
    metrics.write("shared", epoch, search.state.controller_updates, loss=total.item() / max(done, 1),
                  lr=lr, steps=steps, skipped=guard.total)


def controller_phase(search: Search, epoch: int, metrics: MetricsLog, reporter: Reporter) -> None:
    """REINFORCE updates of the controller; rewards from validation batches, shared weights fixed."""
    cfg, task, state = search.config.controller, search.task, search.state
    search.supernet.eval()

    def reward_of(arch) -> float:
        reward = task.reward(search.bind(arch), state.reward_index)
        state.reward_index += 1
        return reward

    with reporter.phase(f"epoch {epoch + 1} controller", cfg.steps) as update:
        for _ in range(cfg.steps):
            state.baseline, stats = reinforce_update(search.controller, search.controller_optimizer,
                                                     reward_of, state.baseline, search.sampler)
            state.controller_updates += 1
            metrics.write("controller", epoch, state.controller_updates, reward=stats.reward,
                          baseline=stats.baseline, entropy=stats.entropy, loss=stats.loss)
            update(reward=stats.reward, baseline=stats.baseline, entropy=stats.entropy)


def evaluate(search: Search, epoch: int, metrics: MetricsLog, reporter: Reporter) -> None:
    """Score the controller's most likely architecture on the validation split."""
    search.controller.eval()
    with torch.no_grad():
        arch = search.controller(1, greedy=True).architectures[0]
    search.supernet.eval()
    task = search.task
    value = task.evaluate(search.bind(arch), "valid", search.config.search.eval_batches)
    metrics.write("eval", epoch, search.state.controller_updates, **{f"valid_{task.metric}": value},
                  arch=arch.to_official())
    reporter.print(f"epoch {epoch + 1}: valid {task.metric} {value:.4g} of the most likely "
                   f"architecture [{arch.to_official()}]")
