"""A short default search in a child process: its peak memory, its phases, the controller's share.

The parent (`probe_search`) starts `python -m benchmarks.search_probe`, which runs the default
preset for a few epochs with timers wrapped around the search's phases and the controller, prints
one JSON line with its own peak resident memory, and exits; so the figure is the search's own and
not the benchmark's.

The controller's time is its sampling and its REINFORCE updates; the rewards the updates take
(supernet forwards on validation windows, which are the supernet's work) are timed apart.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from functools import wraps
from pathlib import Path
from typing import Any, Callable, Sequence

from benchmarks.timing import BenchmarkError

ROOT = Path(__file__).resolve().parents[1]


def probe_search(epochs: int, device: str, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Run the probe in a child process (the default preset, with `overrides` as key=value) and
    return its figures."""
    command = [sys.executable, "-m", "benchmarks.search_probe", str(epochs), device, *overrides]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise BenchmarkError(f"the search probe failed (exit {done.returncode}): "
                             f"{done.stderr.strip().splitlines()[-1] if done.stderr.strip() else 'no message'}")
    return json.loads(done.stdout.strip().splitlines()[-1])


class Clock:
    """Seconds spent in the wrapped calls, by name."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def wrap(self, name: str, function: Callable) -> Callable:
        @wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.add(name, time.perf_counter() - start)
        return timed


def instrument(clock: Clock) -> None:
    """Wrap the search's phases and the controller's work in timers.

    The benchmark must measure the search as it is, so it wraps the module attributes the loop
    calls at run time rather than adding timing code to the search itself.
    """
    import enas.strategies.supernet_search as search
    from enas.strategies.controller import Controller
    from enas.tasks.image import ImageTask
    from enas.tasks.text import TextTask

    for phase in ("supernet_phase", "controller_phase", "evaluate"):
        setattr(search, phase, clock.wrap(phase, getattr(search, phase)))
    # an update is the REINFORCE step alone: the search samples its architectures (Controller.forward)
    # and takes their rewards (the task's, which only the controller phase asks for) before it
    search.reinforce_update = clock.wrap("controller_update", search.reinforce_update)
    Controller.forward = clock.wrap("controller_sampling", Controller.forward)
    for task in (TextTask, ImageTask):
        task.reward = clock.wrap("reward", task.reward)  # type: ignore[method-assign]


def peak_rss_mb() -> float:
    """This process's peak resident memory. Linux's VmHWM belongs to the process's own address
    space; getrusage's ru_maxrss would also count the parent's memory at the fork (Linux keeps it
    across exec), i.e. the benchmark's own models."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**20 if sys.platform == "darwin" else 1024)


def main(epochs: int, device: str, overrides: Sequence[str]) -> None:
    from enas.config import load_config, preset_path
    from enas.console import Reporter
    from enas.strategies.supernet_search import run_search

    clock = Clock()
    instrument(clock)
    config = load_config([preset_path("default")], [f"search.epochs={epochs}", f"device={device}", *overrides])
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        run_search(config, Path(folder) / "run", resume=False, reporter=Reporter(quiet=True))
        total = time.perf_counter() - start
    seconds = clock.seconds
    controller = seconds.get("controller_update", 0.0) + seconds.get("controller_sampling", 0.0)
    print(json.dumps({"epochs": epochs, "search_s": total, "controller_s": controller,
                      "controller_share": controller / total,
                      "peak_rss_mb": peak_rss_mb(),
                      "phases_s": {name: round(value, 4) for name, value in sorted(seconds.items())}}))


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], sys.argv[3:])
