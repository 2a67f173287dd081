"""Architectures trained alone, from scratch, at a named budget: the measure that rank and compare
hold a search against.

Each architecture is retrained (retrain.py, the run's final recipe with `epochs` epochs and the
panel's seed) in a folder of its own, named by a digest of what decides its result: the network
(its canonical form), the recipe, the data, the space's sizes and the seed. A panel already
trained is read back, not trained again, and a training that was stopped resumes; folders of
several runs can share one cache when their data and recipe agree.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from enas.commands.retrain import Retrain, run_retrain
from enas.config import Config
from enas.console import Reporter, warn
from enas.errors import Stopped, UserError
from enas.folder.names import CHECKPOINTS, RESULT_FILE, has_checkpoint
from enas.records import Result
from enas.run.checkpoint import load_checkpoint
from enas.spaces import space_type
from enas.spaces.architecture import Architecture


@dataclass(frozen=True)
class Budget:
    """How every architecture of a panel is trained alone."""

    epochs: int   # retrain epochs
    seed: int     # the training's seed (the same for every architecture of a panel)

    def config(self, run_config: Config) -> Config:
        """The run's config with this budget's retrain epochs and seed."""
        return dataclasses.replace(run_config, seed=self.seed,
                                   retrain=dataclasses.replace(run_config.retrain, epochs=self.epochs))


def result_folder(config: Config, arch: Architecture, cache: Path) -> Path:
    data = {key: value for key, value in dataclasses.asdict(config.data).items() if key != "cache"}  # decides nothing
    recipe = {"network": repr(space_type(arch.space).canonical(arch)), "retrain": dataclasses.asdict(config.retrain),
              "data": data, "space": dataclasses.asdict(getattr(config, config.space)), "seed": config.seed}
    digest = hashlib.sha1(json.dumps(recipe, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return cache / f"{arch.space}-{digest}"


def train_panel(config: Config, architectures: list[Architecture], budget: Budget, cache: Path, rerun: str,
                reporter: Reporter, command: str) -> list[Result]:
    """The result.json of each architecture trained alone at `budget`, behind one progress bar."""
    train_config = budget.config(config)
    results: list[Result] = []
    with reporter.phase(f"{command}: training alone ({budget.epochs} epochs each)", len(architectures)) as update:
        for arch in architectures:
            results.append(train_alone(train_config, arch, cache, rerun))
            update(last=round(results[-1].value, 4))
    return results


def train_alone(config: Config, arch: Architecture, cache: Path, rerun: str) -> Result:
    """`arch` retrained with `config` (a `Budget.config`); its result.json, trained once.
    `rerun`: the command that continues the panel after a stop."""
    folder = result_folder(config, arch, cache)
    result, resume = cache_entry(folder)
    if result is not None:
        return result
    if folder.exists() and not resume:
        shutil.rmtree(folder)   # a start that did not reach its first checkpoint, or a damaged entry
    try:
        return run_retrain(config, arch, folder, resume, Reporter(quiet=True), data_dir=cache, plots=False)
    except Stopped as stop:
        raise Stopped(f"{str(stop).splitlines()[0]}\nthe trained architectures are kept; continue with: {rerun}",
                      stop.exit_code - 128) from None


def cache_entry(folder: Path) -> tuple[Result | None, bool]:
    """What the panel cache holds in `folder`: the result of a finished training, or whether a
    stopped one can resume. A damaged result.json, or checkpoints that are both unreadable, discard
    the entry with one warning: it is trained again, never left to block the panel."""
    try:
        if (folder / RESULT_FILE).is_file():
            return Result.read(folder), False
        if has_checkpoint(folder):
            load_checkpoint(folder / CHECKPOINTS, Retrain.kind)   # a damaged last.pt is moved aside, with a warning
            return None, True
    except UserError as error:
        warn(f"warning: discarded a damaged entry of the panel cache, to be trained again: {error}")
    return None, False
