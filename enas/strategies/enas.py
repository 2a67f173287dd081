"""ENAS (Pham et al. 2018): a supernet's shared weights and the controller trained in alternation;
and its baseline random_ws, random search with weight sharing (Li & Talwalkar 2019), the same
loop with the controller frozen at the uniform policy. The loop is supernet_search.py."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from enas.strategies.base import CONTROLLER, EVAL, SUPERNET, Derived, Phase, Scorer

if TYPE_CHECKING:
    from enas.config import Config
    from enas.console import Reporter

POLICY = ("decision_entropy", "entropy_share", "op_frequency", "input_frequency", "top_op", "top_arch_share")  # watch.py


class Enas:
    name = "enas"
    summary = "shared weights, a learned controller"
    section, config = "", None                 # the search.* and controller.* keys are every strategy's
    budget, unit = "search.epochs", "epoch"
    phases = (Phase(SUPERNET, ("loss", "lr", "steps", "skipped")),
              Phase(CONTROLLER, ("reward", "baseline", "entropy", "loss", "skipped")),
              Phase(EVAL, ("valid_<metric>", "arch", "search_s", *POLICY)))
    done_phase, reward_phase = EVAL, CONTROLLER
    rewards = {"ppl": "c / validation perplexity", "acc": "validation accuracy"}
    scored_by = "shared weights"
    epoch_shape = ("search.batch_size", "search.steps_per_epoch", "controller.steps", "controller.aggregate")
    learns = True   # False: the controller stays at the uniform policy

    def search(self, config: Config, run_dir: Path, resume: bool, reporter: Reporter) -> object:
        from enas.strategies.supernet_search import run_search

        return run_search(config, run_dir, resume, reporter, self)

    def derive(self, config: Config, run_dir: Path, reporter: Reporter) -> Derived:
        from enas.strategies.shared_weights import derive_by_shared_weights

        return derive_by_shared_weights(config, run_dir, reporter)

    def scorer(self, config: Config, run_dir: Path, reporter: Reporter) -> Scorer:
        from enas.strategies.shared_weights import SharedWeights

        return SharedWeights(config, run_dir, reporter)


class RandomWS(Enas):
    name = "random_ws"
    summary = "shared weights, uniform architectures"
    phases = Enas.phases[:1] + Enas.phases[2:]   # no controller updates
    reward_phase = ""
    learns = False
