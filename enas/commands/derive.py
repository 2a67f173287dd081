"""Derive (ENAS section 2.2, "Deriving Architectures"): sample from the trained controller, score
each candidate on the whole validation split with the shared weights, keep the best. A NAS-RL
search trained and scored every child it rewarded, so its derive keeps the child of the highest
reward (the best validation score) among its trials.

Writes RUN_DIR/arch.json (the best architecture with its score and renderings),
RUN_DIR/candidates.jsonl (every scored candidate), RUN_DIR/cell.txt and cell.dot, then its plots
(enas/report/run_plots.py): the candidates' scores and the cell's picture, plots/cell.png.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from rich.table import Table

from enas.commands.shared_weights import SharedWeights
from enas.config import Config
from enas.console import Reporter
from enas.errors import UserError
from enas.folder.atomic import write_json, write_text
from enas.folder.names import ARCH_FILE, CANDIDATES_FILE, PLOTS_DIR, TRIALS_FILE
from enas.report.run_plots import CELL_PLOT, draw_after
from enas.run import distributed
from enas.run.events import write_events
from enas.run.metrics import read_metrics
from enas.spaces import from_json, official, space_type
from enas.spaces.architecture import Architecture
from enas.strategies import FROM_SCRATCH

CELL_TEXT, CELL_DOT = "cell.txt", "cell.dot"


@dataclass(frozen=True)
class Candidate:
    arch: Architecture
    score: float


def run_derive(config: Config, run_dir: Path, reporter: Reporter) -> Candidate:
    """The best architecture of a search: of the trained children (NAS-RL), or of N samples from
    the controller scored with the shared weights (ENAS). Then the run's plots, and with
    logging.tensorboard the candidates' scores and the cell's picture as events."""
    derive = derive_from_trials if config.strategy in FROM_SCRATCH else derive_by_shared_weights
    best = derive(config, run_dir, reporter)
    if distributed.is_main():   # the files rank 0 has just written
        draw_after(run_dir, "derive")
        write_events(config, run_dir, "derive", read_metrics(run_dir / CANDIDATES_FILE),
                     {"derive/cell": run_dir / PLOTS_DIR / CELL_PLOT})
    return best


def derive_from_trials(config: Config, run_dir: Path, reporter: Reporter) -> Candidate:
    """NAS-RL trained every child it rewarded: rank them by their validation score."""
    trials = read_metrics(run_dir / TRIALS_FILE) if (run_dir / TRIALS_FILE).is_file() else []
    if not trials:
        raise UserError(f"{run_dir} has no trained children yet ({TRIALS_FILE}); let `enas search` run longer")
    # The reward grows with the validation score (accuracy cubed, c / perplexity squared): the
    # child with the highest reward is the best one.
    scores = {from_json({"space": config.space, "choices": t["choices"]}): t["reward"] for t in trials}
    write_text(run_dir / CANDIDATES_FILE, "".join(
        json.dumps({k: v for k, v in trial.items() if k not in ("phase", "time", "cached")}) + "\n"
        for trial in trials if not trial["cached"]))
    return keep_best(run_dir, scores, "reward", False, len(trials), config, reporter)


def derive_by_shared_weights(config: Config, run_dir: Path, reporter: Reporter) -> Candidate:
    """Score N samples of the search's controller with its shared weights; under torchrun each
    rank scores its share of them (every rank draws the same samples)."""
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
    write_text(run_dir / CANDIDATES_FILE, "".join(
        json.dumps({"arch": official(arch), "choices": arch.to_json()["choices"],
                    f"valid_{task.metric}": scores[arch]}) + "\n" for arch in architectures))
    return keep_best(run_dir, scores, task.metric, task.lower_is_better, len(architectures), config, reporter)


def keep_best(run_dir: Path, scores: dict[Architecture, float], metric: str, lower_is_better: bool, sampled: int,
              config: Config, reporter: Reporter) -> Candidate:
    """Write the best-scored architecture (arch.json, cell.*) and print the table of the best."""
    ranked = sorted(scores.items(), key=lambda item: item[1], reverse=not lower_is_better)
    best = Candidate(*ranked[0])
    write_architecture(run_dir, best, metric, sampled)
    reporter.print(_table(ranked[:config.derive.top], metric))
    return best


def write_architecture(run_dir: Path, best: Candidate, metric: str, sampled: int) -> None:
    text, graph = space_type(best.arch.space).render(best.arch)
    record = {**best.arch.to_json(), "official": official(best.arch),
              f"valid_{metric}": best.score, "sampled": sampled, "cell": text.splitlines()}
    write_json(run_dir / ARCH_FILE, record)
    write_text(run_dir / CELL_TEXT, text + "\n")
    write_text(run_dir / CELL_DOT, graph.dot())


def _table(ranked: list[tuple[Architecture, float]], metric: str) -> Table:
    table = Table(title="best candidates")
    table.add_column("rank", justify="right")
    table.add_column(f"valid {metric}", justify="right")
    table.add_column("architecture (official string)")
    for rank, (arch, score) in enumerate(ranked, start=1):
        table.add_row(str(rank), f"{score:.4g}", official(arch))
    return table
