"""`python -m benchmarks.nb201_speed [--channels C] [--cells N] [--batch B] [--steps S] [--threads T]
[--channels-last] [--xautodl-path DIR]`: a training step of the nb201 supernet against the benchmark
authors' own search model (xautodl's TinyNetworkENAS, D-X-Y/AutoDL-Projects), on the CPU.

Both networks get the same weights (copied from ours into theirs, parameter by parameter: the two
list them in the same order), the same batch and the same sampled cells, and first have to give
the same logits. Then the steps alternate, one of each per cell, the first of the pair swapping
every step, so that a change in the machine's load falls on both: forward, cross-entropy,
backward, gradient clipping at 5 and an SGD step with Nesterov momentum. The medians of the
per-step times and their ratio are printed, with the load average before and after.

xautodl is not a dependency of enas: install it apart (`pip install --no-deps --target
/tmp/xautodl xautodl`) and pass `--xautodl-path /tmp/xautodl`; without it the benchmark says so and
times the nb201 supernet alone.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from enas.spaces import official
from enas.spaces.architecture import Architecture
from enas.spaces.base import ImageShape
from enas.spaces.nb201 import Nb201Config, Nb201Space
from enas.spaces.nb201_ops import NB201_OPS

SHAPE = ImageShape(channels=3, height=32, width=32, classes=10)   # CIFAR-10


def load_xautodl(path: str) -> Any | None:
    """xautodl's TinyNetworkENAS class, importable as installed or from `path`; None when neither."""
    if path and path not in sys.path:
        sys.path.insert(0, path)
    try:
        from xautodl.models.cell_searchs import TinyNetworkENAS
    except ImportError:
        return None
    return TinyNetworkENAS


def theirs_like(ours: nn.Module, network_class: Any, cfg: Nb201Config) -> nn.Module:
    """The authors' ENAS search model at our size, holding our supernet's weights."""
    theirs = network_class(cfg.channels, cfg.cells, 4, SHAPE.classes, list(NB201_OPS), cfg.affine,
                           cfg.track_running_stats)
    source, target = ours.state_dict(), theirs.state_dict()
    if [v.shape for v in source.values()] != [v.shape for v in target.values()]:
        raise SystemExit("the two supernets list different parameters; the comparison would be meaningless")
    theirs.load_state_dict(dict(zip(target, source.values())))
    return theirs


def ours_step(net: nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor, labels: torch.Tensor,
              arch: Architecture) -> None:
    logits, _ = net(images, arch)
    _train(net, optimizer, F.cross_entropy(logits, labels))


def theirs_step(net: nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor, labels: torch.Tensor,
                arch: Architecture) -> None:
    net.update_arch(list(arch.choices))   # op ids per edge, in the same edge order as ours
    _, logits = net(images)
    _train(net, optimizer, F.cross_entropy(logits, labels))


def _train(net: nn.Module, optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(net.parameters(), 5.0)
    optimizer.step()


def same_logits(ours: nn.Module, theirs: nn.Module, images: torch.Tensor, cells: list[Architecture]) -> float:
    """The largest difference of the two networks' logits over `cells` (training mode, no step)."""
    worst = 0.0
    with torch.no_grad():
        for arch in cells:
            theirs.update_arch(list(arch.choices))
            worst = max(worst, (ours(images, arch)[0] - theirs(images)[1]).abs().max().item())
    return worst


def time_steps(runners: dict[str, Callable[[Architecture], None]], cells: list[Architecture], steps: int
               ) -> dict[str, list[float]]:
    """Seconds per step of each runner, the runners alternating and swapping who goes first."""
    times: dict[str, list[float]] = {name: [] for name in runners}
    names = list(runners)
    for step in range(steps):
        for name in names if step % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            runners[name](cells[step % len(cells)])
            times[name].append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.nb201_speed", description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, default=16, help="C (the benchmark's search: 16)")
    parser.add_argument("--cells", type=int, default=5, help="N per stage (the benchmark's search: 5)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20, help="timed steps of each network, after 2 of warm-up")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--channels-last", action="store_true", help="both networks and the batch channels-last")
    parser.add_argument("--xautodl-path", default="", help="folder that holds the xautodl package, if not installed")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = Nb201Config(channels=args.channels, cells=args.cells)
    rng = random.Random(0)
    cells = [Architecture("nb201", tuple(rng.randrange(len(NB201_OPS)) for _ in range(6))) for _ in range(8)]
    layout = torch.channels_last if args.channels_last else torch.contiguous_format
    images = torch.randn(args.batch, 3, 32, 32).contiguous(memory_format=layout)
    labels = torch.randint(0, SHAPE.classes, (args.batch,))
    nets = {"enas nb201": Nb201Space(cfg, SHAPE).supernet()}
    network_class = load_xautodl(args.xautodl_path)
    if network_class is None:
        print("xautodl is not installed: timing the nb201 supernet alone (pip install --no-deps --target "
              "/tmp/xautodl xautodl, then --xautodl-path /tmp/xautodl)")
    else:
        nets["xautodl TinyNetworkENAS"] = theirs_like(nets["enas nb201"], network_class, cfg)
        print(f"largest logit difference over {len(cells)} cells, same weights: "
              f"{same_logits(*nets.values(), images, cells):.2e}")
    steps = {"enas nb201": ours_step, "xautodl TinyNetworkENAS": theirs_step}
    runners = {}
    for name, net in nets.items():
        net.to(memory_format=layout).train()
        optimizer = torch.optim.SGD(net.parameters(), lr=0.025, momentum=0.9, nesterov=True, weight_decay=5e-4)
        runners[name] = lambda arch, net=net, optimizer=optimizer, step=steps[name]: \
            step(net, optimizer, images, labels, arch)
    print(f"C={args.channels} N={args.cells} batch {args.batch}, {args.threads} thread(s), "
          f"{'channels-last' if args.channels_last else 'contiguous'}; cells: {official(cells[0])}, ...; "
          f"load average before: {os.getloadavg()[0]:.2f}")
    time_steps(runners, cells, 2)
    medians = {name: 1000 * statistics.median(t) for name, t in time_steps(runners, cells, args.steps).items()}
    for name, ms in medians.items():
        print(f"{name:>24}: {ms:8.1f} ms/step (median of {args.steps})")
    if len(medians) == 2:
        ours, theirs = medians.values()
        print(f"{'ratio enas / xautodl':>24}: {ours / theirs:8.2f}")
    print(f"load average after: {os.getloadavg()[0]:.2f} (the machine's other work slows both alike)")


if __name__ == "__main__":
    main()
