"""The plots of a search, read from its metrics.jsonl (and trials.jsonl for NAS-RL): reward and
baseline, the controller's entropy (per update; per epoch with the most sampled architecture's
share; per decision and epoch, as shares of the maximum; the entropy floor where one is set), the
supernet's training loss, the validation score, what the policy chooses per epoch (ops and
inputs: a collapse shows as one bright row) and the learning rate where it changes. A plot whose
figures a run did not log is left out (NAS-RL trains no supernet; random search logs no policy).
Titles do not name the run: the report page does, once."""

from __future__ import annotations

import math
from typing import Any, Callable

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from enas.report.plots import WIDE, WIDTH, curves, heatmap, new_figure, new_mosaic, reference
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
    figure, (axes,) = new_figure("reward and baseline")
    curves(axes, series, "controller update", f"reward ({run.strategy.rewards.get(run.metric, 'unitless')})")
    return figure


def entropy_figure(run: RunFiles) -> Figure | None:
    """The policy's entropy per update; where the policy is watched, also per epoch its entropy and
    the most sampled architecture's share, and each decision's entropy, all as shares of their
    maximum (the uniform policy's), with the entropy floor where one is set."""
    updates = [m for m in run.phase(run.strategy.reward_phase) if "entropy" in m]
    watched = policy_lines(run)
    if not watched:
        if not updates:
            return None
        figure, (axes,) = new_figure("controller entropy")
        update_entropy(axes, run, updates)
        return figure
    names = list(watched[-1]["decision_entropy"])
    layout = [["updates", "decisions"], ["epochs", "decisions"]] if updates else [["epochs", "decisions"]]
    figure, axes = new_mosaic("controller entropy", layout, max(5.5 if updates else 3.0, 0.16 * len(names) + 1.4))
    if updates:
        update_entropy(axes["updates"], run, updates)
    policy_shares(axes["epochs"], run, watched)
    maxima = run.decision_max_entropy
    labels = [name if maxima.get(name) else f"{name} (one option)" for name in names]
    heatmap(figure, axes["decisions"], [[share(m["decision_entropy"].get(name, 0.0), maxima.get(name)) for m in watched]
                                        for name in names], labels, epochs(watched), epoch_unit(run), "decision",
            "entropy / its maximum", vmax=1.0)
    axes["decisions"].set_title("each decision's entropy (100 draws after each epoch)", fontsize="small")
    return figure


def update_entropy(axes: Axes, run: RunFiles, updates: list[dict[str, Any]]) -> None:
    """The sampled policy's entropy per controller update, in nats, with the floor in nats."""
    curves(axes, {"policy": (list(range(1, len(updates) + 1)), [m["entropy"] for m in updates])},
           "controller update", f"entropy ({NATS})", "summed over the decisions, mean over each update's samples")
    floor = run.entropy_floor
    if floor and run.max_entropy:
        reference(axes, floor * run.max_entropy, f"entropy floor ({floor:g} of the maximum)", ":")


def policy_shares(axes: Axes, run: RunFiles, watched: list[dict[str, Any]]) -> None:
    """Per epoch: the policy's entropy over its maximum and the most sampled architecture's share (0-1)."""
    series = {"entropy / its maximum": (epochs(watched), [m["entropy_share"] for m in watched])}
    if all("top_arch_share" in m for m in watched):
        series["most sampled architecture's share"] = (epochs(watched), [m["top_arch_share"] for m in watched])
    curves(axes, series, epoch_unit(run), "share (0-1)", "100 draws after each epoch")
    axes.set_ylim(0.0, 1.05)
    if run.entropy_floor:
        reference(axes, run.entropy_floor, f"entropy floor: {run.entropy_floor:g}", ":")


def share(value: float, maximum: float | None) -> float:
    """`value` over `maximum`; nothing (NaN, left blank) for a decision with one option, whose
    entropy is always 0 without it meaning a collapse."""
    return value / maximum if maximum else math.nan


def loss_figure(run: RunFiles) -> Figure | None:
    lines = run.phase("supernet")
    if not lines:
        return None
    figure, (axes,) = new_figure("supernet training loss")
    curves(axes, {"supernet": (epochs(lines), [m["loss"] for m in lines])}, "epoch", f"training loss ({NATS})",
           "cross-entropy, mean over the epoch's steps (a fresh architecture each)")
    return figure


def valid_figure(run: RunFiles) -> Figure | None:
    metric = f"valid_{run.metric}"
    evals = [m for m in run.phase(EVAL) if metric in m]
    children = [t for t in run.trials if metric in t and not t.get("cached")]
    if not evals and not children:
        return None
    which = "the most likely architecture" if evals else "each child (trained from scratch)"
    figure, (axes,) = new_figure(f"validation {run.metric_name} of {which}")
    if evals:
        curves(axes, {"most likely architecture": (epochs(evals), [m[metric] for m in evals])}, "epoch",
               f"validation {run.metric_name}{run.metric_unit}", "through the shared weights, after each epoch")
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
    height = max(2.6, 0.22 * max(len(r) for r in rows.values()) + 1.6)
    figure, axes = new_mosaic("what the controller chooses (100 draws after each epoch)", [[key for key, _ in parts]],
                              height, WIDE if len(parts) > 1 else WIDTH)
    for key, title in parts:
        labels = [f"input {name}" if key == "input_frequency" else name for name in rows[key]]
        heatmap(figure, axes[key], [[m.get(key, {}).get(name, 0.0) for m in watched] for name in rows[key]], labels,
                epochs(watched), epoch_unit(run), title, "share of the choices (0-1)", vmax=1.0)
    if "input_frequency" in axes:
        axes["input_frequency"].set_title("input k: the k-th input a decision can read, the earliest first",
                                          fontsize="small")
    return figure


def lr_figure(run: RunFiles) -> Figure | None:
    """The supernet's learning rate per epoch; none where it never changed (the report gives its value)."""
    lines = [m for m in run.phase(SUPERNET) if "lr" in m]
    if not lines or constant_lr(run) is not None:
        return None
    figure, (axes,) = new_figure("supernet learning rate")
    curves(axes, {"supernet (SGD)": (epochs(lines), [m["lr"] for m in lines])}, "epoch", "learning rate",
           "the supernet's SGD step size, per epoch")
    return figure


def constant_lr(run: RunFiles, phase: str = SUPERNET) -> float | None:
    """The learning rate of the `phase` lines where it never changed, else None."""
    rates = {m["lr"] for m in run.phase(phase) if "lr" in m}
    return rates.pop() if len(rates) == 1 else None


def policy_lines(run: RunFiles) -> list[dict[str, Any]]:
    """The lines with the watched policy's figures, whichever phase carries them (ENAS: eval, NAS-RL: controller)."""
    return [m for m in run.metrics if "decision_entropy" in m]


def epochs(lines: list[dict[str, Any]]) -> list[int]:
    """1-based epoch (or update) numbers of the lines."""
    return [m["epoch"] + 1 for m in lines]


def _natural(name: str) -> tuple:
    """Numbers in numeric order ("2" before "10"), names alphabetically."""
    return (0, int(name), "") if name.isdigit() else (1, 0, name)


# The curves (one height, shown two a row) first, then the heatmaps (wide, a row each).
SEARCH_PLOTS: dict[str, Callable[[RunFiles], Figure | None]] = {
    "search_reward.png": reward_figure, "search_valid.png": valid_figure, "search_loss.png": loss_figure,
    "search_lr.png": lr_figure, "search_entropy.png": entropy_figure, "search_choices.png": choices_figure}
