"""The loop of the ENAS search strategy (paper section 2.2, enas.py): supernet phase, controller phase,
eval, checkpoint.

Each epoch: one pass of the supernet over the training split, every batch with a freshly sampled
architecture (uniform ones through `search.warmup_epochs`, and a `search.uniform_fraction` of
them after); then `controller.steps` REINFORCE updates whose rewards come from validation batches
run through the supernet's shared weights; then the controller's most likely architecture is
evaluated, a line is logged with what the policy samples (watch.py) and the whole state is
checkpointed. The loop runs inside a `Session`, which saves at any step boundary on SIGINT/SIGTERM
and rolls back (session.py); its steps run through `Steps`, which skips non-finite ones (steps.py).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch

from enas.config import Config, to_dict
from enas.console import Reporter
from enas.records import EvalLine
from enas.run import distributed
from enas.run import state as key
from enas.run.opening import open_run
from enas.run.progress import Progress
from enas.run.session import Session
from enas.run.steps import Steps
from enas.run.training import (
    clipped_decay,
    learning_rate,
    model_of,
    place,
    rng_state,
    set_learning_rate,
    set_rng_state,
    sgd,
)
from enas.spaces import official
from enas.spaces.architecture import Architecture
from enas.spaces.base import Model
from enas.strategies import strategy_of
from enas.strategies.base import CONTROLLER, EVAL, SUPERNET
from enas.strategies.controller import Controller, UpdateStats, build_optimizer, reinforce_update
from enas.strategies.enas import Enas
from enas.strategies.watch import watch
from enas.tasks import Task, build_task


@dataclass
class SearchState:
    """What a resumed search needs besides its progress and its module, optimiser and generator states."""

    baseline: float | None = None
    reward_index: int = 0        # next validation window used for a reward
    controller_updates: int = 0
    warned: bool = False         # the collapse warning is given once a run


class Search:
    """The objects of one search run, built from its config."""

    kind = "search"

    def __init__(self, config: Config, device: torch.device, run_dir: Path | None = None,
                 reporter: Reporter | None = None, learns: bool = True):
        """`run_dir`, `reporter`: where a text corpus keeps its ids, and what shows their reading;
        `learns` False: the controller stays at the uniform policy (random_ws)."""
        self.config, self.device, self.learns = config, device, learns
        self.task: Task = build_task(config, config.search, run_dir, reporter, sharded=True).to(device)
        space = self.task.space
        self.supernet = place(space.supernet(), config, device)
        # what trains: the supernet, its gradients averaged over the ranks of a distributed run
        self.parallel = distributed.data_parallel(self.supernet, unused_parameters=True)
        # The controller is tiny and sequential: it runs on the CPU whatever the device.
        self.controller = Controller.for_space(space, config.controller)
        if not learns:
            self.controller.make_uniform()   # random_ws: uniform architectures, never updated
        # uniform architectures for the warm-up and fair path sampling (a copy: no random draws)
        self.uniform = copy.deepcopy(self.controller).make_uniform()
        self.supernet_optimizer = sgd(self.supernet, config.search)
        self.controller_optimizer = build_optimizer(self.controller)
        self.sampler = torch.Generator().manual_seed(config.seed + 1)    # architectures
        self.shuffler = torch.Generator().manual_seed(config.seed + 2)   # data order
        self.progress = Progress(phase=SUPERNET)
        self.state = SearchState()
        self.architectures: list[Architecture] = []  # one per step of the current supernet phase

    def bind(self, arch: Architecture, training: bool = False) -> Model:
        """The supernet as a model of one architecture, ready for the task's calls; `training`: the
        data-parallel one, whose backward averages the gradients of every rank."""
        return model_of(self.parallel if training else self.supernet, self.config, self.device, arch)

    def sample(self, n: int, controller: Controller | None = None) -> list[Architecture]:
        """n architectures from the controller (or `controller`), drawn with the search's own generator."""
        controller = controller or self.controller
        controller.eval()
        with torch.no_grad():
            return controller(n, self.sampler).architectures

    def warming_up(self) -> bool:
        return self.progress.epoch < self.config.search.warmup_epochs

    def supernet_architectures(self, n: int) -> list[Architecture]:
        """The architectures of n supernet steps: uniform ones in the warm-up; else the controller's,
        each replaced by a uniform one with probability `search.uniform_fraction`."""
        if self.warming_up():
            return self.sample(n, self.uniform)
        architectures = self.sample(n)
        fraction = self.config.search.uniform_fraction
        if fraction > 0:
            fair = (torch.rand(n, generator=self.sampler) < fraction).nonzero().flatten().tolist()
            for step, arch in zip(fair, self.sample(len(fair), self.uniform)):
                architectures[step] = arch
        return architectures

    def state_dict(self) -> dict[str, Any]:
        """The learning-rate schedule is a function of the epoch, so `progress` is its whole state."""
        return {key.CONFIG: to_dict(self.config), key.PROGRESS: self.progress.state_dict(),
                key.STRATEGY: dataclasses.asdict(self.state),
                key.ARCHITECTURES: [arch.to_json()["choices"] for arch in self.architectures],
                key.SUPERNET: self.supernet.state_dict(), key.CONTROLLER: self.controller.state_dict(),
                key.SUPERNET_OPTIMIZER: self.supernet_optimizer.state_dict(),
                key.CONTROLLER_OPTIMIZER: self.controller_optimizer.state_dict(),
                key.SAMPLER: self.sampler.get_state(), key.SHUFFLER: self.shuffler.get_state(),
                key.TASK: self.task.state_dict(), key.RNG: rng_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.progress = Progress.from_state(state[key.PROGRESS], self.device)
        self.state = SearchState(**state[key.STRATEGY])
        self.architectures = [Architecture(self.task.space.name, tuple(c)) for c in state[key.ARCHITECTURES]]
        self.supernet.load_state_dict(state[key.SUPERNET])
        self.controller.load_state_dict(state[key.CONTROLLER])
        self.supernet_optimizer.load_state_dict(state[key.SUPERNET_OPTIMIZER])
        self.controller_optimizer.load_state_dict(state[key.CONTROLLER_OPTIMIZER])
        self.sampler.set_state(state[key.SAMPLER])
        self.shuffler.set_state(state[key.SHUFFLER])
        self.task.load_state_dict(state[key.TASK])
        set_rng_state(state[key.RNG])

    def reseed(self, seed: int) -> None:
        """Fresh architectures from here on, the rest of the current supernet phase's included."""
        self.sampler.manual_seed(seed)
        rest = len(self.architectures) - self.progress.step
        if rest > 0:
            self.architectures[self.progress.step:] = self.supernet_architectures(rest)


def run_search(config: Config, run_dir: Path, resume: bool, reporter: Reporter, strategy: Enas | None = None) -> Search:
    """`strategy`: the one the config names, unless given (a strategy that reuses this loop)."""
    strategy = strategy or strategy_of(config.strategy)
    run = open_run(config, run_dir, resume, reporter, Search.kind, SUPERNET, strategy.epoch_shape)
    search = Search(config, run.device, run_dir, reporter, strategy.learns)
    run.keep(search.task)
    with run.session(search) as session:
        session.drive(config.search.epochs, SUPERNET, partial(search_epoch, search, Steps(session), reporter))
    return search


def search_epoch(search: Search, steps: Steps, reporter: Reporter) -> None:
    """The rest of the current epoch: a resumed one may stand in its controller phase already."""
    if search.progress.phase == SUPERNET:
        supernet_phase(search, steps, reporter)
    if search.learns and not search.warming_up():
        controller_phase(search, steps, reporter)
    evaluate(search, steps.session, reporter)


def supernet_phase(search: Search, steps: Steps, reporter: Reporter) -> None:
    """Train the supernet's shared weights for one pass, a freshly sampled architecture per batch."""
    cfg, task, progress = search.config.search, search.task, search.progress
    if progress.step == 0:
        task.start_epoch(search.shuffler)
        # The controller is fixed during this phase: sample the epoch's architectures at once.
        search.architectures = search.supernet_architectures(cfg.steps_per_epoch or task.batches("train"))
    count = len(search.architectures)
    lr = learning_rate(cfg, progress.epoch)
    set_learning_rate(search.supernet_optimizer, lr)
    search.supernet.train()

    def step() -> None:
        arch = search.architectures[progress.step]
        # a global window index, so that short epochs (steps_per_epoch) walk on through the data
        steps.train_on(task, search.bind(arch, training=True), progress.epoch * count + progress.step,
                       search.supernet.parameters(), search.supernet_optimizer, cfg.grad_clip, cfg.decay_unused,
                       clipped_decay(cfg))

    figures = steps.run_steps(reporter, f"epoch {progress.epoch + 1}/{cfg.epochs} supernet", count, step)
    distributed.broadcast_buffers(search.supernet)
    steps.session.metrics.write(SUPERNET, progress.epoch, search.state.controller_updates, loss=figures.mean_loss,
                                lr=lr, steps=count, skipped=figures.skipped)
    search.architectures = []
    progress.begin(CONTROLLER)


def controller_phase(search: Search, steps: Steps, reporter: Reporter) -> None:
    """REINFORCE updates of the controller; rewards from validation batches, shared weights fixed."""
    session = steps.session
    updates, progress, state = search.config.controller.steps, search.progress, search.state
    search.supernet.eval()
    with reporter.phase(f"epoch {progress.epoch + 1}/{search.config.search.epochs} controller", updates) as update:
        update(advance=progress.step)
        while progress.step < updates:
            stats = controller_step(search)
            progress.step += 1
            if stats is None:
                steps.skip("reward")
                update()
            else:
                progress.add()
                state.controller_updates += 1
                session.metrics.write(CONTROLLER, progress.epoch, state.controller_updates, reward=stats.reward,
                                      baseline=stats.baseline, entropy=stats.entropy, loss=stats.loss,
                                      skipped=progress.skipped)
                update(reward=stats.reward, baseline=stats.baseline, entropy=stats.entropy)
            session.boundary()


def controller_step(search: Search) -> UpdateStats | None:
    """One REINFORCE update; None, with the controller and the baseline untouched, when a reward is
    not finite.

    In a distributed run every rank draws the same aggregate * ranks architectures, rewards its
    own share of them (rank r the r-th run of `aggregate`) and gathers the others' rewards; each
    then makes the same update from all of them, so the controllers stay identical and the update
    is the one a single process makes with aggregate * ranks samples."""
    state, cfg, world = search.state, search.config.controller, distributed.world()
    search.controller.train()
    samples = search.controller(cfg.aggregate * world.size, search.sampler)
    first = world.rank * cfg.aggregate
    mine = []
    for offset, arch in enumerate(samples.architectures[first:first + cfg.aggregate]):
        index = state.reward_index + (first + offset) * cfg.reward_batches
        mine.append(search.task.reward(search.bind(arch), index, cfg.reward_batches))
        if not math.isfinite(mine[-1]):   # the rewards stop at the first that is not finite
            break
    rewards = [reward for share in distributed.gather(mine) for reward in share]
    state.reward_index += len(rewards) * cfg.reward_batches
    if len(rewards) < len(samples.architectures) or not all(map(math.isfinite, rewards)):
        return None
    state.baseline, stats = reinforce_update(search.controller, search.controller_optimizer, samples,
                                             rewards, state.baseline)
    return stats


def evaluate(search: Search, session: Session, reporter: Reporter) -> None:
    """Score the controller's most likely architecture on the validation split (under random_ws's
    uniform policy, ties go to the first option: one fixed architecture that shows the supernet
    learning); log what the policy samples (watch.py)."""
    search.controller.eval()
    with torch.no_grad():
        arch = search.controller(1, greedy=True).architectures[0]
    search.supernet.eval()
    task = search.task
    task.calibrate(search.bind(arch))  # e.g. batch-norm statistics of this architecture
    value = task.evaluate(search.bind(arch), "valid", search.config.search.eval_batches)
    epoch, config = search.progress.epoch, search.config
    policy, search.state.warned = watch(search.controller, config.seed, epoch, config.search.epochs,
                                        search.state.warned)
    line = EvalLine(official(arch), round(session.elapsed, 2), **policy,
                    **distributed.check_replicas(search.supernet, search.controller),
                    figures={f"valid_{task.metric}": value})
    session.metrics.write(EVAL, epoch, search.state.controller_updates, **line.fields())
    # one line whatever the architecture's length: metrics.jsonl has its whole string
    reporter.print(reporter.fitted(f"epoch {epoch + 1}/{config.search.epochs}: valid {task.metric} {value:.4g}, "
                                   "most likely architecture [", official(arch), "]"))
