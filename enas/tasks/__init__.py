"""Tasks: what a search trains on and how it is scored, behind one interface per data kind.

Search, derive and retrain see a task only through `Task`; a model reaches it as a `Model` (the
supernet bound to an architecture, or a child: enas/spaces/base.py).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Protocol

import torch

from enas.config import Config, SearchConfig, TrainConfig
from enas.console import Reporter
from enas.data.config import IMAGE_DATASETS
from enas.errors import UserError
from enas.run import distributed
from enas.run.distributed import World
from enas.spaces.base import DataShape, Model, SearchSpace
from enas.tasks.image import ImageTask
from enas.tasks.text import TextTask

# float32 weights and their gradients: optimiser state and activations come on top, so the check
# catches only sizes that can never fit
BYTES_PER_PARAMETER = 8


class Task(Protocol):
    metric: str              # "ppl" or "acc": the name of the figure `evaluate` returns
    lower_is_better: bool
    valid_is_test: bool      # its validation split is its test split: retrain must not pick its best epoch on it
    final_layout_differs: bool  # `evaluate(..., final=True)` batches the data otherwise than training does
    shape: DataShape         # what its models need to know of the data
    space: SearchSpace       # the search space, sized for this task's data

    def to(self, device: torch.device) -> Task:
        """The task with its data on `device`."""

    def batches(self, split: str) -> int:
        """Training steps (train) or evaluation batches (valid, test) in one pass over `split`."""

    def start_epoch(self, generator: torch.Generator) -> None:
        """A new pass over the training split, its order drawn from `generator`."""

    def train_loss(self, model: Model, index: int) -> torch.Tensor:
        """The training loss of step `index` (counted from the start of training; it wraps)."""

    def lr_scale(self, index: int) -> float:
        """The learning rate of training step `index` relative to the epoch's (random-length BPTT)."""

    def reward(self, model: Model, index: int, batches: int = 1) -> float:
        """The controller's reward of `model` on validation batches index .. index + batches - 1."""

    def calibrate(self, model: Model) -> None:
        """Prepare `model`'s normalisation statistics before it is scored."""

    def evaluate(self, model: Model, split: str, max_batches: int = 0, final: bool = False) -> float:
        """`metric` over `split` (its first `max_batches` batches; 0: all); `final`: a final score,
        taken at the retrain's eval_batch_size and eval_bptt where the task has them (text)."""

    def state_dict(self) -> dict[str, Any]:
        """Its data order and any state carried between steps (a recurrent hidden state)."""

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def keep_data(self, folder: Path) -> str:
        """Record in `folder` what its models depend on in the data (a text vocabulary) on the
        folder's first run, and check it on every later one (resume, derive, rank): a one-line
        error if the data changed. Returns a line worth printing, or ""."""

    def other_units(self, value: float) -> dict[str, float]:
        """A score of `metric` in the task's other units, by name (bits per character for text read as characters)."""

    def describe(self) -> dict[str, float]:
        """Reference figures printed beside a model's score (chance, the entropy floor)."""


def build_task(config: Config, train: TrainConfig, folder: Path | None = None,
               reporter: Reporter | None = None, sharded: bool = False) -> Task:
    """The task of the config's data. `folder`: the run folder, where a text corpus keeps its
    ids once read; `reporter` shows the reading of a large corpus. `sharded`: in a distributed
    run, each rank trains on its own part of every training batch (data parallel); else each
    rank reads whole batches."""
    shard = distributed.world() if sharded else World()
    if task_kind(config) is ImageTask:
        # Search holds out part of the training images for rewards; retrain trains on all of them.
        task: Task = ImageTask(config, train, hold_out=isinstance(train, SearchConfig), reporter=reporter,
                               shard=shard)
    else:
        task = TextTask(config, train, folder=folder, reporter=reporter, shard=shard)
    check_memory(config, task.space)
    return task


def task_kind(config: Config) -> type[Task]:
    """The class of the config's task: what its scores are (`metric`, `lower_is_better`), without reading the data."""
    return ImageTask if config.data.name in IMAGE_DATASETS else TextTask


def check_memory(config: Config, space: SearchSpace) -> None:
    """A one-line error naming the size keys when the weights and gradients of the supernet alone
    would not fit in the memory available now, before a weight is allocated: they are counted on
    torch's meta device, which allocates nothing. (The controller's are a rounding error beside them.)"""
    available = available_memory()
    with torch.device("meta"):
        supernet = sum(p.numel() for p in space.supernet().parameters())
    needed = BYTES_PER_PARAMETER * supernet
    if available and needed > available:
        section = getattr(config, config.space)
        sizes = [f"{config.space}.{f.name}={getattr(section, f.name)}" for f in dataclasses.fields(section)
                 if type(getattr(section, f.name)) is int]
        raise UserError(f"the weights need {needed / 2**30:,.1f} GiB ({supernet:,} supernet parameters), more than the "
                        f"{available / 2**30:,.1f} GiB of memory free; lower {', '.join(sizes)}")


def available_memory() -> int:
    """Bytes of memory free for a new process (Linux's MemAvailable, else the free pages); 0 if unknown."""
    try:
        with open("/proc/meminfo") as info:
            return next(int(line.split()[1]) * 1024 for line in info if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        try:
            return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return 0
