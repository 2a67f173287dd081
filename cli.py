"""The `enas` command line: search, derive, retrain, their reports, and config. Thin: parsing and exit codes only.
Importing it loads no torch, nor the config (which reads the spaces): each command imports its work in its body."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Callable, Literal, Optional

import typer

from enas.errors import DiskFullError, NonFiniteError, RankLost, Stopped, UserError, is_disk_full
from enas.usage import Cache, Command, Epochs, PanelSeed, TrainSeeds, after_retrain, fold, list_keys, next_steps

if TYPE_CHECKING:   # for the annotations only: the commands import what they run
    from enas.console import Reporter

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  context_settings={"help_option_names": ["-h", "--help"]},
                  help="ENAS: Efficient Neural Architecture Search via Parameter Sharing.")

OVERRIDES_HELP = ("config overrides as key=value, e.g. search.epochs=3 data.name=text data.root=/data/ptb "
                  "(`enas config --keys` lists every key)")
Overrides = Annotated[Optional[list[str]], typer.Argument(metavar="OVERRIDES", help=OVERRIDES_HELP, show_default=False)]
Preset = Annotated[Optional[str], typer.Option("-c", "--config", metavar="PRESET",
                                               help="preset name from conf/ or a path to a .yaml file")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="no progress bars; metrics.jsonl has everything")]
Nproc = Annotated[int, typer.Option("--nproc", min=1, metavar="N", help="run as N processes of one job on this "
                                    "machine (through PyTorch's torchrun launcher: gloo on CPU, NCCL on GPUs); for "
                                    "several machines use torchrun itself (README, Scaling out)")]
RANK = int(os.environ.get("RANK", "0"))   # this process's rank under torchrun; only rank 0 prints
DISTRIBUTED = int(os.environ.get("WORLD_SIZE", "1")) > 1


def command(name: Optional[str] = None) -> Callable:
    """Register a command of `app`, its help written as README writes it (enas/usage.py)."""
    return app.command(name, cls=Command)


def _reporter(quiet: bool) -> Reporter:
    from enas.console import Reporter

    return Reporter(quiet or RANK > 0)


def _relaunch(nproc: int, out: Optional[Path] = None) -> None:
    """Run this command line again as `nproc` processes of one job (-o `out` for all); end with its status."""
    from enas.run.launch import relaunch

    raise typer.Exit(relaunch(nproc, sys.argv[1:], out))


def _check_out(out: Optional[Path]) -> None:
    if DISTRIBUTED and out is None:
        raise UserError("under torchrun every process must write to the same folder: name it with -o RUN_DIR")


def _run(body: Callable[[], None]) -> None:
    """Run a command; a user mistake or a known failure is a message on stderr and its exit status."""
    try:
        body()
    except Stopped as stop:  # not a failure: the message says where it stopped and how to resume
        if RANK == 0:
            typer.echo(str(stop), err=True)
        raise typer.Exit(stop.exit_code) from None
    except RankLost as error:   # every surviving rank says so: the lost one may be rank 0
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(error.exit_code) from None
    except (UserError, NonFiniteError, DiskFullError) as error:
        if RANK == 0:   # the other ranks meet the same error
            typer.echo(f"error: {error}", err=True)
        raise typer.Exit(error.exit_code) from None
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(130) from None
    except Exception as error:
        if not is_disk_full(error):
            raise
        typer.echo(f"error: disk full ({error})", err=True)
        raise typer.Exit(DiskFullError.exit_code) from None


@command()
def search(
    overrides: Overrides = None,
    config: Preset = None,
    out: Annotated[Optional[Path], typer.Option("-o", "--out", metavar="RUN_DIR",
                                                help="run folder (default runs/PRESET-TIME)")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="continue the run in -o from its last checkpoint")] = False,
    seeds: Annotated[Optional[str], typer.Option("--seeds", metavar="SEEDS", help="comma-separated seeds, e.g. 0,1,2: "
                                                 "search, derive and retrain once per seed in -o/seed-N, then the "
                                                 "mean and spread; run it again to continue")] = None,
    nproc: Nproc = 1,
    quiet: Quiet = False,
) -> None:
    """Train the shared weights and the controller in alternation. Writes a run folder."""
    from enas.config import preset_path
    from enas.folder.names import default_run_dir
    from enas.run.resume import run_config

    def body() -> None:
        if seeds is not None:
            if nproc > 1 or DISTRIBUTED:
                raise UserError("--seeds runs its searches one process each; drop --nproc (or torchrun)")
            return _sweep(overrides or [], config, out, resume, seeds, quiet)
        if resume and out is None:
            raise UserError("--resume needs the run folder: enas search -o RUN_DIR --resume")
        _check_out(out)
        preset = config or "default"
        layers = [preset_path(preset)] if config or not resume else []
        run_dir = out or default_run_dir(preset)
        cfg = run_config(run_dir, resume, layers, overrides or [])
        if nproc > 1:
            _relaunch(nproc, run_dir)
        from enas.commands.search import run_search  # torch loads only once the command line is known to be good

        run_search(cfg, run_dir, resume, _reporter(quiet))
        typer.echo(f"run folder: {run_dir}\n{next_steps(run_dir, 'derive')}")

    _run(body)


def _sweep(overrides: list[str], preset: Optional[str], out: Optional[Path], resume: bool, seeds: str,
           quiet: bool) -> None:
    from enas.config import load_config, preset_path
    from enas.folder.names import default_run_dir
    from enas.spaces.architecture import parse_ints

    if resume:
        raise UserError("--seeds continues by itself: run the same command again, without --resume")
    values = parse_ints(seeds, "--seeds")
    if not values or len(set(values)) != len(values):
        raise UserError(f"--seeds needs distinct integers separated by commas, e.g. 0,1,2; got {seeds!r}")
    if any(o.split("=", 1)[0].strip() == "seed" for o in overrides):
        raise UserError("--seeds sets the seed of each run; drop the seed= override")
    cfg_layers = [preset_path(preset or "default")]
    load_config(cfg_layers, overrides)   # every mistake in the overrides before anything runs
    out_dir = out or default_run_dir(f"{preset or 'default'}-seeds")
    from enas.commands.sweep import run_sweep
    from enas.folder.names import SEEDS_FILE

    summary = run_sweep(cfg_layers, overrides, values, out_dir, _reporter(quiet))
    typer.echo(f"{summary.metric} {summary.value_mean:.4g} ± {summary.value_std:.2g} over "
               f"{len(values)} seeds\nwrote {out_dir / SEEDS_FILE}")


@command()
def derive(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="run folder written by `enas search`")],
    samples: Annotated[Optional[int], typer.Option("--samples", min=1, metavar="N",
                                                   help="architectures to sample (default: derive.samples)")] = None,
    top: Annotated[Optional[int], typer.Option("--top", min=1, metavar="K",
                                               help="rows of the printed table (default: derive.top)")] = None,
    nproc: Nproc = 1,
    quiet: Quiet = False,
) -> None:
    """Sample the trained controller; keep the best architecture. The shared weights score each one."""
    from enas.commands.derive import run_derive
    from enas.folder.config_file import saved_config

    def body() -> None:
        overrides = [f"derive.samples={samples}"] * (samples is not None) + [f"derive.top={top}"] * (top is not None)
        cfg = saved_config(run_dir, overrides)
        if nproc > 1:
            _relaunch(nproc)
        best = run_derive(cfg, run_dir, _reporter(quiet))
        from enas.console import elide, terminal_width
        from enas.spaces import official

        if best.table is not None:   # bench.table: where the benchmark places the derived cell
            typer.echo("\n".join(best.table.lines()))
        score = f" (valid {best.metric} {best.score:.4g})"   # the whole string is in arch.json
        typer.echo(f"best: {elide(official(best.arch), terminal_width() - len('best: ' + score))}{score}\n"
                   f"wrote {run_dir / 'arch.json'}\n{next_steps(run_dir, 'retrain')}")

    _run(body)


@command()
def retrain(
    run_dir: Annotated[Optional[str], typer.Argument(metavar="RUN_DIR", show_default=False, help="a folder with "
                                                     "arch.json (from `enas derive`); its config is the base")] = None,
    overrides: Overrides = None,
    arch: Annotated[Optional[str], typer.Option("--arch", metavar="ARCH", help="ARCH.json, a published architecture's "
                                                "name (enas_micro_cifar10, enas_macro_cifar10, nas_rl_ptb), or an "
                                                "official architecture string in quotes")] = None,
    config: Preset = None,
    out: Annotated[Optional[Path], typer.Option("-o", "--out", metavar="OUT_DIR",
                                                help="output folder (default RUN_DIR/retrain)")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="continue an interrupted retrain (in -o OUT_DIR, or "
                                         "RUN_DIR/retrain) from its checkpoint")] = False,
    nproc: Nproc = 1,
    quiet: Quiet = False,
) -> None:
    """Train an architecture from scratch and report its test score. The recipe: the config's retrain keys."""

    def body() -> None:
        given = [run_dir] * (run_dir is not None) + (overrides or [])   # with --arch, RUN_DIR may be an override
        folders = [Path(a) for a in given if "=" not in a]
        if len(folders) > 1:
            raise UserError("give one RUN_DIR, or --arch ARCH.json|\"official string\" (see enas retrain --help)")
        folder = folders[0] if folders else None
        from enas.run.retrain_setup import fresh_retrain, resumed_retrain

        prepare = resumed_retrain if resume else fresh_retrain
        cfg, architecture, out_dir = prepare(folder, arch, config, out, [a for a in given if "=" in a])
        if nproc > 1:
            _relaunch(nproc, out_dir)
        from enas.commands.retrain import run_retrain  # torch loads only once the command line is known to be good

        result = run_retrain(cfg, architecture, out_dir, resume, _reporter(quiet))
        extra = "  ".join(f"{k} {v:.4g}" for k, v in result.figures.items()
                          if k in ("test_bpc", "floor", "unigram_ppl", "oov_test"))
        aux = f" (+{result.aux_params:,} in the auxiliary head)" if result.aux_params else ""
        typer.echo(f"{result.metric} {result.value:.4g}  params {result.params:,}{aux}  {extra}\n"
                   f"wrote {out_dir / 'result.json'}\n{after_retrain(folder, out_dir)}")

    _run(body)



def _budget(run_dir: Path, epochs: Optional[int], seed: int, train_seeds: Optional[str],
            cache: Optional[Path]) -> tuple:
    """The run's config, the panel's training budget, its cache folder and the command that reruns it."""
    from enas.commands.standalone import Budget
    from enas.console import enas_command
    from enas.folder.config_file import saved_config
    from enas.folder.names import STANDALONE_DIR
    from enas.spaces.architecture import parse_ints

    files = [p for p in (cache, *cache.parents) if p.exists() and not p.is_dir()] if cache is not None else []
    if files:   # the cache folder would be made in or under a file
        raise UserError(f"--cache {cache}: {files[0]} is a file; name a folder for the architectures trained alone")
    seeds = tuple(parse_ints(train_seeds, "--train-seeds")) if train_seeds is not None else ()
    if train_seeds is not None and (not seeds or len(set(seeds)) < len(seeds)):
        raise UserError(f"--train-seeds needs distinct integers separated by commas, e.g. 0,1,2; got {train_seeds!r}")
    cfg = saved_config(run_dir)
    rerun = " ".join([enas_command(), *sys.argv[1:]])
    return cfg, Budget(epochs or cfg.retrain.epochs, seed, seeds), cache or run_dir / STANDALONE_DIR, rerun


@command()
def rank(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="run folder of a weight-sharing search (enas, "
                                            "random_ws)")],
    panel: Annotated[int, typer.Option("--panel", min=2, metavar="K", help="architectures in the panel")] = 20,
    samples: Annotated[int, typer.Option("--samples", min=0, metavar="S", help="of them, samples of the controller "
                                         "(besides its most likely architecture); the rest are uniform draws")] = 5,
    top: Annotated[int, typer.Option("--top", min=1, metavar="K", help="k of the top-k overlap")] = 5,
    epochs: Epochs = None, seed: PanelSeed = 0, train_seeds: TrainSeeds = None, cache: Cache = None,
    quiet: Quiet = False,
) -> None:
    """Compare shared-weight scores with training alone (Kendall tau, beside its noise ceiling). Also Spearman rho."""

    def body() -> None:
        cfg, budget, folder, rerun = _budget(run_dir, epochs, seed, train_seeds, cache)
        from enas.commands.rank import RANK_PATH, run_rank
        from enas.folder.names import RANK_FILE
        from enas.records.panels import ceiling_text, diverged_text

        report = run_rank(cfg, run_dir, panel, samples, budget, folder, top, rerun, _reporter(quiet))
        typer.echo(f"Kendall tau {report.kendall_tau:.3f} ({ceiling_text(report.noise_ceiling)})  Spearman rho "
                   f"{report.spearman_rho:.3f}  top-{report.top_k} overlap {report.top_k_overlap:.2f}"
                   f"{diverged_text(report.diverged)}\nwrote {run_dir / RANK_FILE} and {run_dir / RANK_PATH}")

    _run(body)


@command()
def compare(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="run folder with arch.json (after `enas "
                                            "derive`)")],
    random: Annotated[int, typer.Option("--random", min=1, metavar="K", help="random architectures to compare "
                                        "with")] = 20,
    epochs: Epochs = None, seed: PanelSeed = 0, train_seeds: TrainSeeds = None, cache: Cache = None,
    quiet: Quiet = False,
) -> None:
    """The derived architecture against random ones, all trained alone. One budget; prints its percentile."""

    def body() -> None:
        cfg, budget, folder, rerun = _budget(run_dir, epochs, seed, train_seeds, cache)
        from enas.commands.compare import run_compare
        from enas.folder.names import COMPARE_FILE
        from enas.records.panels import ceiling_text, diverged_text, seeds_text, truth_cells

        report = run_compare(cfg, run_dir, random, budget, folder, rerun, _reporter(quiet))
        bpc = f" ({report.derived['test_bpc']:.4g} bits per character)" if report.derived.get("test_bpc") else ""
        typer.echo(f"derived {report.metric} {truth_cells(report.derived, report.metric)[0]}{bpc}: beats "
                   f"{report.beaten} of {report.random} random architectures (percentile {report.percentile:.0f}"
                   f"{seeds_text(report.percentile_seeds)}; {ceiling_text(report.noise_ceiling)})"
                   f"{diverged_text(report.diverged)}\nwrote {run_dir / COMPARE_FILE}")

    _run(body)


@command()
def export(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="run folder with retrain/ (after `enas retrain "
                                            "RUN_DIR`), or the folder of `enas retrain -o OUT_DIR`")],
    fmt: Annotated[Literal["safetensors", "torchscript", "onnx"], typer.Option(
        "--format", "-f", metavar="FORMAT", help="safetensors: the weights, for enas.load; torchscript: a traced "
        "program for torch.jit.load; onnx: a graph for onnxruntime and other ONNX runtimes")] = "safetensors",
) -> None:
    """Write the retrained child to RUN_DIR/export/ with model.json. Formats: safetensors, TorchScript, ONNX."""

    def body() -> None:
        from enas.export import CARD_FILE  # torch loads only once the command line is good
        from enas.export import export as export_child

        path, difference = export_child(run_dir, fmt)
        typer.echo(f"wrote {path} and {path.parent / CARD_FILE}\n"
                   f"checked: its outputs are within {difference:.2g} of PyTorch's")

    _run(body)


RunDir = Annotated[Path, typer.Argument(metavar="RUN_DIR", help="run folder (or a retrain's own output folder)")]


@command()
def plot(run_dir: RunDir) -> None:
    """Draw a run's plots again from its files: RUN_DIR/plots/*.png."""

    def body() -> None:
        from enas.report.run_plots import draw_run

        paths = draw_run(run_dir)
        typer.echo(f"wrote {len(paths)} plots in {paths[0].parent}:\n{fold(', '.join(p.name for p in paths))}")

    _run(body)


@command()
def report(run_dir: RunDir) -> None:
    """The whole run on one self-contained page: RUN_DIR/report.html."""

    def body() -> None:
        from enas.report.html import write_report

        typer.echo(f"wrote {write_report(run_dir)}")

    _run(body)


@command()
def runs(folder: Annotated[Path, typer.Argument(metavar="DIR", help="folder holding run folders")] = Path("runs"),
         ) -> None:
    """List the run folders under DIR (default runs/) and their status. Also preset, space, score, time."""

    def body() -> None:
        from rich.console import Console

        from enas.report.runs import runs_table

        Console().print(runs_table(folder))

    _run(body)


@command("config")
def show_config(
    overrides: Overrides = None,
    config: Preset = None,
    keys: Annotated[bool, typer.Option("--keys", help="list every config key with its default and meaning")] = False,
) -> None:
    """Print the resolved config of a preset with overrides. With --keys: every key, its default, its meaning."""
    from enas.config import load_config, preset_path, to_yaml

    def body() -> None:
        if keys:
            return list_keys()
        typer.echo(to_yaml(load_config([preset_path(config or "default")], overrides or [])), nl=False)

    _run(body)


def main() -> None:
    if RANK > 0:   # the other ranks of a torchrun job print nothing: rank 0 speaks for the job
        sys.stdout = open(os.devnull, "w")
    try:
        app()
    except SystemExit as end:
        if not DISTRIBUTED:
            raise
        # A process of a torchrun job leaves at once: tearing down its process group while a peer
        # is still closing its own can abort in gloo's threads and turn a good exit into a crash.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(end.code if isinstance(end.code, int) else 0 if end.code is None else 1)


if __name__ == "__main__":
    sys.exit(main())
