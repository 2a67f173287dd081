"""What a run folder must hold to start or resume a run there, and what a resume may change."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from enas.config import Config, load_config
from enas.errors import UserError
from enas.folder.config_file import saved_config
from enas.folder.names import CHECKPOINTS, CONFIG_FILE, LAST, has_checkpoint
from enas.run.state import CONFIG, PROGRESS
from enas.spaces import SPACES


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


def run_config(run_dir: Path, resume: bool, layers: list[Path], overrides: list[str]) -> Config:
    """The config of a run in `run_dir`: `layers` of YAML and the overrides for a new run; for a
    resumed one the saved config first, and nothing changed that decides its results so far."""
    check_run_dir(run_dir, resume)
    if not resume:
        return load_config(layers, overrides)
    saved = saved_config(run_dir)
    config = load_config([run_dir / CONFIG_FILE, *layers], overrides)
    check_resume_config(saved, config)
    return config
