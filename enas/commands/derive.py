"""`enas derive`: the search's strategy scores its candidates (ENAS: samples of the trained controller
through the shared weights, section 2.2; NAS-RL: the children it trained), and the best is kept.

Writes RUN_DIR/arch.json (the best architecture with its score and renderings),
RUN_DIR/candidates.jsonl (every scored candidate), RUN_DIR/cell.txt and cell.dot, then its plots
(enas/report/run_plots.py): the candidates' scores and the cell's picture, plots/cell.png.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from rich.table import Table

from enas.config import Config
from enas.console import Reporter
from enas.folder.atomic import write_text
from enas.folder.names import CANDIDATES_FILE, METRICS_FILE, PLOTS_DIR
from enas.records import ArchRecord
from enas.report.run_plots import CELL_PLOT, draw_after
from enas.run import distributed
from enas.run.events import write_events
from enas.run.metrics import read_metrics
from enas.spaces import official, space_type
from enas.spaces.architecture import Architecture
from enas.strategies import strategy_of
from enas.strategies.base import Derived
from enas.strategies.watch import unlearned_note
from enas.tables import TableFigures, load_bench

CELL_TEXT, CELL_DOT = "cell.txt", "cell.dot"


@dataclass(frozen=True)
class Candidate:
    arch: Architecture
    score: float
    metric: str   # the score's name: "ppl", "acc", "reward"
    table: TableFigures | None = None   # its figures in the run's benchmark table (bench.table), if any


def run_derive(config: Config, run_dir: Path, reporter: Reporter) -> Candidate:
    """The best architecture of a search, as its strategy derives it; then the run's plots, and with
    logging.tensorboard the candidates' scores and the cell's picture as events."""
    derived = strategy_of(config.strategy).derive(config, run_dir, reporter)
    write_text(run_dir / CANDIDATES_FILE, "".join(json.dumps(line) + "\n" for line in derived.candidates))
    best = keep_best(run_dir, derived, config, reporter)
    if note := unlearned_note(read_metrics(run_dir / METRICS_FILE), strategy_of(config.strategy).learns):
        reporter.print(note)
    if distributed.is_main():   # the files rank 0 has just written
        draw_after(run_dir, "derive")
        write_events(config, run_dir, "derive", read_metrics(run_dir / CANDIDATES_FILE),
                     {"derive/cell": run_dir / PLOTS_DIR / CELL_PLOT})
    return best


def keep_best(run_dir: Path, derived: Derived, config: Config, reporter: Reporter) -> Candidate:
    """Write the best-scored architecture (arch.json, cell.*) and print the table of the best."""
    ranked = sorted(derived.scores.items(), key=lambda item: item[1], reverse=not derived.lower_is_better)
    arch, score = ranked[0]
    bench = load_bench(config.bench)   # a one-line error for a malformed table or an absent architecture
    best = Candidate(arch, score, derived.metric, bench[0].figures(official(arch)) if bench else None)
    write_architecture(run_dir, best, derived.sampled)
    reporter.print(_table(ranked[:config.derive.top], derived.metric))
    return best


def write_architecture(run_dir: Path, best: Candidate, sampled: int) -> None:
    text, graph = space_type(best.arch.space).render(best.arch)
    ArchRecord.of(best.arch, sampled=sampled, cell=text.splitlines(), bench=best.table.to_json() if best.table else {},
                  figures={f"valid_{best.metric}": best.score}).write(run_dir)
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
