"""`python -m benchmarks.nas_rl [--updates N] [--enas-preset P] [--nas-preset P]`: what a NAS-RL
child costs, and what ENAS saves by sharing weights.

Runs the NAS-RL preset for a few updates (every child trained, the cache off) and reports the
children trained per hour. Then runs an ENAS search of the same space and data (the same preset
with strategy=enas, unless --enas-preset names another) and reports its search time per
architecture it rewarded (controller.steps x controller.aggregate per epoch). The
ratio of the two is the compute ENAS saves per architecture evaluated; the ENAS paper puts it
at about 1000x (450 GPUs for 3-4 days against one GPU for 16 hours). Both on this machine,
one after the other; the figures are the runs' own wall-clock seconds.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from enas.commands.search import run_search
from enas.config import Config, load_config, preset_path
from enas.console import Reporter
from enas.run.metrics import read_metrics


def timed_search(config: Config, folder: Path) -> float:
    """Seconds of one search of `config`, run in `folder`."""
    start = time.perf_counter()
    run_search(config, folder, False, Reporter(quiet=True))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.nas_rl", description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=2, help="NAS-RL updates to time")
    parser.add_argument("--nas-preset", default="nas_rl")
    parser.add_argument("--enas-preset", help="default: the NAS-RL preset with strategy=enas")
    args = parser.parse_args()

    enas_preset = args.enas_preset or args.nas_preset
    nas = load_config([preset_path(args.nas_preset)], [f"nas_rl.updates={args.updates}", "nas_rl.cache=false"])
    enas = load_config([preset_path(enas_preset)], ["strategy=enas"])
    with tempfile.TemporaryDirectory() as folder:
        nas_s = timed_search(nas, Path(folder) / "nas_rl")
        trials = read_metrics(Path(folder) / "nas_rl" / "trials.jsonl")
        enas_s = timed_search(enas, Path(folder) / "enas")
    child_s = sum(t["seconds"] for t in trials) / len(trials)
    rewarded = enas.search.epochs * enas.controller.steps * enas.controller.aggregate

    figures = {
        "nas_rl_preset": args.nas_preset, "nas_rl_children": len(trials), "nas_rl_search_s": round(nas_s, 1),
        "nas_rl_s_per_child": round(child_s, 2), "nas_rl_children_per_hour": round(3600 / child_s),
        "enas_preset": enas_preset, "enas_search_s": round(enas_s, 1), "enas_architectures_rewarded": rewarded,
        "enas_s_per_architecture": round(enas_s / rewarded, 4),
        "nas_rl_over_enas_per_architecture": round(child_s / (enas_s / rewarded)),
    }
    width = max(map(len, figures))
    for name, value in figures.items():
        print(f"{name:{width}}  {value}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
