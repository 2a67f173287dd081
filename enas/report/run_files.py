"""A run folder read back for its plots, its report and `enas runs`: the config as saved, the
metrics by phase, and the results of derive, retrain, rank and compare where they exist.

Nothing here trains or loads a model; a file that is absent reads as empty (or None), a damaged
one is a one-line error (each is read through its one checking reader)."""

from __future__ import annotations

from functools import cached_property, reduce
from pathlib import Path
from typing import Any

from enas.config import Config
from enas.errors import UserError
from enas.folder.config_file import saved_config
from enas.folder.loading import read_json_file
from enas.folder.names import (
    CANDIDATES_FILE,
    CONFIG_FILE,
    ENVIRONMENT_FILE,
    METRICS_FILE,
    RETRAIN_DIR,
    RETRAIN_PHASE,
    TRIALS_FILE,
)
from enas.records import ArchRecord, CompareReport, EvalLine, RankReport, Result
from enas.run.metrics import read_metrics
from enas.spaces import space_type
from enas.spaces.base import ImageShape, TextShape
from enas.strategies import strategy_of
from enas.strategies.base import EVAL, Strategy
from enas.strategies.controller import max_entropy
from enas.tasks import Task, task_kind

METRIC_NAMES = {"ppl": "perplexity", "acc": "accuracy"}
# A space's decisions follow from its config section alone; building one asks for a data shape too.
PLACEHOLDER_SHAPES = {TextShape: TextShape(vocab_size=2), ImageShape: ImageShape(3, 32, 32, 10)}


class RunFiles:
    """The files of the run (or retrain) folder `folder`."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.config: Config = saved_config(folder)   # a one-line error where there is no good config.yaml
        self.strategy: Strategy = strategy_of(self.config.strategy)
        self.task: type[Task] = task_kind(self.config)   # what its scores are, without reading the data

    def read_all(self) -> RunFiles:
        """Read every file now, the retrain's too: a damaged one is its one-line error before the
        caller draws or writes anything."""
        for name in ("metrics", "trials", "candidates", "arch", "result", "rank", "compare"):
            getattr(self, name)   # the cached properties
        if self.retrain not in (None, self):
            self.retrain.read_all()
        return self

    @property
    def preset(self) -> str:
        return self.config.preset

    @property
    def space(self) -> str:
        return self.config.space

    def setting(self, key: str) -> Any:
        """The config's value of a dotted key, e.g. search.epochs."""
        return reduce(getattr, key.split("."), self.config)

    @property
    def label(self) -> str:
        """The run's name in titles: its folder, and its preset where recorded."""
        return f"{self.folder.name} ({self.preset})" if self.preset else self.folder.name

    @cached_property
    def metrics(self) -> list[dict[str, Any]]:
        return read_metrics(self.folder / METRICS_FILE)

    def phase(self, *names: str) -> list[dict[str, Any]]:
        """The metrics lines of these phases, in order."""
        return [line for line in self.metrics if line["phase"] in names]

    @cached_property
    def evals(self) -> list[EvalLine]:
        """The eval lines of a weight-sharing search, each checked as its record."""
        path = self.folder / METRICS_FILE
        return [EvalLine.from_json({k: v for k, v in line.items() if k not in ("phase", "epoch", "step", "time")},
                                   f"{path} (epoch {line['epoch'] + 1})") for line in self.phase(EVAL)]

    @cached_property
    def trials(self) -> list[dict[str, Any]]:
        return read_metrics(self.folder / TRIALS_FILE)

    @cached_property
    def candidates(self) -> list[dict[str, Any]]:
        return read_metrics(self.folder / CANDIDATES_FILE)

    @cached_property
    def arch(self) -> ArchRecord | None:
        return ArchRecord.read_if_any(self.folder)

    @cached_property
    def environment(self) -> dict[str, Any] | None:
        """environment.json: torch, device, threads (None for a folder written before it existed)."""
        path = self.folder / ENVIRONMENT_FILE
        if not path.exists():
            return None
        environment = read_json_file(path, "search or retrain again to write it, or delete it")
        if not isinstance(environment, dict):
            raise UserError(f"{path} is damaged (not a JSON object); search or retrain again, or delete it")
        return environment

    @cached_property
    def decision_max_entropy(self) -> dict[str, float]:
        """Each decision's entropy under the uniform policy, nats, by name: what the watched
        decision entropies are shares of."""
        kind = space_type(self.space)
        decisions = kind(getattr(self.config, self.space), PLACEHOLDER_SHAPES[kind.data], 0).decisions()
        return {decision.name: max_entropy(decision) for decision in decisions}

    @property
    def max_entropy(self) -> float:
        """The whole policy's entropy under the uniform policy, nats."""
        return sum(self.decision_max_entropy.values())

    @property
    def entropy_floor(self) -> float:
        """controller.entropy_floor: the share of the maximum entropy the controller keeps above (0: none)."""
        return self.config.controller.entropy_floor

    @cached_property
    def result(self) -> Result | None:
        """A retrain folder's result.json."""
        return Result.read_if_any(self.folder)

    @cached_property
    def rank(self) -> RankReport | None:
        return RankReport.read_if_any(self.folder)

    @cached_property
    def compare(self) -> CompareReport | None:
        return CompareReport.read_if_any(self.folder)

    @cached_property
    def retrain(self) -> RunFiles | None:
        """The retrain of this run: the folder itself when it is a retrain's output, else
        RUN_DIR/retrain where it exists."""
        if self.result is not None or self.phase(RETRAIN_PHASE):
            return self
        inner = self.folder / RETRAIN_DIR
        return RunFiles(inner) if (inner / CONFIG_FILE).is_file() else None

    @property
    def searched(self) -> bool:
        """Whether the folder holds a search (not only a retrain)."""
        return any(line["phase"] != RETRAIN_PHASE for line in self.metrics) or bool(self.trials)

    @property
    def metric(self) -> str:
        """The task's figure, "ppl" or "acc", as the metrics lines and results name it."""
        return self.task.metric

    @property
    def metric_name(self) -> str:
        return METRIC_NAMES.get(self.metric, self.metric)

    @property
    def metric_unit(self) -> str:
        """What an axis of the metric says after its name."""
        return " (fraction correct)" if self.metric == "acc" else ""

    @property
    def lower_is_better(self) -> bool:
        return self.task.lower_is_better

    def best(self, values: list[float]) -> float:
        return min(values) if self.lower_is_better else max(values)


def plots_folder(folder: Path) -> Path:
    """Where the plots of `folder` go: a retrain's output inside a run folder (RUN_DIR/retrain)
    plots into the run's plots/, as one run; any other folder into its own."""
    if folder.name == RETRAIN_DIR and (folder.parent / CONFIG_FILE).is_file():
        return folder.parent
    return folder
