"""Config loading: presets, overrides, and one-line errors for every kind of mistake."""

import pytest

from enas.config import describe_keys, load_config, preset_names, preset_path
from enas.errors import UserError
from enas.spaces import SPACES


def load(*overrides, preset="default"):
    return load_config([preset_path(preset)], list(overrides))


def test_overrides_beat_the_preset_and_types_are_converted():
    config = load("search.epochs=3", "search.lr=0.5", "search.nesterov=true", "recurrent.nodes=5")
    assert (config.search.epochs, config.search.lr, config.search.nesterov) == (3, 0.5, True)
    assert config.recurrent.nodes == 5
    assert type(config.search).__name__ == "SearchConfig"  # plain dataclasses, no DictConfig


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_loads(name):
    config = load("data.root=/somewhere", "bench.table=/somewhere.csv", preset=name)   # what presets leave to the user
    assert config.space in SPACES


def test_paper_presets_carry_the_paper_numbers():
    ptb = load("data.root=/x", preset="ptb")
    assert (ptb.recurrent.nodes, ptb.recurrent.hidden, ptb.search.lr, ptb.search.grad_clip) == (12, 1000, 20.0, 0.25)
    assert (ptb.controller.tanh_constant, ptb.controller.temperature, ptb.controller.reward_constant) == (2.5, 5.0, 80.0)
    lm = load("data.root=/x", preset="ptb_enas_lm")
    assert (lm.recurrent.hidden, lm.search.batch_size, lm.controller.lr, lm.controller.baseline_decay) == \
        (200, 128, 5e-5, 0.999)
    final = load("data.root=/x", preset="ptb_final")
    assert (final.recurrent.hidden, final.retrain.ar_alpha, final.seed) == (800, 0.7, 2126)


@pytest.mark.parametrize("overrides, message", [
    (["search.epoch=3"], "unknown config key search.epoch; did you mean search.epochs?"),
    (["serch.lr=1"], "unknown config key serch.lr; did you mean search.lr?"),
    (["search.epochs=three"], "search.epochs='three' has the wrong type: expected int"),
    (["search.lr=-1"], "search.lr=-1.0 must be at least 0.0"),
    (["recurrent.dropout_output=1.5"], "recurrent.dropout_output=1.5 must be at most 0.99"),
    (["data.name=imagenet"], "data.name='imagenet' is not one of builtin_text, text"),
    (["data.name=text"], "data.name=text needs data.root"),
    (["epochs"], "is not key=value"),
])
def test_mistakes_are_one_line_errors_naming_the_key(overrides, message):
    with pytest.raises(UserError) as info:
        load(*overrides)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_all_mistakes_are_reported_at_once():
    with pytest.raises(UserError) as info:
        load("search.epoch=3", "controller.lr=fast", "search.lr=-2")
    text = str(info.value)
    assert "search.epoch" in text and "controller.lr" in text


def test_bad_preset_names_list_the_presets(tmp_path):
    with pytest.raises(UserError, match="unknown preset 'nope'; choose one of: .*default"):
        preset_path("nope")
    with pytest.raises(UserError, match="does not exist"):
        preset_path(str(tmp_path / "missing.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("search: [1, 2\n")
    with pytest.raises(UserError, match="cannot read"):
        load_config([bad], [])


def test_yaml_file_mistakes_name_the_file(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("search:\n  epochz: 2\n")
    with pytest.raises(UserError, match=r"unknown config key search.epochz; did you mean search.epochs\? \(from .*mine.yaml\)"):
        load_config([path], [])


def test_every_key_is_documented():
    keys = describe_keys()
    assert len(keys) > 40
    assert all(help_text for _, _, help_text in keys)
