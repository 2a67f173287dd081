"""`python -m benchmarks.loaded [--busy 4] [--epochs 2] [--reps 1] [--limit 600] [--threads 0,1,2] [--no-spin]`:
the default search's speed on a machine other processes are using.

Times a search of the default preset (`search.epochs=E`) --reps times per thread setting, the
settings interleaved (A, B, C, A, B, C: a change in the machine's other load hits them alike),
first as the machine is, then with --busy processes beside it that spin on a core each (bounded: they end by
themselves after the longest the runs can take, and are killed at the end). Each run is a fresh
`enas search` process, since the OpenMP wait policy is read when torch loads. Besides the
settings, "2, spinning" is the search before issue 28 (2 threads, OpenMP's default wait, which
spins): torch is imported before enas, so enas's passive default does not apply.

Prints, per run: the search loop's seconds (`search_s` of the last metrics line), the command's
wall seconds (start-up and data included), the threads the run took (environment.json) and the
load average; then each setting's median time over the best setting's, as is and loaded.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[1]
SPIN = "import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end:\n    pass\n"
ENAS = "import sys\n{before}from cli import main\nsys.exit(main())\n"
OLD_DEFAULT = "2, spinning"


@dataclass(frozen=True)
class Timed:
    setting: str
    loaded: bool
    search_s: float | None   # None: it ran past the limit
    wall_s: float
    threads: int | None
    load: float


@contextmanager
def busy(processes: int, seconds: float) -> Iterator[list[subprocess.Popen]]:
    """`processes` processes that each spin on a core for at most `seconds`, killed on leaving."""
    spinners = [subprocess.Popen([sys.executable, "-c", SPIN.format(seconds=seconds)]) for _ in range(processes)]
    time.sleep(1.0)   # let them take their cores before a run measures the free ones
    try:
        yield spinners
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


def search(setting: str, epochs: int, limit: float, out: Path, loaded: bool) -> Timed:
    """One default search in a fresh process, timed."""
    threads = "2" if setting == OLD_DEFAULT else setting
    before = "import torch\n" if setting == OLD_DEFAULT else ""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    command = [sys.executable, "-c", ENAS.format(before=before), "search", f"search.epochs={epochs}",
               f"threads={threads}", "-o", str(out), "--quiet"]
    started = time.perf_counter()
    try:
        subprocess.run(command, cwd=ROOT, env=env, check=True, timeout=limit, capture_output=True)
    except subprocess.TimeoutExpired:
        return Timed(setting, loaded, None, time.perf_counter() - started, None, os.getloadavg()[0])
    wall = time.perf_counter() - started
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    took = json.loads((out / "environment.json").read_text())["threads"]
    return Timed(setting, loaded, lines[-1]["search_s"], wall, took, os.getloadavg()[0])


def row(timed: Timed) -> str:
    seconds = f"{timed.search_s:8.1f}" if timed.search_s is not None else f"  >{timed.wall_s:5.0f}"
    return (f"{'loaded' if timed.loaded else 'as is':7} {timed.setting:>12}  {seconds} s  {timed.wall_s:7.1f} s  "
            f"{timed.threads if timed.threads is not None else '?':>7}  {timed.load:5.2f}")


def ratios(runs: list[Timed]) -> list[str]:
    """Each setting's median search time over the best setting's, on the machine as is and loaded."""
    lines = []
    for loaded in (False, True):
        finished = [r for r in runs if r.loaded == loaded and r.search_s is not None]
        medians = {setting: statistics.median(r.search_s for r in finished if r.setting == setting)
                   for setting in dict.fromkeys(r.setting for r in finished)}
        if not medians:
            continue
        best = min(medians.values())
        shown = ", ".join(f"{setting} {median:.1f} s = {median / best:.2f}x" for setting, median in medians.items())
        lines.append(f"{'loaded' if loaded else 'as is'} (medians): {shown}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.loaded", description=__doc__.splitlines()[0])
    parser.add_argument("--busy", type=int, default=4, help="busy processes beside the loaded runs")
    parser.add_argument("--epochs", type=int, default=2, help="search epochs of each run")
    parser.add_argument("--reps", type=int, default=1, help="runs of each setting, interleaved")
    parser.add_argument("--limit", type=float, default=600, help="seconds a run may take before it counts as >limit")
    parser.add_argument("--threads", default="0,1,2", help="the thread settings to time (0: the default)")
    parser.add_argument("--no-spin", action="store_true", help=f"leave out {OLD_DEFAULT!r}, the old default")
    args = parser.parse_args()
    settings = args.threads.split(",") + ([] if args.no_spin else [OLD_DEFAULT])
    print(f"{os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f} before the first run")
    print(f"{'machine':7} {'threads':>12}  {'search':>8}    {'command':>7}    {'took':>7}  {'load':>5}")
    runs = []
    with tempfile.TemporaryDirectory() as scratch:
        for loaded in (False, True):
            bound = args.limit * len(settings) * args.reps + 60
            with busy(args.busy if loaded else 0, bound):
                for index in range(len(settings) * args.reps):
                    out = Path(scratch) / f"{int(loaded)}-{index}"
                    runs.append(search(settings[index % len(settings)], args.epochs, args.limit, out, loaded))
                    print(row(runs[-1]), flush=True)
    print("\n".join(ratios(runs)))


if __name__ == "__main__":
    main()
