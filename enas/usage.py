"""What the command line says besides its results, in the terminal's width: help whose usage lines
name the arguments as README does (RUN_DIR, [DIR], [OVERRIDES...]), `enas config --keys` with each
meaning folded under its key, and the next commands to type.

Light on purpose: cli.py imports it, and `enas --help` loads no torch.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from typer.core import TyperCommand

MAX_WIDTH = 100   # longer lines of prose are hard to read, however wide the terminal


class Command(TyperCommand):
    """A command whose help writes its arguments as README does: RUN_DIR, [DIR], [OVERRIDES...]."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        return [self.options_metavar or "", *map(_usage, self._arguments(ctx))]

    def format_options(self, ctx: Any, formatter: Any) -> None:
        """The arguments by their bare names (typer would add their Python types), then the options."""
        arguments = [(param.metavar, param.get_help_record(ctx)[1]) for param in self._arguments(ctx)]
        if arguments:
            with formatter.section("Arguments"):
                formatter.write_dl(arguments)
        with formatter.section("Options"):
            formatter.write_dl([row for param in self.get_params(ctx) if param.param_type_name == "option"
                                and (row := param.get_help_record(ctx))])

    def _arguments(self, ctx: Any) -> list:
        return [param for param in self.get_params(ctx) if param.param_type_name == "argument"]


def _usage(argument: Any) -> str:
    """RUN_DIR, [DIR] or [OVERRIDES...]: typer would write {RUN_DIR} and [OVERRIDES]..."""
    name = argument.metavar + "..." * (argument.nargs != 1)
    return name if argument.required else f"[{name}]"


def fold(text: str, indent: str = "  ", first: str | None = None) -> str:
    """`text` in lines of the terminal's width (at most MAX_WIDTH), each after `indent` (the first
    after `first`, if given); words are never broken (a path stays whole, however long)."""
    from enas.console import terminal_width

    return textwrap.fill(text, min(terminal_width(), MAX_WIDTH), initial_indent=indent if first is None else first,
                         subsequent_indent=indent, break_on_hyphens=False, break_long_words=False)


def list_keys() -> None:
    """Print every config key and its default on a line, its meaning folded under it; then the presets."""
    from enas.config import describe_keys, preset_names  # the config reads the spaces, which load torch

    for key, default, meaning in describe_keys():
        typer.echo(f"{key} = {default}\n{fold(meaning, '    ')}")
    typer.echo("\n" + fold(f"presets: {', '.join(preset_names())}", first=""))


def next_steps(run_dir: Path, *commands: str) -> str:
    """The lines that name the next commands to type on `run_dir`, as they can be typed here."""
    from enas.console import enas_command

    return "next: " + "\n      ".join(f"{enas_command()} {command} {run_dir}" for command in commands)


def after_retrain(run_dir: Path | None, out_dir: Path) -> str:
    """The commands after a retrain: the report and the export of the run folder that holds it, or
    of the retrain's own folder."""
    from enas.folder.names import RETRAIN_DIR

    return next_steps(run_dir if run_dir is not None and out_dir == run_dir / RETRAIN_DIR else out_dir,
                      "report", "export")


def panel_seed(value: int) -> int:
    """rank and compare's --seed, bounded like the config's seed (enas.data.config.MAX_SEED:
    torch.Generator sees it offset and multiplied); out of range, one error line and exit 2."""
    from enas.data.config import MAX_SEED
    from enas.errors import UserError
    from enas.fields import field_problem

    if problem := field_problem("--seed", value, {"min": 0, "max": MAX_SEED}):
        typer.echo(f"error: {problem}", err=True)
        raise typer.Exit(UserError.exit_code)
    return value


# The options rank and compare share: how each architecture of their panels is trained alone.
Epochs = Annotated[Optional[int], typer.Option("--epochs", min=1, metavar="N", help="each architecture's training "
                                               "budget in retrain epochs (default: the run's retrain.epochs)")]
PanelSeed = Annotated[int, typer.Option("--seed", metavar="N", help="seed of the uniform draws, and of every training "
                                        "alone unless --train-seeds names others", callback=panel_seed)]
TrainSeeds = Annotated[Optional[str], typer.Option("--train-seeds", metavar="SEEDS", help="comma-separated training "
                                                   "seeds, e.g. 0,1,2: each architecture is trained alone once per "
                                                   "seed and scored by the mean; the seeds' agreement is the noise "
                                                   "ceiling (default: --seed alone)")]
Cache = Annotated[Optional[Path], typer.Option("--cache", metavar="DIR", help="folder of the architectures trained "
                                               "alone, reused across commands and runs (default RUN_DIR/standalone)")]
