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
