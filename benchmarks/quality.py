"""`python -m benchmarks.quality [-c PRESET] [--name NAME] [--seeds 0,1,2] [--train-seeds 0] [--panel 20]
[--random 20] [--epochs N] [--out DIR] [OVERRIDES...]`: does the search beat random architectures, and do its
shared weights rank architectures as training them alone does?

For each seed: a search of the preset (with the overrides), derive, `enas rank` over a panel of
--panel architectures (Kendall tau, Spearman rho, top-5 overlap) and `enas compare` against
--random uniform architectures (the derived one's percentile), every architecture trained alone
for --epochs retrain epochs (the recipe's schedule compressed to them) under each of
--train-seeds, its score their mean. Each tau and percentile is printed beside its noise ceiling:
Kendall tau between two training seeds' orders of the same panel (n/a with one training seed),
the most a proxy can be expected to reach. The uniform draws are the same for every
seed, and the architectures trained alone are kept in one cache (OUT/standalone), so they are
trained once for all seeds and for every variant (--name, e.g. the preset with other overrides)
measured under the same OUT. Runs go to OUT/NAME/seed-N; prints a row per seed, then the mean
and spread, and writes OUT/NAME/quality.json. Run again with the same arguments, it reuses every
finished part.

Targets (issue 14): tau >= 0.5 over a 20-architecture panel, and the derived cell at or above
the 90th percentile of 20 random cells, for each of 3 seeds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from enas.commands.compare import run_compare
from enas.commands.rank import run_rank
from enas.commands.standalone import Budget
from enas.commands.sweep import search_and_derive, search_seconds
from enas.config import preset_path
from enas.console import Reporter
from enas.folder.names import COMPARE_FILE, RANK_FILE
from enas.records import RankReport

QUIET = Reporter(quiet=True)


def one_seed(layers: list[Path], overrides: list[str], seed: int, args: argparse.Namespace) -> dict:
    run_dir = args.out / (args.name or args.config) / f"seed-{seed}"
    config = search_and_derive(layers, [*overrides, f"seed={seed}"], run_dir, QUIET)
    budget = Budget(args.epochs or config.retrain.epochs, seed=0, train_seeds=args.train_seeds)
    cache, rerun = args.out / "standalone", "python -m benchmarks.quality (the same arguments)"
    started = time.perf_counter()
    report = run_rank(config, run_dir, args.panel, args.samples, budget, cache, 5, rerun, QUIET) \
        if args.panel else RankReport.read_if_any(run_dir)
    rank = report.to_json() if report else {}
    compare = run_compare(config, run_dir, args.random, budget, cache, rerun, QUIET).to_json()
    return {"seed": seed, "kendall_tau": rank.get("kendall_tau"), "tau_ceiling": rank.get("noise_ceiling"),
            "tau_uniform": rank.get("kendall_tau_uniform"), "spearman_rho": rank.get("spearman_rho"),
            "top5_overlap": rank.get("top_k_overlap"), "percentile": compare["percentile"],
            "percentile_seeds": compare["percentile_seeds"], "compare_ceiling": compare["noise_ceiling"],
            "rank_diverged": rank.get("diverged"), "cmp_diverged": compare["diverged"],
            "beaten": compare["beaten"], "random": compare["random"], "metric": compare["metric"],
            "derived": compare["derived"][compare["metric"]], "derived_arch": compare["derived"]["arch"],
            "random_median": median([r[compare["metric"]] for r in compare["random_panel"] if not r["diverged"]]),
            "search_s": search_seconds(run_dir), "quality_s": round(time.perf_counter() - started, 1),
            "files": [str(run_dir / RANK_FILE), str(run_dir / COMPARE_FILE)]}


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def seed_list(text: str) -> tuple[int, ...]:
    """--train-seeds: distinct integers separated by commas."""
    try:
        seeds = tuple(int(token) for token in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"integers separated by commas, e.g. 0,1; got {text!r}") from None
    if len(set(seeds)) < len(seeds):
        raise argparse.ArgumentTypeError(f"distinct seeds, got {text!r}")
    return seeds


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.quality", description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--config", default="default", help="preset (default: default)")
    parser.add_argument("--name", help="the variant's folder under --out (default: the preset's name)")
    parser.add_argument("--seeds", default="0,1,2", help="search seeds")
    parser.add_argument("--train-seeds", default="0", type=seed_list,
                        help="training seeds of each architecture trained alone (default 0); two or more give "
                        "the noise ceilings")
    parser.add_argument("--panel", type=int, default=20, help="rank panel size; 0 skips rank")
    parser.add_argument("--samples", type=int, default=5, help="controller samples in the panel")
    parser.add_argument("--random", type=int, default=20, help="random architectures compare trains")
    parser.add_argument("--epochs", type=int, default=0, help="retrain epochs of each training alone "
                        "(default: the preset's retrain.epochs)")
    parser.add_argument("--out", type=Path, default=Path("runs") / "quality")
    parser.add_argument("overrides", nargs="*", help="config overrides key=value")
    args = parser.parse_args()

    layers = [preset_path(args.config)]
    rows = [one_seed(layers, args.overrides, int(s), args) for s in args.seeds.split(",")]
    columns = ("seed", "kendall_tau", "tau_ceiling", "tau_uniform", "spearman_rho", "top5_overlap", "derived",
               "random_median", "percentile", "compare_ceiling", "rank_diverged", "cmp_diverged", "search_s",
               "quality_s")
    print(f"preset {args.config} {' '.join(args.overrides)}; each architecture trained alone for "
          f"{args.epochs or 'the preset'} epochs under training seeds {','.join(map(str, args.train_seeds))}; "
          f"metric {rows[0]['metric']}; ceiling: Kendall tau between two training seeds' orders")
    print("  ".join(f"{c:>13}" for c in columns))
    for row in rows:
        print("  ".join(f"{row[c]:>13.4g}" if isinstance(row[c], float) else f"{str(row[c]):>13}" for c in columns))
    summary = {}
    for name in ("kendall_tau", "tau_ceiling", "tau_uniform", "spearman_rho", "percentile", "compare_ceiling",
                 "derived", "search_s"):
        values = [row[name] for row in rows if row[name] is not None]
        if values:
            summary[name] = {"mean": statistics.fmean(values),
                             "std": statistics.stdev(values) if len(values) > 1 else 0.0}
            print(f"{name:>13}: {summary[name]['mean']:.4g} ± {summary[name]['std']:.2g}")
    report = {"preset": args.config, "overrides": args.overrides, "epochs": args.epochs,
              "train_seeds": list(args.train_seeds), "rows": rows, "summary": summary}
    (args.out / (args.name or args.config) / "quality.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
