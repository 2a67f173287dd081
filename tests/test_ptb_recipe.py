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
