"""The `enas` command line: search, derive, retrain, their reports, and config. Thin: parsing and exit codes only."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Callable, Literal, Optional

import typer

from enas.config import describe_keys, load_config, preset_names, preset_path, to_yaml
from enas.console import Reporter
from enas.errors import DiskFullError, NonFiniteError, Stopped, UserError, is_disk_full
from enas.run.distributed import RankLost

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="ENAS: Efficient Neural Architecture Search via Parameter Sharing.")

OVERRIDES_HELP = ("config overrides as key=value, e.g. search.epochs=3 data.name=text data.root=/data/ptb "
                  "(`enas config --keys` lists every key)")
Preset = Annotated[Optional[str], typer.Option("-c", "--config",
                                               help="preset name from conf/ or a path to a .yaml file")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="no progress bars; metrics.jsonl has everything")]
Nproc = Annotated[int, typer.Option("--nproc", min=1, help="run as N processes of one job on this machine (through "
                                    "PyTorch's torchrun launcher: gloo on CPU, NCCL on GPUs); for several machines "
                                    "use torchrun itself (README, Scaling out)")]
RANK = int(os.environ.get("RANK", "0"))   # this process's rank under torchrun; only rank 0 prints
DISTRIBUTED = int(os.environ.get("WORLD_SIZE", "1")) > 1


def _reporter(quiet: bool) -> Reporter:
    return Reporter(quiet or RANK > 0)


def _relaunch(nproc: int, out: Optional[Path] = None) -> None:
    """Run this command line again as `nproc` processes of one job, naming its output folder `out`
    (-o) for all of them; end with the job's exit status."""
    from enas.run.launch import launch

    argv, args = [], iter(sys.argv[1:])
    for arg in args:
        if arg == "--nproc":
            next(args, None)
        elif not arg.startswith("--nproc="):
            argv.append(arg)
    if out is not None and not {"-o", "--out"} & set(argv):
        argv += ["-o", str(out)]
    raise typer.Exit(launch(nproc, argv))


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


@app.command()
def search(
    overrides: Annotated[Optional[list[str]], typer.Argument(help=OVERRIDES_HELP, show_default=False)] = None,
    config: Preset = None,
    out: Annotated[Optional[Path], typer.Option("-o", "--out", help="run folder (default runs/PRESET-TIME)")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="continue the run in -o from its last checkpoint")] = False,
    seeds: Annotated[Optional[str], typer.Option("--seeds", help="comma-separated seeds, e.g. 0,1,2: search, derive "
                                                 "and retrain once per seed in -o/seed-N, then the mean and spread; "
                                                 "run it again to continue")] = None,
    nproc: Nproc = 1,
    quiet: Quiet = False,
) -> None:
    """Train the shared weights and the controller in alternation; write a run folder."""
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
        typer.echo(f"run folder: {run_dir}\nnext: enas derive {run_dir}")

    _run(body)


def _sweep(overrides: list[str], preset: Optional[str], out: Optional[Path], resume: bool, seeds: str,
           quiet: bool) -> None:
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

    summary = run_sweep(cfg_layers, overrides, values, out_dir, Reporter(quiet))
    typer.echo(f"{summary.metric} {summary.value_mean:.4g} ± {summary.value_std:.2g} over "
               f"{len(values)} seeds\nwrote {out_dir / SEEDS_FILE}")


@app.command()
def derive(
    run_dir: Annotated[Path, typer.Argument(help="run folder written by `enas search`")],
    samples: Annotated[Optional[int], typer.Option("--samples", min=1, help="architectures to sample (default: derive.samples)")] = None,
    top: Annotated[Optional[int], typer.Option("--top", min=1, help="rows of the printed table (default: derive.top)")] = None,
    nproc: Nproc = 1,
    quiet: Quiet = False,
) -> None:
    """Sample architectures from the trained controller, score them with the shared weights, keep the best."""
    from enas.commands.derive import run_derive
    from enas.folder.config_file import saved_config

    def body() -> None:
        overrides = [f"derive.samples={samples}"] * (samples is not None) + [f"derive.top={top}"] * (top is not None)
        cfg = saved_config(run_dir, overrides)
        if nproc > 1:
            _relaunch(nproc)
        best = run_derive(cfg, run_dir, _reporter(quiet))
        from enas.spaces import official

        typer.echo(f"best: {official(best.arch)} (valid score {best.score:.4g})\n"
                   f"wrote {run_dir / 'arch.json'}\nnext: enas retrain {run_dir}")

    _run(body)


@app.command()
def retrain(
    args: Annotated[Optional[list[str]], typer.Argument(
        help="RUN_DIR (a folder with arch.json from `enas derive`) and/or config overrides key=value",
        show_default=False)] = None,
    arch: Annotated[Optional[str], typer.Option("--arch", help="ARCH.json, a published architecture's name (enas_micro_cifar10, enas_macro_cifar10, nas_rl_ptb), or an official architecture string in quotes")] = None,
    config: Preset = None,
    out: Annotated[Optional[Path], typer.Option("-o", "--out", help="output folder (default RUN_DIR/retrain)")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="continue an interrupted retrain (in -o OUT_DIR, or RUN_DIR/retrain) from its checkpoint")] = False,
    nproc: Nproc = 1,
    quiet: Quiet = False,
) -> None:
    """Train an architecture from scratch with the final recipe and report its test score."""

    def body() -> None:
        overrides = [a for a in args or [] if "=" in a]
        folders = [Path(a) for a in args or [] if "=" not in a]
        if len(folders) > 1:
            raise UserError("give one RUN_DIR, or --arch ARCH.json|\"official string\" (see enas retrain --help)")
        run_dir = folders[0] if folders else None
        from enas.run.retrain_setup import fresh_retrain, resumed_retrain

        prepare = resumed_retrain if resume else fresh_retrain
        cfg, architecture, out_dir = prepare(run_dir, arch, config, out, overrides)
        if nproc > 1:
            _relaunch(nproc, out_dir)
        from enas.commands.retrain import run_retrain  # torch loads only once the command line is known to be good

        result = run_retrain(cfg, architecture, out_dir, resume, _reporter(quiet))
        extra = "  ".join(f"{k} {v:.4g}" for k, v in result.figures.items()
                          if k in ("test_bpc", "floor", "unigram_ppl", "oov_test"))
        aux = f" (+{result.aux_params:,} in the auxiliary head)" if result.aux_params else ""
        typer.echo(f"{result.metric} {result.value:.4g}  params {result.params:,}{aux}  {extra}\n"
                   f"wrote {out_dir / 'result.json'}")

    _run(body)


Epochs = Annotated[Optional[int], typer.Option("--epochs", min=1, help="each architecture's training budget in "
                                               "retrain epochs (default: the run's retrain.epochs)")]
PanelSeed = Annotated[int, typer.Option("--seed", help="seed of the uniform draws, and of every training alone "
                                         "unless --train-seeds names others")]
TrainSeeds = Annotated[Optional[str], typer.Option("--train-seeds", help="comma-separated training seeds, e.g. 0,1,2: "
                                                   "each architecture is trained alone once per seed and scored by "
                                                   "the mean; the seeds' agreement is the noise ceiling "
                                                   "(default: --seed alone)")]
Cache = Annotated[Optional[Path], typer.Option("--cache", help="folder of the architectures trained alone, reused "
                                               "across commands and runs (default RUN_DIR/standalone)")]


def _budget(run_dir: Path, epochs: Optional[int], seed: int, train_seeds: Optional[str],
            cache: Optional[Path]) -> tuple:
    """The run's config, the panel's training budget, its cache folder and the command that reruns it."""
    from enas.commands.standalone import Budget
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
    rerun = "enas " + " ".join(sys.argv[1:])
    return cfg, Budget(epochs or cfg.retrain.epochs, seed, seeds), cache or run_dir / STANDALONE_DIR, rerun


@app.command()
def rank(
    run_dir: Annotated[Path, typer.Argument(help="run folder of a weight-sharing search (enas, random_ws)")],
    panel: Annotated[int, typer.Option("--panel", min=2, help="architectures in the panel")] = 20,
    samples: Annotated[int, typer.Option("--samples", min=0, help="of them, samples of the controller (besides its "
                                         "most likely architecture); the rest are uniform draws")] = 5,
    top: Annotated[int, typer.Option("--top", min=1, help="k of the top-k overlap")] = 5,
    epochs: Epochs = None, seed: PanelSeed = 0, train_seeds: TrainSeeds = None, cache: Cache = None,
    quiet: Quiet = False,
) -> None:
    """Shared-weight scores against training alone: Kendall tau (beside its noise ceiling), Spearman rho, top-k
    overlap."""

    def body() -> None:
        cfg, budget, folder, rerun = _budget(run_dir, epochs, seed, train_seeds, cache)
        from enas.commands.rank import RANK_PATH, run_rank
        from enas.records.panels import ceiling_text, diverged_text
        from enas.folder.names import RANK_FILE

        report = run_rank(cfg, run_dir, panel, samples, budget, folder, top, rerun, Reporter(quiet))
        typer.echo(f"Kendall tau {report.kendall_tau:.3f} ({ceiling_text(report.noise_ceiling)})  Spearman rho "
                   f"{report.spearman_rho:.3f}  top-{report.top_k} overlap {report.top_k_overlap:.2f}"
                   f"{diverged_text(report.diverged)}\nwrote {run_dir / RANK_FILE} and {run_dir / RANK_PATH}")

    _run(body)


@app.command()
def compare(
    run_dir: Annotated[Path, typer.Argument(help="run folder with arch.json (after `enas derive`)")],
    random: Annotated[int, typer.Option("--random", min=1, help="random architectures to compare with")] = 20,
    epochs: Epochs = None, seed: PanelSeed = 0, train_seeds: TrainSeeds = None, cache: Cache = None,
    quiet: Quiet = False,
) -> None:
    """The derived architecture against random ones of its space, all trained alone at one budget."""

    def body() -> None:
        cfg, budget, folder, rerun = _budget(run_dir, epochs, seed, train_seeds, cache)
        from enas.commands.compare import run_compare
        from enas.records.panels import ceiling_text, diverged_text, seeds_text, truth_cells
        from enas.folder.names import COMPARE_FILE

        report = run_compare(cfg, run_dir, random, budget, folder, rerun, Reporter(quiet))
        bpc = f" ({report.derived['test_bpc']:.4g} bits per character)" if report.derived.get("test_bpc") else ""
        typer.echo(f"derived {report.metric} {truth_cells(report.derived, report.metric)[0]}{bpc}: beats "
                   f"{report.beaten} of {report.random} random architectures (percentile {report.percentile:.0f}"
                   f"{seeds_text(report.percentile_seeds)}; {ceiling_text(report.noise_ceiling)})"
                   f"{diverged_text(report.diverged)}\nwrote {run_dir / COMPARE_FILE}")

    _run(body)


@app.command()
def export(
    run_dir: Annotated[Path, typer.Argument(help="run folder with retrain/ (after `enas retrain RUN_DIR`), or the "
                                            "folder of `enas retrain -o OUT_DIR`")],
    fmt: Annotated[Literal["safetensors", "torchscript", "onnx"], typer.Option(
        "--format", "-f", help="safetensors: the weights, for enas.load; torchscript: a traced program for "
        "torch.jit.load; onnx: a graph for onnxruntime and other ONNX runtimes")] = "safetensors",
) -> None:
    """Write the retrained child to RUN_DIR/export/ (model.safetensors, model.pt or model.onnx) with model.json."""

    def body() -> None:
        from enas.export import CARD_FILE  # torch loads only once the command line is good
        from enas.export import export as export_child

        path, difference = export_child(run_dir, fmt)
        typer.echo(f"wrote {path} and {path.parent / CARD_FILE}\n"
                   f"checked: its outputs are within {difference:.2g} of PyTorch's")

    _run(body)


RunDir = Annotated[Path, typer.Argument(help="run folder (or a retrain's own output folder)")]


@app.command()
def plot(run_dir: RunDir) -> None:
    """Draw a run's plots again from its files: RUN_DIR/plots/*.png."""

    def body() -> None:
        from enas.report.run_plots import draw_run

        paths = draw_run(run_dir)
        typer.echo(f"wrote {len(paths)} plots in {paths[0].parent}: {', '.join(p.name for p in paths)}")

    _run(body)


@app.command()
def report(run_dir: RunDir) -> None:
    """The whole run on one self-contained page: RUN_DIR/report.html."""

    def body() -> None:
        from enas.report.html import write_report

        typer.echo(f"wrote {write_report(run_dir)}")

    _run(body)


@app.command()
def runs(folder: Annotated[Path, typer.Argument(metavar="DIR", help="folder holding run folders")] = Path("runs"),
         ) -> None:
    """The run folders under DIR (default runs/): preset, space, status, best score, wall time."""

    def body() -> None:
        from rich.console import Console

        from enas.report.runs import runs_table

        Console().print(runs_table(folder))

    _run(body)


@app.command("config")
def show_config(
    overrides: Annotated[Optional[list[str]], typer.Argument(help=OVERRIDES_HELP, show_default=False)] = None,
    config: Preset = None,
    keys: Annotated[bool, typer.Option("--keys", help="list every config key with its default and meaning")] = False,
) -> None:
    """Print the resolved config of a preset with overrides (or, with --keys, every key explained)."""

    def body() -> None:
        if keys:
            for key, default, help in describe_keys():
                typer.echo(f"{key:28} {default:>14}  {help}")
            typer.echo(f"\npresets: {', '.join(preset_names())}")
            return
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
