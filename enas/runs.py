"""Run folders: where a run's config, metrics and checkpoints live, and who may write there."""

from __future__ import annotations

import time
from pathlib import Path

from enas.checkpoint import LAST, PREVIOUS
from enas.config import Config, load_config, to_yaml
from enas.errors import UserError

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
CHECKPOINTS = "checkpoints"


def default_run_dir(preset: str) -> Path:
    return Path("runs") / f"{Path(preset).stem}-{time.strftime('%Y%m%d-%H%M%S')}"


def check_run_dir(run_dir: Path, resume: bool) -> None:
    """A fresh run needs an unused folder; a resumed one needs a checkpoint to resume from."""
    if resume:
        checkpoints = run_dir / CHECKPOINTS
        if not ((checkpoints / LAST).exists() or (checkpoints / PREVIOUS).exists()):
            raise UserError(f"--resume: {run_dir} holds no checkpoint ({CHECKPOINTS}/{LAST}); "
                            "start a new run without --resume")
    elif (run_dir / CONFIG_FILE).exists():
        raise UserError(f"{run_dir} already holds a run; pass --resume to continue it "
                        "or choose another folder with -o")


def saved_config(run_dir: Path, overrides: list[str] = ()) -> Config:
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise UserError(f"{run_dir} is not a run folder (no {CONFIG_FILE}); "
                        "give the folder printed by `enas search`")
    return load_config([path], list(overrides))


def check_resume_config(saved: Config, requested: Config) -> None:
    """A resumed run must keep what decides its results so far: the space, the data, the seed."""
    changed = [key for key in ("seed", "space", "data", "recurrent")
               if getattr(saved, key) != getattr(requested, key)]
    if changed:
        raise UserError(f"--resume cannot change {', '.join(changed)} of the saved run; "
                        "drop those overrides or start a new run")


def write_config(run_dir: Path, config: Config) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / CONFIG_FILE).write_text(to_yaml(config))
