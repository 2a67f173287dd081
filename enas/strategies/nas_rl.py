"""NAS-RL (Zoph & Le 2017): every child trained alone from scratch, the controller learning from
their rewards; and its baseline random, random search with children trained alone, the same loop
with the controller frozen at the uniform policy. The loop is child_search.py."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from enas.errors import UserError
from enas.fields import option
from enas.strategies.base import CONTROLLER, RANDOM, Derived, Phase, Scorer

if TYPE_CHECKING:
    from enas.config import Config
    from enas.console import Reporter
    from enas.run.session import Session
    from enas.spaces.architecture import Architecture
    from enas.strategies.child_search import ChildSearch


@dataclass
class NasRLConfig:
    """NAS-RL (Zoph & Le 2017): children trained from scratch with the search.* recipe, no shared weights."""

    updates: int = option(5, "controller updates; each trains `children` new children", min=1)
    children: int = option(4, "m: architectures sampled, trained and rewarded per controller update", min=1)
    child_epochs: int = option(2, "each child's training budget, in epochs of the search.* recipe "
                               "(search.steps_per_epoch caps an epoch's steps)", min=1)
    reward_window: int = option(5, "the reward reads the best validation score of the child's last N epochs "
                                "(the paper: the maximum accuracy of the last 5 epochs, cubed)", min=1)
    cache: bool = option(True, "a child sampled again is looked up by its architecture's canonical form "
                         "instead of trained again")


class NasRL:
    name = "nas_rl"
    summary = "children trained from scratch, a learned controller (Zoph & Le 2017)"
    section, config = "nas_rl", NasRLConfig
    budget, unit = "nas_rl.updates", "controller update"
    phases = (Phase(CONTROLLER, ("reward", "baseline", "entropy", "loss", "best_reward", "search_s",
                                 "decision_entropy", "entropy_share", "top_arch_share")),)
    done_phase = reward_phase = CONTROLLER
    rewards = {"ppl": "c / validation perplexity²", "acc": "validation accuracy³"}
    scored_by = "trained from scratch"
    epoch_shape = ("nas_rl.children",)
    learns = True   # False: the controller stays at the uniform policy

    def per_update(self, config: Config) -> int:
        return config.nas_rl.children

    def propose(self, search: ChildSearch, n: int) -> list[Architecture]:
        from enas.strategies.child_search import controller_draw

        return controller_draw(search, n)

    def learn(self, search: ChildSearch, session: Session) -> None:
        from enas.strategies.child_search import controller_update

        controller_update(search, session)

    def search(self, config: Config, run_dir: Path, resume: bool, reporter: Reporter) -> object:
        from enas.strategies.child_search import run_child_search

        return run_child_search(config, run_dir, resume, reporter, self)

    def derive(self, config: Config, run_dir: Path, reporter: Reporter) -> Derived:
        from enas.strategies.child_search import derive_from_trials

        return derive_from_trials(config, run_dir)

    def scorer(self, config: Config, run_dir: Path, reporter: Reporter) -> Scorer:
        raise UserError(f"{run_dir} is a strategy={self.name} search, which trains no shared weights; "
                        "shared-weight scores need a strategy that keeps them (enas, random_ws)")


class Random(NasRL):
    name = "random"
    summary = "children trained from scratch, uniform architectures"
    phases = (Phase(RANDOM, ("reward", "best_reward", "search_s")),)
    done_phase = reward_phase = RANDOM
    learns = False
