"""`enas runs [DIR]`: the run folders under DIR with their preset, space (and strategy, unless
enas), status, best score and wall time, as a table.

A run's status is read from its files alone (no process is asked), first rule that holds:
- retrained:   RUN_DIR/retrain/result.json exists (or, for a retrain's own folder, result.json);
- retraining:  a retrain has begun (metrics or a checkpoint in RUN_DIR/retrain) and is still
               writing (see "live" below); else interrupted;
- derived:     arch.json exists;
- searched:    the search logged its whole budget (its strategy's `done_phase` lines = its `budget`:
               ENAS eval lines = search.epochs, NAS-RL update lines = nas_rl.updates) and nothing
               after it was run yet;
- searching:   the search is live; else interrupted.
- unreadable:  a file the row needs is damaged (config.yaml, a log, a record): the row names the
               run, and in place of its best score the one-line reason; the other runs are listed.
"Live": a metrics or trials line or a checkpoint was written within the last LIVE_FACTOR times the
longest gap between two of the run's lines so far (at least MIN_LIVE_S; NO_LINES_LIVE_S before its
first two lines). A run killed or stopped by a signal stops writing, and reads as interrupted once
that time has passed.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich import box
from rich.table import Table

from enas.errors import UserError
from enas.folder.names import CHECKPOINTS, CONFIG_FILE, METRICS_FILE, RETRAIN_PHASE, TRIALS_FILE
from enas.report.run_files import RunFiles

LIVE_FACTOR = 3.0
MIN_LIVE_S = 120.0
NO_LINES_LIVE_S = 1800.0
MAX_DEPTH = 4   # DIR/sweep/seed-N is two levels down
UNREADABLE = "unreadable"


def run_folders(folder: Path, depth: int = 0) -> list[Path]:
    """The run folders at or under `folder`: those with a config.yaml, not looked into further
    (their retrain/ and standalone/ belong to them)."""
    if (folder / CONFIG_FILE).is_file():
        return [folder]
    if depth >= MAX_DEPTH:
        return []
    return [run for child in sorted(p for p in folder.iterdir() if p.is_dir()) for run in run_folders(child, depth + 1)]


def status(run: RunFiles, now: float) -> str:
    """The run's status by the rules of the module's docstring."""
    retrain = run.retrain
    if retrain is not None:
        if retrain.result is not None:
            return "retrained"
        if retrain.metrics or (retrain.folder / CHECKPOINTS).is_dir():
            return "retraining" if live(retrain, now) else "interrupted"
    if run.arch is not None:
        return "derived"
    if search_done(run):
        return "searched"
    return "searching" if live(run, now) else "interrupted"


def search_done(run: RunFiles) -> bool:
    return len(run.phase(run.strategy.done_phase)) >= run.setting(run.strategy.budget)


def live(run: RunFiles, now: float) -> bool:
    """Whether the run wrote something recently, by its own pace (see the module's docstring)."""
    times = sorted(line["time"] for line in [*run.metrics, *run.trials] if "time" in line)
    gaps = [b - a for a, b in zip(times, times[1:])]
    patience = max(MIN_LIVE_S, LIVE_FACTOR * max(gaps)) if gaps else NO_LINES_LIVE_S
    files = [run.folder / METRICS_FILE, run.folder / TRIALS_FILE, *(run.folder / CHECKPOINTS).glob("*")]
    newest = max((path.stat().st_mtime for path in files if path.exists()), default=0.0)
    return now - newest < patience


def best_score(run: RunFiles) -> str:
    """The run's furthest score: the test score, else derive's, else the search's best."""
    retrain = run.retrain
    if retrain is not None and retrain.result is not None:
        return f"{retrain.result.metric.replace('_', ' ')} {retrain.result.value:.4g}"
    if run.arch is not None:
        name, value = run.arch.score or ("", None)
        return f"{name.replace('_', ' ')} {value:.4g}" if name else ""
    key = f"valid_{run.metric}"
    values = [line[key] for line in [*run.metrics, *run.trials] if key in line and line["phase"] != RETRAIN_PHASE]
    return f"valid {run.metric} {run.best(values):.4g}" if values else ""


def wall_time(run: RunFiles) -> float:
    """Seconds searched (as the last line that says) plus seconds retrained."""
    searched = max((line.get("search_s", 0.0) for line in run.metrics), default=0.0)
    retrain = run.retrain
    retrained = retrain.result.time_s if retrain is not None and retrain.result is not None else 0.0
    return searched + retrained


def describe(folder: Path, now: float | None = None) -> list[dict[str, Any]]:
    """One row per run folder under `folder`."""
    if not folder.is_dir():
        raise UserError(f"{folder} is not a folder; give the folder that holds the run folders (default runs/)")
    now = time.time() if now is None else now
    return [describe_run(path, str(path.relative_to(folder)) if path != folder else str(path), now)
            for path in run_folders(folder)]


def describe_run(path: Path, name: str, now: float) -> dict[str, Any]:
    """The row of the run folder `path`, shown as `name`; an unreadable one's row says why."""
    try:
        run = RunFiles(path)
        return {"run": name, "preset": run.preset, "space": run.space, "strategy": run.strategy.name,
                "status": status(run, now), "best": best_score(run), "time": wall_time(run)}
    except UserError as error:
        return {"run": name, "preset": "", "space": "", "strategy": "", "status": UNREADABLE, "best": str(error),
                "time": 0.0}


def runs_table(folder: Path) -> Table:
    """The rows of `describe` as a table for the terminal: no borders, two spaces between columns;
    every cell whole on its line but the run's name and a long reason of an unreadable run, which fold
    when the terminal is too narrow."""
    rows = describe(folder)
    table = Table(title=f"{len(rows)} run folder{'s' * (len(rows) != 1)} in {folder}", box=box.SIMPLE_HEAD,
                  show_edge=False, pad_edge=False, padding=(0, 1, 0, 0))
    table.add_column("run", overflow="fold")
    for name in ("preset", "space", "status"):
        table.add_column(name, no_wrap=True, min_width=len(UNREADABLE) if name == "status" else None)
    table.add_column("best", overflow="fold")   # an unreadable run's reason folds under its status
    table.add_column("time", justify="right", no_wrap=True)
    for row in rows:
        space = row["space"] if row["strategy"] in ("enas", "") else f"{row['space']} ({row['strategy']})"
        table.add_row(row["run"], row["preset"], space, row["status"], row["best"], duration(row["time"]))
    return table


def duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {seconds:02d}s"
