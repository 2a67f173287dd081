"""A training loop's life in its run folder: checkpoints, stop requests, non-finite steps, rollbacks.

Search and retrain keep where they stand in a `Progress` and run their loops through a `Session`
(ENAS DESIGN section 8):
- after every step the loop calls `boundary()`: if SIGINT or SIGTERM arrived, the whole state is
  saved right there and the run ends with 130 or 143 and the command that resumes it;
- `drive` runs the epochs and saves a checkpoint at each epoch's end; a fresh run also saves its
  initial state, so that a run killed in its first epoch can be resumed too;
- a step whose loss, gradient norm or reward is not finite is skipped and counted: a training
  step on the device (`train_on`), its figures read a report later (`run_steps`); a controller
  step on the host (`skip`). MAX_NONFINITE_IN_A_ROW of them in a row raise NonFiniteError, which
  `drive` answers with one rollback to the last good checkpoint, drawing fresh random numbers
  from there (on a deterministic machine, replaying the same draws would only fail the same way);
  if it recurs before the next checkpoint, the run ends with exit 3;
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
REPORT_EVERY = 10  # training steps between two looks at a phase's figures


@dataclass
class Progress:
    """Where a loop stands and the running figures of its current phase; all of it is checkpointed,
    so that a phase resumed half-way sums on exactly as if it had never stopped.

    A training phase keeps its figures as tensors on the device and updates them there (`record`),
    so that no step waits for the device; a controller phase, whose rewards are read on the host
    anyway, keeps plain numbers."""

    epoch: int = 0
    phase: str = ""
    step: int = 0                             # steps of `phase` done in `epoch`
    loss_sum: float | torch.Tensor = 0.0
    counted: int | torch.Tensor = 0           # steps whose loss is in loss_sum
    skipped: int | torch.Tensor = 0           # non-finite steps skipped in this phase
    bad_losses: int | torch.Tensor = 0        # of those, the ones whose loss was not finite
    longest_run: int | torch.Tensor = 0       # the most training steps skipped in a row in this phase
    # per phase, the steps skipped since its last good one, across epochs: the controller phase's
    # failures must add up even though the shared phase's steps come in between
    in_a_row: dict[str, int | torch.Tensor] = field(default_factory=dict)

    def begin(self, phase: str) -> None:
        self.phase, self.step = phase, 0
        self.loss_sum, self.counted, self.skipped, self.bad_losses, self.longest_run = 0.0, 0, 0, 0, 0

    def next_epoch(self, phase: str) -> None:
        self.epoch += 1
        self.begin(phase)

    def add(self) -> None:
        """A controller step that went through."""
        self.in_a_row[self.phase] = 0

    def record(self, loss: torch.Tensor, skipped: torch.Tensor) -> None:
        """A training step, skipped or not, counted on the device without waiting for it."""
        self.loss_sum = self.loss_sum + torch.where(skipped, 0.0, loss)
        self.counted = self.counted + ~skipped
        self.skipped = self.skipped + skipped
        self.bad_losses = self.bad_losses + ~torch.isfinite(loss)
        run = (self.in_a_row.get(self.phase, 0) + 1) * skipped
        self.in_a_row[self.phase] = run
        self.longest_run = run.clamp(min=self.longest_run)

    def state_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_state(cls, state: dict[str, Any], device: torch.device) -> Progress:
        def placed(value: Any) -> Any:   # a training phase's figures go back to the device
            return value.to(device) if isinstance(value, torch.Tensor) else value

        return cls(**{name: placed(value) for name, value in state.items() if name != "in_a_row"},
                   in_a_row={phase: placed(run) for phase, run in state["in_a_row"].items()})

    def __str__(self) -> str:
        return f"epoch {self.epoch + 1}, {self.phase} step {self.step}"


@dataclass(frozen=True)
class Figures:
    """A phase's running figures as read on the host, `step` steps into it."""

    step: int
    mean_loss: float
    skipped: int
    bad_losses: int
    longest_run: int


class FiguresInFlight:
    """A progress's figures on their way to the host: the copy is queued behind the steps so far,
    and `read()` waits for that copy alone, never for work queued after it."""

    def __init__(self, progress: Progress):
        self.step = progress.step
        values = (progress.loss_sum, progress.counted, progress.skipped, progress.bad_losses, progress.longest_run)
        device = next((value.device for value in values if isinstance(value, torch.Tensor)), torch.device("cpu"))
        stacked = torch.stack([value.double() if isinstance(value, torch.Tensor) else
                               torch.full((), value, dtype=torch.float64, device=device) for value in values])
        self._host = stacked.to("cpu", non_blocking=True)  # into pinned memory, from a GPU
        self._copied = torch.cuda.Event() if device.type == "cuda" else None
        if self._copied is not None:
            self._copied.record()

    def read(self) -> Figures:
        if self._copied is not None:
            self._copied.synchronize()
        loss_sum, counted, skipped, bad_losses, longest_run = self._host.tolist()
        return Figures(self.step, loss_sum / max(counted, 1), int(skipped), int(bad_losses), int(longest_run))


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
        self._warned = Figures(0, 0.0, 0, 0, 0)  # the figures at the last warning of skipped steps

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
        """Between two steps: the test-only fault hook, then a requested stop saves and ends the run
        (after a last look for a non-finite streak, which must not reach a checkpoint)."""
        progress = self.target.progress
        fault_point(progress.phase, progress.epoch, progress.step)
        if self.stop.signum is not None:
            self._check_streak(FiguresInFlight(progress).read())
            self.checkpoint()

    def skip(self, nonfinite: str) -> None:
        """Count a skipped controller step (the loop has already moved past it); too many in a row raise."""
        progress = self.target.progress
        progress.skipped += 1
        in_a_row = progress.in_a_row[progress.phase] = progress.in_a_row.get(progress.phase, 0) + 1
        warn(f"warning: non-finite {nonfinite} at {progress}; step skipped ({in_a_row} in a row)")
        if in_a_row >= MAX_NONFINITE_IN_A_ROW:
            raise NonFiniteError(f"non-finite {nonfinite} in {in_a_row} steps in a row at {progress}")

    def train_on(self, task: Any, forward: Callable, index: int, params: Iterable[nn.Parameter],
                 optimizer: torch.optim.SGD, grad_clip: float) -> None:
        """Train on the task's window or batch `index`. A skipped step also leaves the task's carried
        state (e.g. a recurrent hidden state) as it was, so that no NaN outlives its step; like the
        skip itself, that is decided on the device."""
        carried = task.state_dict()
        outcome = train_step(partial(task.train_loss, forward, index), params, optimizer, grad_clip)
        task.load_state_dict(unless_skipped(outcome.skipped, carried, task.state_dict()))
        self.target.progress.step += 1
        self.target.progress.record(outcome.loss, outcome.skipped)

    def run_steps(self, reporter: Reporter, title: str, steps: int, step: Callable[[], None]) -> Figures:
        """Call `step` until the phase has done `steps` steps, from wherever it stands; return the
        phase's figures.

        The bar moves with every step. Every REPORT_EVERY steps the figures are sent to the host,
        and those sent at the report before are shown and checked for skipped steps: inside a
        phase the host never waits for the device's latest work, only at the phase's end."""
        progress = self.target.progress
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
                self.boundary()
            figures = FiguresInFlight(progress).read()
            self._report(figures, update)
        return figures

    def _report(self, figures: Figures, update: Callable[..., None]) -> None:
        update(completed=self.target.progress.step, loss=figures.mean_loss)
        skipped, bad_losses = figures.skipped - self._warned.skipped, figures.bad_losses - self._warned.bad_losses
        if skipped:
            where = f"epoch {self.target.progress.epoch + 1}, {self.target.progress.phase} step {figures.step}"
            warn(f"warning: {skipped} step(s) skipped by {where}: non-finite {_what(skipped, bad_losses)}")
            self._warned = figures
        self._check_streak(figures)

    def _check_streak(self, figures: Figures) -> None:
        if figures.longest_run >= MAX_NONFINITE_IN_A_ROW:
            progress = self.target.progress
            raise NonFiniteError(f"non-finite {_what(figures.skipped, figures.bad_losses)} in {figures.longest_run} "
                                 f"steps in a row by epoch {progress.epoch + 1}, {progress.phase} step {figures.step}")

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


def unless_skipped(skipped: torch.Tensor, before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """A task's state after a step, or, where the step was skipped, as it was before it: chosen on
    the device. An entry the step did not replace stays; one that was None (no state yet) counts
    as zeros, as a model's missing hidden state does."""
    return {key: value if value is before[key] else
            torch.where(skipped, 0.0 if before[key] is None else before[key], value)
            for key, value in after.items()}


def _what(skipped: int, bad_losses: int) -> str:
    """What was not finite in `skipped` steps, `bad_losses` of them by their loss."""
    return "loss" if bad_losses == skipped else "gradient norm" if bad_losses == 0 else "loss or gradient norm"


def warn(message: str) -> None:
    """Warnings reach the user even with --quiet (a live progress bar shows them above itself)."""
    print(message, file=sys.stderr)
