"""The controller's switches that follow one official controller or another (README, "Where this
tool differs from the official code"): each test fails with its switch set the other way."""

import math

import pytest
import torch

from enas.config import ControllerConfig, load_config, preset_path
from enas.spaces import from_json, from_official, official
from enas.spaces.base import ImageShape
from enas.spaces.macro import MacroConfig, MacroSpace
from enas.spaces.micro import MicroConfig, MicroSpace
from enas.strategies.controller import Controller, build_optimizer, reinforce_update

IMAGES = ImageShape(3, 16, 16, 10)


def macro_controller(layers: int = 3, **overrides) -> Controller:
    cfg = ControllerConfig(**{"hidden": 16, "temperature": 1.0, "tanh_constant": 1.5, **overrides})
    return Controller.for_space(MacroSpace(MacroConfig(layers=layers), IMAGES), cfg)


def micro_controller(cfg: ControllerConfig, nodes: int = 2) -> Controller:
    return Controller.for_space(MicroSpace(MicroConfig(nodes=nodes), IMAGES), cfg)


def skip_rate(controller: Controller, n: int = 4000) -> float:
    with torch.no_grad():
        archs = controller(n, torch.Generator().manual_seed(0)).architectures
    bits = [b for arch in archs for choice in arch.choices if isinstance(choice, tuple) for b in choice]
    return sum(bits) / len(bits)


@torch.no_grad()
def saturate_skips(controller: Controller) -> Controller:
    """Every skip logit at the clipping's ceiling, q = C: an attention output of 1000 whatever its input."""
    controller.attn_v = torch.nn.Linear(controller.cfg.hidden, 1)
    controller.attn_v.weight.zero_()
    controller.attn_v.bias.fill_(1e3)
    return controller


def test_an_official_skip_bit_is_drawn_with_sigmoid_of_twice_the_clipped_logit():
    # the official softmax over [-q, q] at q = 1.5 skips with sigmoid(3) = 0.95; sigmoid(q) caps at 0.82
    for form, expected in (("enas", 1 / (1 + math.exp(-3.0))), ("sigmoid", 1 / (1 + math.exp(-1.5)))):
        assert skip_rate(saturate_skips(macro_controller(skip_form=form))) == pytest.approx(expected, abs=0.015)


def test_the_skip_penalty_sums_within_a_layer_and_averages_over_layers():
    controller = macro_controller(layers=3)
    with torch.no_grad():
        controller.attn_v.weight.zero_()     # q = 0: every bit's sigmoid(q) is 0.5
        samples = controller(4, torch.Generator().manual_seed(0))
    per_bit = 0.5 * math.log(0.5 / 0.4) + 0.5 * math.log(0.5 / 0.6)   # KL(0.5 || 0.4)
    # layers 2 and 3 have 1 and 2 skip bits: the mean of their sums, not the sum of all three
    assert samples.skip_penalty.tolist() == pytest.approx([(1 * per_bit + 2 * per_bit) / 2] * 4, rel=1e-5)


def test_the_macro_preset_clips_op_logits_at_the_full_tanh_constant():
    # the head's bias (off in the preset, as in the official code) pins the logits before the clipping
    cfg = load_config([preset_path("cifar10_macro")], ["controller.hidden=8", "data.root=unread",
                                                       "controller.biases=true"])
    controller = Controller.for_space(MacroSpace(cfg.macro, IMAGES), cfg.controller)
    with torch.no_grad():
        controller.op_heads[0].bias.fill_(-1e3)
        controller.op_heads[0].bias[0] = 1e3          # the clipping alone bounds op 0's probability
        archs = controller(2000, torch.Generator().manual_seed(0)).architectures
    share = sum(arch.choices[0] == 0 for arch in archs) / len(archs)
    ceiling = math.exp(1.5) / (math.exp(1.5) + 5 * math.exp(-1.5))   # 0.80; with op_tanh_reduce 2.5: 0.40
    assert share == pytest.approx(ceiling, abs=0.03)


@pytest.mark.parametrize("form", ["full", "sampled"])
def test_the_entropy_bonus_counts_every_option_or_the_chosen_one(form):
    controller = micro_controller(ControllerConfig(hidden=8, entropy_weight=1.0, entropy_form=form))
    samples = controller(1, torch.Generator().manual_seed(0))
    # a single sample with reward 0: the new baseline is exactly the bonus, the weighted entropy
    baseline, _ = reinforce_update(controller, build_optimizer(controller), samples, [0.0], None)
    log_p = samples.decision_log_prob.detach()
    sampled = float(-(log_p.exp() * log_p).sum())
    full = float(samples.entropy.detach())
    assert baseline == pytest.approx(full if form == "full" else sampled, rel=1e-5)
    assert abs(full - sampled) > 0.5   # the two forms differ enough to tell apart


def test_the_official_micro_order_picks_both_inputs_before_the_ops():
    decisions = MicroSpace(MicroConfig(nodes=2), IMAGES).decisions()
    assert [d.name for d in decisions[:4]] == ["normal.node2.x_input", "normal.node2.y_input",
                                               "normal.node2.x_op", "normal.node2.y_op"]
    text = "0 2 0 0 0 4 0 1 0 4 1 1 1 0 0 1 0 2 1 1 1 0 1 0 0 3 0 2 1 1 3 1 1 0 0 4 0 3 1 1"
    arch = from_official(text, "micro")
    assert arch.choices[:4] == (0, 0, 2, 0) and official(arch) == text
    # an arch.json of format version 1 listed the choices in the official string's order
    assert from_json({"format_version": 1, "space": "micro", "choices": [int(t) for t in text.split()]}) == arch


def test_a_node_step_makes_each_anchor_and_cell_inputs_feed_zeros():
    steps = {}
    for node_step in (False, True):
        controller = micro_controller(ControllerConfig(hidden=8, node_step=node_step))
        calls = []
        original = controller._lstm
        controller._lstm = lambda *args: calls.append(1) or original(*args)
        queries = []
        controller.attn_curr.register_forward_hook(lambda m, args, out: queries.append(args[0]))
        with torch.no_grad():
            samples = controller(64, torch.Generator().manual_seed(0))
        steps[node_step] = len(calls)
        # node 2's second input is chosen after its first was fed on: the cell inputs feed zeros,
        # so the state is the same whichever input the first decision took
        first = torch.tensor([arch.choices[0] for arch in samples.architectures])
        assert set(first.tolist()) == {0, 1}
        assert torch.allclose(queries[1], queries[1][:1].expand_as(queries[1]))
    # 2 input anchors + 8 decisions per cell; the node step adds one per node (4)
    assert steps == {False: 2 + 16, True: 2 + 16 + 4}


def test_the_separable_bias_favours_separable_convolutions_most_in_the_normal_cell():
    shares = {}
    for on in (False, True):
        controller = micro_controller(ControllerConfig(hidden=8, temperature=1.0, tanh_constant=1.1,
                                                       op_tanh_reduce=2.5, separable_bias=on), nodes=5)
        with torch.no_grad():
            archs = controller(500, torch.Generator().manual_seed(0)).architectures
        ops = [(d.name.split(".")[0], arch.choices[i]) for arch in archs
               for i, d in enumerate(controller.decisions) if d.kind == "op"]
        shares[on] = {cell: sum(o < 2 for c, o in ops if c == cell) / sum(c == cell for c, _ in ops)
                      for cell in ("normal", "reduce")}
    assert shares[False]["normal"] == pytest.approx(0.4, abs=0.05)
    # official: logits 0.44 + 0.25 for the separable ops against -0.25 (normal), 0.44 against 0 (reduction)
    assert shares[True]["normal"] == pytest.approx(0.63, abs=0.04)
    assert shares[True]["reduce"] == pytest.approx(0.51, abs=0.04)
