"""The execution of a loop's steps inside a `Session`: training steps decided on the device,
controller steps counted on the host, and the progress bar and warnings of a phase.

- `train_on` runs one training step; a step whose loss or gradient norm is not finite is skipped
  on the device (fused SGD, `train_step`) and counted there; its figures reach the host one
  report later (`run_steps`), so that no step waits for the device.
- `skip` counts a controller step whose reward was not finite.
MAX_NONFINITE_IN_A_ROW skipped steps in a row raise NonFiniteError, which the session answers
with a rollback (session.py).
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable, Iterable, Protocol

import torch
from torch import nn

from enas.config import TrainConfig
from enas.console import Reporter, warn
from enas.errors import NonFiniteError
from enas.run.progress import MAX_NONFINITE_IN_A_ROW, Figures, FiguresInFlight, Progress, check_streak, nonfinite_what
from enas.run.session import Session
from enas.run.training import clipped_decay, learning_rate, set_learning_rate, train_step
from enas.spaces.base import Model

REPORT_EVERY = 10  # training steps between two looks at a phase's figures


class TrainingTask(Protocol):
    """What training steps need of a task (enas/tasks): its batches, losses and carried state."""

    def batches(self, split: str) -> int: ...
    def start_epoch(self, shuffler: torch.Generator) -> None: ...
    def lr_scale(self, index: int) -> float: ...
    def train_loss(self, model: Model, index: int) -> torch.Tensor: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class Steps:
    """The steps of the loop that `session` drives, counted in the session target's progress, or
    in the one `progress` returns (a NAS-RL child's own training)."""

    def __init__(self, session: Session, progress: Callable[[], Progress] | None = None,
                 in_step_with_peers: bool = True):
        """`in_step_with_peers` False: the other ranks run other steps (NAS-RL children; Session.boundary)."""
        self.session = session
        self._progress = progress or (lambda: session.target.progress)  # a rollback replaces the target's
        self.in_step_with_peers = in_step_with_peers
        self._warned = Figures(0, 0.0, 0, 0, 0)  # the figures at the last warning of skipped steps

    @property
    def progress(self) -> Progress:
        return self._progress()

    def skip(self, nonfinite: str) -> None:
        """Count a skipped controller step (the loop has already moved past it); too many in a row raise."""
        progress = self.progress
        progress.skipped += 1
        in_a_row = progress.in_a_row[progress.phase] = progress.in_a_row.get(progress.phase, 0) + 1
        warn(f"warning: non-finite {nonfinite} at {progress}; step skipped ({in_a_row} in a row)")
        if in_a_row >= MAX_NONFINITE_IN_A_ROW:
            raise NonFiniteError(f"non-finite {nonfinite} in {in_a_row} steps in a row at {progress}")

    def train_on(self, task: TrainingTask, model: Model, index: int, params: Iterable[nn.Parameter],
                 optimizer: torch.optim.SGD, grad_clip: float, decay_unused: bool = False,
                 decay: float = 0.0) -> None:
        """Train on the task's window or batch `index`. A skipped step also leaves the task's carried
        state (e.g. a recurrent hidden state) as it was, so that no NaN outlives its step; like the
        skip itself, that is decided on the device."""
        carried = task.state_dict()
        scale = task.lr_scale(index)
        epoch_lrs = [group["lr"] for group in optimizer.param_groups]
        for group, lr in zip(optimizer.param_groups, epoch_lrs):
            group["lr"] = lr * scale
        outcome = train_step(partial(task.train_loss, model, index), params, optimizer, grad_clip, decay_unused,
                             decay)
        for group, lr in zip(optimizer.param_groups, epoch_lrs):   # set back, not divided: no drift
            group["lr"] = lr
        task.load_state_dict(unless_skipped(outcome.skipped, carried, task.state_dict()))
        self.progress.step += 1
        self.progress.record(outcome.loss, outcome.skipped)

    def train_epoch(self, reporter: Reporter, title: str, task: TrainingTask, model: Model, optimizer: torch.optim.SGD,
                    cfg: TrainConfig, shuffler: torch.Generator,
                    after_step: Callable[[], None] | None = None) -> Figures:
        """Train `model` for the rest of the progress's epoch (cfg.steps_per_epoch steps, or a pass
        over the training split) at the epoch's learning rate: a retrain's epoch, or a NAS-RL child's.
        `after_step` runs after every step, before the step boundary (e.g. parameter averaging)."""
        progress = self.progress
        steps = cfg.steps_per_epoch or task.batches("train")
        if progress.step == 0:
            task.start_epoch(shuffler)
        set_learning_rate(optimizer, learning_rate(cfg, progress.epoch))
        model.module.train()

        def step() -> None:
            # a global window index, so that short epochs (steps_per_epoch) walk on through the data
            self.train_on(task, model, progress.epoch * steps + progress.step, model.module.parameters(), optimizer,
                          cfg.grad_clip, cfg.decay_unused, clipped_decay(cfg))
            if after_step is not None:
                after_step()

        return self.run_steps(reporter, title, steps, step)

    def run_steps(self, reporter: Reporter, title: str, steps: int, step: Callable[[], None]) -> Figures:
        """Call `step` until the phase has done `steps` steps, from wherever it stands; return the
        phase's figures.

        The bar moves with every step. Every REPORT_EVERY steps the figures are sent to the host,
        and those sent at the report before are shown and checked for skipped steps: inside a
        phase the host never waits for the device's latest work, only at the phase's end."""
        progress = self.progress
        figures = FiguresInFlight(progress).read()
        self._warned = figures  # a resumed phase's earlier skips were reported by the run that made them
        with reporter.phase(title, steps) as update:
            update(completed=progress.step)
            in_flight = None
            while progress.step < steps:
                step()
                update(completed=progress.step)
                if progress.step % REPORT_EVERY == 0:
                    if in_flight is not None:
                        self._report(in_flight.read(), update)
                    in_flight = FiguresInFlight(progress)
                self.session.boundary(self.in_step_with_peers)
            figures = FiguresInFlight(progress).read()
            self._report(figures, update)
        return figures

    def _report(self, figures: Figures, update: Callable[..., None]) -> None:
        update(completed=self.progress.step, loss=figures.mean_loss)
        skipped, bad_losses = figures.skipped - self._warned.skipped, figures.bad_losses - self._warned.bad_losses
        if skipped:
            where = f"epoch {self.progress.epoch + 1}, {self.progress.phase} step {figures.step}"
            warn(f"warning: {skipped} step(s) skipped by {where}: non-finite {nonfinite_what(skipped, bad_losses)}")
            self._warned = figures
        check_streak(figures, self.progress)


def unless_skipped(skipped: torch.Tensor, before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """A task's state after a step, or, where the step was skipped, as it was before it: chosen on
    the device. An entry the step did not replace stays; one that was None (no state yet) counts
    as zeros, as a model's missing hidden state does."""
    return {key: value if value is before[key] else
            torch.where(skipped, 0.0 if before[key] is None else before[key], value)
            for key, value in after.items()}
