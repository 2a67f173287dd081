"""Retrain: train a fixed architecture from scratch with the final recipe, report its test score.

The model with the best validation score is kept and scored on the test split (the final model
where the task has no validation split apart from its test split). With `retrain.average_after`,
once validation stalls the weights are averaged over every step from then on (NT-ASGD, as
enas_lm's final training), and the averaged weights are what is validated, kept and tested. Writes
OUT_DIR/config.yaml, arch.json, metrics.jsonl, checkpoints/, model.pt (weights only) and
result.json, then the plots (enas/report/run_plots.py). The loop runs inside a `Session` like the
search (session.py): it resumes exactly from any step boundary, skips non-finite steps and rolls back.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, Iterator

import torch

from enas.config import Config, to_dict
from enas.console import Reporter
from enas.folder.atomic import write_file
from enas.folder.names import MODEL_FILE, RETRAIN_PHASE
from enas.records import ArchRecord, Result
from enas.report.run_plots import draw_after
from enas.run import distributed
from enas.run import state as key
from enas.run.averaging import keeps_last, starts_averaging
from enas.run.events import write_events
from enas.run.opening import open_run
from enas.run.progress import Figures, Progress
from enas.run.session import Session
from enas.run.steps import Steps
from enas.run.training import (
    auxiliary_parameters,
    count_parameters,
    learning_rate,
    model_of,
    place,
    rng_state,
    set_rng_state,
    sgd,
)
from enas.spaces import official
from enas.spaces.architecture import Architecture
from enas.tasks import Task, build_task


class Retrain:
    """The objects of one retrain run: the child of `arch`, its optimiser and the best weights so far."""

    kind = "retrain"

    def __init__(self, config: Config, arch: Architecture, device: torch.device, out_dir: Path | None = None,
                 reporter: Reporter | None = None):
        """`out_dir`, `reporter`: where a text corpus keeps its ids, and what shows their reading."""
        self.config, self.arch, self.device = config, arch, device
        self.task: Task = build_task(config, config.retrain, out_dir, reporter, sharded=True).to(device)
        self.module = place(self.task.space.child(arch), config, device)
        self.model = model_of(self.module, config, device)
        # what trains: the child (every parameter of which a step uses), its gradients averaged over the ranks
        self.trained = model_of(distributed.data_parallel(self.module, unused_parameters=False), config, device)
        self.optimizer = sgd(self.module, config.retrain)
        self.shuffler = torch.Generator().manual_seed(config.seed + 2)
        self.progress = Progress(phase=RETRAIN_PHASE)
        self.best: float | None = None
        self.best_weights: dict[str, torch.Tensor] | None = None
        self.average = WeightAverage()
        self.stale = 0   # epochs since the last new best
        self.history: list[float] = []   # every epoch's validation score (retrain.average_rule)

    def state_dict(self) -> dict[str, Any]:
        """The learning-rate schedule is a function of the epoch, so `progress` is its whole state."""
        return {key.CONFIG: to_dict(self.config), key.PROGRESS: self.progress.state_dict(),
                key.CHILD: self.module.state_dict(), key.OPTIMIZER: self.optimizer.state_dict(),
                key.SHUFFLER: self.shuffler.get_state(), key.TASK: self.task.state_dict(), key.RNG: rng_state(),
                key.BEST: self.best, key.BEST_WEIGHTS: self.best_weights,
                key.AVERAGE: {**self.average.state_dict(), "stale": self.stale, "history": self.history}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.progress = Progress.from_state(state[key.PROGRESS], self.device)
        self.module.load_state_dict(state[key.CHILD])
        self.optimizer.load_state_dict(state[key.OPTIMIZER])
        self.shuffler.set_state(state[key.SHUFFLER])
        self.task.load_state_dict(state[key.TASK])
        set_rng_state(state[key.RNG])
        self.best, self.best_weights = state[key.BEST], state[key.BEST_WEIGHTS]
        average = state.get(key.AVERAGE, {})   # absent from a run that never averaged
        self.average.load_state_dict(average)
        self.stale = average.get("stale", 0)
        self.history = average.get("history", [])

    def reseed(self, seed: int) -> None:
        """Retrain draws only from the global generators, which the session reseeds itself."""


def run_retrain(config: Config, arch: Architecture, out_dir: Path, resume: bool, reporter: Reporter,
                data_dir: Path | None = None, plots: bool = True) -> Result:
    """Train, test and write the result; then, unless `plots` is off (architectures trained alone
    for rank and compare), draw the plots (a retrain in RUN_DIR/retrain: the run's). `data_dir`: the
    folder whose tokens.pt caches a text corpus (default `out_dir`; the architectures trained alone
    by rank and compare share one)."""
    run = open_run(config, out_dir, resume, reporter, Retrain.kind, RETRAIN_PHASE,
                   ("retrain.batch_size", "retrain.steps_per_epoch"))
    retrain = Retrain(config, arch, run.device, data_dir or out_dir, reporter)
    run.keep(retrain.task)
    if not resume:
        ArchRecord.of(arch).write(out_dir)
    with run.session(retrain) as session:
        session.drive(config.retrain.epochs, RETRAIN_PHASE, partial(retrain_epoch, retrain, Steps(session), reporter))
    result = finish(retrain, out_dir, session.elapsed)
    write_events(config, out_dir, "result", [{result.metric: result.value, "params": result.params,
                                              **result.figures}], {})
    if plots:
        draw_after(out_dir, "retrain")
    return result


def retrain_epoch(retrain: Retrain, runner: Steps, reporter: Reporter) -> None:
    """The rest of the current epoch: training from wherever it stands, then validation."""
    figures = train_epoch(retrain, runner, reporter)
    validate(retrain, runner.session, reporter, figures)


def train_epoch(retrain: Retrain, runner: Steps, reporter: Reporter) -> Figures:
    cfg = retrain.config.retrain
    figures = runner.train_epoch(reporter, f"retrain epoch {retrain.progress.epoch + 1}/{cfg.epochs}", retrain.task,
                                 retrain.trained, retrain.optimizer, cfg, retrain.shuffler,
                                 after_step=partial(retrain.average.add, retrain.module))
    distributed.broadcast_buffers(retrain.module)   # every rank then scores the same network
    return figures


def validate(retrain: Retrain, session: Session, reporter: Reporter, trained: Figures) -> None:
    """Score the epoch's model on the validation split; keep its weights if they are the best yet
    (or, where the validation split is the test split, the latest). `trained`: the epoch's training figures."""
    task, progress, average, cfg = retrain.task, retrain.progress, retrain.average, retrain.config.retrain
    retrain.module.eval()
    with average.swapped_in(retrain.module):
        value = task.evaluate(retrain.model, "valid")
        best = retrain.best
        # Choosing the best epoch by the test split would report an optimistic test score: a task that
        # validates on its test split (images retrain on every training image) reports its final model.
        if task.valid_is_test or keeps_last(cfg.average_rule) or best is None or (
                value < best if task.lower_is_better else value > best):
            retrain.best, retrain.best_weights = value, copy.deepcopy(retrain.module.state_dict())
            retrain.stale = 0
        else:
            retrain.stale += 1
    averaged = average.active
    patience = retrain.config.retrain.average_after
    last_epoch = progress.epoch + 1 >= retrain.config.retrain.epochs   # no epoch left to validate an average
    if patience and not average.active and not last_epoch and starts_averaging(
            cfg.average_rule, patience, retrain.stale, retrain.history, value, task.lower_is_better):
        average.start(retrain.module)
        retrain.best = None   # from here on the averaged weights are kept, validated and tested
    retrain.history.append(value)
    lr = learning_rate(retrain.config.retrain, progress.epoch)
    session.metrics.write(RETRAIN_PHASE, progress.epoch, (progress.epoch + 1) * progress.step, loss=trained.mean_loss,
                          lr=lr, skipped=trained.skipped, **{f"valid_{task.metric}": value},
                          **{f"valid_{unit}": v for unit, v in task.other_units(value).items()},
                          **({"averaged": average.steps} if averaged else {}),
                          **distributed.check_replicas(retrain.module))
    kept = "" if retrain.best is None else f" (best {retrain.best:.4g})"
    reporter.print(f"retrain epoch {progress.epoch + 1}: valid {task.metric} {value:.4g}{kept}"
                   + (" of the averaged weights" if averaged else "")
                   + ("; averaging the weights from here on" if average.active and not averaged else ""))


def finish(retrain: Retrain, out_dir: Path, elapsed: float) -> Result:
    """Score the best weights on the test split; write model.pt and result.json. `elapsed`: the
    training's seconds, over all its sessions."""
    module, task = retrain.module, retrain.task
    module.load_state_dict(retrain.best_weights)
    module.eval()
    test = task.evaluate(retrain.model, "test", final=True)
    figures = {f"valid_{task.metric}": retrain.best,
               **{f"test_{unit}": value for unit, value in task.other_units(test).items()},
               **{f"valid_{unit}": value for unit, value in task.other_units(retrain.best).items()},
               **task.describe()}
    if task.final_layout_differs:   # e.g. the paper's batch 1, BPTT 1 test: the training layout's score beside it
        figures[f"test_{task.metric}_training_layout"] = task.evaluate(retrain.model, "test")
    result = Result(f"test_{task.metric}", test, count_parameters(module), round(elapsed, 1), official(retrain.arch),
                    aux_params=auxiliary_parameters(module) or None, averaged=retrain.average.active,
                    figures=figures)
    weights = module.state_dict()
    write_file(out_dir / MODEL_FILE, lambda handle: torch.save(weights, handle))
    result.write(out_dir)
    return result


class WeightAverage:
    """The running mean of a model's parameters over every training step since `start` (the
    averaging of NT-ASGD, Merity et al. 2018, and of enas_lm's final training)."""

    def __init__(self) -> None:
        self.weights: list[torch.Tensor] | None = None   # in the order of model.parameters()
        self.steps = 0                                   # the weights averaged so far

    @property
    def active(self) -> bool:
        return self.weights is not None

    def start(self, model: torch.nn.Module) -> None:
        """Average from the model's current weights on."""
        self.weights, self.steps = [p.detach().clone() for p in model.parameters()], 1

    @torch.no_grad()
    def add(self, model: torch.nn.Module) -> None:
        """Fold the weights after a step into the mean (nothing before `start`)."""
        if self.weights is None:
            return
        self.steps += 1
        torch._foreach_lerp_(self.weights, [p.detach() for p in model.parameters()], 1 / self.steps)

    @contextmanager
    def swapped_in(self, model: torch.nn.Module) -> Iterator[None]:
        """The model holds the averaged weights inside the block (if averaging), its own after."""
        if self.weights is None:
            yield
            return
        params = list(model.parameters())
        own = [p.detach().clone() for p in params]
        with torch.no_grad():
            torch._foreach_copy_([p.data for p in params], self.weights)
        try:
            yield
        finally:
            with torch.no_grad():
                torch._foreach_copy_([p.data for p in params], own)

    def state_dict(self) -> dict[str, Any]:
        return {"weights": self.weights, "steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.weights, self.steps = state.get("weights"), state.get("steps", 0)
