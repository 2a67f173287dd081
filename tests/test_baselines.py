"""The random-search baselines: random_ws (ENAS's supernet training with uniform architectures,
Li & Talwalkar 2019) and random (uniform children trained from scratch), with no controller updates."""

from __future__ import annotations

import json
from collections import Counter

import torch
from test_nas_rl import TINY as NAS_RL_TINY

from enas.commands.derive import run_derive
from enas.commands.search import run_search
from enas.config import ControllerConfig, load_config, preset_path
from enas.console import Reporter
from enas.run.metrics import read_metrics
from enas.spaces.base import ImageShape, TextShape
from enas.spaces.macro import MacroConfig, MacroSpace
from enas.spaces.recurrent import RecurrentConfig, RecurrentSpace
from enas.strategies.controller import Controller

QUIET = Reporter(quiet=True)


def test_the_uniform_controller_draws_every_option_equally_and_skips_as_a_fair_coin():
    generator = torch.Generator().manual_seed(0)
    recurrent = RecurrentSpace(RecurrentConfig(nodes=3), TextShape(5))
    archs = Controller.for_space(recurrent, ControllerConfig()).make_uniform()(4000, generator).architectures
    first_activation = Counter(arch.choices[0] for arch in archs)
    assert all(abs(count / 4000 - 0.25) < 0.03 for count in first_activation.values())
    node3_input = Counter(arch.choices[3] for arch in archs)       # node 3 reads node 1 or 2
    assert all(abs(count / 4000 - 0.5) < 0.03 for count in node3_input.values())
    macro = MacroSpace(MacroConfig(layers=4), ImageShape(3, 8, 8, 4))
    archs = Controller.for_space(macro, ControllerConfig()).make_uniform()(4000, generator).architectures
    bits = [bit for arch in archs for bit in arch.choices[-1]]    # layer 4's three skip bits
    assert abs(sum(bits) / len(bits) - 0.5) < 0.02


def test_random_ws_trains_the_supernet_on_uniform_architectures_and_never_updates_the_controller(tmp_path):
    config = load_config([preset_path("random_ws")], ["threads=1", "search.epochs=2", "search.steps_per_epoch=20",
                                                      "data.train_tokens=6000", "data.valid_tokens=2000",
                                                      "derive.samples=6"])
    search = run_search(config, tmp_path / "run", False, QUIET)
    metrics = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert {m["phase"] for m in metrics} == {"supernet", "eval"}        # no controller phase
    assert len({arch for arch in search.sample(30)}) > 20               # uniform draws, not one policy
    saved = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert saved["controller_optimizer"]["state"] == {}                # never stepped
    heads = {name: w for name, w in saved["controller"].items() if name.startswith(("op_heads", "attn_v"))}
    assert heads and all(not w.any() for w in heads.values())          # still the uniform policy
    losses = [m["loss"] for m in metrics if m["phase"] == "supernet"]
    assert losses[-1] < losses[0]
    best = run_derive(config, tmp_path / "run", QUIET)
    scores = [json.loads(line)["valid_ppl"] for line in (tmp_path / "run" / "candidates.jsonl").read_text().splitlines()]
    assert best.score == min(scores)


def test_random_trains_uniform_children_from_scratch_and_derive_keeps_the_best(tmp_path):
    config = load_config([preset_path("default")], [*NAS_RL_TINY, "strategy=random", "nas_rl.updates=2"])
    run_search(config, tmp_path / "run", False, QUIET)
    lines = [m for m in read_metrics(tmp_path / "run" / "metrics.jsonl")]
    assert [m["phase"] for m in lines] == ["random", "random"]
    trials = read_metrics(tmp_path / "run" / "trials.jsonl")
    assert len(trials) == 8
    assert lines[0]["reward"] == sum(t["reward"] for t in trials[:4]) / 4
    best = run_derive(config, tmp_path / "run", QUIET)
    assert best.score == max(t["reward"] for t in trials)
