"""The plots of a search, read from its metrics.jsonl (and trials.jsonl for NAS-RL): reward and
baseline, the controller's entropy (in all, and per decision and epoch), the supernet's training
loss, the validation score, what the policy chooses per epoch (ops and inputs: a collapse shows
as one bright row) and the learning rate. A plot whose figures a run did not log is left out
(NAS-RL trains no supernet; random search logs no policy)."""

from __future__ import annotations

from typing import Any, Callable

from matplotlib.figure import Figure

from enas.report.plots import curves, heatmap, new_figure
from enas.report.run_files import RunFiles
from enas.strategies.base import EVAL, SUPERNET

NATS = "nats"


def search_figures(run: RunFiles) -> dict[str, Figure]:
    """The search plots by file name."""
    figures = {name: draw(run) for name, draw in SEARCH_PLOTS.items()}
    return {name: figure for name, figure in figures.items() if figure is not None}


def epoch_unit(run: RunFiles) -> str:
    """What a search's epoch is, as its strategy says: an epoch of ENAS, a controller update of NAS-RL."""
    return run.strategy.unit


def reward_figure(run: RunFiles) -> Figure | None:
    lines = run.phase(run.strategy.reward_phase)
    if not lines:
        return None
    x = list(range(1, len(lines) + 1))
    series = {"reward (mean of the update's samples)": (x, [m["reward"] for m in lines])}
    if any("baseline" in m for m in lines):
        series["baseline (moving average)"] = (x, [m["baseline"] for m in lines])
    if any("best_reward" in m for m in lines):
        series["best child so far"] = (x, [m["best_reward"] for m in lines])
    figure, (axes,) = new_figure(f"{run.label}: reward and baseline")
    curves(axes, series, "controller update", f"reward ({run.strategy.rewards.get(run.metric, 'unitless')})")
    return figure


def entropy_figure(run: RunFiles) -> Figure | None:
    updates = [m for m in run.phase(run.strategy.reward_phase) if "entropy" in m]
    watched = policy_lines(run)
    if not updates and not watched:
        return None
    names = list(watched[-1]["decision_entropy"]) if watched else []
    panels = bool(updates) + bool(watched)
    figure, axes = new_figure(f"{run.label}: controller entropy", panels,
                              panel_height=3.0 if not watched else max(3.0, 0.16 * len(names) + 1.2))
    if updates:
        curves(axes[0], {"policy": (list(range(1, len(updates) + 1)), [m["entropy"] for m in updates])},
               "controller update", f"policy entropy ({NATS})",
               "summed over the decisions, mean over each update's samples")
    if watched:
        heatmap(figure, axes[-1], [[m["decision_entropy"].get(name, 0.0) for m in watched] for name in names], names,
                epochs(watched), epoch_unit(run), "decision", f"mean entropy ({NATS})")
        axes[-1].set_title("entropy of each decision (100 draws after each epoch)", fontsize="small")
    return figure


def loss_figure(run: RunFiles) -> Figure | None:
    lines = run.phase("supernet")
    if not lines:
        return None
    figure, (axes,) = new_figure(f"{run.label}: supernet training loss")
    curves(axes, {"supernet": (epochs(lines), [m["loss"] for m in lines])}, "epoch", f"training loss ({NATS})",
           "cross-entropy, mean over the epoch's steps (a fresh architecture each)")
    return figure


def valid_figure(run: RunFiles) -> Figure | None:
    metric = f"valid_{run.metric}"
    evals = [m for m in run.phase(EVAL) if metric in m]
    children = [t for t in run.trials if metric in t and not t.get("cached")]
    if not evals and not children:
        return None
    which = "the most likely architecture (shared weights)" if evals else "each child (trained from scratch)"
    figure, (axes,) = new_figure(f"{run.label}: validation {run.metric_name} of {which}")
    if evals:
        curves(axes, {"most likely architecture": (epochs(evals), [m[metric] for m in evals])}, "epoch",
               f"validation {run.metric_name}{run.metric_unit}")
    else:
        scores = [t[metric] for t in children]
        best = [run.best(scores[:i + 1]) for i in range(len(scores))]
        x = list(range(1, len(scores) + 1))
        curves(axes, {"each child": (x, scores), "best so far": (x, best)}, "child trained",
               f"validation {run.metric_name}{run.metric_unit}")
    return figure


def choices_figure(run: RunFiles) -> Figure | None:
    watched = policy_lines(run)
    parts = [(key, title) for key, title in (("op_frequency", "op"), ("input_frequency", "input read"))
             if any(m.get(key) for m in watched)]
    if not parts:
        return None
    rows = {key: sorted({name for m in watched for name in m.get(key, {})}, key=_natural) for key, _ in parts}
    figure, axes = new_figure(f"{run.label}: what the controller chooses", len(parts),
                              panel_height=max(2.4, 0.22 * max(len(r) for r in rows.values()) + 1.2))
    for ax, (key, title) in zip(axes, parts):
        labels = [f"input {name}" if key == "input_frequency" else name for name in rows[key]]
        heatmap(figure, ax, [[m.get(key, {}).get(name, 0.0) for m in watched] for name in rows[key]], labels,
                epochs(watched), epoch_unit(run), title, "share of the choices (0-1)", vmax=1.0)
    axes[-1].annotate("100 draws after each epoch; input k: the k-th input a decision can read, the earliest first",
                      (0, -0.32), xycoords="axes fraction", fontsize="x-small", va="top")
    return figure


def lr_figure(run: RunFiles) -> Figure | None:
    lines = [m for m in run.phase(SUPERNET) if "lr" in m]
    if not lines:
        return None
    figure, (axes,) = new_figure(f"{run.label}: learning rate")
    curves(axes, {"supernet (SGD)": (epochs(lines), [m["lr"] for m in lines])}, "epoch", "learning rate",
           "the supernet's SGD step size, per epoch")
    return figure


def policy_lines(run: RunFiles) -> list[dict[str, Any]]:
    """The lines with the watched policy's figures, whichever phase carries them (ENAS: eval, NAS-RL: controller)."""
    return [m for m in run.metrics if "decision_entropy" in m]


def epochs(lines: list[dict[str, Any]]) -> list[int]:
    """1-based epoch (or update) numbers of the lines."""
    return [m["epoch"] + 1 for m in lines]


def _natural(name: str) -> tuple:
    """Numbers in numeric order ("2" before "10"), names alphabetically."""
    return (0, int(name), "") if name.isdigit() else (1, 0, name)


SEARCH_PLOTS: dict[str, Callable[[RunFiles], Figure | None]] = {
    "search_reward.png": reward_figure, "search_entropy.png": entropy_figure, "search_loss.png": loss_figure,
    "search_valid.png": valid_figure, "search_choices.png": choices_figure, "search_lr.png": lr_figure}
