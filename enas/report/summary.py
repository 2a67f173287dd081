"""The answer at the top of a run's report: the chosen architecture's score at each stage (the
search's shared weights, derive's, retrain's validation, then the test), the random baseline of
`enas compare`, the wall time of each phase and what the run ran on. Each figure is read from the
run's files; one they do not hold is said to be missing, never guessed."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from enas.report.run_files import RunFiles

NOT_RECORDED = "not recorded"


@dataclass(frozen=True)
class Stage:
    name: str
    value: float | None   # None: not reached yet
    how: str              # what the score is


def stages(run: RunFiles) -> list[Stage]:
    """The derived architecture's score at each stage, from the search to the test."""
    metric, derived = f"valid_{run.metric}", run.arch.official if run.arch else None
    result = run.retrain.result if run.retrain is not None else None
    searched = [line[metric] for line in [*run.phase(run.strategy.done_phase), *run.trials]
                if metric in line and derived and line.get("arch") == derived]
    return [Stage("search", searched[-1] if searched else None, "validation, the last time the search scored it"),
            Stage("derive", run.arch.figures.get(metric) if run.arch else None, f"validation, {run.strategy.scored_by}"),
            Stage("retrain", result.figure(metric) if result else None, "validation, trained alone"),
            Stage("test", result.value if result else None, "test split, the kept weights")]


def score_line(run: RunFiles) -> str:
    """The stages as one line, e.g. "6.30 → 5.895 → 5.143; test 5.21" (— for a stage without a score)."""
    *scored, test = (number(stage.value) for stage in stages(run))
    return " → ".join(scored) + f"; test {test}"


def number(value: float | None) -> str:
    """A score as the report shows it: 4 significant digits, or — where there is none."""
    return "—" if value is None else f"{value:.4g}"


def baseline(run: RunFiles) -> str:
    """compare.json's random panel against the derived architecture, or how to get it."""
    report = run.compare
    if report is None:
        return f"not compared yet: enas compare {run.folder}"
    scores = [row[report.metric] for row in report.random_panel if row[report.metric] is not None]   # not diverged
    median = statistics.median(scores) if scores else None
    return (f"median of {report.random} random architectures {number(median)}, the derived one "
            f"{number(report.derived[report.metric])} (beats {report.beaten} of {report.random}; "
            f"{report.metric.replace('_', ' ')}, all trained alone for {plural(report.budget.get('epochs'), 'epoch')})")


def phase_times(run: RunFiles) -> list[tuple[str, str]]:
    """The wall time of the search, derive and retrain, as far as the files record them."""
    searched = max((line.get("search_s", 0.0) for line in [*run.metrics, *run.trials]), default=0.0)
    result = run.retrain.result if run.retrain is not None else None
    return [("search", elapsed(searched) if run.searched else "no search"),
            ("derive", NOT_RECORDED + " (derive writes no time)" if run.arch else "not derived"),
            ("retrain", elapsed(result.time_s) if result else "not retrained")]


def environment(run: RunFiles) -> str:
    """What the search (else the retrain) ran on: torch, device, threads out of the cores."""
    for files in (run, run.retrain):
        if files is not None and (env := files.environment):
            threads = f"{plural(env['threads'], 'thread')} of {plural(env['cores'], 'core')}"
            setting = files.config.threads
            picked = f" (threads={setting})" if setting else " (threads=0: the cores free at the start)"
            return f"torch {env['torch']}, {env['device']}, {threads}{picked}"
    return NOT_RECORDED + " (a run from before environment.json)"


def elapsed(seconds: float) -> str:
    """A duration in the units that read best: 44 s, 3 min 12 s, 2 h 05 min."""
    whole = round(seconds)
    if whole < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def plural(count: object, noun: str) -> str:
    """"1 epoch", "3 epochs"."""
    return f"{count} {noun}{'' if count == 1 else 's'}"
