"""The loop of the NAS-RL search strategy (Zoph & Le 2017, nas_rl.py): children trained from scratch,
no shared weights; and its derive, which ranks the trained children.

Each update (an "epoch" of the session): the controller samples `nas_rl.children` architectures;
each becomes a child, built fresh and trained for `nas_rl.child_epochs` epochs of the `search.*`
recipe on the training split, and scored on the validation split after every epoch. Its reward
is the paper's: the best validation accuracy of the last `nas_rl.reward_window` epochs, cubed
(images), or c / (validation perplexity)^2 with c = `controller.reward_constant` and the best
perplexity of those epochs (text). Then one REINFORCE update, the same as ENAS's, from those
rewards. Every child is one line of RUN_DIR/trials.jsonl; a child sampled again is looked up by
its architecture's canonical form instead of trained again (`nas_rl.cache`).

Resume is exact: the state a checkpoint holds is the one at the last child boundary (a child's
training starts from the random state saved there), so a run stopped or killed inside a child
trains that child again from its start and ends with the same trials and controller. The
architectures of an update are drawn once with the sampler; the update redraws them from the
sampler state saved before that draw, with gradients, which gives the same architectures.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass, field
from functools import partial, reduce
from pathlib import Path
from typing import Any, Protocol

import torch

from enas.config import Config, to_dict
from enas.console import Reporter
from enas.errors import NonFiniteError, UserError
from enas.folder.names import TRIALS_FILE
from enas.run import distributed
from enas.run import state as key
from enas.run.events import events_for
from enas.run.metrics import MetricsLog, read_metrics
from enas.run.opening import open_run
from enas.run.progress import Progress
from enas.run.session import Session, StopPending
from enas.run.steps import Steps
from enas.run.training import count_parameters, model_of, place, rng_state, set_rng_state, sgd
from enas.spaces import from_json, official
from enas.spaces.architecture import Architecture
from enas.strategies import strategy_of
from enas.strategies.base import CONTROLLER, RANDOM, Derived, Strategy
from enas.strategies.controller import Controller, build_optimizer, reinforce_update
from enas.strategies.watch import watch
from enas.tables import load_bench
from enas.tables.scores import reward as table_reward
from enas.tasks import Task, build_task

CHILDREN = "children"   # the one phase of an update: training its children


class ChildStrategy(Strategy, Protocol):
    """A strategy whose every child is trained alone (or looked up in a benchmark table): what this
    loop asks of it beyond `Strategy`."""

    learns: bool   # False: the controller stays at the uniform policy (it may still propose)

    def per_update(self, config: Config) -> int:
        """Children proposed in one update (one process's share)."""

    def propose(self, search: ChildSearch, n: int) -> list[Architecture]:
        """The n architectures of a new update, drawn with the search's sampler."""

    def learn(self, search: ChildSearch, session: Session) -> None:
        """Learn from the update's rewards (search.state.rewards) and log the update's metrics line."""


@dataclass
class UpdateState:
    """The update in progress: its architectures, the sampler state they were drawn from, and the
    rewards of the children trained so far."""

    baseline: float | None = None
    controller_updates: int = 0
    architectures: list[list] = field(default_factory=list)
    drawn_from: torch.Tensor | None = None
    rewards: list[float] = field(default_factory=list)
    trials: dict[str, dict[str, Any]] = field(default_factory=dict)  # canonical form -> trial, for the cache
    warned: bool = False   # the collapse warning is given once a run
    population: list[list] = field(default_factory=list)   # evolution: [choices, reward] pairs, oldest first


class ChildSearch:
    """The objects of one NAS-RL search, built from its config."""

    kind = "search"

    def __init__(self, config: Config, device: torch.device, run_dir: Path, reporter: Reporter | None,
                 strategy: ChildStrategy):
        """`strategy`: what proposes each update's children and learns from their rewards."""
        self.config, self.device, self.run_dir, self.strategy = config, device, run_dir, strategy
        self.learns = strategy.learns
        self.task: Task = build_task(config, config.search, run_dir, reporter).to(device)
        self.bench = load_bench(config.bench)   # (table, metric): children looked up, not trained
        self.controller = Controller.for_space(self.task.space, config.controller)
        if not self.learns:
            self.controller.make_uniform()   # random: uniform architectures, never updated
        self.controller_optimizer = build_optimizer(self.controller)
        self.sampler = torch.Generator().manual_seed(config.seed + 1)    # architectures
        self.shuffler = torch.Generator().manual_seed(config.seed + 2)   # data order
        self.progress = Progress(phase=CHILDREN)
        self.state = UpdateState()
        self.trials: MetricsLog | None = None   # opened by `run_nas_rl`, rewound with the state
        self._boundary: dict[str, Any] = {}

    def mark_boundary(self) -> None:
        """Remember the state here, between two children: what a checkpoint saves until the next one.
        A trial is never changed once recorded, so the trials are kept by reference, not copied."""
        self.trials.sync()
        self._boundary = copy.deepcopy({
            key.STRATEGY: dataclasses.asdict(dataclasses.replace(self.state, trials={})),
            key.CONTROLLER: self.controller.state_dict(),
            key.CONTROLLER_OPTIMIZER: self.controller_optimizer.state_dict(), key.SAMPLER: self.sampler.get_state(),
            key.SHUFFLER: self.shuffler.get_state(), key.TASK: self.task.state_dict(), key.RNG: rng_state(),
            key.TRIALS_LINES: self.trials.lines})
        self._boundary[key.STRATEGY]["trials"] = dict(self.state.trials)

    def state_dict(self) -> dict[str, Any]:
        return {key.CONFIG: to_dict(self.config), key.PROGRESS: self.progress.state_dict(), **self._boundary}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.progress = Progress.from_state(state[key.PROGRESS], self.device)
        self.state = UpdateState(**state[key.STRATEGY])
        self.controller.load_state_dict(state[key.CONTROLLER])
        self.controller_optimizer.load_state_dict(state[key.CONTROLLER_OPTIMIZER])
        self.sampler.set_state(state[key.SAMPLER])
        self.shuffler.set_state(state[key.SHUFFLER])
        self.task.load_state_dict(state[key.TASK])
        set_rng_state(state[key.RNG])
        self.trials.rewind(state[key.TRIALS_LINES])
        self.mark_boundary()

    def reseed(self, seed: int) -> None:
        """After a rollback the update goes on with the architectures it drew; only children's
        training draws anew (from the global generators the session reseeds)."""

    def canonical(self, arch: Architecture) -> str:
        """The key of `arch`'s network in the cache of trials: architectures that build the same network share it."""
        return repr(self.task.space.canonical(arch))

    def draw(self) -> None:
        """The architectures of a new update, as the strategy proposes them."""
        self.state.drawn_from = self.sampler.get_state()
        drawn = self.strategy.propose(self, self.strategy.per_update(self.config) * distributed.world().size)
        self.state.architectures = [arch.to_json()["choices"] for arch in drawn]
        self.state.rewards = []

    @property
    def budget(self) -> int:
        """Updates in the whole search (the strategy's budget key)."""
        return reduce(getattr, self.strategy.budget.split("."), self.config)


def run_child_search(config: Config, run_dir: Path, resume: bool, reporter: Reporter,
                     strategy: ChildStrategy | None = None) -> ChildSearch:
    """`strategy`: the one the config names, unless given (a strategy that reuses this loop)."""
    strategy = strategy or strategy_of(config.strategy)
    run = open_run(config, run_dir, resume, reporter, ChildSearch.kind, CHILDREN, strategy.epoch_shape)
    saved = run.saved
    search = ChildSearch(config, run.device, run_dir, reporter, strategy)
    run.keep(search.task)
    search.trials = MetricsLog(run_dir / TRIALS_FILE, saved[key.TRIALS_LINES] if saved else 0,
                               events_for(config, run_dir))
    try:
        search.mark_boundary()
        with run.session(search) as session:
            session.drive(search.budget, CHILDREN, partial(update, search, Steps(session), reporter))
    finally:
        search.trials.close()
    return search


def update(search: ChildSearch, runner: Steps, reporter: Reporter) -> None:
    """The rest of the current update: its children from wherever it stands, then the controller."""
    progress, state = search.progress, search.state
    if not state.architectures:   # a new update (a resumed one has drawn its architectures already)
        search.draw()
        if not search.bench:   # looked-up children leave no state worth saving before the update's end
            search.mark_boundary()
    children, world = len(state.architectures), distributed.world()
    started = time.time()
    with reporter.phase(f"update {progress.epoch + 1}/{search.budget} children", children) as bar:
        bar(completed=progress.step)
        while progress.step < children:   # a round: each rank trains one child, the next ones in turn
            arch = Architecture(search.task.space.name, tuple(state.architectures[progress.step + world.rank]))
            try:
                outcome = child_trial(search, runner, arch)
            except StopPending:   # a stop reached this rank inside its child: every rank stops here
                outcome = None
            outcomes = distributed.gather(outcome)
            if None in outcomes:
                runner.session.checkpoint()   # the state before this round; it raises Stopped on every rank
            for trial, cached in outcomes:
                state.rewards.append(record(search, trial, cached))
            progress.step += world.size
            if not search.bench:   # a trained child is costly: never trained twice after a kill
                search.mark_boundary()
                runner.session.checkpoint()
            done = max(progress.step, 1)
            bar(completed=progress.step, best=max(t["reward"] for t in state.trials.values()),
                s_per_child=(time.time() - started) / done)
    search.strategy.learn(search, runner.session)
    state.architectures, state.rewards, state.drawn_from = [], [], None
    search.mark_boundary()


def controller_draw(search: ChildSearch, n: int) -> list[Architecture]:
    """n architectures of the controller, drawn without gradients (NAS-RL, random)."""
    search.controller.eval()
    with torch.no_grad():
        return search.controller(n, search.sampler).architectures


def controller_update(search: ChildSearch, session: Session) -> None:
    """REINFORCE from the update's rewards: the architectures drawn again, now with gradients.
    The random baseline only logs the update's rewards. Either logs what the policy samples."""
    state, epoch, config = search.state, search.progress.epoch, search.config
    best = max(t["reward"] for t in state.trials.values())
    if not search.learns:
        session.metrics.write(RANDOM, epoch, state.controller_updates, reward=sum(state.rewards) / len(state.rewards),
                              best_reward=best, search_s=round(session.elapsed, 2))
    else:
        search.controller.train()
        generator = torch.Generator().set_state(state.drawn_from)
        samples = search.controller(len(state.architectures), generator)
        assert [a.to_json()["choices"] for a in samples.architectures] == state.architectures
        state.baseline, stats = reinforce_update(search.controller, search.controller_optimizer, samples,
                                                 state.rewards, state.baseline)
        state.controller_updates += 1
        policy, state.warned = watch(search.controller, config.seed, epoch, search.budget, state.warned)
        session.metrics.write(CONTROLLER, epoch, state.controller_updates, reward=stats.reward,
                              baseline=stats.baseline, entropy=stats.entropy, loss=stats.loss, best_reward=best,
                              search_s=round(session.elapsed, 2), **policy,
                              **distributed.check_replicas(search.controller))


def child_trial(search: ChildSearch, runner: Steps, arch: Architecture) -> tuple[dict[str, Any], bool]:
    """The trial of `arch`, and whether it was looked up where a child of the same network was
    trained already (else it is trained now)."""
    trial = search.state.trials.get(search.canonical(arch)) if search.config.nas_rl.cache else None
    if trial is not None:
        return trial, True
    return (table_child(search, arch) if search.bench else train_child(search, runner, arch)), False


def table_child(search: ChildSearch, arch: Architecture) -> dict[str, Any]:
    """`arch` looked up in the benchmark table (bench.table) instead of trained: the benchmark's own
    protocol for multi-trial searches. Its reward maps the bench.metric accuracy (bench.reward)."""
    table, metric = search.bench
    value = table.value(official(arch), metric)
    return {"arch": official(arch), "choices": arch.to_json()["choices"],
            "reward": table_reward(value, search.config.bench.reward), f"table_{metric}": value,
            f"valid_{search.task.metric}": value / 100, "params": 0, "seconds": 0.0}


def record(search: ChildSearch, trial: dict[str, Any], cached: bool) -> float:
    """Keep a child's trial for the cache, as one line of trials.jsonl; its reward."""
    arch = Architecture(search.task.space.name, tuple(trial["choices"]))
    search.state.trials.setdefault(search.canonical(arch), trial)
    search.trials.write("trial", search.progress.epoch, len(search.state.rewards), cached=cached, **trial)
    return trial["reward"]


def train_child(search: ChildSearch, runner: Steps, arch: Architecture) -> dict[str, Any]:
    """Build `arch` fresh, train it from scratch for the child budget, score it after every epoch."""
    config, task, cfg = search.config, search.task, search.config.search
    started = time.time()
    module = place(task.space.child(arch), config, search.device)
    model = model_of(module, config, search.device)
    optimizer = sgd(module, cfg)
    curve: list[float] = []
    quiet = Reporter(quiet=True)   # one live bar at a time: the update's
    try:
        for epoch in range(config.nas_rl.child_epochs):
            child_progress = Progress(epoch=epoch, phase="child")
            Steps(runner.session, lambda: child_progress, in_step_with_peers=False).train_epoch(
                quiet, "child", task, model, optimizer, cfg, search.shuffler)
            module.eval()
            task.calibrate(model)
            curve.append(task.evaluate(model, "valid", cfg.eval_batches))
    except NonFiniteError:
        curve.append(math.inf if task.lower_is_better else 0.0)   # a child that diverges is a bad child
    window = curve[-config.nas_rl.reward_window:]
    best = min(window) if task.lower_is_better else max(window)
    return {"arch": official(arch), "choices": arch.to_json()["choices"], "reward": paper_reward(search, best),
            f"valid_{task.metric}": best, "curve": curve, "params": count_parameters(module),
            "seconds": round(time.time() - started, 2)}


def paper_reward(search: ChildSearch, best: float) -> float:
    """Zoph & Le's rewards: accuracy cubed (images), c / perplexity^2 (text)."""
    if not math.isfinite(best):
        return 0.0
    if search.task.lower_is_better:
        return search.config.controller.reward_constant / best ** 2
    return best ** 3



def derive_from_trials(config: Config, run_dir: Path) -> Derived:
    """Every child was trained and scored: rank them by their reward, which grows with the validation
    score (accuracy cubed, c / perplexity squared), so the child of the highest reward is the best one."""
    trials = read_metrics(run_dir / TRIALS_FILE) if (run_dir / TRIALS_FILE).is_file() else []
    if not trials:
        raise UserError(f"{run_dir} has no trained children yet ({TRIALS_FILE}); let `enas search` run longer")
    scores = {from_json({"space": config.space, "choices": t["choices"]}): t["reward"] for t in trials}
    candidates = [{k: v for k, v in trial.items() if k not in ("phase", "time", "cached")}
                  for trial in trials if not trial["cached"]]
    return Derived(scores, "reward", False, len(trials), candidates)
