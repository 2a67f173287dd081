"""Console output, which every layer may use: rich progress bars with live figures, tables, a quiet
mode, warnings, and lines that fit the terminal (an estimate of the time left, long architecture
strings elided, commands the user can type as shown)."""

from __future__ import annotations

import shlex
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Column

Update = Callable[..., None]
ELLIPSIS = " … "


class Reporter:
    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self.console = Console(stderr=True, quiet=quiet)

    @contextmanager
    def phase(self, description: str, total: int) -> Iterator[Update]:
        """A progress bar; the yielded `update(advance=1, completed=None, **figures)` moves it (by
        `advance`, or to `completed`) and shows figures."""
        if self.quiet:
            yield lambda advance=1, completed=None, **figures: None
            return
        with Progress(*_bar_columns(), console=self.console, transient=False, expand=True) as progress:
            task = progress.add_task(description, total=total, figures="")

            def update(advance: int = 1, completed: int | None = None, **figures: Any) -> None:
                text = " ".join(f"{k} {_fmt(v)}" for k, v in figures.items())
                moved = {"advance": advance} if completed is None else {"completed": completed}
                progress.update(task, **moved, **({"figures": text} if figures else {}))

            yield update

    def print(self, *objects: Any) -> None:
        self.console.print(*objects)

    def fitted(self, head: str, text: str, tail: str = "") -> str:
        """head + text + tail in one line of this console, `text` (e.g. an architecture's string)
        elided in the middle if need be."""
        return head + elide(text, self.console.width - len(head) - len(tail)) + tail


def _bar_columns() -> tuple:
    """A bar's columns in one terminal line: the bar takes the room the others leave (all of it in a
    narrow terminal); the counts and the time never shrink; a title or figures too long for the
    line fold onto a second one rather than lose characters."""
    whole, folding = Column(no_wrap=True), Column(overflow="fold")
    return (TextColumn("{task.description}", table_column=folding),
            BarColumn(bar_width=None, table_column=Column(ratio=1, no_wrap=True)),
            MofNCompleteColumn(table_column=whole), TimeElapsedColumn(table_column=whole.copy()),
            TextColumn("{task.fields[figures]}", table_column=folding.copy()))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def warn(message: str) -> None:
    """Warnings reach the user even with --quiet (a live progress bar shows them above itself)."""
    print(message, file=sys.stderr)


def clock(seconds: float) -> str:
    """H:MM:SS, as the bars show their time."""
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{seconds:02d}"


def time_left(done: int, total: int, elapsed: float) -> str:
    """How long the rest of `total` units takes at the pace of the `done` ones, which took `elapsed` seconds."""
    return f"{done}/{total} done in {clock(elapsed)}, about {clock(elapsed / done * (total - done))} left"


def elide(text: str, width: int) -> str:
    """`text` in at most `width` characters (but never less than a few of each end): its middle
    replaced by " … " when it is too long. For a long architecture string, whose whole form is in
    the run's files."""
    if len(text) <= width:
        return text
    keep = max(width - len(ELLIPSIS), 8)
    return text[:(keep + 1) // 2].rstrip() + ELLIPSIS + text[len(text) - keep // 2:].lstrip()


def terminal_width() -> int:
    """Columns of the terminal (COLUMNS when set; 80 when there is none, e.g. output to a file)."""
    return shutil.get_terminal_size((80, 24)).columns


def enas_command() -> str:
    """`enas` as the user can type it here: the name when PATH finds this very script, else the
    script's path as it was run (after `make search`, .venv/bin/enas: the venv is not on PATH), or
    `python -m enas` for a run as a module (torchrun ... -m enas)."""
    script = Path(sys.argv[0])
    if script.name != "enas":
        return f"{shlex.quote(sys.executable)} -m enas"
    found = shutil.which("enas")
    if found is not None and Path(found).resolve() == script.resolve():
        return "enas"
    return shlex.quote(str(script))
