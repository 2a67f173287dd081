"""Opening a run in its folder, the one preamble of every loop (the strategies' searches and
retrain): the checkpoint a resume continues from, checked before anything is built; the runtime
(threads, seeds, device); then, once the loop's objects exist, the config and the data's
vocabulary written beside them, and the session that drives the loop."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from enas.config import Config
from enas.console import Reporter
from enas.folder.config_file import write_config
from enas.folder.names import CHECKPOINTS, METRICS_FILE, TRIALS_FILE
from enas.run.checkpoint import load_checkpoint
from enas.run.distributed import is_main
from enas.run.environment import write_environment
from enas.run.metrics import kept_lines
from enas.run.resume import check_resume_position
from enas.run.session import Resumable, Session
from enas.run.state import METRICS_LINES, TRIALS_LINES
from enas.run.threads import CpuShare
from enas.run.training import setup_runtime


class KeepsData(Protocol):
    """A task (enas/tasks), as far as opening a run needs it."""

    def keep_data(self, folder: Path) -> str:
        """Record or check in `folder` what the models depend on in the data; a line worth printing, or ""."""


@dataclass
class OpenRun:
    """A run being started or resumed in `folder`."""

    config: Config
    folder: Path
    reporter: Reporter
    device: torch.device
    saved: dict[str, Any] | None   # the checkpoint a resume continues from; None for a new run
    cpu: CpuShare                  # the CPU the run gets, told once after its first epoch

    def keep(self, task: KeepsData) -> None:
        """Write the config (on a resume too: a later resume starts from its overrides) and the
        environment, and record or check what the run's models depend on in the data."""
        note = task.keep_data(self.folder)   # first: a run refused for its data writes no config
        write_config(self.folder, self.config)
        write_environment(self.folder, self.device)
        if note:
            self.reporter.print(note)

    def session(self, target: Resumable) -> Session:
        return Session(self.folder, target, self.saved, self.reporter, self.cpu)


def open_run(config: Config, folder: Path, resume: bool, reporter: Reporter, kind: str, first_phase: str,
             epoch_shape: tuple[str, ...]) -> OpenRun:
    """Open a run of `kind` ("search", "retrain"): a resumed one must have a good checkpoint, and
    change what shapes an epoch (`epoch_shape`) only where one starts, in `first_phase`."""
    # Read the checkpoint before building anything: a folder without a good one fails at once.
    saved = load_checkpoint(folder / CHECKPOINTS, kind) if resume else None
    if saved is not None:
        check_resume_position(saved, config, first_phase, epoch_shape)
        check_logs(folder, saved)
    device = setup_runtime(config)
    return OpenRun(config, folder, reporter, device, saved, CpuShare(torch.get_num_threads(), device.type == "cpu"))


def check_logs(folder: Path, saved: dict[str, Any]) -> None:
    """The logs a resume appends to hold the lines its checkpoint counts, each whole (MetricsLog
    checks the same when it opens them; here it is done before anything is written)."""
    if not is_main():   # only rank 0 reads and writes the logs
        return
    for name, count in ((METRICS_FILE, METRICS_LINES), (TRIALS_FILE, TRIALS_LINES)):
        if count in saved:
            kept_lines(folder / name, saved[count])
