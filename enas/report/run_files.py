"""A run folder read back for its plots, its report and `enas runs`: the config as saved, the
metrics by phase, and the results of derive, retrain, rank and compare where they exist.

Nothing here trains or loads a model; a file that is absent reads as empty (or None), a damaged
one is a one-line error (each is read through its one checking reader)."""

from __future__ import annotations

from functools import cached_property, reduce
from pathlib import Path
from typing import Any

from enas.config import Config
from enas.folder.config_file import saved_config
from enas.folder.names import CANDIDATES_FILE, CONFIG_FILE, METRICS_FILE, RETRAIN_DIR, RETRAIN_PHASE, TRIALS_FILE
from enas.records import ArchFile, CompareReport, RankReport, Result
from enas.run.metrics import read_metrics
from enas.strategies import strategy_of
from enas.strategies.base import Strategy
from enas.tasks import Task, task_kind

METRIC_NAMES = {"ppl": "perplexity", "acc": "accuracy"}


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
    def trials(self) -> list[dict[str, Any]]:
        return read_metrics(self.folder / TRIALS_FILE)

    @cached_property
    def candidates(self) -> list[dict[str, Any]]:
        return read_metrics(self.folder / CANDIDATES_FILE)

    @cached_property
    def arch(self) -> dict[str, Any] | None:
        """arch.json as written, checked."""
        record = ArchFile.read_if_any(self.folder)
        return None if record is None else record.to_json()

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
