"""The official PTB recipe's details: weight decay of every parameter, the presets' weight decay,
parameter averaging, random-length BPTT and the paper's test evaluation (batch 1, BPTT 1)."""

import pytest
import torch

from enas.config import load_config, preset_path
from enas.run.training import sgd, train_step
from enas.spaces.architecture import Architecture
from enas.spaces.base import TextShape
from enas.spaces.recurrent import RecurrentConfig, RecurrentSpace, edge_row


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
    ("ptb", "search", 1e-7), ("ptb_enas_lm", "search", 8e-7), ("ptb_enas_lm", "retrain", 8e-7),
    ("ptb_final", "retrain", 8e-7)])
def test_ptb_presets_decay_with_the_gradient_of_the_official_l2_term(preset, section, official_l2):
    config = load_config([preset_path(preset)], ["data.root=/nowhere"])
    assert getattr(config, section).weight_decay == pytest.approx(2 * official_l2)   # d(l2 sum w^2)/dw = 2 l2 w


@pytest.mark.parametrize("preset", ["ptb", "ptb_enas_lm", "cifar10_micro", "cifar10_macro"])
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
    from enas.run.reporter import Reporter
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
    from enas.run.reporter import Reporter

    config = load_config([], [*TINY_RETRAIN, *overrides])
    return run_retrain(config, Architecture("recurrent", (0, 0, 1, 1, 2)), folder, resume, Reporter(quiet=True))


def test_an_averaging_retrain_resumed_at_an_epoch_ends_as_an_uninterrupted_one(tmp_path):
    from enas.run.metrics import read_metrics

    straight = retrain_run(tmp_path / "straight", "retrain.epochs=5", "retrain.average_after=1")
    retrain_run(tmp_path / "run", "retrain.epochs=4", "retrain.average_after=1")   # stops while averaging
    resumed = retrain_run(tmp_path / "run", "retrain.epochs=5", "retrain.average_after=1", resume=True)
    lines = [m for m in read_metrics(tmp_path / "straight" / "metrics.jsonl") if m["phase"] == "retrain"]
    assert [m.get("averaged") for m in lines] == [None, None, None, 4, 7]   # validation stalled at epoch 3
    assert resumed["value"] == straight["value"]
    a, b = (torch.load(tmp_path / r / "model.pt", weights_only=True) for r in ("straight", "run"))
    assert all(torch.equal(a[name], b[name]) for name in a)


def test_the_enas_lm_retrains_average_once_validation_stalls_for_10_epochs():
    for preset in ("ptb_final", "ptb_enas_lm"):
        assert load_config([preset_path(preset)], ["data.root=/nowhere"]).retrain.average_after == 10
