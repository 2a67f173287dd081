"""Run folders: where a run's config, metrics and checkpoints live, who may write there, and how
a file in them is replaced without ever leaving a half-written one behind."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any, BinaryIO, Callable

from omegaconf import OmegaConf

from enas.config import SAVED_CONFIG, Config, load_config, to_yaml
from enas.errors import UserError
from enas.run.distributed import is_main
from enas.run.state import CONFIG, PROGRESS
from enas.spaces import SPACES

VOCAB_FILE = "vocab.txt"   # a text run's vocabulary, one word a line in id order (tasks/text.py)
TOKENS_FILE = "tokens.pt"  # a text run's corpus as ids, read once from the text folder (data/text.py)
CLASSES_FILE = "classes.txt"   # an image run's class names, one a line in label order (tasks/image.py)

CONFIG_FILE = SAVED_CONFIG
METRICS_FILE = "metrics.jsonl"
CHECKPOINTS = "checkpoints"
ARCH_FILE = "arch.json"
CANDIDATES_FILE = "candidates.jsonl"   # derive: every scored candidate
TRIALS_FILE = "trials.jsonl"           # nas_rl and random: every trained child
RESULT_FILE = "result.json"            # retrain: the test score
RANK_FILE, COMPARE_FILE = "rank.json", "compare.json"
RETRAIN_DIR = "retrain"                # retrain's output inside a run folder
PLOTS_DIR = "plots"                    # every plot of a run (enas/report/run_plots.py)
REPORT_FILE = "report.html"            # enas report
LAST, PREVIOUS = "last.pt", "previous.pt"


def default_run_dir(preset: str) -> Path:
    return Path("runs") / f"{Path(preset).stem}-{time.strftime('%Y%m%d-%H%M%S')}"


def has_checkpoint(run_dir: Path) -> bool:
    return any((run_dir / CHECKPOINTS / name).exists() for name in (LAST, PREVIOUS))


def check_run_dir(run_dir: Path, resume: bool) -> None:
    """A fresh run needs an unused folder; a resumed one needs a checkpoint to resume from."""
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"{run_dir} is a file, not a run folder; choose another folder with -o")
    if resume:
        if not has_checkpoint(run_dir):
            raise UserError(f"--resume: {run_dir} holds no checkpoint ({CHECKPOINTS}/{LAST}); "
                            "start a new run without --resume")
    elif has_checkpoint(run_dir) or (run_dir / CONFIG_FILE).exists():
        raise UserError(f"{run_dir} already holds a run; pass --resume to continue it "
                        "or choose another folder with -o")


def saved_config(run_dir: Path, overrides: list[str] = ()) -> Config:
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise UserError(f"{run_dir} is not a run folder (no {CONFIG_FILE}); "
                        "give the folder printed by `enas search`")
    return load_config([path], list(overrides))


def check_resume_config(saved: Config, requested: Config) -> None:
    """A resumed run must keep what decides its results so far: the strategy, the space, the data, the seed.
    Where decoded images are cached (data.cache) decides nothing and may change."""
    saved = dataclasses.replace(saved, data=dataclasses.replace(saved.data, cache=requested.data.cache))
    kept = ("seed", "strategy", "space", "data", *SPACES)
    changed = [key for key in kept if getattr(saved, key) != getattr(requested, key)]
    if changed:
        raise UserError(f"--resume cannot change {', '.join(changed)} of the saved run; "
                        "drop those overrides or start a new run")


def check_resume_position(saved: dict[str, Any], requested: Config, first_phase: str,
                          epoch_shape: tuple[str, ...]) -> None:
    """What shapes an epoch's steps (batch size, steps per epoch) may change when a resume starts a
    new epoch; in the middle of one, the saved data position and step counts would no longer fit."""
    progress = saved[PROGRESS]
    if progress["step"] == 0 and progress["phase"] == first_phase:
        return
    old, new = OmegaConf.create(saved[CONFIG]), OmegaConf.structured(requested)
    changed = [key for key in epoch_shape if OmegaConf.select(old, key) != OmegaConf.select(new, key)]
    if changed:
        raise UserError(f"--resume cannot change {', '.join(changed)} in the middle of an epoch (the last "
                        f"checkpoint is at epoch {progress['epoch'] + 1}, {progress['phase']} step "
                        f"{progress['step']}); drop those overrides, or pass them to a resume that starts an epoch")


def write_config(run_dir: Path, config: Config) -> None:
    write_text(run_dir / CONFIG_FILE, to_yaml(config))


def write_json(path: Path, value: Any) -> None:
    """`value` as indented JSON, replacing `path` atomically."""
    write_text(path, json.dumps(value, indent=2) + "\n")


def write_text(path: Path, text: str) -> None:
    """`text` in UTF-8, replacing `path` atomically."""
    data = text.encode()
    write_file(path, lambda handle: handle.write(data))


def write_file(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Replace `path` atomically with what `write` writes: a reader sees the old file or the new one.
    Only one process of a distributed run writes (rank 0); on the others this does nothing."""
    if not is_main():
        return
    temporary = path.with_name(path.name + ".tmp")
    write_synced(temporary, write)
    os.replace(temporary, path)
    fsync_folder(path.parent)


def write_synced(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write a file and force it to disk, so that a rename of it is durable once the folder is
    synced; on any failure the partial file is removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(path, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def fsync_folder(folder: Path) -> None:
    """Make the renames in `folder` durable (a rename is an update of the folder)."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
