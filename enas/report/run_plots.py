"""Every plot of a run folder, RUN_DIR/plots/*.png, drawn from the files the run has written so
far: the search's, derive's (with the cell's picture, cell.png), retrain's (RUN_DIR/retrain, or a
retrain's own output folder) and rank's. `enas plot` draws them all again; search, derive and
retrain draw them at their end, where a failure is a warning: plots never cost a run.
"""

from __future__ import annotations

import traceback
from pathlib import Path

from matplotlib import rc_context

from enas.console import warn
from enas.errors import UserError
from enas.folder.names import PLOTS_DIR
from enas.report.cell_drawing import write_cell
from enas.report.plots import save
from enas.report.result_plots import derive_figure, rank_figure, retrain_figure
from enas.report.run_files import RunFiles, plots_folder
from enas.report.search_plots import search_figures
from enas.run.distributed import is_main
from enas.spaces import space_type

CELL_PLOT, DERIVE_PLOT, RETRAIN_PLOT, RANK_PLOT = "cell.png", "derive_scores.png", "retrain.png", "rank.png"


def draw_run(folder: Path, only: str | None = None) -> list[Path]:
    """Draw every plot the files of `folder` allow into folder/plots/ (a retrain's output in
    RUN_DIR/retrain draws the run's), or only those of one command (`only`: search, derive,
    retrain or rank); return their paths."""
    # Titles, labels and legends hold names the user chose (a run folder `cost_$5_$10`): shown as
    # written, never read as mathtext, whose parser fails on an odd `$`.
    with rc_context({"text.parse_math": False}):
        return _draw(plots_folder(folder), only)


def _draw(folder: Path, only: str | None) -> list[Path]:
    """`draw_run` on a folder that holds the run's plots."""
    run = RunFiles(folder).read_all()   # a damaged file is one line before any plot is saved
    out = folder / PLOTS_DIR
    drawers = {"search": lambda: search_figures(run), "derive": lambda: {DERIVE_PLOT: derive_figure(run)},
               "rank": lambda: {RANK_PLOT: rank_figure(run)},
               "retrain": lambda: {RETRAIN_PLOT: retrain_figure(run.retrain) if run.retrain is not None else None}}
    figures = {name: figure for command, draw in drawers.items() if only in (None, command)
               for name, figure in draw().items()}
    paths = [save(figure, out / name) for name, figure in figures.items() if figure is not None]
    if run.arch is not None and only in (None, "derive"):
        arch = run.arch.architecture()   # checked by its space when the record was read
        _, graph = space_type(arch.space).render(arch)
        paths.append(write_cell(graph, out / CELL_PLOT, f"the derived {arch.space} architecture"))
    if not paths:
        raise UserError(f"{folder} holds nothing to plot yet (no metrics, candidates or results)")
    return paths


def draw_after(folder: Path, only: str | None = None) -> list[Path]:
    """`draw_run` at the end of a command on `folder` (`only`: that command's plots): a failure is
    one warning line on stderr, never an error; only rank 0 of a distributed run draws."""
    if not is_main():
        return []
    try:
        return draw_run(folder, only)
    except Exception as error:  # noqa: BLE001 - whatever goes wrong in a plot, the run's results are safe
        target = plots_folder(folder)
        first_line = (str(error).strip().splitlines() or [""])[0]   # the warning stays one line
        if isinstance(error, UserError):
            why = first_line
        else:   # a bug or the file system: where it happened helps a report
            where = traceback.extract_tb(error.__traceback__)[-1]
            why = f"{type(error).__name__}: {first_line} at {Path(where.filename).name}:{where.lineno}"
        warn(f"warning: the plots of {target} were not drawn ({why}); `enas plot {target}` tries again")
        return []
