"""The ENAS search loop (paper section 2.2): shared-weight phase, controller phase, eval, checkpoint.

Each epoch: one pass of the supernet over the training split, every batch with a freshly sampled
architecture; then `controller.steps` REINFORCE updates whose rewards come from validation batches
run through the shared weights; then the controller's most likely architecture is evaluated, a
line is logged and the whole state is checkpointed. The loop runs inside a `Session`, which
saves at any step boundary on SIGINT/SIGTERM, skips non-finite steps and rolls back (session.py).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable

import torch

from enas.arch import Architecture
from enas.checkpoint import load_checkpoint
from enas.config import Config, to_dict
from enas.controller import Controller, UpdateStats, build_optimizer, reinforce_update
from enas.progress import Reporter
from enas.runs import CHECKPOINTS, check_resume_position, write_config
from enas.session import Progress, Session
from enas.tasks import Task, build_task
from enas.training import (autocast_forward, learning_rate, place, rng_state, set_learning_rate, set_rng_state,
                           setup_runtime, sgd)

SHARED, CONTROLLER = "shared", "controller"
# the keys that shape an epoch's steps: a resume may change them only where an epoch starts
EPOCH_SHAPE = ("search.batch_size", "search.steps_per_epoch", "controller.steps", "controller.aggregate")


@dataclass
class SearchState:
    """What a resumed search needs besides its progress and its module, optimiser and generator states."""

    baseline: float | None = None
    reward_index: int = 0        # next validation window used for a reward
    controller_updates: int = 0


class Search:
    """The objects of one search run, built from its config."""

    kind = "search"

    def __init__(self, config: Config, device: torch.device):
        self.config, self.device = config, device
        self.task: Task = build_task(config, config.search).to(device)
        space = self.task.space
        self.supernet = place(space.supernet(), config, device)
        # The controller is tiny and sequential: it runs on the CPU whatever the device.
        self.controller = Controller.for_space(space, config.controller)
        self.shared_optimizer = sgd(self.supernet, config.search)
        self.controller_optimizer = build_optimizer(self.controller)
        self.sampler = torch.Generator().manual_seed(config.seed + 1)    # architectures
        self.shuffler = torch.Generator().manual_seed(config.seed + 2)   # data order
        self.progress = Progress(phase=SHARED)
        self.state = SearchState()
        self.architectures: list[Architecture] = []  # one per step of the current shared phase

    def bind(self, arch: Architecture) -> Callable[..., Any]:
        """The supernet as a model of one architecture, ready for the task's calls."""
        return autocast_forward(partial(self.supernet, arch=arch), self.config, self.device)

    def sample(self, n: int) -> list[Architecture]:
        """n architectures from the controller, drawn with the search's own generator."""
        self.controller.eval()
        with torch.no_grad():
            return self.controller(n, self.sampler).architectures

    def state_dict(self) -> dict[str, Any]:
        """The learning-rate schedule is a function of the epoch, so `progress` is its whole state."""
        return {"config": to_dict(self.config), "progress": self.progress.state_dict(),
                "search": dataclasses.asdict(self.state),
                "architectures": [arch.to_json()["choices"] for arch in self.architectures],
                "supernet": self.supernet.state_dict(), "controller": self.controller.state_dict(),
                "shared_optimizer": self.shared_optimizer.state_dict(),
                "controller_optimizer": self.controller_optimizer.state_dict(),
                "sampler": self.sampler.get_state(), "shuffler": self.shuffler.get_state(),
                "task": self.task.state_dict(), "rng": rng_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.progress = Progress.from_state(state["progress"], self.device)
        self.state = SearchState(**state["search"])
        self.architectures = [Architecture(self.task.space.name, tuple(c)) for c in state["architectures"]]
        self.supernet.load_state_dict(state["supernet"])
        self.controller.load_state_dict(state["controller"])
        self.shared_optimizer.load_state_dict(state["shared_optimizer"])
        self.controller_optimizer.load_state_dict(state["controller_optimizer"])
        self.sampler.set_state(state["sampler"])
        self.shuffler.set_state(state["shuffler"])
        self.task.load_state_dict(state["task"])
        set_rng_state(state["rng"])

    def reseed(self, seed: int) -> None:
        """Fresh architectures from here on, the rest of the current shared phase's included."""
        self.sampler.manual_seed(seed)
        rest = len(self.architectures) - self.progress.step
        if rest > 0:
            self.architectures[self.progress.step:] = self.sample(rest)


def run_search(config: Config, run_dir: Path, resume: bool, reporter: Reporter) -> Search:
    # Read the checkpoint before building anything: a folder without a good one fails at once.
    saved = load_checkpoint(run_dir / CHECKPOINTS, Search.kind) if resume else None
    if saved is not None:
        check_resume_position(saved, config, SHARED, EPOCH_SHAPE)
    device = setup_runtime(config)
    search = Search(config, device)
    write_config(run_dir, config)  # on a resume too: a later resume starts from its overrides
    with Session(run_dir, search, saved) as session:
        session.drive(config.search.epochs, SHARED, partial(search_epoch, search, session, reporter))
    return search


def search_epoch(search: Search, session: Session, reporter: Reporter) -> None:
    """The rest of the current epoch: a resumed one may stand in its controller phase already."""
    if search.progress.phase == SHARED:
        shared_phase(search, session, reporter)
    controller_phase(search, session, reporter)
    evaluate(search, session, reporter)


def shared_phase(search: Search, session: Session, reporter: Reporter) -> None:
    """Train the shared weights for one pass, a freshly sampled architecture per batch."""
    cfg, task, progress = search.config.search, search.task, search.progress
    if progress.step == 0:
        task.start_epoch(search.shuffler)
        # The controller is fixed during this phase: sample the epoch's architectures at once.
        search.architectures = search.sample(cfg.steps_per_epoch or task.batches("train"))
    steps = len(search.architectures)
    lr = learning_rate(cfg, progress.epoch)
    set_learning_rate(search.shared_optimizer, lr)
    search.supernet.train()

    def step() -> None:
        arch = search.architectures[progress.step]
        # a global window index, so that short epochs (steps_per_epoch) walk on through the data
        session.train_on(task, search.bind(arch), progress.epoch * steps + progress.step,
                         search.supernet.parameters(), search.shared_optimizer, cfg.grad_clip)

    figures = session.run_steps(reporter, f"epoch {progress.epoch + 1} shared", steps, step)
    session.metrics.write(SHARED, progress.epoch, search.state.controller_updates, loss=figures.mean_loss,
                          lr=lr, steps=steps, skipped=figures.skipped)
    search.architectures = []
    progress.begin(CONTROLLER)


def controller_phase(search: Search, session: Session, reporter: Reporter) -> None:
    """REINFORCE updates of the controller; rewards from validation batches, shared weights fixed."""
    steps, progress, state = search.config.controller.steps, search.progress, search.state
    search.supernet.eval()
    with reporter.phase(f"epoch {progress.epoch + 1} controller", steps) as update:
        update(advance=progress.step)
        while progress.step < steps:
            stats = controller_step(search)
            progress.step += 1
            if stats is None:
                session.skip("reward")
                update()
            else:
                progress.add()
                state.controller_updates += 1
                session.metrics.write(CONTROLLER, progress.epoch, state.controller_updates, reward=stats.reward,
                                      baseline=stats.baseline, entropy=stats.entropy, loss=stats.loss,
                                      skipped=progress.skipped)
                update(reward=stats.reward, baseline=stats.baseline, entropy=stats.entropy)
            session.boundary()


class _NonFiniteReward(Exception):
    """Raised from inside a controller update to abandon it."""


def controller_step(search: Search) -> UpdateStats | None:
    """One REINFORCE update; None, with the controller and the baseline untouched, when a reward is
    not finite."""
    state = search.state

    def reward_of(arch: Architecture) -> float:
        reward = search.task.reward(search.bind(arch), state.reward_index)
        state.reward_index += 1
        if not math.isfinite(reward):
            raise _NonFiniteReward
        return reward

    try:
        # reinforce_update gathers every reward before it changes anything, so raising from
        # reward_of leaves the controller, its optimiser and the baseline as they were.
        state.baseline, stats = reinforce_update(search.controller, search.controller_optimizer,
                                                 reward_of, state.baseline, search.sampler)
    except _NonFiniteReward:
        return None
    return stats


def evaluate(search: Search, session: Session, reporter: Reporter) -> None:
    """Score the controller's most likely architecture on the validation split."""
    search.controller.eval()
    with torch.no_grad():
        arch = search.controller(1, greedy=True).architectures[0]
    search.supernet.eval()
    task = search.task
    task.calibrate(search.bind(arch))  # e.g. batch-norm statistics of this architecture
    value = task.evaluate(search.bind(arch), "valid", search.config.search.eval_batches)
    session.metrics.write("eval", search.progress.epoch, search.state.controller_updates,
                          **{f"valid_{task.metric}": value}, arch=arch.to_official())
    reporter.print(f"epoch {search.progress.epoch + 1}: valid {task.metric} {value:.4g} of the most likely "
                   f"architecture [{arch.to_official()}]")
