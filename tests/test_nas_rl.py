"""NAS-RL (Zoph & Le 2017): children trained from scratch, rewarded, looked up when sampled again,
resumed exactly after a kill inside a child, derived from the trials and retrained."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from enas.config import load_config, preset_path
from enas.console import Reporter
from enas.errors import UserError
from enas.folder.names import TRIALS_FILE
from enas.run.metrics import read_metrics, without_wall_clock
from enas.run.signals import FAULT_HOOK
from enas.spaces import from_official
from enas.spaces.micro import MicroSpace
from enas.strategies.child_search import run_child_search

ENAS = str(Path(sys.executable).parent / "enas")
# A tiny text task: a 2-node cell (16 architectures), children of 20 steps an epoch.
TINY = ["strategy=nas_rl", "space=recurrent", "threads=1", "data.vocab_size=16", "data.branching=2",
        "data.train_tokens=8000", "data.valid_tokens=2000", "data.test_tokens=2000", "recurrent.nodes=2",
        "recurrent.hidden=16", "controller.hidden=16", "search.batch_size=16", "search.bptt=10", "search.lr=5.0",
        "search.steps_per_epoch=20", "search.eval_batches=5", "nas_rl.child_epochs=2", "nas_rl.children=4",
        "retrain.epochs=1", "retrain.batch_size=16", "retrain.bptt=10"]


def tiny(*extra: str):
    return load_config([preset_path("default")], [*TINY, *extra])


def trials(run: Path) -> list[dict]:
    """The trials, wall-clock figures aside."""
    return without_wall_clock(read_metrics(run / TRIALS_FILE))


def test_the_reward_rises_where_the_architecture_matters(tmp_path, one_thread):
    # 16 architectures, so the cache trains each at most once; the controller learns which are good
    run_child_search(tiny("nas_rl.updates=16", "controller.lr=0.05"), tmp_path / "run", False, Reporter(quiet=True))
    rewards = [m["reward"] for m in read_metrics(tmp_path / "run" / "metrics.jsonl") if m["phase"] == "controller"]
    assert len(rewards) == 16
    assert sum(rewards[-4:]) / 4 > sum(rewards[:4]) / 4 * 1.1
    lines = trials(tmp_path / "run")
    assert len(lines) == 64 and {"arch", "choices", "reward", "valid_ppl", "curve", "params", "cached"} <= set(lines[0])
    assert all(len(t["curve"]) == 2 for t in lines)


def test_a_child_sampled_again_is_looked_up_unless_the_cache_is_off(tmp_path, one_thread):
    run_child_search(tiny("nas_rl.updates=4"), tmp_path / "cached", False, Reporter(quiet=True))
    lines = trials(tmp_path / "cached")
    first = {}
    for trial in lines:
        key = tuple(trial["choices"])
        assert trial["cached"] == (key in first)     # trained the first time, looked up after
        if key in first:
            assert {k: v for k, v in trial.items() if k not in ("cached", "epoch", "step")} == first[key]
        first.setdefault(key, {k: v for k, v in trial.items() if k not in ("cached", "epoch", "step")})
    assert len(first) < len(lines)                   # 16 updates' worth of samples from 16 architectures
    run_child_search(tiny("nas_rl.updates=4", "nas_rl.cache=false"), tmp_path / "fresh", False, Reporter(quiet=True))
    assert not any(t["cached"] for t in trials(tmp_path / "fresh"))


def test_two_encodings_of_one_micro_cell_are_one_trial():
    # node 2 = sep3(input 0) + avg(input 1), written in either order
    a = from_official("0 0 1 2 " + "0 1 1 1 " * 3, "micro")
    b = from_official("1 2 0 0 " + "0 1 1 1 " * 3, "micro")
    assert a != b and MicroSpace.canonical(a) == MicroSpace.canonical(b)
    assert MicroSpace.canonical(a) != MicroSpace.canonical(from_official("1 0 0 2 " + "0 1 1 1 " * 3, "micro"))


def enas_process(*args: str, signal_at: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **({FAULT_HOOK: signal_at} if signal_at else {})}
    return subprocess.run([ENAS, *args, "--quiet"], capture_output=True, text=True, timeout=600, env=env)


def test_a_search_stopped_or_killed_inside_a_child_resumes_to_the_same_trials(tmp_path):
    args = ["-c", "default", *TINY, "nas_rl.updates=3", "nas_rl.cache=false"]  # every child trains
    straight, run = tmp_path / "straight", tmp_path / "run"
    assert enas_process("search", "-o", str(straight), *args).returncode == 0
    # SIGTERM in the first child's training, then kill -9 inside update 2's third child, then
    # kill -9 between a checkpoint's write and its rename
    stopped = enas_process("search", "-o", str(run), *args, signal_at="children:0:0 SIGTERM")
    assert stopped.returncode == 143, stopped.stderr
    for point in ("children:1:2", "written:children:2:1"):
        killed = enas_process("search", "-o", str(run), "--resume", signal_at=f"{point} SIGKILL")
        assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert enas_process("search", "-o", str(run), "--resume").returncode == 0
    assert trials(run) == trials(straight)
    assert without_wall_clock(read_metrics(run / "metrics.jsonl")) == \
        without_wall_clock(read_metrics(straight / "metrics.jsonl"))
    saved = [torch.load(folder / "checkpoints" / "last.pt", weights_only=True) for folder in (run, straight)]
    for name, weight in saved[0]["controller"].items():
        assert torch.equal(weight, saved[1]["controller"][name]), name

    # derive keeps the child of the highest reward; retrain trains it
    assert enas_process("derive", str(run)).returncode == 0
    best = max(trials(run), key=lambda t: t["reward"])
    assert json.loads((run / "arch.json").read_text())["choices"] == best["choices"]
    retrained = enas_process("retrain", str(run))
    assert retrained.returncode == 0, retrained.stderr
    assert json.loads((run / "retrain" / "result.json").read_text())["metric"] == "test_ppl"


def test_an_unknown_strategy_is_a_one_line_error():
    with pytest.raises(UserError, match="strategy='bayes' is not one of enas, random_ws, nas_rl, random"):
        tiny("strategy=bayes")


@pytest.mark.parametrize("preset, overrides", [
    ("nas_conv", ["data.train_images=200", "data.test_images=64", "data.valid_fraction=0.2", "search.batch_size=16",
                  "retrain.batch_size=16", "derive.bn_batches=2"]),
    ("nas_rl", ["nas_cell.hidden=8", "search.bptt=10"]),
])
def test_the_nas_rl_presets_search_derive_and_retrain_through_the_command_line(preset, overrides, tmp_path):
    run = tmp_path / "run"
    small = ["nas_rl.updates=2", "nas_rl.children=2", "nas_rl.child_epochs=1", "search.steps_per_epoch=3",
             "search.eval_batches=2", "retrain.epochs=1", "retrain.steps_per_epoch=3", *overrides]
    for args in (["search", "-o", str(run), "-c", preset, *small], ["derive", str(run)], ["retrain", str(run)]):
        result = enas_process(*args)
        assert result.returncode == 0, result.stderr
    assert len(read_metrics(run / TRIALS_FILE)) == 4
    assert json.loads((run / "arch.json").read_text())["space"] == ("nas_conv" if preset == "nas_conv" else "nas_cell")
    assert (run / "retrain" / "result.json").is_file()
    drawn = {path.name for path in (run / "plots").iterdir()}   # no supernet: no loss or learning-rate plot
    assert drawn == {"search_reward.png", "search_entropy.png", "search_valid.png", "search_choices.png",
                     "derive_scores.png", "cell.png", "retrain.png"}


def test_published_architectures_are_taken_by_name_for_their_own_space():
    from enas.run.retrain_setup import checked_architecture as _architecture
    from enas.spaces.nas_cell import PUBLISHED_PTB

    assert _architecture("nas_rl_ptb", "nas_cell") == from_official(PUBLISHED_PTB, "nas_cell")
    assert len(_architecture("enas_macro_cifar10", "macro").choices) == 47
    with pytest.raises(UserError, match="nas_rl_ptb is a nas_cell architecture but the config's space is micro"):
        _architecture("nas_rl_ptb", "micro")
    with pytest.raises(UserError, match="no ARCH.json file, published architecture"):
        _architecture("nas_rl_cifar", "nas_conv")
