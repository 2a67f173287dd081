"""`enas rank`: does the supernet order architectures the way training them alone does?

A panel of architectures (the controller's most likely one, some of its samples, and uniform
draws from the space) is scored twice: through the search's final shared weights on the
validation split, as derive scores candidates, and by training each alone at a named budget
(standalone.py) under one or more training seeds, on the test split. Kendall's tau, Spearman's
rho and the top-k overlap of the two orderings say how faithful a proxy the shared weights are;
the noise ceiling (truth.py: how well the seeds' orders agree) says how faithful one can be.
Writes RUN_DIR/rank.json, then draws the run's plots again, its scatter RUN_DIR/plots/rank.png
among them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.table import Table

from enas.commands.panel import uniform_architectures
from enas.commands.standalone import Budget, train_panel
from enas.config import Config
from enas.console import Reporter
from enas.errors import UserError
from enas.folder.names import PLOTS_DIR
from enas.ranking import kendall_tau, spearman_rho, top_k_overlap
from enas.records import RankReport
from enas.records.panels import ceiling_text, diverged_text, truth_cells, truth_headers, truth_order
from enas.report.run_plots import RANK_PLOT, draw_after
from enas.spaces import official, space_type
from enas.spaces.architecture import Architecture
from enas.strategies import strategy_of
from enas.strategies.base import Scorer

RANK_PATH = Path(PLOTS_DIR) / RANK_PLOT


@dataclass(frozen=True)
class Member:
    arch: Architecture
    source: str   # "most likely", "sampled" (from the controller) or "uniform"


def panel_members(shared: Scorer, size: int, samples: int, seed: int) -> list[Member]:
    """`size` distinct networks: the most likely, up to `samples` sampled, the rest uniform."""
    canonical = space_type(shared.task.space.name).canonical
    sources = (("most likely", shared.sample(1, seed, greedy=True)), ("sampled", shared.sample(samples, seed + 1)),
               ("uniform", uniform_architectures(shared.task.space, size, seed)))
    members: list[Member] = []
    seen: set = set()
    for source, architectures in sources:
        for arch in architectures:
            if len(members) < size and canonical(arch) not in seen:
                seen.add(canonical(arch))
                members.append(Member(arch, source))
    return members


def run_rank(config: Config, run_dir: Path, size: int, samples: int, budget: Budget, cache: Path, top: int,
             rerun: str, reporter: Reporter) -> RankReport:
    shared = strategy_of(config.strategy).scorer(config, run_dir, reporter)
    task = shared.task
    members = panel_members(shared, size, samples, budget.seed)
    if len(members) < 2:
        raise UserError(f"the {config.space} space of this run has fewer than 2 distinct networks; nothing to rank")
    with reporter.phase("rank: shared-weight scores", len(members)) as update:
        shared_scores = []
        for member in members:
            shared_scores.append(shared.score(member.arch))
            update()
    truth = train_panel(config, [m.arch for m in members], budget, cache, rerun, reporter, "rank", task)
    metric, sign = task.metric, -1.0 if task.lower_is_better else 1.0
    x, y = [sign * s for s in shared_scores], truth.scores()
    k = min(top, len(members))
    # The controller's own samples are where the shared weights were trained most: the uniform
    # part alone says how well they rank the space at large.
    uniform = [i for i, m in enumerate(members) if m.source == "uniform"]
    tau_uniform = kendall_tau([x[i] for i in uniform], [y[i] for i in uniform]) if len(uniform) > 2 else None
    panel = [{"arch": official(m.arch), "choices": m.arch.to_json()["choices"], "source": m.source,
              f"shared_valid_{metric}": s, **truth.row(i, "alone_")}
             for i, (m, s) in enumerate(zip(members, shared_scores))]
    report = RankReport(metric, task.lower_is_better, budget.describe(config, cache), kendall_tau(x, y),
                        spearman_rho(x, y), k, top_k_overlap(x, y, k), panel, tau_uniform, truth.metric,
                        truth.noise_ceiling(), truth.diverged)
    report.write(run_dir)
    draw_after(run_dir, "rank")
    reporter.print(_table(report))
    return report


def _table(report: RankReport) -> Table:
    metric, alone = report.metric, report.alone_metric
    table = Table(title=f"rank: Kendall tau {report.kendall_tau:.3f} ({ceiling_text(report.noise_ceiling)}), "
                        f"Spearman rho {report.spearman_rho:.3f}, top-{report.top_k} overlap "
                        f"{report.top_k_overlap:.2f}{diverged_text(report.diverged)}")
    for column in ("source", f"shared valid {metric}", *truth_headers(report.panel[0], alone), "architecture"):
        table.add_column(column, justify="left" if column in ("source", "architecture") else "right")
    for row in sorted(report.panel, key=truth_order(alone, report.lower_is_better)):
        table.add_row(row["source"], f"{row[f'shared_valid_{metric}']:.4g}", *truth_cells(row, alone), row["arch"])
    return table
