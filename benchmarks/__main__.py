"""`python -m benchmarks [--quick] [--json] [--device cpu|cuda|auto] [--sizes ...] [--image-sizes ...] [--only ...]`

Prints a table of figures (or, with --json, one JSON object), each with the configuration and the
number of repetitions it used and how far the repetitions spread. See benchmarks/__init__.py for
what each figure means.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass, field
from typing import Any

import torch

from benchmarks.controller import bench_controller
from benchmarks.images import ImageResult, bench_images, image_sizes, selected
from benchmarks.recurrent import RnnResult, bench_size, paper_search_seconds, preset_config, sizes
from benchmarks.search_probe import probe_search
from benchmarks.timing import BenchmarkError, load_average, resolve_device
from enas.run.training import setup_runtime

IMAGE_SPACES = ("micro", "macro")
SUITES = ("rnn", "controller", "search", *IMAGE_SPACES)
# A paper-size image step takes seconds to minutes on a CPU (the final macro network's most):
# --quick leaves those sizes out unless --image-sizes names them.
QUICK_IMAGE_SIZES = "default,reference"
KERNELS = "device kernels of one supernet step (first drawn architecture), backward included: launches on a GPU"


@dataclass
class Report:
    """Figures by name (and by size or preset where a figure has several), with their settings."""

    figures: dict[str, Any] = field(default_factory=dict)
    spreads: dict[str, float] = field(default_factory=dict)
    configs: dict[str, Any] = field(default_factory=dict)
    rows: list[tuple[str, str, float, str, str]] = field(default_factory=list)

    def add(self, name: str, label: str | None, value: float, spread: float | None = None,
            config: str = "") -> None:
        if label is None:
            self.figures[name] = value
        else:
            self.figures.setdefault(name, {})[label] = value
        key = f"{name}/{label}" if label else name
        if spread is not None:
            self.spreads[key] = spread
        self.rows.append((name, label or "", value, f"{spread:.0%}" if spread is not None else "", config))

    def table(self) -> str:
        lines = [f"{'figure':32} {'size':10} {'value':>12} {'spread':>7}  config"]
        for name, label, value, spread, config in self.rows:
            shown = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
            lines.append(f"{name:32} {label:10} {shown:>12} {spread:>7}  {config}")
        return "\n".join(lines)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions: under 3 minutes on an idle 2-core CPU")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads; 0 uses every core")
    parser.add_argument("--reps", type=int, default=0,
                        help="timed repetitions of every figure; 0 fills a time budget (at least 3, or 5 without --quick)")
    parser.add_argument("--sizes", default="default,reference,paper",
                        help="recurrent sizes, comma-separated: default, reference, paper")
    parser.add_argument("--image-sizes", help="micro and macro sizes, comma-separated: default, reference "
                        "(micro only), paper; default: all of them, or default,reference with --quick")
    parser.add_argument("--only", default=",".join(SUITES), help=f"suites, comma-separated: {', '.join(SUITES)}")
    args = parser.parse_args(argv)
    if args.image_sizes is None:
        args.image_sizes = QUICK_IMAGE_SIZES if args.quick else ",".join(image_sizes("micro"))
    args.sizes, args.image_sizes, args.only = args.sizes.split(","), args.image_sizes.split(","), args.only.split(",")
    for given, known, what in ((args.sizes, sizes(), "size"), (args.image_sizes, image_sizes("micro"), "image size"),
                               (args.only, SUITES, "suite")):
        unknown = [name for name in given if name not in known]
        if unknown:
            parser.error(f"unknown {what} {', '.join(unknown)}; choose from {', '.join(known)}")
    return args


def run_suites(args: argparse.Namespace, device: torch.device, report: Report) -> None:
    budget_s, min_reps = (10.0, 3) if args.quick else (40.0, 5)
    if args.reps:
        budget_s, min_reps = 0.0, args.reps
    rnn: dict[str, RnnResult] = {}
    if "rnn" in args.only:
        known = sizes()
        for name in args.sizes:
            result = rnn[name] = bench_size(known[name], device, budget_s, min_reps)
            add_rnn(report, name, result)
    controllers = {}
    if "controller" in args.only:
        for preset in ("default", "ptb"):
            result = controllers[preset] = bench_controller(preset, budget_s / 4, min_reps)
            described = (f"{preset} preset: {result.config['nodes']} nodes, controller hidden "
                         f"{result.config['controller_hidden']}, aggregate {result.aggregate}, "
                         f"{result.timings['update'].reps} reps")
            report.add("controller_ms_per_arch", preset, 1e3 * result.update_s_per_arch,
                       result.timings["update"].spread, described)
            report.add("controller_sample_ms_per_arch", preset, 1e3 * result.sample_s_per_arch,
                       result.timings["sample"].spread, f"no-grad batch of {result.sample_batch}")
            report.configs[f"controller/{preset}"] = result.config
    if "search" in args.only:
        epochs = 2 if args.quick else 3
        probe = probe_search(epochs, device.type, [f"threads={args.threads}"] if args.threads else [])
        report.add("controller_search_share", None, probe["controller_share"], None,
                   f"default preset, search.epochs={epochs}, measured: controller time / search wall time")
        report.add("peak_rss_mb", None, probe["peak_rss_mb"], None, "the same search, in a child process")
        report.configs["search"] = probe
    for space in IMAGE_SPACES:
        if space in args.only:
            for size in selected(space, args.image_sizes):
                add_image(report, space, size.name, bench_images(size, device, budget_s, min_reps))
    if "paper" in rnn and "ptb" in controllers:
        ptb = controllers["ptb"]
        hours = paper_search_seconds(rnn["paper"], ptb.update_s_per_arch, ptb.sample_s_per_arch) / 3600
        report.add("paper_search_hours", None, hours, None,
                   f"projected: conf/ptb.yaml search on this {device.type} at the measured speeds")


def add_rnn(report: Report, name: str, result: RnnResult) -> None:
    size, timings = result.size, result.timings
    config = (f"nodes {size.nodes}, hidden {size.hidden}, batch {size.batch}, bptt {size.bptt}, "
              f"vocab {size.vocab}, {timings['supernet'].reps} reps")
    report.configs[f"rnn/{name}"] = result.config()
    report.add("rnn_supernet_tokens_per_s", name, result.supernet_tokens_per_s, timings["supernet"].spread, config)
    report.add("rnn_child_tokens_per_s", name, result.plain_tokens_per_s, timings["plain"].spread,
               "fixed cell, plain PyTorch per node")
    report.add("rnn_overhead_ratio", name, result.overhead_ratio, None, "supernet step time / fixed cell's")
    report.add("rnn_mfu", name, result.mfu, None,
               f"{result.achieved_gflops:.0f} GFLOP/s achieved of "
               f"{result.achieved_gflops / result.mfu:.0f} in the step's matmuls alone")
    report.add("rnn_matmul_bound_tokens_per_s", name, result.matmul_bound_tokens_per_s,
               timings["matmuls"].spread, "the step's matrix products alone")
    report.add("rnn_reward_ms", name, 1e3 * result.reward_s, timings["reward"].spread,
               "one validation window, forward only")
    report.add("rnn_kernels_per_step", name, result.kernels, None, KERNELS)


def add_image(report: Report, space: str, name: str, result: ImageResult) -> None:
    shapes, reps = result.search, result.timings["supernet"].reps
    cells = (f"layers {shapes['layers']}, filters {shapes['filters']}, "
             + (f"nodes {shapes['nodes']}" if space == "micro" else f"ops {shapes['ops']}"))
    report.configs[f"{space}/{name}"] = result.config()
    report.add(f"{space}_images_per_s", name, result.images_per_s, result.timings["supernet"].spread,
               f"{result.size.preset}: {cells}, batch {shapes['batch']}, {shapes['image']} images, "
               f"{shapes['classes']} classes, {reps} reps")
    report.add(f"{space}_child_images_per_s", name, result.child_images_per_s, result.timings["child"].spread,
               "one fixed architecture: space.child(arch)")
    report.add(f"{space}_overhead_ratio", name, result.overhead_ratio, None,
               "supernet step time / child's, both on the child's architecture")
    report.add(f"{space}_kernels_per_step", name, result.kernels, None, KERNELS)
    if name == "paper":
        report.add(f"{space}_paper_search_hours", None, result.search_hours(), None,
                   f"projected: conf/cifar10_{space}.yaml search on CIFAR-10 on this device at the measured speeds")
    final = result.retrain
    if final is not None:
        extras = (f", aux head {final['aux_weight']:g}, drop path {final['drop_path']:g}"
                  if space == "micro" else "")
        report.add(f"{space}_retrain_images_per_s", name, result.retrain_images_per_s,
                   result.timings["retrain"].spread,
                   f"{result.size.retrain_preset}: layers {final['layers']}, filters {final['filters']}, "
                   f"batch {final['batch']}{extras}, cutout {final['cutout']}")


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        device = resolve_device(args.device)
        # threads and, on CUDA, TF32: as a run sets them
        setup_runtime(preset_config("default", [f"device={device.type}", f"threads={args.threads}"]))
        report = Report()
        load_before = load_average()
        run_suites(args, device, report)
    except BenchmarkError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    machine = {"device": str(torch.cuda.get_device_name() if device.type == "cuda" else device),
               "threads": torch.get_num_threads(), "cores": os.cpu_count(), "torch": torch.__version__,
               "load_average": [round(load_before, 2), round(load_average(), 2)], "quick": args.quick,
               # torch's CPU allocator backs large tensors with huge pages when this is 1 (fewer page faults)
               "THP_MEM_ALLOC_ENABLE": os.environ.get("THP_MEM_ALLOC_ENABLE", "")}
    if args.json:
        print(json.dumps({**report.figures, "spread": report.spreads, "configs": report.configs,
                          "machine": machine}))
    else:
        print(f"device {machine['device']}, {machine['threads']} threads, torch {machine['torch']}, "
              f"THP_MEM_ALLOC_ENABLE={machine['THP_MEM_ALLOC_ENABLE'] or 'unset'}, load average "
              f"{load_before:.2f} before / {load_average():.2f} after (above {os.cpu_count()} the timings "
              "are contended)")
        print("values are medians; spread = (slowest - fastest repetition) / median")
        if args.quick and "paper" not in args.image_sizes and any(s in args.only for s in IMAGE_SPACES):
            print("--quick leaves out the paper image size (seconds to minutes per step on a CPU); "
                  "--image-sizes paper runs it")
        print()
        print(report.table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
