"""Tasks: what a search trains on and how it is scored, behind one interface per data kind.

A task exposes `space` (its search space), `batches(split)`, `start_epoch(generator)`,
`train_loss(forward, index)`, `reward(forward, index)`, `calibrate(forward)` (prepare a model's
normalisation statistics before it is scored), `evaluate(forward, split, max_batches)`,
`state_dict()`/`load_state_dict()` (its data order and any state carried between steps),
`describe()`, plus `metric`, `lower_is_better` and `valid_is_test` (its validation split is its
test split, so retrain must not pick its best epoch on it).
"""

from __future__ import annotations

from typing import Union

from enas.config import IMAGE_DATASETS, Config, SearchConfig, TrainConfig
from enas.tasks.image import ImageTask
from enas.tasks.text import TextTask

Task = Union[TextTask, ImageTask]


def build_task(config: Config, train: TrainConfig) -> Task:
    if config.data.name in IMAGE_DATASETS:
        # Search holds out part of the training images for rewards; retrain trains on all of them.
        return ImageTask(config, train, hold_out=isinstance(train, SearchConfig))
    return TextTask(config, train)
