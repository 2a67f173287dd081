"""A run's config on disk: written once the run starts, read back by every later command."""

from __future__ import annotations

from pathlib import Path

from enas.config import Config, load_config, to_yaml
from enas.errors import UserError
from enas.folder.atomic import write_text
from enas.folder.names import CONFIG_FILE


def write_config(run_dir: Path, config: Config) -> None:
    write_text(run_dir / CONFIG_FILE, to_yaml(config))


def saved_config(run_dir: Path, overrides: list[str] = ()) -> Config:
    """The config `run_dir` was run with, with `overrides` on top."""
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise UserError(f"{run_dir} is not a run folder (no {CONFIG_FILE}); "
                        "give the folder printed by `enas search`")
    return load_config([path], list(overrides))
