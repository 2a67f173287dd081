"""A training loop's life in its run folder: checkpoints, stop requests, non-finite steps, rollbacks.

Search and retrain keep where they stand in a `Progress` and run their loops through a `Session`
(ENAS DESIGN section 8):
- after every step the loop calls `boundary()`: if SIGINT or SIGTERM arrived, the whole state is
  saved right there and the run ends with 130 or 143 and the command that resumes it;
- `drive` runs the epochs and saves a checkpoint at each epoch's end; a fresh run also saves its
  initial state, so that a run killed in its first epoch can be resumed too;
- a step whose loss, gradient norm or reward is not finite is skipped and counted by `skip()`;
  MAX_NONFINITE_IN_A_ROW of them in a row raise NonFiniteError, which `drive` answers with one
  rollback to the last good checkpoint, drawing fresh random numbers from there (on a
  deterministic machine, replaying the same draws would only fail the same way); if it recurs
  before the next checkpoint, the run ends with exit 3;
- a full disk ends the run with exit 75, naming the last good checkpoint.
"""

from __future__ import annotations

import dataclasses
import random
import signal
import sys
import zlib
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol

import torch
from torch import nn

from enas.checkpoint import load_checkpoint, newest_checkpoint, save_checkpoint
from enas.config import Config
from enas.errors import DiskFullError, NonFiniteError, Stopped, is_disk_full
from enas.metrics import MetricsLog
from enas.progress import Reporter
from enas.runs import CHECKPOINTS, METRICS_FILE
from enas.signals import StopFlag, fault_point
from enas.training import train_step

MAX_NONFINITE_IN_A_ROW = 5


@dataclass
class Progress:
    """Where a loop stands and the running figures of its current phase; all of it is checkpointed,
    so that a phase resumed half-way sums on exactly as if it had never stopped."""

    epoch: int = 0
    phase: str = ""
    step: int = 0                             # steps of `phase` done in `epoch`
    loss_sum: float | torch.Tensor = 0.0      # a device tensor while training: reading it syncs
    counted: int = 0                          # steps whose loss is in loss_sum
    skipped: int = 0                          # non-finite steps skipped in this phase
    # per phase, the steps skipped since its last good one, across epochs: the controller phase's
    # failures must add up even though the shared phase's steps come in between
    in_a_row: dict[str, int] = field(default_factory=dict)

    def begin(self, phase: str) -> None:
        self.phase, self.step, self.loss_sum, self.counted, self.skipped = phase, 0, 0.0, 0, 0

    def next_epoch(self, phase: str) -> None:
        self.epoch += 1
        self.begin(phase)

    def add(self, loss: torch.Tensor | None = None) -> None:
        """A step that went through (with its loss, if it has one)."""
        if loss is not None:
            self.loss_sum = self.loss_sum + loss
            self.counted += 1
        self.in_a_row[self.phase] = 0

    def mean_loss(self) -> float:
        return float(self.loss_sum) / max(self.counted, 1)

    def state_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_state(cls, state: dict[str, Any], device: torch.device) -> Progress:
        progress = cls(**state)
        if isinstance(progress.loss_sum, torch.Tensor):
            progress.loss_sum = progress.loss_sum.to(device)
        return progress

    def __str__(self) -> str:
        return f"epoch {self.epoch + 1}, {self.phase} step {self.step}"


class Resumable(Protocol):
    """What a Session drives: a search or a retrain, with its whole state."""

    kind: str                 # "search" or "retrain": the command, and the checkpoint's kind
    config: Config
    progress: Progress

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def reseed(self, seed: int) -> None:
        """Reseed the target's own generators after a rollback (the session reseeds the global ones)."""


class Session:
    """One stretch of a loop in `folder`, started fresh (`saved` None) or from a loaded checkpoint."""

    def __init__(self, folder: Path, target: Resumable, saved: dict[str, Any] | None):
        self.folder, self.target, self.saved = folder, target, saved
        self.checkpoints = folder / CHECKPOINTS
        self.stop = StopFlag()
        self.rolled_back = False  # since the last checkpoint was saved
        self.metrics: MetricsLog

    def __enter__(self) -> Session:
        if self.saved is not None:
            self.target.load_state_dict(self.saved)
        self.metrics = MetricsLog(self.folder / METRICS_FILE, self.saved["metrics_lines"] if self.saved else None)
        self.stop.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.__exit__()
        self.metrics.close()

    @property
    def resume_command(self) -> str:
        return f"enas {self.target.kind} -o {self.folder} --resume"

    def drive(self, epochs: int, first_phase: str, epoch: Callable[[], None]) -> None:
        """Run `epoch` until `epochs` epochs are done, from wherever the progress stands, with a
        checkpoint at each epoch's end; roll back once per non-finite streak; a full disk is exit 75."""
        try:
            if self.saved is None:
                self.checkpoint()
            while True:
                try:
                    return self._epochs(epochs, first_phase, epoch)
                except NonFiniteError as error:
                    self._roll_back(error)
        except DiskFullError as error:
            raise DiskFullError(f"{error}; free some space, then: {self.resume_command}") from None
        except Exception as error:  # e.g. metrics.jsonl could not grow
            if not is_disk_full(error):
                raise
            raise DiskFullError(f"disk full writing in {self.folder}; the last good checkpoint "
                                f"is {newest_checkpoint(self.checkpoints)}; free some space, then: "
                                f"{self.resume_command}") from None

    def _epochs(self, epochs: int, first_phase: str, epoch: Callable[[], None]) -> None:
        while self.target.progress.epoch < epochs:   # a rollback replaces the progress object
            epoch()
            self.target.progress.next_epoch(first_phase)
            self.checkpoint()

    def checkpoint(self) -> Path:
        """Save the whole state; then, if a stop was requested, end the run here."""
        self.metrics.sync()
        progress = self.target.progress
        state = {"kind": self.target.kind, "metrics_lines": self.metrics.lines, **self.target.state_dict()}
        path = save_checkpoint(self.checkpoints, state, f"{progress.phase}:{progress.epoch}:{progress.step}")
        self.rolled_back = False
        if self.stop.signum is not None:
            raise Stopped(f"stopped by {signal.Signals(self.stop.signum).name} at {progress}; saved {path}\n"
                          f"resume with: {self.resume_command}", self.stop.signum)
        return path

    def boundary(self) -> None:
        """Between two steps: the test-only fault hook, then a requested stop saves and ends the run."""
        progress = self.target.progress
        fault_point(progress.phase, progress.epoch, progress.step)
        if self.stop.signum is not None:
            self.checkpoint()

    def skip(self, nonfinite: str) -> None:
        """Count a skipped step (the loop has already moved past it); too many in a row raise."""
        progress = self.target.progress
        progress.skipped += 1
        in_a_row = progress.in_a_row[progress.phase] = progress.in_a_row.get(progress.phase, 0) + 1
        warn(f"warning: non-finite {nonfinite} at {progress}; step skipped ({in_a_row} in a row)")
        if in_a_row >= MAX_NONFINITE_IN_A_ROW:
            raise NonFiniteError(f"non-finite {nonfinite} in {in_a_row} steps in a row at {progress}")

    def train_on(self, task: Any, forward: Callable, index: int, params: Iterable[nn.Parameter],
                 optimizer: torch.optim.Optimizer, grad_clip: float) -> None:
        """Train on the task's window or batch `index`. A skipped step also leaves the task's carried
        state (e.g. a recurrent hidden state) as it was, so that no NaN outlives its step."""
        carried = task.state_dict()
        outcome = train_step(partial(task.train_loss, forward, index), params, optimizer, grad_clip)
        self.target.progress.step += 1
        if outcome.loss is None:
            task.load_state_dict(carried)
            self.skip(outcome.nonfinite)
        else:
            self.target.progress.add(outcome.loss)

    def run_steps(self, reporter: Reporter, title: str, steps: int, step: Callable[[], None]) -> None:
        """Call `step` until the phase has done `steps` steps, from wherever it stands."""
        progress = self.target.progress
        with reporter.phase(title, steps) as update:
            shown = progress.step
            update(advance=shown)
            while progress.step < steps:
                step()
                if progress.step % 10 == 0 or progress.step == steps:  # reading the loss syncs with the device
                    update(advance=progress.step - shown, loss=progress.mean_loss())
                    shown = progress.step
                self.boundary()

    def _roll_back(self, error: NonFiniteError) -> None:
        """Back to the last good checkpoint with fresh random draws; a second streak before the next
        checkpoint ends the run (exit 3)."""
        if self.rolled_back:
            kind = self.target.kind
            raise NonFiniteError(f"{error}, again after a rollback; lower {kind}.lr or {kind}.grad_clip "
                                 f"(the last good checkpoint is kept: {newest_checkpoint(self.checkpoints)})") from None
        saved = load_checkpoint(self.checkpoints, self.target.kind, warn)
        self.target.load_state_dict(saved)
        self.metrics.rewind(saved["metrics_lines"])
        progress = self.target.progress
        # Deterministic, so that a run killed after a rollback and resumed takes the same path again.
        seed = zlib.crc32(f"{self.target.config.seed}:{progress.phase}:{progress.epoch}:{progress.step}".encode())
        random.seed(seed)
        torch.manual_seed(seed)
        self.target.reseed(seed)
        self.rolled_back = True
        warn(f"warning: {error}; rolled back to {progress} and drawing fresh random numbers from there")


def warn(message: str) -> None:
    """Warnings reach the user even with --quiet (a live progress bar shows them above itself)."""
    print(message, file=sys.stderr)
