"""Searches, retrains and derives over 2 processes, launched by `enas ... --nproc 2` (PyTorch's
torchrun launcher) with the gloo backend on this CPU: they learn, keep their replicas identical,
compute what one process computes with twice the batch where the maths says so, stop together,
fail as one job when a rank dies, and resume exactly."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from test_nas_rl import TINY as NAS_RL_TINY

from enas.run.metrics import read_metrics, without_wall_clock
from enas.run.signals import FAULT_HOOK

ENAS = str(Path(sys.executable).parent / "enas")
# built-in text, no dropout: every difference between the runs below is one of arithmetic
TINY = ["data.vocab_size=16", "data.train_tokens=12000", "data.valid_tokens=2000", "data.test_tokens=2000",
        "recurrent.nodes=4", "recurrent.hidden=32", "search.batch_size=8", "search.lr=10", "controller.steps=3",
        "controller.aggregate=2", "derive.samples=6", "retrain.batch_size=8", "retrain.lr=10", "threads=1"]
SEARCH = [*TINY, "search.epochs=5"]


def enas(*args: str, nproc: int = 2, signal_at: str = "", check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, FAULT_HOOK: signal_at} if signal_at else None
    result = subprocess.run([ENAS, *args, "--nproc", str(nproc), "--quiet"], capture_output=True, text=True,
                            timeout=600, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"enas {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
    return result


def records(run: Path) -> list[dict]:
    return without_wall_clock(read_metrics(run / "metrics.jsonl"))


def saved(run: Path) -> dict:
    return torch.load(run / "checkpoints" / "last.pt", weights_only=True)


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("distributed") / "straight"
    enas("search", "-o", str(run), *SEARCH)
    return run


def test_a_two_rank_search_learns_with_identical_replicas(straight):
    metrics = read_metrics(straight / "metrics.jsonl")
    losses = [m["loss"] for m in metrics if m["phase"] == "supernet"]
    assert len(losses) == 5 and losses[-1] < losses[0] - 0.1
    rewards = [[m["reward"] for m in metrics if m["phase"] == "controller" and m["epoch"] == e] for e in (0, 4)]
    assert sum(rewards[1]) / 3 > sum(rewards[0]) / 3          # the reward rises with the shared weights
    evals = [m for m in metrics if m["phase"] == "eval"]
    assert len(evals) == 5 and all(m["replicas"] == 2 for m in evals)   # bit-identical after every epoch
    state = saved(straight)
    assert state["world_size"] == 2 and len(state["ranks"]) == 1      # rank 1's own generators and data state
    assert not torch.equal(state["rng"]["torch"], state["ranks"][0]["rng"]["torch"])
    assert sorted(p.name for p in straight.iterdir()) == ["checkpoints", "config.yaml", "environment.json",
                                                          "metrics.jsonl", "plots", "vocab.txt"]


def test_two_ranks_of_batch_b_train_the_supernet_as_one_process_of_batch_2b(tmp_path):
    # The text task gives rank r sequences r*B..(r+1)*B-1 of the 2B one process reads, and the mean
    # of the ranks' mean losses is the mean over 2B: the averaged gradients, their clipping and the
    # update are one process's, up to the order of the additions. (Images cannot match so: batch
    # norm normalises each rank's B images by their own statistics.)
    short = [*TINY, "search.epochs=1", "search.steps_per_epoch=3", "controller.steps=0"]
    two, one = tmp_path / "two", tmp_path / "one"
    enas("search", "-o", str(two), *short)
    enas("search", "-o", str(one), *short, "search.batch_size=16", nproc=1)
    for name, weight in saved(two)["supernet"].items():
        torch.testing.assert_close(weight, saved(one)["supernet"][name], rtol=1e-5, atol=1e-6, msg=name)


def test_two_ranks_reward_aggregate_architectures_each_for_one_update_of_twice_the_samples(tmp_path):
    # The shared weights stand still (lr 0) and both runs read validation in batches of 8: each
    # rank rewards its 2 of the 4 architectures every rank draws, and the update from the 4
    # gathered rewards is the one a single process makes with aggregate 4, bit for bit.
    short = [*TINY, "search.epochs=1", "search.steps_per_epoch=3", "search.lr=0", "controller.steps=2"]
    two, one = tmp_path / "two", tmp_path / "one"
    enas("search", "-o", str(two), *short)
    enas("search", "-o", str(one), *short, "controller.aggregate=4", nproc=1)
    updates = [[m for m in read_metrics(run / "metrics.jsonl") if m["phase"] == "controller"] for run in (two, one)]
    assert without_wall_clock(updates[0]) == without_wall_clock(updates[1]) and len(updates[0]) == 2
    for name, weight in saved(two)["controller"].items():
        assert torch.equal(weight, saved(one)["controller"][name]), name


def test_a_stop_to_one_rank_stops_both_and_a_killed_rank_ends_the_job_and_both_resume_exactly(straight, tmp_path):
    run = tmp_path / "run"
    stopped = enas("search", "-o", str(run), *SEARCH, signal_at="supernet:0:7 SIGTERM 1", check=False)
    assert stopped.returncode == 143, stopped.stderr
    assert "stopped by SIGTERM" in stopped.stderr
    assert saved(run)["progress"]["step"] == 7 and saved(run)["progress"]["phase"] == "supernet"
    started = time.monotonic()
    killed = enas("search", "-o", str(run), "--resume", signal_at="controller:1:1 SIGKILL 1", check=False)
    assert killed.returncode == 1 and time.monotonic() - started < 120
    assert killed.stderr.strip().splitlines()[-1].startswith("error: rank 1 of 2 ended with signal SIGKILL")
    enas("search", "-o", str(run), "--resume")
    assert records(run) == records(straight)
    for part in ("supernet", "controller"):
        for name, weight in saved(straight)[part].items():
            assert torch.equal(saved(run)[part][name], weight), name


def test_a_resume_needs_the_number_of_processes_that_saved_the_run(straight):
    result = subprocess.run([ENAS, "search", "-o", str(straight), "--resume", "--quiet"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1
    assert "saved by 2 process(es)" in result.stderr and "--nproc 2" in result.stderr


def test_derive_scores_its_candidates_on_both_ranks_and_retrain_matches_one_process(straight, tmp_path):
    enas("derive", str(straight))
    candidates = (straight / "candidates.jsonl").read_text().splitlines()
    assert len(candidates) == 6 and (straight / "arch.json").is_file()
    # One process scores the same candidates the same way.
    alone = tmp_path / "alone"
    alone.mkdir()
    for name in ("config.yaml", "vocab.txt"):
        (alone / name).write_bytes((straight / name).read_bytes())
    (alone / "checkpoints").mkdir()
    (alone / "checkpoints" / "last.pt").write_bytes((straight / "checkpoints" / "last.pt").read_bytes())
    enas("derive", str(alone), nproc=1)
    assert (alone / "candidates.jsonl").read_text().splitlines() == candidates

    # Retrain: 2 ranks of batch 8 train as one process of batch 16. The per-epoch validation reads
    # batches of 8 and 16 (another layout of the split); the final test reads both in batches of 16.
    short = ["retrain.epochs=2", "retrain.steps_per_epoch=40", "retrain.eval_batch_size=16"]
    enas("retrain", str(straight), *short)
    enas("retrain", str(straight), "-o", str(tmp_path / "one"), *short, "retrain.batch_size=16", nproc=1)
    folders = straight / "retrain", tmp_path / "one"
    assert all(m["replicas"] == 2 for m in read_metrics(folders[0] / "metrics.jsonl"))
    two, one = (json.loads((folder / "result.json").read_text())["value"] for folder in folders)
    assert two == pytest.approx(one, rel=1e-4)   # the same training, up to the order of additions


def test_nas_rl_on_two_ranks_trains_twice_the_children_per_update(tmp_path):
    run = tmp_path / "nas_rl"
    enas("search", "-o", str(run), "-c", "default", *NAS_RL_TINY, "nas_rl.updates=2", "nas_rl.children=2")
    trials = read_metrics(run / "trials.jsonl")
    assert len(trials) == 2 * 2 * 2 and [t["step"] for t in trials] == [0, 1, 2, 3] * 2
    updates = [m for m in read_metrics(run / "metrics.jsonl") if m["phase"] == "controller"]
    assert len(updates) == 2 and all(m["replicas"] == 2 for m in updates)
