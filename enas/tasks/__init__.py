"""Tasks: what a search trains on and how it is scored, behind one interface per data kind.

A task exposes `space` (its search space), `batches(split)`, `start_epoch(generator)`,
`train_loss(forward, index)`, `reward(forward, index)`, `evaluate(forward, split, max_batches)`,
`state_dict()`/`load_state_dict()`, `describe()`, plus `metric` and `lower_is_better`.
"""

from __future__ import annotations

from enas.config import Config, TrainConfig
from enas.tasks.text import TextTask

Task = TextTask


def build_task(config: Config, train: TrainConfig) -> Task:
    return TextTask(config, train)
