"""What `enas retrain` trains and where, from its command line: a new retrain's config (the search's,
a preset, overrides), architecture and output folder, or an interrupted one's, every mistake caught
before anything is written."""

from __future__ import annotations

from pathlib import Path

from enas.config import Config, load_config, preset_path
from enas.errors import UserError
from enas.folder.names import ARCH_FILE, CONFIG_FILE, RETRAIN_DIR
from enas.run.resume import check_run_dir, run_config
from enas.spaces import load_architecture
from enas.spaces.architecture import Architecture
from enas.spaces.published import PUBLISHED


def fresh_retrain(run_dir: Path | None, arch: str | None, preset: str | None, out: Path | None,
                overrides: list[str]) -> tuple[Config, Architecture, Path]:
    """Config, architecture and output folder of a new retrain, every mistake caught before any writing."""
    if run_dir is None and arch is None:
        raise UserError("give one RUN_DIR, or --arch ARCH.json|\"official string\" (see enas retrain --help)")
    layers = [run_dir / CONFIG_FILE] if run_dir else []
    if run_dir and not layers[0].is_file():
        raise UserError(f"{run_dir} is not a run folder (no {CONFIG_FILE})")
    if preset or not run_dir:
        layers.append(preset_path(preset or "default"))
    cfg = load_config(layers, overrides)
    architecture = checked_architecture(arch if arch is not None else str(run_dir / ARCH_FILE), cfg.space)
    out_dir = out or (run_dir / RETRAIN_DIR if run_dir else Path("runs") / "retrain")
    check_run_dir(out_dir, resume=False)
    return cfg, architecture, out_dir


def resumed_retrain(run_dir: Path | None, arch: str | None, preset: str | None, out: Path | None,
                  overrides: list[str]) -> tuple[Config, Architecture, Path]:
    """An interrupted retrain continues with the config and architecture saved in its own folder."""
    out_dir = out or (run_dir / RETRAIN_DIR if run_dir else None)
    if out_dir is None:
        raise UserError("--resume needs the retrain folder: enas retrain -o OUT_DIR --resume (or RUN_DIR --resume)")
    cfg = run_config(out_dir, True, [preset_path(preset)] if preset else [], overrides)
    architecture = checked_architecture(str(out_dir / ARCH_FILE), cfg.space)
    if arch is not None and checked_architecture(arch, cfg.space) != architecture:
        raise UserError(f"--resume: --arch differs from the architecture being retrained in {out_dir}; drop --arch")
    return cfg, architecture, out_dir


def checked_architecture(text: str, space: str) -> Architecture:
    """An architecture from an ARCH.json path, a published architecture's name or an official
    string (enas.spaces.load_architecture), checked against the config's space."""
    architecture = load_architecture(text, space)
    check_space(f"{text} is" if text in PUBLISHED else f"{text} holds", architecture.space, space)
    return architecture


def check_space(what: str, arch_space: str, space: str) -> None:
    if arch_space != space:
        raise UserError(f"{what} a {arch_space} architecture but the config's space is {space}; "
                        f"add space={arch_space} or choose its preset with -c")
