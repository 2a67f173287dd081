"""The plots of what follows a search: the scores of derive's candidates, retrain's training,
validation and test curves, and rank's scatter of shared-weight against stand-alone scores."""

from __future__ import annotations

from matplotlib.figure import Figure

from enas.folder.names import RETRAIN_PHASE
from enas.records import Result
from enas.records.panels import ceiling_text, diverged_text
from enas.report.plots import curves, histogram, new_figure, reference, scatter
from enas.report.run_files import RunFiles


def derive_figure(run: RunFiles) -> Figure | None:
    """The distribution of the candidates' scores, the kept one marked."""
    metric = f"valid_{run.metric}"
    scores = [c[metric] for c in run.candidates if metric in c]
    if not scores:
        return None
    how = run.strategy.scored_by
    figure, (axes,) = new_figure(f"derive's candidates ({len(scores)} scored)")
    histogram(axes, scores, f"validation {run.metric_name}{run.metric_unit}, {how}", "candidates")
    best = run.best(scores)
    axes.axvline(best, color="black", linestyle="--", linewidth=1, label=f"kept: {best:.4g}")
    axes.legend(loc="best", fontsize="small")
    return figure


def retrain_figure(retrain: RunFiles) -> Figure | None:
    """Training loss, validation score (with the test score and the references of the result)
    and, where it changed, the learning rate per epoch of `retrain`."""
    lines = retrain.phase(RETRAIN_PHASE)
    if not lines:
        return None
    metric, x = retrain.metric, [m["epoch"] + 1 for m in lines]
    rates = [m["lr"] for m in lines]
    constant = len(set(rates)) == 1
    figure, axes = new_figure("retrain", 2 if constant else 3, panel_height=2.4)
    note = f"learning rate {rates[0]:g} throughout" if constant else ""
    curves(axes[0], {"training": (x, [m["loss"] for m in lines])}, "epoch", "training loss (cross-entropy, nats)",
           note)
    curves(axes[1], {"validation": (x, [m[f"valid_{metric}"] for m in lines])}, "epoch",
           retrain.metric_name + retrain.metric_unit)
    for label, value, style in test_references(retrain.result, metric):
        reference(axes[1], value, label, style)
    if not constant:
        curves(axes[2], {"SGD": (x, rates)}, "epoch", "learning rate")
    return figure


def test_references(result: Result | None, metric: str) -> list[tuple[str, float, str]]:
    """The horizontal lines of a retrain's validation panel: its test score (once written), and
    where the task has them the entropy floor and chance."""
    if result is None:
        return []
    lines = [(f"test: {result.value:.4g}", result.value, "--")]
    if metric == "ppl" and (floor := result.figure("floor")):
        lines.append((f"entropy floor: {floor:.4g}", floor, ":"))
    if chance := result.figure("chance_acc"):
        lines.append((f"chance: {chance:.2g}", chance, ":"))
    return lines


def rank_figure(run: RunFiles) -> Figure | None:
    """rank.json's panel: each architecture's shared-weight score against its score trained alone."""
    report = run.rank
    if not report:
        return None
    metric, alone = report.metric, report.alone_metric
    panel = [row for row in report.panel if row[alone] is not None]   # a diverged one has no point
    figure, (axes,) = new_figure("shared weights against training alone", panel_height=4.2)
    scatter(axes, [row[f"shared_valid_{metric}"] for row in panel], [row[alone] for row in panel],
            [row["source"] for row in panel], f"shared-weight validation {metric}",
            f"{alone.removeprefix('alone_').replace('_', ' ')} trained alone ({report.budget.get('epochs')} epochs)",
            f"Kendall tau {report.kendall_tau:.2f} ({ceiling_text(report.noise_ceiling)}), "
            f"Spearman rho {report.spearman_rho:.2f}{diverged_text(report.diverged)}")
    return figure
