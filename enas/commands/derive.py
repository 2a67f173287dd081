"""Derive (ENAS section 2.2, "Deriving Architectures"): sample from the trained controller, score
each candidate on the whole validation split with the shared weights, keep the best.

Writes RUN_DIR/arch.json (the best architecture with its score and renderings),
RUN_DIR/candidates.jsonl (every scored candidate) and RUN_DIR/cell.txt, cell.dot (and cell.png
where graphviz's `dot` is installed).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.table import Table

from enas.config import Config
from enas.run import state as key
from enas.run.checkpoint import load_checkpoint
from enas.run.folder import CHECKPOINTS
from enas.run.reporter import Reporter
from enas.run.training import model_of, place, setup_runtime
from enas.spaces import official, space_type
from enas.spaces.architecture import Architecture
from enas.strategies.controller import Controller
from enas.tasks import build_task

ARCH_FILE = "arch.json"
CANDIDATES_FILE = "candidates.jsonl"


@dataclass(frozen=True)
class Candidate:
    arch: Architecture
    score: float


def run_derive(config: Config, run_dir: Path, reporter: Reporter) -> Candidate:
    """Read the search's supernet and controller (nothing else of its state), score N samples."""
    saved = load_checkpoint(run_dir / CHECKPOINTS, warn=reporter.print)
    device = setup_runtime(config)
    task = build_task(config, config.search).to(device)
    supernet = place(task.space.supernet(), config, device)
    supernet.load_state_dict(saved[key.SUPERNET])
    controller = Controller.for_space(task.space, config.controller)
    controller.load_state_dict(saved[key.CONTROLLER])
    controller.eval()
    supernet.eval()
    samples = config.derive.samples
    generator = torch.Generator().manual_seed(config.seed + 3)
    with torch.no_grad():
        architectures = controller(samples, generator).architectures
    scores: dict[Architecture, float] = {}
    with reporter.phase("derive", samples) as update, open(run_dir / CANDIDATES_FILE, "w") as out:
        for arch in architectures:
            if arch not in scores:  # the controller often samples the same architecture twice
                candidate = model_of(supernet, config, device, arch)
                task.calibrate(candidate)  # e.g. batch-norm statistics of this candidate
                scores[arch] = task.evaluate(candidate, "valid")
            out.write(json.dumps({"arch": official(arch), "choices": arch.to_json()["choices"],
                                  f"valid_{task.metric}": scores[arch]}) + "\n")
            update(best=min(scores.values()) if task.lower_is_better else max(scores.values()))
    ranked = sorted(scores.items(), key=lambda item: item[1], reverse=not task.lower_is_better)
    best = Candidate(*ranked[0])
    write_architecture(run_dir, best, task.metric, len(architectures))
    reporter.print(_table(ranked[:config.derive.top], task.metric))
    return best


def write_architecture(run_dir: Path, best: Candidate, metric: str, sampled: int) -> None:
    text, dot = space_type(best.arch.space).render(best.arch)
    record = {**best.arch.to_json(), "official": official(best.arch),
              f"valid_{metric}": best.score, "sampled": sampled, "cell": text.splitlines()}
    (run_dir / ARCH_FILE).write_text(json.dumps(record, indent=2) + "\n")
    (run_dir / "cell.txt").write_text(text + "\n")
    (run_dir / "cell.dot").write_text(dot)
    if shutil.which("dot"):
        subprocess.run(["dot", "-Tpng", str(run_dir / "cell.dot"), "-o", str(run_dir / "cell.png")],
                       check=False, capture_output=True)


def _table(ranked: list[tuple[Architecture, float]], metric: str) -> Table:
    table = Table(title="best candidates")
    table.add_column("rank", justify="right")
    table.add_column(f"valid {metric}", justify="right")
    table.add_column("architecture (official string)")
    for rank, (arch, score) in enumerate(ranked, start=1):
        table.add_row(str(rank), f"{score:.4g}", official(arch))
    return table
