"""`python -m benchmarks.nb201 --table CSV [--data FOLDER] [--strategies nas_rl,random,evolution,enas,random_ws]
[--seeds 0,1,2] [--panel 100] [--out DIR] [OVERRIDES...]`: every strategy judged by NAS-Bench-201's ground truth.

Per strategy and seed: a search (the table-backed presets nb201_nas_rl, nb201_random and
nb201_evolution look each child up in --table; enas and random_ws search real CIFAR-10 with the
nb201 preset, the folder --data being the image-folder JPEG set or the python batches), its derive,
and the derived cell's figures in the table: per column its value, rank and percentile among all
15,625 cells. For the weight-sharing strategies also Kendall's tau of the shared-weight scores
against the table (bench.metric) over a panel of --panel uniform cells plus the controller's
distinct samples. Prints a row per run and the mean ± std per strategy, and writes OUT/nb201.json.
Runs go to OUT/STRATEGY/seed-N; a finished one is read back, so the same command continues.

The issue's targets (decided on cifar10_valid only; the table's figures are 12-epoch ones):
the derived cell in the top 1 % (cifar10_valid >= 83.57) for each seed, the mean in the top
0.5 % (>= 83.83), and for ENAS a tau of 0.6 or more over a 100-cell panel.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

import torch

from enas.commands.panel import uniform_architectures
from enas.commands.sweep import search_and_derive, search_seconds
from enas.config import Config, preset_path
from enas.console import Reporter
from enas.records import ArchRecord
from enas.spaces import official
from enas.strategies import strategy_of
from enas.tables import load_bench
from enas.tables.scores import table_tau

QUIET = Reporter(quiet=True)
PRESETS = {"nas_rl": "nb201_nas_rl", "random": "nb201_random", "evolution": "nb201_evolution",
           "enas": "nb201", "random_ws": "nb201"}
SHARED = ("enas", "random_ws")   # searched on images, with shared weights


def one_run(strategy: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """Search and derive one strategy at one seed (or read back a finished run); its table figures."""
    overrides = [f"strategy={strategy}", f"bench.table={args.table}", f"seed={seed}", *args.overrides]
    if strategy in SHARED:
        if args.data is None:
            raise SystemExit(f"{strategy} searches CIFAR-10: give --data (the image folder or cifar-10-batches-py)")
        kind = "cifar10" if (args.data / "data_batch_1").is_file() else "image_folder"
        overrides += [f"data.name={kind}", f"data.root={args.data}"]
    run_dir = args.out / strategy / f"seed-{seed}"
    config = search_and_derive([preset_path(PRESETS[strategy])], overrides, run_dir, QUIET)
    arch = ArchRecord.read(run_dir)
    figures = arch.bench["metrics"]
    row = {"strategy": strategy, "seed": seed, "arch": arch.official, "search_s": search_seconds(run_dir),
           **{f"{c}_{k}": v[k] for c, v in figures.items() for k in ("value", "rank", "percentile")}}
    if strategy in SHARED and args.panel:
        row["tau"] = shared_tau(config, run_dir, args.panel, seed)
    return row


def shared_tau(config: Config, run_dir: Path, panel: int, seed: int) -> float:
    """Kendall's tau of the shared-weight scores against the table over `panel` uniform cells and
    the controller's distinct samples."""
    table, metric = load_bench(config.bench)
    scorer = strategy_of(config.strategy).scorer(config, run_dir, QUIET)
    cells = uniform_architectures(scorer.task.space, panel, seed=1000)   # one panel for every run
    cells += [a for a in dict.fromkeys(scorer.sample(20, seed)) if a not in cells]
    with torch.no_grad():
        scores = [scorer.score(arch) for arch in cells]
    return table_tau([official(a) for a in cells], scores, table, metric, scorer.task.lower_is_better)


def summarise(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean and std per strategy of every number the rows share."""
    summary: dict[str, dict[str, float]] = {}
    for strategy in dict.fromkeys(row["strategy"] for row in rows):
        mine = [row for row in rows if row["strategy"] == strategy]
        numbers = [k for k, v in mine[0].items() if isinstance(v, (int, float)) and k != "seed"]
        summary[strategy] = {}
        for name in numbers:
            values = [row[name] for row in mine]
            summary[strategy][f"{name}_mean"] = statistics.fmean(values)
            summary[strategy][f"{name}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.nb201", description=__doc__.splitlines()[0])
    parser.add_argument("--table", type=Path, required=True, help="the benchmark table (CSV)")
    parser.add_argument("--data", type=Path, help="CIFAR-10 for enas and random_ws: an image folder or the batches")
    parser.add_argument("--strategies", default="nas_rl,random,evolution")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--panel", type=int, default=100, help="uniform cells of the tau panel; 0 skips it")
    parser.add_argument("--out", type=Path, default=Path("runs") / "nb201")
    parser.add_argument("overrides", nargs="*", help="config overrides key=value, for every run")
    args = parser.parse_args()
    rows = [one_run(strategy, int(seed), args)
            for strategy in args.strategies.split(",") for seed in args.seeds.split(",")]
    for row in rows:
        tau = f"  tau {row['tau']:.3f}" if "tau" in row else ""
        print(f"{row['strategy']:>10} seed {row['seed']}: cifar10_valid {row['cifar10_valid_value']:.2f} "
              f"(rank {row['cifar10_valid_rank']}, percentile {row['cifar10_valid_percentile']:.2f}), "
              f"cifar10_test {row['cifar10_test_value']:.2f}, search {row['search_s']:.0f} s{tau}")
    summary = summarise(rows)
    for strategy, figures in summary.items():
        tau = f", tau {figures['tau_mean']:.3f} ± {figures['tau_std']:.3f}" if "tau_mean" in figures else ""
        print(f"{strategy:>10}: cifar10_valid {figures['cifar10_valid_value_mean']:.2f} ± "
              f"{figures['cifar10_valid_value_std']:.2f} (percentile {figures['cifar10_valid_percentile_mean']:.2f}), "
              f"cifar10_test {figures['cifar10_test_value_mean']:.2f} ± {figures['cifar10_test_value_std']:.2f}, "
              f"search {figures['search_s_mean']:.0f} s{tau}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "nb201.json").write_text(json.dumps({"rows": rows, "summary": summary}, indent=2) + "\n")


if __name__ == "__main__":
    main()
