"""Architectures trained alone, from scratch, at a named budget: the ground truth (truth.py) that
rank and compare hold a search against.

Each architecture is retrained (retrain.py, the run's final recipe compressed into `epochs`
epochs, under each training seed of the budget) in a folder of its own, named by a digest of what
decides its result: the network (its canonical form), the recipe, the data, the space's sizes and
the seed. A panel already trained is read back, not trained again, and a training that was
stopped resumes; folders of several runs can share one cache when their data and recipe agree. A
training that diverges leaves diverged.json instead of result.json: the worst score, not an error.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from enas.commands.retrain import Retrain, run_retrain
from enas.commands.truth import GroundTruth, Truth
from enas.config import Config, RetrainConfig
from enas.console import Reporter, warn
from enas.errors import NonFiniteError, Stopped, UserError
from enas.folder.names import CHECKPOINTS, DIVERGED_FILE, RESULT_FILE, has_checkpoint
from enas.records import Divergence, Result
from enas.run.checkpoint import load_checkpoint
from enas.spaces import official, space_type
from enas.spaces.architecture import Architecture
from enas.tasks import Task

SCHEDULE = ("lr_decay_start", "lr_decay", "average_after", "cosine_period")   # what scaled_schedule scales


@dataclass(frozen=True)
class Budget:
    """How every architecture of a panel is trained alone."""

    epochs: int                        # retrain epochs
    seed: int                          # the panel's uniform draws; the training seed unless train_seeds says
    train_seeds: tuple[int, ...] = ()  # each architecture is trained once per seed (default: `seed` alone)

    @property
    def seeds(self) -> tuple[int, ...]:
        """The training seeds, in order."""
        return self.train_seeds or (self.seed,)

    def config(self, run_config: Config, seed: int) -> Config:
        """The run's config with this budget's retrain epochs, its recipe's schedules scaled to them
        (scaled_schedule), and the training seed `seed`."""
        return dataclasses.replace(run_config, seed=seed, retrain=scaled_schedule(run_config.retrain, self.epochs))

    def describe(self, run_config: Config, cache: Path) -> dict[str, Any]:
        """The budget as the records keep it: epochs, seeds, the scaled schedule and the cache."""
        recipe = scaled_schedule(run_config.retrain, self.epochs)
        schedule = {key: getattr(recipe, key) for key in SCHEDULE}
        return {"epochs": self.epochs, "seed": self.seed, "train_seeds": list(self.seeds), "schedule": schedule,
                "cache": str(cache)}


def scaled_schedule(recipe: RetrainConfig, epochs: int) -> RetrainConfig:
    """`recipe` for `epochs` epochs with every epoch-based schedule scaled by epochs / recipe.epochs,
    so that a shorter training is the whole recipe compressed, not its beginning: the decay start
    (lr_decay_start), the averaging patience (average_after) and the first cosine cycle
    (cosine_period) become the nearest whole epoch, halves rounded up (20 epochs decaying from 12:
    10 epochs decay from 6), a non-zero one at least 1 (0 keeps its meaning: from the start, never,
    all epochs); the per-epoch decay lr_decay is raised to the power recipe.epochs / epochs, so
    that the learning rate ends about where the recipe's ends (exactly where the rounding is exact)."""
    ratio = epochs / recipe.epochs

    def scaled(count: int) -> int:
        return max(1, math.floor(count * ratio + 0.5)) if count else 0

    return dataclasses.replace(recipe, epochs=epochs, lr_decay_start=scaled(recipe.lr_decay_start),
                               average_after=scaled(recipe.average_after),
                               cosine_period=scaled(recipe.cosine_period), lr_decay=recipe.lr_decay ** (1 / ratio))


def result_folder(config: Config, arch: Architecture, cache: Path) -> Path:
    data = {key: value for key, value in dataclasses.asdict(config.data).items() if key != "cache"}  # decides nothing
    recipe = {"network": repr(space_type(arch.space).canonical(arch)), "retrain": dataclasses.asdict(config.retrain),
              "data": data, "space": dataclasses.asdict(getattr(config, config.space)), "seed": config.seed}
    digest = hashlib.sha1(json.dumps(recipe, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return cache / f"{arch.space}-{digest}"


def train_panel(config: Config, architectures: list[Architecture], budget: Budget, cache: Path, rerun: str,
                reporter: Reporter, command: str, task: Task) -> GroundTruth:
    """The ground truth of a panel: each architecture trained alone at `budget` under each of its
    seeds (every architecture under the first seed before any under the second), behind one
    progress bar. A training that diverged is a result, not an error: the panel goes on."""
    trained: list[list[Result | None]] = [[] for _ in architectures]
    seeds = budget.seeds
    with reporter.phase(f"{command}: training alone ({budget.epochs} epochs each, {len(seeds)} seed"
                        f"{'s' if len(seeds) > 1 else ''})", len(architectures) * len(seeds)) as update:
        for seed in seeds:
            seed_config = budget.config(config, seed)
            for arch, results in zip(architectures, trained):
                results.append(train_alone(seed_config, arch, cache, rerun))
                update(last=round(results[-1].value, 4) if results[-1] else "diverged")
    return GroundTruth(f"test_{task.metric}", task.lower_is_better, seeds, [truth_of(r) for r in trained])


def truth_of(results: list[Result | None]) -> Truth:
    """One architecture's truth from its results per seed (None: that training diverged)."""
    done = [r for r in results if r is not None]
    bpc = [r.figure("test_bpc") for r in done]
    return Truth(tuple(r.value if r else math.nan for r in results), done[0].params if done else None,
                 tuple(b for b in bpc if b is not None) if len(done) == len(results) else ())


def train_alone(config: Config, arch: Architecture, cache: Path, rerun: str) -> Result | None:
    """`arch` retrained with `config` (a `Budget.config`); its result.json, trained once, or None
    where the training diverged (its retrain gave up on non-finite values, or its score is not
    finite). `rerun`: the command that continues the panel after a stop."""
    folder = result_folder(config, arch, cache)
    if (folder / DIVERGED_FILE).is_file():
        Divergence.read(folder)   # checked: a damaged one is an error naming its remedy
        return None
    result, resume = cache_entry(folder)
    if result is not None:
        return result
    if folder.exists() and not resume:
        shutil.rmtree(folder)   # a start that did not reach its first checkpoint, or a damaged entry
    try:
        result = run_retrain(config, arch, folder, resume, Reporter(quiet=True), data_dir=cache, plots=False)
    except Stopped as stop:
        raise Stopped(f"{str(stop).splitlines()[0]}\nthe trained architectures are kept; continue with: {rerun}",
                      stop.exit_code - 128) from None
    except NonFiniteError as error:
        return diverged(folder, arch, config.seed, str(error).splitlines()[0])
    if not math.isfinite(result.value):
        return diverged(folder, arch, config.seed, f"{result.metric} {result.value}")
    return result


def diverged(folder: Path, arch: Architecture, seed: int, error: str) -> None:
    """Record that `arch`'s training in `folder` diverged, and say so."""
    Divergence(official(arch), error).write(folder)
    warn(f"warning: {official(arch)} diverged when trained alone with seed {seed} ({error}); it counts as the "
         "worst of the panel")


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
