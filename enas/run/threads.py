"""How many CPU threads torch gets (config `threads`; 0 picks them), and one warning when other
processes leave a run little of the CPU.

On a machine that other jobs share, torch's threads fight them: an op split over 2 threads
waits for the slower one, which the scheduler may have put aside for a whole time slice, and a
default search steps through thousands of tiny ops. Measured on 2 cores with 4 busy processes
beside it (README, "Performance"): a 2-epoch default search took 34 times its idle time on 2
threads, 6 times on 1. So `threads=0` counts the cores that are free now (their idle time over a
short window, from /proc/stat) rather than every core; and the OpenMP wait policy is passive
(enas/__init__.py), so waiting threads sleep instead of spinning on the cores others need.
"""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path
from typing import Callable

PROC_STAT = Path("/proc/stat")
SAMPLE_S = 0.1          # the window the free cores are measured over
LOW_SHARE = 0.5         # warn when a run got less than this share of one core over its first epoch


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:   # not Linux
        return os.cpu_count() or 1


def idle_ticks() -> tuple[int, int] | None:
    """(idle, total) clock ticks of all cores since boot, from /proc/stat; None where it cannot be read."""
    try:
        fields = PROC_STAT.read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    ticks = [int(value) for value in fields]
    return ticks[3] + ticks[4], sum(ticks)   # idle + iowait


def free_cores(window: float = SAMPLE_S) -> float | None:
    """Cores left idle by every process over the next `window` seconds; None where it cannot be told."""
    before = idle_ticks()
    time.sleep(window)
    after = idle_ticks()
    if before is None or after is None or after[1] <= before[1]:
        return None
    share = (after[0] - before[0]) / (after[1] - before[1])
    return share * (os.cpu_count() or 1)


def thread_count(setting: int) -> int:
    """The threads torch runs on: `setting`, or for 0 the cores free now (at least 1), shared
    among the processes of a torchrun job on this machine."""
    if setting:
        return setting
    local_ranks = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if local_ranks > 1:   # the job's own processes are starting too: they would read as load
        return max(1, cores() // local_ranks)
    free = free_cores()
    usable = cores() if free is None else min(cores(), round(free))
    return max(1, usable)


def clocks() -> tuple[float, float]:
    """(wall, CPU) seconds: a monotonic clock, and the CPU time of every thread of this process."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return time.perf_counter(), usage.ru_utime + usage.ru_stime


class CpuShare:
    """How much of the CPU a run gets: once, after its first epoch, a warning when it got less than
    half a core (other processes hold the cores; its epochs run that many times slower), with the
    override to try."""

    def __init__(self, threads: int, on_cpu: bool, clock: Callable[[], tuple[float, float]] = clocks):
        self.threads, self.on_cpu, self.clock = threads, on_cpu, clock
        self.start = clock()
        self.done = False

    def after_epoch(self) -> str | None:
        """The warning after the first epoch of this process, if it is one to give; then None."""
        if self.done or not self.on_cpu:
            return None
        self.done = True
        (wall, cpu), (wall0, cpu0) = self.clock(), self.start
        share = (cpu - cpu0) / max(wall - wall0, 1e-9)
        if share >= LOW_SHARE:
            return None
        advice = "try threads=1" if self.threads > 1 else "run it when the machine is less busy"
        return (f"warning: this run got {share:.2f} of a CPU core over its first epoch on {self.threads} "
                f"thread{'s' * (self.threads > 1)}: other processes are using the cores, so epochs run about "
                f"{1 / max(share, 0.01):.0f} times slower than on an idle machine; {advice}")
