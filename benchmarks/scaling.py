"""`python -m benchmarks.scaling [--nproc 2] [--preset P] [--steps N] [key=value ...]`: how a
search scales from 1 process to N, one thread each (gloo on CPU, NCCL where every process has a GPU).

Each process count runs as one torchrun job (`torchrun --standalone`, this module as the worker)
and times, on the preset (default: `default`, built-in text):
  shared      supernet steps of batch B per process: tokens or images per second of the whole job;
  controller  controller updates, aggregate architectures rewarded per process: architectures per second;
  children    NAS-RL children (trained from scratch) per hour, each process training its own;
  sync        one supernet step (forward, backward, gradient averaging) two ways (only with N > 1):
              DDP with find_unused_parameters (what the search uses), and one all-reduce of only the
              gradients the step made. DDP's static_graph cannot serve: a DDP wrapper keeps its
              hooks on the shared parameters for its lifetime, so one per architecture is not
              possible (a second wrapper breaks the first's reducer).
Efficiency is the N-process throughput over N times the 1-process one (1.00: perfect scaling).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist

from enas.config import Config, load_config, preset_path
from enas.console import Reporter
from enas.run import distributed
from enas.run.session import Session
from enas.run.steps import Steps
from enas.run.training import setup_runtime
from enas.strategies.child_search import run_child_search
from enas.strategies.supernet_search import Search, controller_phase, supernet_phase

QUIET = Reporter(quiet=True)


def worker(config: Config, steps: int, folder: Path) -> dict[str, float]:
    """This process's share of the timings; rank 0's figures are the job's."""
    device = setup_runtime(config)
    world = distributed.world()
    search = Search(config, device, folder)
    (folder / "enas").mkdir()
    with Session(folder / "enas", search, None) as session:
        runner = Steps(session)
        supernet_phase(search, runner, QUIET)   # warm-up: first calls, allocations
        search.progress.begin("supernet")
        start = time.perf_counter()
        supernet_phase(search, runner, QUIET)
        shared_s = time.perf_counter() - start
        start = time.perf_counter()
        controller_phase(search, runner, QUIET)
        controller_s = time.perf_counter() - start
    figures = {"shared_per_s": steps * config.search.batch_size * world.size * _items_per_example(config) / shared_s,
               "controller_archs_per_s": config.controller.steps * config.controller.aggregate * world.size
               / controller_s}
    if world.size > 1:
        figures.update(sync_costs(search, min(steps, 20)))
    start = time.perf_counter()
    nas_config = load_config([preset_path("default")], [*_nas_rl_overrides(config)])
    run_child_search(nas_config, folder / "nas_rl", False, QUIET)
    children = nas_config.nas_rl.updates * nas_config.nas_rl.children * world.size
    figures["children_per_h"] = children / (time.perf_counter() - start) * 3600
    return figures


def _items_per_example(config: Config) -> int:
    """Tokens per sequence of a text batch (its BPTT window), 1 per image."""
    return config.search.bptt if config.space in ("recurrent", "nas_cell") else 1


def _nas_rl_overrides(config: Config) -> list[str]:
    return ["strategy=nas_rl", f"threads={config.threads}", "nas_rl.updates=1", "nas_rl.children=2",
            "nas_rl.child_epochs=1", "nas_rl.cache=false", "search.steps_per_epoch=30", "search.eval_batches=5"]


def sync_costs(search: Search, steps: int) -> dict[str, float]:
    """Milliseconds per supernet step (forward, backward and the gradients' averaging) three ways."""
    archs = search.supernet_architectures(steps)
    params = list(search.supernet.parameters())

    def timed(bind, after_backward=lambda: None) -> float:
        start = time.perf_counter()
        for index, arch in enumerate(archs):
            for param in params:
                param.grad = None
            search.task.train_loss(bind(arch), index).backward()
            after_backward()
        return (time.perf_counter() - start) / len(archs) * 1000

    def reduce_used() -> None:
        grads = [p.grad for p in params if p.grad is not None]   # the same set on every rank
        flat = torch._utils._flatten_dense_tensors(grads)
        dist.all_reduce(flat)
        for grad, synced in zip(grads, torch._utils._unflatten_dense_tensors(flat, grads)):
            grad.copy_(synced / dist.get_world_size())

    return {"sync_ms_find_unused": timed(lambda arch: search.bind(arch, training=True)),
            "sync_ms_used_gradients": timed(search.bind, reduce_used)}


def run_job(nproc: int, args: argparse.Namespace) -> dict[str, float]:
    """The figures of one torchrun job of `nproc` processes."""
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "figures.json"
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
                   "-m", "benchmarks.scaling", "--worker", str(out), "--preset", args.preset,
                   "--steps", str(args.steps), *args.overrides]
        subprocess.run(command, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True)
        return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scaling", description=__doc__.splitlines()[0])
    parser.add_argument("--nproc", type=int, default=2, help="processes of the larger job")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--steps", type=int, default=40, help="supernet steps timed")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", help="config overrides key=value")
    args = parser.parse_args()
    config = load_config([preset_path(args.preset)], ["threads=1", f"search.steps_per_epoch={args.steps}",
                                                      "controller.steps=4", *args.overrides])
    if args.worker:
        with tempfile.TemporaryDirectory() as scratch:
            figures = worker(config, args.steps, Path(scratch))
        if distributed.is_main():
            args.worker.write_text(json.dumps(figures))
        sys.stdout.flush()
        os._exit(0)   # as cli.main: a torchrun process leaves without tearing down gloo's threads
    one, many = run_job(1, args), run_job(args.nproc, args)
    print(f"preset {args.preset}, one thread a process, {args.steps} supernet steps of batch "
          f"{config.search.batch_size} per process; load average {os.getloadavg()[0]:.2f}")
    print(f"{'figure':28} {'1 process':>12} {f'{args.nproc} processes':>12} {'efficiency':>10}")
    for name in ("shared_per_s", "controller_archs_per_s", "children_per_h"):
        print(f"{name:28} {one[name]:12.1f} {many[name]:12.1f} {many[name] / (args.nproc * one[name]):10.2f}")
    for name in sorted(k for k in many if k.startswith("sync_ms")):
        print(f"{name:28} {'':12} {many[name]:12.2f}")


if __name__ == "__main__":
    main()
