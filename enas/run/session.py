"""A loop's life in its run folder: checkpoints, stop requests, rollbacks, a full disk.

Search and retrain keep where they stand in a `Progress` and run their loops through a `Session`
(README, "Reliability"); the steps themselves run through `Steps` (steps.py):
- after every step the loop calls `boundary()`: if SIGINT or SIGTERM arrived, the whole state is
  saved right there and the run ends with 130 or 143 and the command that resumes it;
- `drive` runs the epochs and saves a checkpoint at each epoch's end; a fresh run also saves its
  initial state, so that a run killed in its first epoch can be resumed too; after each epoch but
  the last it prints the time the rest will take at the pace so far;
- a step whose loss, gradient norm or reward is not finite is skipped and counted (steps.py);
  MAX_NONFINITE_IN_A_ROW of them in a row raise NonFiniteError, which `drive` answers with one
  rollback to the last good checkpoint, drawing fresh random numbers from there (on a
  deterministic machine, replaying the same draws would only fail the same way);
  if it recurs before the next checkpoint, the run ends with exit 3;
- a full disk ends the run with exit 75, naming the last good checkpoint;
- after the first epoch, a run that got less than half a CPU core says so once (threads.py).
"""

from __future__ import annotations

import random
import signal
import time
import zlib
from pathlib import Path
from typing import Any, Callable, Protocol

import torch

from enas.config import Config
from enas.console import Reporter, enas_command, time_left, warn
from enas.errors import DiskFullError, NonFiniteError, Stopped, UserError, is_disk_full
from enas.folder.names import CHECKPOINTS, METRICS_FILE
from enas.run import distributed
from enas.run.checkpoint import load_checkpoint, newest_checkpoint, save_checkpoint
from enas.run.events import events_for
from enas.run.metrics import MetricsLog
from enas.run.progress import FiguresInFlight, Progress, check_streak
from enas.run.signals import StopFlag, fault_point
from enas.run.state import ELAPSED, KIND, METRICS_LINES, PER_RANK, RANKS, WORLD_SIZE
from enas.run.threads import CpuShare


class Resumable(Protocol):
    """What a Session drives: a search or a retrain, with its whole state."""

    kind: str                 # "search" or "retrain": the command, and the checkpoint's kind
    config: Config
    progress: Progress

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def reseed(self, seed: int) -> None:
        """Reseed the target's own generators after a rollback (the session reseeds the global ones)."""


class StopPending(Exception):
    """A stop signal reached this rank between steps its peers do not share; the loop saves and
    stops at its next boundary that every rank reaches (Session.checkpoint)."""


class Session:
    """One stretch of a loop in `folder`, started fresh (`saved` None) or from a loaded checkpoint."""

    def __init__(self, folder: Path, target: Resumable, saved: dict[str, Any] | None,
                 reporter: Reporter | None = None, cpu: CpuShare | None = None):
        """`reporter`: where the estimate of the time left goes (none: not shown); `cpu`: what warns
        once when the run gets too little of a core."""
        self.folder, self.target, self.saved, self.reporter, self.cpu = folder, target, saved, reporter, cpu
        self.checkpoints = folder / CHECKPOINTS
        self.stop = StopFlag()
        self.rolled_back = False  # since the last checkpoint was saved
        self.metrics: MetricsLog
        self.started = time.time()   # moved back by the time earlier sessions ran (a rollback keeps it)

    @property
    def elapsed(self) -> float:
        """Seconds the loop has run, in this session and the ones it resumes."""
        return time.time() - self.started

    def __enter__(self) -> Session:
        if self.saved is not None:
            self.target.load_state_dict(own_state(self.saved))
            self.started -= self.saved.get(ELAPSED, 0.0)
        elif not distributed.is_main():
            # Dropout and augmentation differ between ranks as their data does; rank 0 draws on from
            # the run seed, as a single process does.
            seed = zlib.crc32(f"{self.target.config.seed}:rank{distributed.world().rank}".encode())
            random.seed(seed)
            torch.manual_seed(seed)
        self.metrics = MetricsLog(self.folder / METRICS_FILE, self.saved[METRICS_LINES] if self.saved else None,
                                  events_for(self.target.config, self.folder))
        self.stop.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.__exit__()
        self.metrics.close()

    @property
    def resume_command(self) -> str:
        return f"{enas_command()} {self.target.kind} -o {self.folder} --resume"

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
            done = self.target.progress.epoch
            if self.reporter is not None and done < epochs:
                self.reporter.print(f"{self.target.kind} {time_left(done, epochs, self.elapsed)}")
            if self.cpu is not None and distributed.is_main() and (message := self.cpu.after_epoch()):
                warn(message)

    def checkpoint(self) -> Path:
        """Save the whole state; then, if a stop was requested, end the run here."""
        self.metrics.sync()
        progress = self.target.progress
        state = with_every_rank({KIND: self.target.kind, METRICS_LINES: self.metrics.lines, ELAPSED: self.elapsed,
                                 **self.target.state_dict()})
        path = save_checkpoint(self.checkpoints, state, f"{progress.phase}:{progress.epoch}:{progress.step}")
        self.rolled_back = False
        if self._stop_requested():
            distributed.gather(None)   # no rank leaves before rank 0 has saved: the launcher would stop it
            raise Stopped(f"stopped by {signal.Signals(self.stop.signum).name} at {progress}; saved {path}\n"
                          f"resume with: {self.resume_command}", self.stop.signum)
        return path

    def boundary(self, in_step_with_peers: bool = True) -> None:
        """Between two steps: the test-only fault hook, then a requested stop saves and ends the run
        (after a last look for a non-finite streak, which must not reach a checkpoint).

        `in_step_with_peers` False: the other ranks of a distributed run are not at this boundary
        too (each trains a NAS-RL child of its own), so a stop here raises `StopPending` for the
        loop to agree on at its next common boundary."""
        progress = self.target.progress
        fault_point(progress.phase, progress.epoch, progress.step)
        if not in_step_with_peers and distributed.world().size > 1:
            if self.stop.signum is not None:
                raise StopPending()
            return
        if self._stop_requested():
            check_streak(FiguresInFlight(progress).read(), progress)
            self.checkpoint()

    def _stop_requested(self) -> bool:
        """Whether a stop signal reached this process, or any rank of a distributed run: every rank
        stops at the same boundary, whichever was signalled."""
        self.stop.signum = distributed.agree_max(self.stop.signum or 0) or None
        return self.stop.signum is not None

    def _roll_back(self, error: NonFiniteError) -> None:
        """Back to the last good checkpoint with fresh random draws; a second streak before the next
        checkpoint ends the run (exit 3)."""
        if self.rolled_back:
            kind = self.target.kind
            raise NonFiniteError(f"{error}, again after a rollback; lower {kind}.lr or {kind}.grad_clip "
                                 f"(the last good checkpoint is kept: {newest_checkpoint(self.checkpoints)})") from None
        saved = load_checkpoint(self.checkpoints, self.target.kind, warn)
        self.target.load_state_dict(own_state(saved))
        self.metrics.rewind(saved[METRICS_LINES])
        progress = self.target.progress
        # Deterministic, so that a run killed after a rollback and resumed takes the same path again.
        seed = zlib.crc32(f"{self.target.config.seed}:{progress.phase}:{progress.epoch}:{progress.step}".encode())
        random.seed(seed)
        torch.manual_seed(seed)
        self.target.reseed(seed)
        self.rolled_back = True
        warn(f"warning: {error}; rolled back to {progress} and drawing fresh random numbers from there")


def with_every_rank(state: dict[str, Any]) -> dict[str, Any]:
    """`state` (rank 0's, the one every rank shares) with what each other rank holds on its own."""
    world = distributed.world()
    own = distributed.gather({name: state[name] for name in PER_RANK if name in state})
    return {**state, WORLD_SIZE: world.size, RANKS: own[1:]}


def own_state(saved: dict[str, Any]) -> dict[str, Any]:
    """A saved state as this rank resumes it: with its own entries of PER_RANK."""
    world = distributed.world()
    if saved.get(WORLD_SIZE, 1) != world.size:
        raise UserError(f"the checkpoint was saved by {saved.get(WORLD_SIZE, 1)} process(es) and this run has "
                        f"{world.size}; resume with --nproc {saved.get(WORLD_SIZE, 1)} (torchrun --nproc-per-node)")
    return saved if world.main else {**saved, **saved[RANKS][world.rank - 1]}

