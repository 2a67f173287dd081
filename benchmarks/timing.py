"""Timing: warm-up, then the median of timed repetitions, with the variants of one comparison
interleaved (A, B, A, B, ...) so that other processes on the same cores slow them all alike.

Every figure keeps its spread (fastest and slowest repetition) and the machine's load average, so
a reader can tell a quiet measurement from a noisy one.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch
from torch.utils._python_dispatch import TorchDispatchMode


class BenchmarkError(Exception):
    """A benchmark that cannot run as asked (e.g. --device cuda without CUDA); one line, exit 2."""


@dataclass(frozen=True)
class Timing:
    """Seconds per repetition: the median, the fastest and the slowest of `reps`."""

    median: float
    low: float
    high: float
    reps: int

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Timing:
        return cls(statistics.median(seconds), min(seconds), max(seconds), len(seconds))

    @property
    def spread(self) -> float:
        """(slowest - fastest) / median: 0.1 means the repetitions agree to about 10%."""
        return (self.high - self.low) / self.median

    def per(self, amount: float) -> tuple[float, float, float]:
        """Throughput `amount` per second at the median, at the slowest and at the fastest repetition."""
        return amount / self.median, amount / self.high, amount / self.low


def resolve_device(name: str) -> torch.device:
    """`auto` is CUDA when present; asking for CUDA without it is a clear error, not a fallback."""
    if name == "cuda" and not torch.cuda.is_available():
        raise BenchmarkError("--device cuda: no CUDA device is available to this torch "
                             f"({torch.__version__}); run on a GPU machine or use --device cpu")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def synchronizer(device: torch.device) -> Callable[[], None]:
    """Waits for queued device work, so a timing ends when the work does (a no-op on CPU)."""
    if device.type == "cuda":
        return torch.cuda.synchronize
    return lambda: None


def interleaved(variants: Mapping[str, Callable[[], object]], warmup: int, budget_s: float,
                min_reps: int, max_reps: int, sync: Callable[[], None]) -> dict[str, Timing]:
    """Time each variant in rounds (every variant once per round) after `warmup` rounds.

    Rounds go on until `budget_s` seconds are spent, within [min_reps, max_reps] rounds, so the
    same call suits a 30 ms step on a GPU and a 5 s step on a CPU, and a round stalled by another
    process costs repetitions rather than leaving too few for a median.
    """
    for _ in range(warmup):
        for run in variants.values():
            run()
        sync()
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    start = time.perf_counter()
    reps = 0
    while reps < min_reps or (reps < max_reps and time.perf_counter() - start < budget_s):
        for name, run in variants.items():
            sync()
            begin = time.perf_counter()
            run()
            sync()
            seconds[name].append(time.perf_counter() - begin)
        reps += 1
    return {name: Timing.of(values) for name, values in seconds.items()}


def load_average() -> float:
    """Runnable processes over the last minute; above the core count, timings are contended."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


# ATen operations that do no work on a device: allocations, and reads of a value on the host
_NO_KERNEL = {torch.ops.aten.empty.memory_format, torch.ops.aten.empty_strided.default,
              torch.ops.aten.new_empty.default, torch.ops.aten.new_empty_strided.default,
              torch.ops.aten.empty_like.default, torch.ops.aten._local_scalar_dense.default,
              torch.ops.aten.detach.default}


class _KernelCounter(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if not (func.is_view or func in _NO_KERNEL):
            self.count += 1
        return func(*args, **(kwargs or {}))


def kernels_per_call(call: Callable[[], object]) -> int:
    """The device kernels one call of `call` dispatches, backward included: ATen operations less
    views and allocations (a fused optimiser counts once). On a GPU each is a launch from the
    host, which bounds the speed of steps made of many small operations."""
    with _KernelCounter() as counter:
        call()
    return counter.count
