"""The seam between a search strategy and everything else: the `Strategy` protocol, the phases of
the metrics lines it writes, and what derive and rank get back from it.

A new strategy is one module under `enas/strategies/` with a class that implements `Strategy`,
one entry in the registry (`enas/strategies/__init__.py`) and a preset in `conf/`: its config
section, the `strategy=` value, search, derive, rank, the plots, the report and `enas runs` all
ask the registry. The module imports only what declaring it needs (the config reads the registry
before anything else is loaded); its `search`, `derive` and `scorer` import their machinery when
called, as the commands do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:   # for the annotations only: importing them here would load torch with the config
    from enas.config import Config
    from enas.console import Reporter
    from enas.spaces.architecture import Architecture
    from enas.tasks import Task

# The phases of the metrics lines the built-in strategies write (metrics.jsonl's "phase").
SUPERNET = "supernet"       # one pass of shared-weight training
CONTROLLER = "controller"   # one REINFORCE update of the controller
EVAL = "eval"               # the end of a search epoch: the most likely architecture scored
RANDOM = "random"           # one round of uniformly drawn children (random search)


@dataclass(frozen=True)
class Phase:
    """A kind of metrics line a strategy writes: its phase name and the figures it carries
    (besides phase, epoch, step and time)."""

    name: str
    figures: tuple[str, ...]


@dataclass(frozen=True)
class Derived:
    """What a strategy's derive found: every candidate's validation score (the best one is kept),
    the lines of candidates.jsonl, and how many architectures it looked at."""

    scores: dict[Architecture, float]
    metric: str                 # the scores' name in arch.json: "ppl", "acc", "reward"
    lower_is_better: bool
    sampled: int
    candidates: list[dict[str, Any]] = field(default_factory=list)


class Scorer(Protocol):
    """Scores architectures from a finished search's checkpoint (its shared weights)."""

    task: Task

    def sample(self, n: int, seed: int, greedy: bool = False) -> list[Architecture]:
        """n architectures of the search's controller (its most likely one n times if `greedy`)."""

    def score(self, arch: Architecture) -> float:
        """`arch`'s validation score, in the task's metric."""


class Strategy(Protocol):
    """What every search strategy declares and does."""

    name: ClassVar[str]                  # the registry key and the `strategy=` value
    summary: ClassVar[str]               # a few words for the help of `strategy=`
    section: ClassVar[str]               # the config section of its own keys ("" for none)
    config: ClassVar[type | None]        # the dataclass of that section
    budget: ClassVar[str]                # the config key of the search's length, e.g. search.epochs
    unit: ClassVar[str]                  # one unit of that budget in words: "epoch", "controller update"
    phases: ClassVar[tuple[Phase, ...]]  # the metrics lines it writes
    done_phase: ClassVar[str]            # one line of this phase is one unit of the budget done
    reward_phase: ClassVar[str]          # the phase whose lines carry "reward" ("" for none)
    rewards: ClassVar[dict[str, str]]    # what a reward is (higher is better), by the task's metric
    scored_by: ClassVar[str]             # how its candidates were scored, in words
    epoch_shape: ClassVar[tuple[str, ...]]   # keys a resume may change only where a unit of the budget starts
    learns: ClassVar[bool]               # False: the controller stays at the uniform policy (a random baseline)

    def search(self, config: Config, run_dir: Path, resume: bool, reporter: Reporter) -> object:
        """Run (or resume) the search in `run_dir`, its config already checked; returns the loop's
        objects (the supernet, the controller, ...) for a caller that looks into them."""

    def derive(self, config: Config, run_dir: Path, reporter: Reporter) -> Derived:
        """The candidates of the finished (or stopped) search in `run_dir`, scored."""

    def scorer(self, config: Config, run_dir: Path, reporter: Reporter) -> Scorer:
        """What scores any architecture from the search's checkpoint; a UserError for a strategy
        that keeps nothing to score with."""
