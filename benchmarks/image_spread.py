"""`python -m benchmarks.image_spread [--cells N] [--seed S] [--preset P] [key=value ...]`: how far
apart the retrained test accuracies of random micro cells lie on a preset's images.

Draws N cells uniformly from the micro space (every input and op equally likely, independently),
retrains each from scratch with the preset's retrain recipe (the same run as `enas retrain --arch`)
and prints its test accuracy and time, then the lowest, highest and their spread. Data that tells
architectures apart gives a spread of several points; data that every cell solves gives 1.00 for all.
Overrides apply to the preset as on the command line (e.g. `data.classes=4 retrain.epochs=5`).
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from enas.commands.retrain import run_retrain
from enas.config import Config, load_config, preset_path
from enas.console import Reporter
from enas.spaces import checked_architecture, official
from enas.spaces.architecture import Architecture
from enas.tasks import build_task


def uniform_cells(config: Config, n: int, seed: int) -> list[Architecture]:
    """n micro cells of `config`'s space, each choice drawn uniformly and independently."""
    decisions = build_task(config, config.retrain).space.decisions()
    rng = random.Random(seed)
    return [checked_architecture("micro", [rng.randrange(d.size if d.kind == "index" else len(d.options))
                                   for d in decisions]) for _ in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.image_spread", description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=6, help="random cells to retrain")
    parser.add_argument("--seed", type=int, default=0, help="seed of the cells drawn")
    parser.add_argument("--preset", default="shapes")
    parser.add_argument("overrides", nargs="*", help="config overrides key=value")
    args = parser.parse_args()

    config = load_config([preset_path(args.preset)], ["space=micro", *args.overrides])
    print(f"{args.preset} {' '.join(args.overrides)}: {config.data.classes} classes, "
          f"{config.retrain.epochs} retrain epochs")
    accuracies = []
    with tempfile.TemporaryDirectory() as folder:
        for i, arch in enumerate(uniform_cells(config, args.cells, args.seed)):
            start = time.perf_counter()
            result = run_retrain(config, arch, Path(folder) / str(i), False, Reporter(quiet=True))
            accuracies.append(result.value)
            print(f"cell {i}  test acc {result.value:.3f}  {time.perf_counter() - start:5.1f} s  "
                  f"{result.params:6d} params  {official(arch)}", flush=True)
    print(f"lowest {min(accuracies):.3f}  highest {max(accuracies):.3f}  "
          f"spread {100 * (max(accuracies) - min(accuracies)):.1f} points  "
          f"mean {sum(accuracies) / len(accuracies):.3f}")


if __name__ == "__main__":
    main()
