"""The official PTB recipe's details: weight decay of every parameter, the presets' weight decay,
parameter averaging, random-length BPTT and the paper's test evaluation (batch 1, BPTT 1)."""

import pytest
import torch

from enas.config import load_config, preset_path
from enas.run.training import sgd, train_step
from enas.spaces.architecture import Architecture
from enas.spaces.base import TextShape
from enas.spaces.recurrent import RecurrentConfig, RecurrentSpace
from enas.spaces.recurrent_cell import edge_row


def supernet_step(decay_unused: bool):
    """One step of a 3-node supernet on the chain 1 -> 2 -> 3: the edge (3 reads 1) is unused."""
    from enas.config import TrainConfig

    torch.manual_seed(0)
    model = RecurrentSpace(RecurrentConfig(nodes=3, hidden=4), TextShape(7)).supernet()
    arch = Architecture("recurrent", (0, 0, 0, 1, 0))
    optimizer = sgd(model, TrainConfig(lr=1.0, weight_decay=0.1))
    unused = model.edges[edge_row(2, 0)]
    before = unused.detach().clone()
    tokens = torch.randint(0, 7, (5, 2))
    train_step(lambda: model(tokens, None, tokens, arch=arch)[0], model.parameters(), optimizer, 0.25, decay_unused)
    return before, unused.detach()


def test_an_unused_supernet_weight_decays_only_with_decay_unused():
    before, after = supernet_step(decay_unused=True)
    assert torch.allclose(after, before * (1 - 1.0 * 0.1))   # lr * weight_decay * w, and no other change
    before, after = supernet_step(decay_unused=False)
    assert torch.equal(after, before)


@pytest.mark.parametrize("preset, section, official_l2", [
    ("ptb", "search", 1e-7), ("ptb_enas_lm", "retrain", 8e-7), ("ptb_final", "retrain", 8e-7)])
def test_ptb_presets_decay_with_the_gradient_of_the_official_l2_term(preset, section, official_l2):
    config = load_config([preset_path(preset)], ["data.root=/nowhere"])
    assert getattr(config, section).weight_decay == pytest.approx(2 * official_l2)   # d(l2 sum w^2)/dw = 2 l2 w


# enas_lm's search decays only the sampled weights (search.weight_decay_form quartic: test_fidelity.py)
@pytest.mark.parametrize("preset", ["ptb", "cifar10_micro", "cifar10_macro"])
def test_presets_of_official_searches_decay_unused_weights(preset):
    assert load_config([preset_path(preset)], ["data.root=/nowhere"]).search.decay_unused


def text_task(*overrides):
    from enas.tasks.text import TextTask

    config = load_config([], ["data.vocab_size=12", "data.train_tokens=2000", "data.valid_tokens=400",
                              "data.test_tokens=403", "recurrent.nodes=3", "recurrent.hidden=8", "recurrent.init_range=1.0",
                              "retrain.batch_size=4", "retrain.bptt=5", *overrides])
    return config, TextTask(config, config.retrain)


def test_the_final_test_score_reads_the_whole_split_as_one_sequence_at_eval_batch_size_1():
    from enas.spaces.base import Model

    config, task = text_task("retrain.eval_batch_size=1", "retrain.eval_bptt=1")
    torch.manual_seed(0)
    model = task.space.child(Architecture("recurrent", (0, 0, 1, 1, 2))).eval()
    tokens = task.corpus.test
    with torch.no_grad():   # by hand: every token after the first, from one state carried from the start
        loss = model(tokens[:-1, None], None, tokens[1:, None])[0].item()
    final = task.evaluate(Model(model, None), "test", final=True)
    assert final == pytest.approx(torch.tensor(loss).exp().item(), rel=1e-5)
    assert task.final_layout_differs
    assert abs(task.evaluate(Model(model, None), "test") - final) > 1e-3   # the training layout (4 x 5) differs
    _, long_windows = text_task("retrain.eval_batch_size=1", "retrain.eval_bptt=35")
    assert long_windows.evaluate(Model(model, None), "test", final=True) == pytest.approx(final, rel=1e-5)


def test_final_scores_default_to_the_training_layout():
    _, task = text_task()
    assert not task.final_layout_differs and task.final_streams is task.streams and task.eval_bptt == 5


def test_ptb_final_presets_score_the_test_split_at_batch_1_bptt_1_as_the_official_code():
    for preset in ("ptb_final", "ptb_enas_lm"):
        retrain = load_config([preset_path(preset)], ["data.root=/nowhere"]).retrain
        assert (retrain.eval_batch_size, retrain.eval_bptt) == (1, 1)


TINY_RETRAIN = ["data.vocab_size=12", "data.train_tokens=3000", "data.valid_tokens=400", "data.test_tokens=400",
                "recurrent.nodes=3", "recurrent.hidden=8", "retrain.batch_size=4", "retrain.bptt=6",
                "retrain.steps_per_epoch=3", "retrain.lr=5", "threads=1"]


def tiny_retrain(tmp_path, monkeypatch, *overrides, resume=False, name="run"):
    """A tiny retrain whose validation never improves after its first epoch (patched), so that
    averaging starts after epoch `average_after` + 1; returns the run folder."""
    from enas.commands.retrain import run_retrain
    from enas.console import Reporter
    from enas.tasks.text import TextTask

    real = TextTask.evaluate
    monkeypatch.setattr(TextTask, "evaluate", lambda self, model, split, max_batches=0, final=False:
                        5.0 if split == "valid" else real(self, model, split, max_batches, final))
    config = load_config([], [*TINY_RETRAIN, *overrides])
    run_retrain(config, Architecture("recurrent", (0, 0, 1, 1, 2)), tmp_path / name, resume, Reporter(quiet=True))
    return tmp_path / name


def test_retrain_averages_the_weights_of_every_step_once_validation_stalls_and_keeps_the_average(
        tmp_path, monkeypatch):
    import enas.run.steps
    from enas.run.metrics import read_metrics

    after_steps = []
    real_step = enas.run.steps.train_step

    def recording_step(loss_of, params, *args):
        params = list(params)
        outcome = real_step(loss_of, params, *args)
        after_steps.append([p.detach().clone() for p in params])
        return outcome

    monkeypatch.setattr(enas.run.steps, "train_step", recording_step)
    run = tiny_retrain(tmp_path, monkeypatch, "retrain.epochs=4", "retrain.average_after=1")
    # epoch 2 made no new best: the average starts from the weights after its last step (step 6)
    # and takes in every later step; the first averaged validation (epoch 3, steps 6-9) is the new
    # best (the average's own), and epoch 4's, no better, is not kept
    expected = [torch.stack(ws).mean(0) for ws in zip(*after_steps[5:9])]
    saved = torch.load(run / "model.pt", weights_only=True)
    names = list(saved)
    assert len(names) == len(expected)
    for name, weight in zip(names, expected):
        assert torch.allclose(saved[name], weight, atol=1e-6), name
    lines = [m for m in read_metrics(run / "metrics.jsonl") if m["phase"] == "retrain"]
    assert [m.get("averaged") for m in lines] == [None, None, 4, 7]


def retrain_run(folder, *overrides, resume=False):
    from enas.commands.retrain import run_retrain
    from enas.console import Reporter

    config = load_config([], [*TINY_RETRAIN, *overrides])
    return run_retrain(config, Architecture("recurrent", (0, 0, 1, 1, 2)), folder, resume, Reporter(quiet=True))


@pytest.mark.parametrize("random_bptt, averaged", [
    ("false", [None, None, None, 4, 7]),      # validation stalled at epoch 3
    ("true", [None, None, 4, 7, 10])])        # at epoch 2
def test_an_averaging_retrain_resumed_at_an_epoch_ends_as_an_uninterrupted_one(tmp_path, random_bptt, averaged):
    from enas.run.metrics import read_metrics

    common = ("retrain.average_after=1", f"retrain.random_bptt={random_bptt}")
    straight = retrain_run(tmp_path / "straight", "retrain.epochs=5", *common)
    retrain_run(tmp_path / "run", "retrain.epochs=4", *common)   # stops while averaging
    resumed = retrain_run(tmp_path / "run", "retrain.epochs=5", *common, resume=True)
    lines = [m for m in read_metrics(tmp_path / "straight" / "metrics.jsonl") if m["phase"] == "retrain"]
    assert [m.get("averaged") for m in lines] == averaged
    assert resumed.value == straight.value
    a, b = (torch.load(tmp_path / r / "model.pt", weights_only=True) for r in ("straight", "run"))
    assert all(torch.equal(a[name], b[name]) for name in a)


def test_the_enas_lm_retrains_average_once_validation_stalls_for_10_epochs():
    for preset in ("ptb_final", "ptb_enas_lm"):
        assert load_config([preset_path(preset)], ["data.root=/nowhere"]).retrain.average_after == 10


def test_random_bptt_windows_tile_the_train_split_with_awd_lstm_lengths_from_the_seed_and_step():
    from enas.tasks.text import RandomWindows

    windows = RandomWindows(rows=20_000, bptt=35, seed=3)
    first = [windows.window(i) for i in range(1200)]   # more than one pass
    lengths = [length for _, length in first]
    assert min(lengths) >= 5 and len(set(lengths)) > 10
    in_pass = [(a, b) for a, b in zip(first, first[1:]) if b[0] != 0]
    assert all(b[0] == a[0] + a[1] for a, b in in_pass)             # contiguous within a pass
    assert 0 < sum(1 for w in first if w[0] == 0) - 1 < 3           # and a new pass from row 0
    assert 32.5 < sum(lengths) / len(lengths) < 35.5                # 0.95 * 35 + 0.05 * 17.5 = 34.1
    assert sum(1 for n in lengths if n < 24) > 20                   # the short windows N(17.5, 5)
    fresh = RandomWindows(rows=20_000, bptt=35, seed=3)             # a resumed run: same windows, any order
    assert [fresh.window(i) for i in (1100, 7, 600)] == [first[1100], first[7], first[600]]
    assert [RandomWindows(20_000, 35, 4).window(i) for i in range(50)] != first[:50]


def test_random_bptt_scales_each_steps_learning_rate_by_its_window_length():
    import enas.run.steps
    from enas.run.progress import Progress
    from enas.spaces.base import Model

    config, task = text_task("retrain.random_bptt=true", "retrain.bptt=12")
    model = task.space.child(Architecture("recurrent", (0, 0, 1, 1, 2)))
    optimizer = sgd(model, config.retrain)
    seen = []
    real_step = enas.run.steps.train_step

    def recording_step(loss_of, params, optimizer, *args):
        seen.append((optimizer.param_groups[0]["lr"], len(task._window("train", index)[0])))
        return real_step(loss_of, params, optimizer, *args)

    steps = enas.run.steps.Steps(None, lambda: Progress(phase="retrain"))
    for index in range(30):
        enas.run.steps.train_step = recording_step
        try:
            steps.train_on(task, Model(model, None), index, model.parameters(), optimizer, 0.25)
        finally:
            enas.run.steps.train_step = real_step
        assert optimizer.param_groups[0]["lr"] == config.retrain.lr   # the epoch's rate is back
    assert all(lr == pytest.approx(config.retrain.lr * length / 12) for lr, length in seen)
    assert len({length for _, length in seen}) > 3


def test_the_enas_lm_presets_draw_random_bptt_lengths():
    for preset, section in (("ptb_enas_lm", "search"), ("ptb_enas_lm", "retrain"), ("ptb_final", "retrain")):
        assert getattr(load_config([preset_path(preset)], ["data.root=/nowhere"]), section).random_bptt


def test_a_retrain_averaging_over_random_bptt_windows_stopped_mid_epoch_resumes_exactly(tmp_path):
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    from enas.run.signals import FAULT_HOOK

    enas = str(Path(sys.executable).parent / "enas")
    common = ["--arch", "0 0 1 1 2", *TINY_RETRAIN, "retrain.epochs=5", "retrain.average_after=1",
              "retrain.random_bptt=true", "retrain.eval_batch_size=1", "retrain.eval_bptt=1", "--quiet"]

    def retrain(*args, signal_at=""):
        env = {**os.environ, FAULT_HOOK: signal_at} if signal_at else None
        return subprocess.run([enas, "retrain", *args], capture_output=True, text=True, timeout=300, env=env)

    assert retrain("-o", str(tmp_path / "straight"), *common).returncode == 0
    # epoch 4, step 2: averaging since epoch 3 (validation stalled at epoch 2), windows of random length
    assert retrain("-o", str(tmp_path / "run"), *common, signal_at="retrain:3:1 SIGTERM").returncode == 143
    assert retrain("-o", str(tmp_path / "run"), "--resume", "--quiet").returncode == 0
    results = [json.loads((tmp_path / r / "result.json").read_text()) for r in ("straight", "run")]
    assert results[0]["averaged"] and results[0]["value"] == results[1]["value"]
    a, b = (torch.load(tmp_path / r / "model.pt", weights_only=True) for r in ("straight", "run"))
    assert all(torch.equal(a[name], b[name]) for name in a)
