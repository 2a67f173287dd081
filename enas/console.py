"""Console output, which every layer may use: rich progress bars with live figures, tables, a quiet
mode, and warnings."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

Update = Callable[..., None]


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
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), TextColumn("{task.fields[figures]}"))
        with Progress(*columns, console=self.console, transient=False) as progress:
            task = progress.add_task(description, total=total, figures="")

            def update(advance: int = 1, completed: int | None = None, **figures: Any) -> None:
                text = "  ".join(f"{k} {_fmt(v)}" for k, v in figures.items())
                moved = {"advance": advance} if completed is None else {"completed": completed}
                progress.update(task, **moved, **({"figures": text} if figures else {}))

            yield update

    def print(self, *objects: Any) -> None:
        self.console.print(*objects)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def warn(message: str) -> None:
    """Warnings reach the user even with --quiet (a live progress bar shows them above itself)."""
    print(message, file=sys.stderr)
