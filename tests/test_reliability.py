"""Reliability (issue 4, DESIGN section 8) on real tiny runs: exact resume after SIGKILL anywhere,
SIGINT/SIGTERM, non-finite values, safe loading, bad input, a full disk, seeds.

Runs go through the CLI, where a user would be: in a process of their own where a signal must
reach them, else in this process (typer's runner), which also shows that a run continued in
another process ends bit for bit the same. Kill points come from the test-only hook
ENAS_TEST_SIGNAL_AT="POINT SIGNAL" (enas/signals.py): POINT is `phase:epoch:step` after a step,
or `written:`/`renamed:` plus the position of a checkpoint save (between its two halves, and
right after its rename). Faults only a test can cause (a NaN at a chosen step, a full disk) are
injected in-process into a real run.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import io
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from cli import app
from enas.config import Config, TrainConfig, load_config, preset_path
from enas.console import Reporter
from enas.errors import DiskFullError, NonFiniteError, Stopped
from enas.folder import atomic as runs_module
from enas.run.checkpoint import SCHEMA_VERSION, load_checkpoint, nonfinite_entry, save_checkpoint
from enas.run.metrics import read_metrics, without_wall_clock
from enas.run.signals import FAULT_HOOK
from enas.run.training import sgd, train_step
from enas.strategies import supernet_search as search_module
from enas.strategies.supernet_search import Search, controller_step, run_search

ENAS = str(Path(sys.executable).parent / "enas")


@dataclass(frozen=True)
class Space:
    name: str
    preset: str
    overrides: tuple[str, ...]   # a tiny search and retrain: 3 search epochs of 20 steps, threads=1
    arch: str                    # an official architecture string, for retrain --arch
    space_change: str            # an override that changes the search space
    wrong_length: tuple[list, str]   # arch.json choices of the wrong length, and what the error says
    out_of_range: tuple[str, str]    # one with an index out of range, and what the error says
    dataset: str                 # data.name of the space's real dataset format
    layout: str                  # what the error for a missing dataset folder says is expected
    malformed: dict[str, str]    # files (relative to data.root) of a malformed dataset
    malformed_says: str          # what the error for it says


# Every test runs once per space.
SPACES = {
    "recurrent": Space("recurrent", "default", (
        "data.vocab_size=16", "data.train_tokens=12000", "data.valid_tokens=2000", "data.test_tokens=2000",
        "recurrent.nodes=4", "recurrent.hidden=32", "search.epochs=3", "search.steps_per_epoch=20",
        "search.batch_size=8", "search.lr=10", "controller.steps=4", "controller.aggregate=4",
        "derive.samples=4", "retrain.epochs=2", "retrain.steps_per_epoch=20", "retrain.batch_size=8",
        "retrain.lr=10", "threads=1"),
        arch="0 0 1 0 2", space_change="recurrent.nodes=5",
        wrong_length=([0, 0, 1, 0], "2N-1 choices for N nodes, got 4"),
        out_of_range=("0 0 1 9 2", "=9 is out of range"),
        dataset="text", layout="ptb.train.txt, ptb.valid.txt, ptb.test.txt",
        malformed={f"ptb.{split}.txt": "" for split in ("train", "valid", "test")}, malformed_says="is empty"),
    "micro": Space("micro", "shapes", (
        "data.train_images=400", "data.test_images=64", "micro.layers=1", "micro.filters=4", "micro.nodes=3",
        "search.epochs=3", "search.steps_per_epoch=20", "search.batch_size=8", "controller.steps=4",
        "controller.aggregate=4", "derive.samples=4", "derive.bn_batches=2", "retrain.epochs=2",
        "retrain.steps_per_epoch=20", "retrain.batch_size=8", "threads=1"),
        arch="0 2 0 3 1 2 2 1 1 4 0 4 1 2 0 3 1 2 0 3 1 2 3 0", space_change="micro.nodes=4",
        wrong_length=([0, 0, 1], "(8B in all), got 3"),
        out_of_range=("0 2 0 3 1 2 2 1 1 4 0 4 1 2 0 3 1 2 0 3 1 2 3 9", "=9 is out of range"),
        dataset="cifar10", layout="data_batch_1..data_batch_5 and test_batch",
        malformed={f"cifar-10-batches-py/{name}": "not a pickle" for name in
                   ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch")},
        malformed_says="is not a CIFAR-10 python batch"),
}
SPACES["macro"] = replace(
    SPACES["micro"], name="macro",
    overrides=tuple(o for o in SPACES["micro"].overrides if not o.startswith("micro."))
    + ("space=macro", "macro.layers=3", "macro.filters=4"),
    arch="0 1 1 4 0 0", space_change="macro.layers=4",
    wrong_length=([0, 0], "2L-1 choices for L layers"), out_of_range=("0 1 1 9 0 0", "=9 is out of range"))
STEPS = 20                  # search.steps_per_epoch and retrain.steps_per_epoch above
REWARDS_PER_EPOCH = 4 * 4   # controller.steps * controller.aggregate above


@pytest.fixture(scope="module", params=sorted(SPACES))
def space(request) -> Space:
    return SPACES[request.param]


@pytest.fixture(scope="module")
def straight(space, tmp_path_factory) -> Path:
    """An uninterrupted search: what every interrupted one must end up identical to."""
    run = tmp_path_factory.mktemp("straight") / "run"
    enas("search", "-o", str(run), "-c", space.preset, *space.overrides)
    return run


# --------------------------------------------------------------------------- helpers

def enas(*args: str, check: bool = True, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The command line run in this process (as fast as a test can be); signals need `enas_process`."""
    with contextlib.chdir(cwd or Path.cwd()):
        result = CliRunner().invoke(app, [*args, "--quiet"])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a bug, not an answer to the user
    return _checked(subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr), check)


def enas_process(*args: str, signal_at: str, check: bool = False) -> subprocess.CompletedProcess:
    """The command line in its own process, which the test-only hook signals at `signal_at`."""
    env = {**os.environ, FAULT_HOOK: signal_at}
    result = subprocess.run([ENAS, *args, "--quiet"], capture_output=True, text=True, timeout=600, env=env)
    return _checked(result, check)


def _checked(result: subprocess.CompletedProcess, check: bool) -> subprocess.CompletedProcess:
    if check and result.returncode != 0:
        raise AssertionError(f"enas {' '.join(result.args)} exited {result.returncode}:\n{result.stderr}")
    return result


def records(run: Path) -> list[dict[str, Any]]:
    return without_wall_clock(read_metrics(run / "metrics.jsonl"))


def checkpoint(run: Path, name: str = "last.pt") -> dict[str, Any]:
    return torch.load(run / "checkpoints" / name, weights_only=True)


def position(run: Path) -> tuple[int, str, int]:
    progress = checkpoint(run)["progress"]
    return progress["epoch"], progress["phase"], progress["step"]


def assert_same_state(got: Any, want: Any, where: str = "state") -> None:
    """Equal values, tensors bit for bit; wall-clock entries aside."""
    if isinstance(want, torch.Tensor):
        assert torch.equal(got, want), where
    elif isinstance(want, dict):
        assert got.keys() == want.keys(), where
        for key in want.keys() - {"elapsed", "time_s"}:
            assert_same_state(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, (list, tuple)):
        assert len(got) == len(want), where
        for i, (a, b) in enumerate(zip(got, want)):
            assert_same_state(a, b, f"{where}[{i}]")
    else:
        assert got == want, where


def assert_every_step_once(lines: list[dict[str, Any]]) -> None:
    """No duplicated and no missing steps in metrics.jsonl."""
    keys = [(m["phase"], m["epoch"], m["step"]) for m in lines]
    assert len(keys) == len(set(keys)), "duplicated lines"
    for phase in {m["phase"] for m in lines}:
        epochs = [m["epoch"] for m in lines if m["phase"] == phase and phase != "controller"]
        assert epochs == sorted(set(epochs)) == list(range(len(epochs))), f"missing {phase} epochs"
    updates = [m["step"] for m in lines if m["phase"] == "controller"]
    assert updates == list(range(1, len(updates) + 1)), "missing controller steps"


def assert_same_run(run: Path, reference: Path) -> None:
    assert records(run) == records(reference)
    assert_every_step_once(records(run))
    assert_same_state(checkpoint(run), checkpoint(reference))


def tree(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


def tiny_config(space: Space, *extra: str) -> Config:
    return load_config([preset_path(space.preset)], [*space.overrides, *extra])


# --------------------------------------------------------------------------- kill -9 and signals

def test_a_search_killed_anywhere_resumes_to_the_same_end(space, straight, tmp_path):
    run = tmp_path / "run"
    # (kill point, position of the checkpoint left behind); each resume is killed again further on
    kills = [("written:supernet:1:0", (0, "supernet", 0)),    # epoch 1's save written, not renamed yet
             ("supernet:1:7", (1, "supernet", 0)),            # mid supernet phase
             ("controller:1:2", (1, "supernet", 0)),        # mid controller phase
             ("renamed:supernet:2:0", (2, "supernet", 0))]    # right after a checkpoint's rename
    for i, (point, left) in enumerate(kills):
        args = ["-c", space.preset, *space.overrides] if i == 0 else ["--resume"]
        result = enas_process("search", "-o", str(run), *args, signal_at=f"{point} SIGKILL")
        assert result.returncode == -signal.SIGKILL, result.stderr
        assert position(run) == left
    enas("search", "-o", str(run), "--resume")
    assert_same_run(run, straight)
    for folder in (run, straight):
        enas("derive", str(folder))
    assert (run / "arch.json").read_text() == (straight / "arch.json").read_text()


def test_sigterm_and_sigint_save_at_the_step_and_resume_exactly(space, straight, tmp_path):
    run = tmp_path / "run"
    result = enas_process("search", "-o", str(run), "-c", space.preset, *space.overrides,
                          signal_at="supernet:1:7 SIGTERM")
    assert result.returncode == 143, result.stderr
    assert "resume with: " in result.stderr and f"enas search -o {run} --resume" in result.stderr
    assert position(run) == (1, "supernet", 7)
    result = enas_process("search", "-o", str(run), "--resume", signal_at="controller:1:2 SIGINT")
    assert result.returncode == 130, result.stderr
    assert position(run) == (1, "controller", 2)

    # Now from the parent, at whatever step the run has reached once epoch 2 is over.
    process = subprocess.Popen([ENAS, "search", "-o", str(run), "--resume", "--quiet"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not any(m["phase"] == "eval" and m["epoch"] == 1 for m in _lines_so_far(run)):
        assert process.poll() is None and time.time() < deadline, "the search ended before it could be stopped"
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 130, stderr
    assert "resume with:" in stderr and position(run) >= (2, "", 0)
    enas("search", "-o", str(run), "--resume")
    assert_same_run(run, straight)


def _lines_so_far(run: Path) -> list[dict[str, Any]]:
    text = (run / "metrics.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]


def test_a_second_sigint_ends_the_process_at_once():
    code = ("import os, signal, time\n"
            "from enas.run.signals import StopFlag\n"
            "with StopFlag() as stop:\n"
            "    os.kill(os.getpid(), signal.SIGINT)\n"
            "    print('stop requested' if stop.signum == signal.SIGINT else 'no flag', flush=True)\n"
            "    os.kill(os.getpid(), signal.SIGINT)\n"
            "    time.sleep(60)\n"
            "    print('still running')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout == "stop requested\n"
    assert result.returncode == -signal.SIGINT


def test_a_retrain_killed_or_stopped_resumes_to_the_same_result(space, tmp_path):
    straight, run = tmp_path / "straight", tmp_path / "run"
    common = ["--arch", space.arch, "-c", space.preset, *space.overrides]
    enas("retrain", "-o", str(straight), *common)
    result = enas_process("retrain", "-o", str(run), *common, signal_at="retrain:0:12 SIGKILL")
    assert result.returncode == -signal.SIGKILL
    result = enas_process("retrain", "-o", str(run), "--resume", signal_at="retrain:1:5 SIGTERM")
    assert result.returncode == 143 and f"enas retrain -o {run} --resume" in result.stderr
    enas("retrain", "-o", str(run), "--resume")
    assert records(run) == records(straight)
    assert_every_step_once(records(run))
    assert_same_state(json.loads((run / "result.json").read_text()), json.loads((straight / "result.json").read_text()))
    assert_same_state(torch.load(run / "model.pt", weights_only=True),
                      torch.load(straight / "model.pt", weights_only=True))


def test_overrides_given_to_a_resume_hold_for_the_resumes_after_it(space, straight, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(straight, run)
    result = enas_process("search", "-o", str(run), "--resume", "search.epochs=4", "search.batch_size=4",
                          signal_at="supernet:3:5 SIGTERM")   # a new epoch may take another batch size
    assert result.returncode == 143, result.stderr
    enas("search", "-o", str(run), "--resume")
    assert load_config([run / "config.yaml"], []).search.batch_size == 4
    evaluations = [m for m in records(run) if m["phase"] == "eval"]
    assert [m["epoch"] for m in evaluations] == [0, 1, 2, 3]
    assert_every_step_once(records(run))


# --------------------------------------------------------------------------- non-finite values

class InfiniteGradient(torch.autograd.Function):
    """The identity whose gradient is infinite: a finite loss with an infinite gradient norm."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad * float("inf")


FAULTS: dict[str, tuple[str, Callable[[Any], Any]]] = {   # name: (task method, what it returns instead)
    "nan loss": ("train_loss", lambda loss: loss * float("nan")),
    "inf gradient norm": ("train_loss", InfiniteGradient.apply),
    "nan reward": ("reward", lambda reward: float("nan")),
}


def inject(monkeypatch, fault: str, calls: range) -> None:
    """Make the given calls (counted from 0) of a task method of every search built return a fault."""
    method, corrupt = FAULTS[fault]
    build_task = search_module.build_task

    def build(config, train, *args, **kwargs):
        task = build_task(config, train, *args, **kwargs)
        original, counter = getattr(task, method), itertools.count()

        def faulty(*args):
            value = original(*args)
            return corrupt(value) if next(counter) in calls else value

        setattr(task, method, faulty)
        return task

    monkeypatch.setattr(search_module, "build_task", build)


MOMENTUM = TrainConfig(lr=0.1, momentum=0.9, weight_decay=1e-3)


@pytest.mark.parametrize("fault", ["nan loss", "inf gradient norm"])
def test_a_non_finite_training_step_leaves_parameters_and_optimiser_untouched(fault):
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    optimizer = sgd(model, MOMENTUM)
    loss_of = lambda: model(torch.ones(2, 3)).pow(2).sum()  # noqa: E731
    assert not train_step(loss_of, model.parameters(), optimizer, 0.25).skipped  # momentum is not zero now
    before = copy.deepcopy((model.state_dict(), optimizer.state_dict()))
    outcome = train_step(lambda: FAULTS[fault][1](loss_of()), model.parameters(), optimizer, 0.25)
    assert outcome.skipped and torch.isfinite(outcome.loss) == (fault != "nan loss")
    assert_same_state((model.state_dict(), optimizer.state_dict()), before)


def test_a_skipped_first_step_leaves_the_momentum_as_a_fresh_optimiser_has_it():
    torch.manual_seed(0)
    skipping, fresh = nn.Linear(3, 1), nn.Linear(3, 1)
    fresh.load_state_dict(skipping.state_dict())
    for model, faults in ((skipping, ["nan loss", None, None]), (fresh, [None, None])):
        optimizer = sgd(model, MOMENTUM)
        for fault in faults:
            loss_of = lambda: model(torch.ones(2, 3)).pow(2).sum()  # noqa: E731
            train_step(lambda: FAULTS[fault][1](loss_of()) if fault else loss_of(), model.parameters(), optimizer, 0)
    assert_same_state(skipping.state_dict(), fresh.state_dict())


def test_a_non_finite_reward_leaves_the_controller_and_the_baseline_untouched(space):
    search = Search(tiny_config(space), torch.device("cpu"))
    search.state.baseline = 5.0
    search.task.reward = lambda forward, index, batches=1: float("nan")
    before = copy.deepcopy((search.controller.state_dict(), search.controller_optimizer.state_dict()))
    assert controller_step(search) is None
    assert_same_state((search.controller.state_dict(), search.controller_optimizer.state_dict()), before)
    assert search.state.baseline == 5.0 and search.state.controller_updates == 0


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_non_finite_steps_are_skipped_and_counted(space, tmp_path, monkeypatch, capsys, fault):
    # two bad calls in epoch 2; a bad reward abandons its update after that one call
    first = REWARDS_PER_EPOCH if fault == "nan reward" else STEPS + 5
    inject(monkeypatch, fault, range(first, first + 2))
    run_search(tiny_config(space, "search.epochs=2"), tmp_path / "run", False, Reporter(quiet=True))
    lines = records(tmp_path / "run")
    phase = "controller" if fault == "nan reward" else "supernet"
    assert [m["skipped"] for m in lines if m["phase"] == phase and m["epoch"] == 1][-1] == 2
    warnings = [line for line in capsys.readouterr().err.splitlines() if "skipped" in line]
    if fault == "nan reward":  # the controller reads its rewards on the host: one warning per step
        assert len(warnings) == 2 and all("non-finite reward" in line for line in warnings)
    else:  # training steps are read a report later: one warning for both
        assert warnings == [f"warning: 2 step(s) skipped by epoch 2, supernet step 10: "
                            f"non-finite {fault.split(maxsplit=1)[1]}"]
    assert_every_step_once(lines)


def test_a_non_finite_streak_rolls_back_once_and_the_run_goes_on(space, tmp_path, monkeypatch, capsys):
    inject(monkeypatch, "nan loss", range(STEPS + 5, STEPS + 10))  # 5 in a row in epoch 2
    run_search(tiny_config(space, "search.epochs=2"), tmp_path / "run", False, Reporter(quiet=True))
    assert "rolled back to epoch 2, supernet step 0" in capsys.readouterr().err
    lines = records(tmp_path / "run")
    assert_every_step_once(lines)
    assert [m["skipped"] for m in lines if m["phase"] == "supernet"] == [0, 0]  # the replay went clean


def test_a_stop_during_a_streak_not_yet_read_rolls_back_before_it_saves(space, tmp_path, monkeypatch, capsys):
    # Epoch 2's steps 6-10 are skipped; the stop comes at step 12, before the figures of step 10
    # are read: the streak must not reach the checkpoint, or every resume would fail on it.
    inject(monkeypatch, "nan loss", range(STEPS + 5, STEPS + 10))
    monkeypatch.setenv(FAULT_HOOK, "supernet:1:12 SIGTERM")
    run, config = tmp_path / "run", tiny_config(space, "search.epochs=2")
    with pytest.raises(Stopped):
        run_search(config, run, False, Reporter(quiet=True))
    assert "rolled back to epoch 2, supernet step 0" in capsys.readouterr().err
    assert position(run) == (1, "supernet", 1)  # the stop, still pending, saved after the replay's first step
    monkeypatch.delenv(FAULT_HOOK)
    run_search(config, run, True, Reporter(quiet=True))
    lines = records(run)
    assert_every_step_once(lines)
    assert [m["skipped"] for m in lines if m["phase"] == "supernet"] == [0, 0]


def test_a_non_finite_streak_that_recurs_after_the_rollback_ends_the_run(space, tmp_path, monkeypatch):
    # Every reward from epoch 2 on: its 4 updates are skipped, epoch 3's first makes 5 in a row.
    inject(monkeypatch, "nan reward", range(REWARDS_PER_EPOCH, 10**9))
    with pytest.raises(NonFiniteError, match="non-finite reward in 5 steps in a row at epoch 3, controller "
                                             "step 1, again after a rollback") as error:
        run_search(tiny_config(space), tmp_path / "run", False, Reporter(quiet=True))
    assert error.value.exit_code == 3
    assert position(tmp_path / "run") == (2, "supernet", 0)


def test_a_non_finite_value_is_never_checkpointed(tmp_path):
    with pytest.raises(NonFiniteError, match=r"state.supernet.weight"):
        save_checkpoint(tmp_path, {"kind": "search", "supernet": {"weight": torch.tensor([1.0, float("nan")])}})
    assert list(tmp_path.iterdir()) == []


def test_an_absurd_learning_rate_exits_3_with_the_last_good_checkpoint_kept(space, tmp_path):
    run = tmp_path / "run"
    result = enas("search", "-o", str(run), "-c", space.preset, *space.overrides, "search.lr=1e38", check=False)
    assert result.returncode == 3, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: non-finite") and "supernet step" in last and "again after a rollback" in last
    assert "Traceback" not in result.stderr
    assert nonfinite_entry(checkpoint(run)) is None


# --------------------------------------------------------------------------- safe loading

class CreatesAFile:
    """A pickle that, loaded without weights_only, would create a file."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def test_a_checkpoint_that_would_run_code_is_refused(space, straight, tmp_path):
    run, marker = tmp_path / "run", tmp_path / "created-by-a-pickle"
    shutil.copytree(straight, run)
    evil = {"schema_version": SCHEMA_VERSION, "kind": "search", "payload": CreatesAFile(marker)}
    torch.save(evil, run / "checkpoints" / "last.pt")
    result = enas("search", "-o", str(run), "--resume")      # falls back to the previous checkpoint
    assert "unsafe (refused by the weights-only loader" in result.stderr and "resumed from" in result.stderr
    assert not marker.exists()
    assert_same_run(run, straight)

    torch.save(evil, run / "checkpoints" / "last.pt")
    (run / "checkpoints" / "previous.pt").unlink()
    before = tree(tmp_path)
    result = enas("search", "-o", str(run), "--resume", check=False)   # nothing else to fall back to
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "no valid checkpoint" in result.stderr and "nothing in it ran" in result.stderr
    assert not marker.exists() and tree(tmp_path) == before


def test_a_truncated_checkpoint_falls_back_to_the_previous_one(space, straight, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(straight, run)
    last = run / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[:last.stat().st_size // 2])
    result = enas("search", "-o", str(run), "--resume")
    assert "is truncated, foreign or unsafe" in result.stderr and "previous.pt" in result.stderr
    assert (run / "checkpoints" / "last.pt.damaged").is_file()
    assert_same_run(run, straight)


# --------------------------------------------------------------------------- bad input

def _damaged_run(straight: Path, tmp: Path) -> Path:
    run = tmp / "damaged"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copy(straight / "config.yaml", run)
    for name in ("last.pt", "previous.pt"):
        (run / "checkpoints" / name).write_text("not a checkpoint")
    return run


def _arch_file(tmp: Path, space: Space, choices: list) -> Path:
    path = tmp / "arch.json"
    path.write_text(json.dumps({"format_version": 1, "space": space.name, "choices": choices}))
    return path


def _malformed_data(tmp: Path, space: Space) -> Path:
    folder = tmp / "data"
    for name, text in space.malformed.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


def _stopped_mid_epoch(space: Space, tmp: Path) -> Path:
    run = tmp / "stopped"
    result = enas_process("search", "-o", str(run), "-c", space.preset, *space.overrides,
                          signal_at="supernet:1:7 SIGTERM")
    assert result.returncode == 143, result.stderr
    return run


# name: given the straight run, the space and a scratch folder, the command line and what its error says
BAD_INPUTS: dict[str, Callable[[Path, Space, Path], tuple[list[str], list[str]]]] = {
    "unknown key": lambda s, sp, t: (["search", "-c", sp.preset, "search.epoch=1"], ["did you mean search.epochs?"]),
    "wrong type": lambda s, sp, t: (["search", "-c", sp.preset, "search.epochs=three"], ["search.epochs", "wrong type"]),
    "out of range": lambda s, sp, t: (["search", "-c", sp.preset, "search.lr=-1"], ["search.lr=-1.0 must be at least 0"]),
    "several mistakes at once": lambda s, sp, t: (
        ["search", "-c", sp.preset, "search.epochs=three", "controller.stepz=2"],
        ["search.epochs", "wrong type", "controller.stepz", "did you mean controller.steps?"]),
    "missing dataset": lambda s, sp, t: (
        ["search", "-c", sp.preset, f"data.name={sp.dataset}", f"data.root={t / 'nope'}"],
        ["does not exist", sp.layout]),
    "malformed dataset": lambda s, sp, t: (
        ["search", "-c", sp.preset, f"data.name={sp.dataset}", f"data.root={_malformed_data(t, sp)}"],
        [sp.malformed_says]),
    "architecture of the wrong length": lambda s, sp, t: (
        ["retrain", "--arch", str(_arch_file(t, sp, sp.wrong_length[0])), "-c", sp.preset, *sp.overrides],
        [sp.wrong_length[1]]),
    "architecture index out of range": lambda s, sp, t: (
        ["retrain", "--arch", sp.out_of_range[0], "-c", sp.preset, *sp.overrides], [sp.out_of_range[1]]),
    "resume without a checkpoint": lambda s, sp, t: (["search", "-o", str(t), "--resume"], ["holds no checkpoint"]),
    "resume with damaged checkpoints": lambda s, sp, t: (
        ["search", "-o", str(_damaged_run(s, t)), "--resume"],
        ["no valid checkpoint", "truncated, foreign or unsafe"]),
    "resume changing the batch size mid-epoch": lambda s, sp, t: (
        ["search", "-o", str(_stopped_mid_epoch(sp, t)), "--resume", "search.batch_size=4"],
        ["cannot change search.batch_size in the middle of an epoch", "epoch 2, supernet step 7"]),
    "a folder that holds a run": lambda s, sp, t: (["search", "-o", str(s)], ["already holds a run"]),
    "resume changing the seed": lambda s, sp, t: (["search", "-o", str(s), "--resume", "seed=7"],
                                                  ["cannot change seed"]),
    "resume changing the space": lambda s, sp, t: (["search", "-o", str(s), "--resume", sp.space_change],
                                                   ["cannot change"]),
}


@pytest.mark.parametrize("mistake", list(BAD_INPUTS))
def test_a_user_mistake_is_one_line_exit_2_and_writes_nothing(space, straight, tmp_path, mistake):
    args, expected = BAD_INPUTS[mistake](straight, space, tmp_path)
    before, run_before = tree(tmp_path), tree(straight)
    result = enas(*args, check=False, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert all(fragment in lines[0] for fragment in expected), lines[0]
    assert tree(tmp_path) == before and tree(straight) == run_before


# --------------------------------------------------------------------------- full disk

class FullDisk(io.FileIO):
    """A file on a disk that is full after its first 1000 bytes."""

    def write(self, data) -> int:
        if self.tell() + len(data) > 1000:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return super().write(data)


def fill_the_disk_after(monkeypatch, files: int) -> None:
    """The first `files` files enas writes safely are written; the next ones meet a full disk."""
    opened = itertools.count()
    monkeypatch.setattr(runs_module, "open", lambda path, mode: open(path, mode) if next(opened) < files
                        else FullDisk(path, mode), raising=False)


def test_a_full_disk_while_saving_keeps_the_previous_checkpoint_loadable(tmp_path, monkeypatch):
    folder = tmp_path / "checkpoints"
    good = {"kind": "search", "weights": torch.arange(10.0)}
    save_checkpoint(folder, good)
    fill_the_disk_after(monkeypatch, 0)
    with pytest.raises(DiskFullError, match="the last good checkpoint is .*last.pt"):
        save_checkpoint(folder, {"kind": "search", "weights": torch.zeros(10_000)})
    assert [p.name for p in folder.iterdir()] == ["last.pt"]   # the temporary file is gone
    assert_same_state(load_checkpoint(folder), {"schema_version": SCHEMA_VERSION, **good})


def test_a_search_stopped_by_a_full_disk_resumes_to_the_same_end(space, straight, tmp_path, monkeypatch):
    run = tmp_path / "run"
    # config.yaml, environment.json, vocab.txt (text) or classes.txt (images), the initial checkpoint, epoch 1's
    fill_the_disk_after(monkeypatch, 5)
    with pytest.raises(DiskFullError) as error:
        run_search(tiny_config(space), run, False, Reporter(quiet=True))
    assert error.value.exit_code == 75
    assert f"last good checkpoint is {run / 'checkpoints' / 'last.pt'}" in str(error.value)
    assert f"enas search -o {run} --resume" in str(error.value)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.pt", "previous.pt"]
    assert position(run) == (1, "supernet", 0)
    monkeypatch.undo()
    enas("search", "-o", str(run), "--resume")
    assert_same_run(run, straight)


# --------------------------------------------------------------------------- seeds

def test_the_same_seed_repeats_a_run_and_another_seed_samples_other_architectures(space, tmp_path):
    searches = {name: run_search(tiny_config(space, "search.epochs=1", f"seed={seed}"), tmp_path / name, False,
                                 Reporter(quiet=True)) for name, seed in (("a", 0), ("b", 0), ("c", 1))}
    assert records(tmp_path / "a") == records(tmp_path / "b")
    assert_same_state(checkpoint(tmp_path / "a"), checkpoint(tmp_path / "b"))
    assert searches["a"].sample(20) == searches["b"].sample(20)
    assert searches["a"].sample(20) != searches["c"].sample(20)
    assert records(tmp_path / "a") != records(tmp_path / "c")
