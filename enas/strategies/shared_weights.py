"""A finished weight-sharing search, read back from its checkpoint to score architectures, and the
derive of the strategies that keep one (enas.py).

Derive and rank both score architectures the same way: bound to the search's final supernet, with
batch-norm statistics recomputed for each one (conv spaces), over the whole validation split.
"""

from __future__ import annotations

from pathlib import Path

import torch

from enas.config import Config
from enas.console import Reporter
from enas.folder.names import CHECKPOINTS
from enas.run import distributed
from enas.run import state as key
from enas.run.checkpoint import load_checkpoint
from enas.run.training import model_of, place, setup_runtime
from enas.spaces import official
from enas.spaces.architecture import Architecture
from enas.strategies.base import Derived
from enas.strategies.controller import Controller
from enas.tasks import Task, build_task


class SharedWeights:
    """The supernet and controller of the search in `run_dir` (nothing else of its state)."""

    def __init__(self, config: Config, run_dir: Path, reporter: Reporter):
        saved = load_checkpoint(run_dir / CHECKPOINTS)   # a fallback to previous.pt is a warning, even with --quiet
        self.config = config
        self.device = setup_runtime(config)
        self.task: Task = build_task(config, config.search, run_dir, reporter).to(self.device)
        if note := self.task.keep_data(run_dir):   # the search's vocabulary, or a one-line error
            reporter.print(note)
        self.supernet = place(self.task.space.supernet(), config, self.device)
        self.supernet.load_state_dict(saved[key.SUPERNET])
        self.supernet.eval()
        self.controller = Controller.for_space(self.task.space, config.controller)
        self.controller.load_state_dict(saved[key.CONTROLLER])
        self.controller.eval()

    def sample(self, n: int, seed: int, greedy: bool = False) -> list[Architecture]:
        """n architectures from the controller (the most likely one n times if `greedy`)."""
        with torch.no_grad():
            return self.controller(n, torch.Generator().manual_seed(seed), greedy=greedy).architectures

    def score(self, arch: Architecture) -> float:
        """`arch`'s validation metric through the shared weights, its normalisation recomputed first."""
        candidate = model_of(self.supernet, self.config, self.device, arch)
        self.task.calibrate(candidate)
        return self.task.evaluate(candidate, "valid")


def derive_by_shared_weights(config: Config, run_dir: Path, reporter: Reporter) -> Derived:
    """Score N samples of the search's controller with its shared weights (ENAS section 2.2, "Deriving
    Architectures"); under torchrun each rank scores its share of them (every rank draws the same samples)."""
    shared = SharedWeights(config, run_dir, reporter)
    task, world = shared.task, distributed.world()
    architectures = shared.sample(config.derive.samples, config.seed + 3)
    distinct = list(dict.fromkeys(architectures))   # the controller often samples the same one twice
    mine: dict[Architecture, float] = {}
    with reporter.phase("derive", len(distinct[world.rank::world.size])) as update:
        for arch in distinct[world.rank::world.size]:
            mine[arch] = shared.score(arch)
            update(best=min(mine.values()) if task.lower_is_better else max(mine.values()))
    scores = {arch: score for share in distributed.gather(mine) for arch, score in share.items()}
    candidates = [{"arch": official(arch), "choices": arch.to_json()["choices"], f"valid_{task.metric}": scores[arch]}
                  for arch in architectures]
    return Derived(scores, task.metric, task.lower_is_better, len(architectures), candidates)
