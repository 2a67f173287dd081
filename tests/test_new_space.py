"""What adding a search space takes: a throwaway space plugged into a copy of the project.

The copy gets one new module under enas/spaces/, one entry in the registry and one preset, and
nothing else; search, derive and retrain then run it through the command line, and its search
learns. If a new space ever needs another file touched, this test is where it shows.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TOY_SPACE = '''
"""A throwaway space: L 3x3 convolutions, each followed by the activation the controller picks."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from enas.fields import option
from enas.spaces.architecture import parse_ints
from enas.spaces.base import ImageShape, check_choices, check_space, op
from enas.spaces.graph import Edge, Graph, Node

ACTIVATIONS = ("relu", "tanh", "sigmoid")


@dataclass
class ToyConfig:
    layers: int = option(2, "convolutions", min=1)
    width: int = option(8, "channels of every convolution", min=1)


def decisions(layers):
    return [op(f"layer{i + 1}.activation", ACTIVATIONS) for i in range(layers)]


class ToyNetwork(nn.Module):
    def __init__(self, cfg, shape, arch=None):
        super().__init__()
        self.arch = arch
        self.convs = nn.ModuleList(nn.Conv2d(shape.channels if i == 0 else cfg.width, cfg.width, 3, padding=1)
                                   for i in range(cfg.layers))
        self.classifier = nn.Linear(cfg.width, shape.classes)

    def forward(self, images, arch=None):
        x = images
        for conv, choice in zip(self.convs, (arch or self.arch).choices):
            x = getattr(torch, ACTIVATIONS[choice])(conv(x))
        return self.classifier(x.mean((2, 3))), None


class ToySpace:
    name = "toy"
    config = ToyConfig
    data = ImageShape
    initial_anchors = 0
    aux_weight = 0.0

    def __init__(self, cfg, shape, train_steps=0):
        self.cfg, self.shape = cfg, shape

    def decisions(self):
        return decisions(self.cfg.layers)

    def supernet(self):
        return ToyNetwork(self.cfg, self.shape)

    def child(self, arch):
        check_space(arch, self.name)
        return ToyNetwork(self.cfg, self.shape, arch)

    @classmethod
    def check(cls, choices):
        check_choices(cls.name, decisions(len(choices)), choices)

    @classmethod
    def to_official(cls, choices, style):
        return " ".join(map(str, choices))

    @classmethod
    def from_official(cls, text, style):
        return tuple(parse_ints(text, "a toy architecture string"))

    @classmethod
    def canonical(cls, arch):
        return arch.choices

    @classmethod
    def render(cls, arch):
        names = [ACTIVATIONS[c] for c in arch.choices]
        nodes = [Node("image", "image", terminal=True)] + [Node(f"layer{i}", f"{i + 1}: {name}")
                                                           for i, name in enumerate(names)]
        return " -> ".join(names), Graph("toy", "TB", tuple(nodes), tuple(Edge(a.key, b.key)
                                                                         for a, b in zip(nodes, nodes[1:])))
'''

TOY_PRESET = """
space: toy
threads: 1
data: {name: builtin_images, image_size: 8, classes: 4, train_images: 400, test_images: 64, valid_fraction: 0.2}
toy: {layers: 3, width: 8}
controller: {steps: 5, aggregate: 4, lr: 0.01}
search: {epochs: 4, batch_size: 32, lr: 0.1, momentum: 0.9}
derive: {samples: 8, bn_batches: 2}
retrain: {epochs: 4, batch_size: 32, lr: 0.1, momentum: 0.9}
"""


def add_toy_space(copy: Path) -> list[str]:
    """Make the three changes that add a space; return the paths changed, relative to the copy."""
    (copy / "enas" / "spaces" / "toy.py").write_text(textwrap.dedent(TOY_SPACE).lstrip())
    registry = copy / "enas" / "spaces" / "__init__.py"
    text = registry.read_text()
    text = text.replace("from enas.spaces.recurrent import RecurrentSpace\n",
                        "from enas.spaces.recurrent import RecurrentSpace\nfrom enas.spaces.toy import ToySpace\n")
    text = text.replace("\n)}\n", "\n    ToySpace,\n)}\n")
    registry.write_text(text)
    (copy / "conf" / "toy.yaml").write_text(TOY_PRESET.lstrip())
    return ["enas/spaces/toy.py", "enas/spaces/__init__.py", "conf/toy.yaml"]


def changed_files(copy: Path) -> list[str]:
    """The files of the copy that differ from the project's own, or are new."""
    changed = []
    for path in sorted(copy.rglob("*")):
        relative = path.relative_to(copy)
        if path.is_file() and "__pycache__" not in relative.parts:
            original = ROOT / relative
            if not original.is_file() or original.read_bytes() != path.read_bytes():
                changed.append(relative.as_posix())
    return changed


def enas(copy: Path, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-c", "import cli; cli.main()", *args, "--quiet"], cwd=copy,
                            capture_output=True, text=True, timeout=600, env={"PYTHONPATH": str(copy), "PATH": ""})
    assert result.returncode == 0, result.stderr
    return result


def copy_project(tmp_path: Path) -> Path:
    """A copy of the project's code and presets, to change."""
    copy = tmp_path / "project"
    for part in ("enas", "conf"):
        shutil.copytree(ROOT / part, copy / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "cli.py", copy / "cli.py")
    return copy


def test_a_new_space_is_one_module_one_registry_entry_and_a_preset(tmp_path):
    copy = copy_project(tmp_path)
    touched = add_toy_space(copy)
    assert changed_files(copy) == sorted(touched)

    run = copy / "runs" / "toy"
    enas(copy, "search", "-c", "toy", "-o", str(run))
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [m["loss"] for m in metrics if m["phase"] == "supernet"]
    assert losses[-1] < losses[0]                                   # the supernet learned
    assert "toy:" in (run / "config.yaml").read_text()              # the space's own config section
    enas(copy, "derive", str(run))
    assert json.loads((run / "arch.json").read_text())["space"] == "toy"
    assert (run / "plots" / "cell.png").read_bytes()[:4] == b"\x89PNG"   # drawn without graphviz (PATH is empty)
    enas(copy, "retrain", str(run))
    assert json.loads((run / "retrain" / "result.json").read_text())["metric"] == "test_acc"
    retrained = [json.loads(line)["loss"] for line in (run / "retrain" / "metrics.jsonl").read_text().splitlines()]
    assert retrained[-1] < retrained[0]                             # the child learned from scratch
