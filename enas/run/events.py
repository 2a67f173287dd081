"""TensorBoard event files beside metrics.jsonl (`logging.tensorboard`): `tensorboard --logdir runs/`.

Every number of a metrics line becomes a scalar tagged "phase/name" ("eval/op_frequency/tanh" for a
number inside a mapping); the n-th line of a phase is step n of its scalars (epochs for the
supernet, eval and retrain lines, updates for the controller's). A resumed run counts on from the
lines it kept, so its steps continue where the checkpoint stood.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
from PIL import Image

from enas.config import Config
from enas.run.distributed import is_main


class Events:
    """A TensorBoard writer on `folder` (a new event file per session, as TensorBoard expects)."""

    def __init__(self, folder: Path):
        from torch.utils.tensorboard import SummaryWriter  # imported only when asked for: slow to load

        self.writer = SummaryWriter(log_dir=str(folder))
        self.lines: Counter[str] = Counter()   # metrics lines written so far, per phase

    def count(self, records: Iterable[dict[str, Any]]) -> None:
        """Steps continue after `records`, the lines a run kept."""
        self.lines = Counter(record["phase"] for record in records)

    def scalars(self, phase: str, figures: dict[str, Any]) -> None:
        """The numbers of one metrics line, at the next step of its phase."""
        step = self.lines[phase]
        for tag, value in numbers(figures):
            self.writer.add_scalar(f"{phase}/{tag}", value, step)
        self.lines[phase] += 1

    def image(self, tag: str, png: Path) -> None:
        with Image.open(png) as picture:
            self.writer.add_image(tag, np.asarray(picture.convert("RGB")), dataformats="HWC")

    def close(self) -> None:
        self.writer.close()


def events_for(config: Config, folder: Path) -> Events | None:
    """A writer on `folder` where the config asks for TensorBoard (rank 0 of a distributed run), else None."""
    return Events(folder) if config.logging.tensorboard and is_main() else None


def write_events(config: Config, folder: Path, phase: str, records: list[dict[str, Any]],
                 images: dict[str, Path]) -> None:
    """Lines and pictures of a command that keeps no metrics log (derive's scores and cell, a
    retrain's result), where the config asks for TensorBoard; a picture not drawn is left out."""
    events = events_for(config, folder)
    if events is None:
        return
    try:
        for record in records:
            events.scalars(phase, record)
        for tag, png in images.items():
            if png.is_file():
                events.image(tag, png)
    finally:
        events.close()


def numbers(figures: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, float]]:
    """(name, value) of every int or float in `figures`, mappings flattened as "name/key"."""
    for name, value in figures.items():
        if isinstance(value, dict):
            yield from numbers(value, f"{prefix}{name}/")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            yield f"{prefix}{name}", float(value)
