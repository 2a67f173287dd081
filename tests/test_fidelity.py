"""Issue 26, part 3: the switches that select the official codes' behaviour where it departs from
the paper, each checked on a small case whose result is known by hand, and the presets that set them."""

import pytest
import torch
from torch import nn

from enas.config import ControllerConfig, TrainConfig, load_config, preset_path
from enas.run.averaging import starts_averaging
from enas.run.training import clipped_decay, sgd, train_step
from enas.spaces.architecture import Architecture
from enas.spaces.base import Model, TextShape
from enas.spaces.recurrent import ACTIVATIONS, RecurrentConfig, RecurrentSpace
from enas.spaces.recurrent_cell import RecurrentPlan, _traceable_cell, run_cell
from enas.strategies.controller import Controller, build_optimizer
from enas.tasks.text import RandomWindows, quartic_penalty

CHAIN = Architecture("recurrent", (0, 0, 1, 1, 2))   # tanh; relu(node 1); identity(node 2)


def recurrent_space(nodes: int = 3, hidden: int = 4, vocab: int = 7, **switches) -> RecurrentSpace:
    return RecurrentSpace(RecurrentConfig(nodes=nodes, hidden=hidden, **switches), TextShape(vocab))


# 1. What the recurrent supernet shares


def test_weights_per_function_gives_every_node_input_and_activation_its_own_weight():
    supernet = recurrent_space(weights_per_function=True).supernet()
    assert len(supernet.edges) == len(ACTIVATIONS) * 3   # 3 (node, input) pairs, 4 activations each
    assert len(supernet.w_x) == len(supernet.w_h) == len(ACTIVATIONS)   # node 1's too
    other = Architecture("recurrent", (1, 0, 3, 1, 3))                  # the same graph, other activations
    mine, theirs = (supernet.cell_weights(RecurrentPlan.of(arch)) for arch in (CHAIN, other))
    assert mine[0] is not theirs[0] and mine[1] is not theirs[1]
    assert mine[2][0] is supernet.edges[0 * 4 + ACTIVATIONS.index("relu")]    # row (node 2, input 1), relu
    assert all(a is not b for a, b in zip(mine[2], theirs[2]))
    tokens = torch.randint(0, 7, (5, 2))
    supernet(tokens, None, tokens, arch=CHAIN)[0].backward()
    trained = {id(p) for p in supernet.parameters() if p.grad is not None}
    assert trained == {id(p) for p in (supernet.embedding, supernet.decoder_bias, mine[0], mine[1], *mine[2])}


# 2. The enas_lm cell's output


def highway(pre: torch.Tensor, carry: torch.Tensor, activation) -> torch.Tensor:
    size = carry.shape[1]
    return carry + torch.sigmoid(pre[:, :size]) * (activation(pre[:, size:]) - carry)


def test_all_nodes_output_is_the_mean_of_every_node_but_the_first():
    torch.manual_seed(0)
    batch, size = 3, 4
    x_proj, hidden = torch.randn(1, batch, 2 * size), torch.randn(batch, size)
    w_h, first, second = (torch.randn(size, 2 * size) for _ in range(3))
    plan = RecurrentSpace(RecurrentConfig(nodes=3, output="all_nodes"), TextShape(2)).child(CHAIN).plan
    output = run_cell(x_proj, hidden, w_h, [first, second], plan, None)
    node1 = highway(x_proj[0] + hidden @ w_h, hidden, torch.tanh)
    node2 = highway(node1 @ first, node1, torch.relu)
    node3 = highway(node2 @ second, node2, lambda v: v)
    assert plan.loose_ends == (2,) and plan.outputs == (1, 2)
    assert torch.allclose(output[0], (node2 + node3) / 2, atol=1e-6)


def test_all_nodes_outputs_hand_written_backward_matches_autograd():
    torch.manual_seed(1)
    plan = RecurrentPlan.of(CHAIN, "all_nodes")
    inputs = [torch.randn(3, 2, 6, dtype=torch.float64), torch.randn(2, 3, dtype=torch.float64),
              *(torch.randn(3, 6, dtype=torch.float64) for _ in range(3))]
    grads = []
    for cell in (run_cell, _traceable_cell):   # the fused cell, and the one in plain autograd ops
        leaves = [tensor.clone().requires_grad_() for tensor in inputs]
        x_proj, hidden, w_h, *edges = leaves
        (cell(x_proj, hidden, w_h, edges, plan, None, None) ** 2).sum().backward()
        grads.append([leaf.grad for leaf in leaves])
    assert all(torch.allclose(a, b) for a, b in zip(*grads))


# 3. Weight decay inside the clip


def one_weight_step(decay_in_clip: bool) -> torch.Tensor:
    """w = (3, 4) with a zero loss gradient, lr 1, weight decay 1, clip 0.25."""
    model = nn.Module()
    model.w = nn.Parameter(torch.tensor([3.0, 4.0]))
    cfg = TrainConfig(lr=1.0, weight_decay=1.0, grad_clip=0.25, decay_in_clip=decay_in_clip)
    train_step(lambda: (model.w * 0).sum(), model.parameters(), sgd(model, cfg), cfg.grad_clip, False,
               clipped_decay(cfg))
    return model.w.detach()


def test_decay_in_clip_clips_the_decays_gradient_with_the_losss():
    # by hand: the gradient is the decay's, w = (3, 4), of norm 5, clipped to 0.25: (0.15, 0.2)
    assert torch.allclose(one_weight_step(decay_in_clip=True), torch.tensor([2.85, 3.8]))
    assert torch.allclose(one_weight_step(decay_in_clip=False), torch.zeros(2))   # SGD's decay, unclipped


def test_decay_in_clip_also_decays_unused_weights_inside_the_clip():
    model = nn.Module()
    model.used, model.unused = nn.Parameter(torch.tensor([0.0])), nn.Parameter(torch.tensor([3.0, 4.0]))
    cfg = TrainConfig(lr=1.0, weight_decay=1.0, grad_clip=0.25, decay_in_clip=True)
    train_step(lambda: (model.used * 0).sum(), model.parameters(), sgd(model, cfg), 0.25, True, clipped_decay(cfg))
    assert torch.allclose(model.unused.detach(), torch.tensor([2.85, 3.8]))


# 4. The ptb_enas_lm preset: a fixed first activation, the controller's Adam and initialisation,
#    the quartic penalty


def test_a_tanh_first_activation_leaves_its_decision_one_option_and_node_1_one_weight():
    space = recurrent_space(first_activation="tanh", weights_per_function=True)
    assert space.decisions()[0].options == ("tanh",)
    assert isinstance(space.supernet().w_x, nn.Parameter)   # no per-activation copies for node 1
    controller = Controller.for_space(space, ControllerConfig(hidden=8))
    with torch.no_grad():
        samples = controller(20, torch.Generator().manual_seed(0))
    assert {arch.choices[0] for arch in samples.architectures} == {ACTIVATIONS.index("tanh")}
    assert torch.all(samples.decision_log_prob[:, 0] == 0)


def test_the_controller_takes_adam_and_initialisation_from_the_config():
    cfg = ControllerConfig(hidden=8, adam_beta1=0.9, adam_eps=1e-8, init_range=0.01)
    controller = Controller.for_space(recurrent_space(), cfg)
    group = build_optimizer(controller).param_groups[0]
    assert group["betas"] == (0.9, 0.999) and group["eps"] == 1e-8
    weights = torch.cat([p.detach().flatten() for name, p in controller.named_parameters() if name != "start"])
    assert weights.abs().max() <= 0.01 and weights.abs().max() > 0.009


def tiny_text(*overrides):
    from enas.tasks.text import TextTask

    config = load_config([], ["data.vocab_size=12", "data.train_tokens=2000", "data.valid_tokens=400",
                              "data.test_tokens=400", "recurrent.nodes=3", "recurrent.hidden=4",
                              "search.batch_size=2", "search.bptt=4", "search.weight_decay=0.5", *overrides])
    return TextTask(config, config.search)


def test_the_quartic_penalty_is_half_the_fourth_powers_of_the_sampled_cell_weights():
    supernet = recurrent_space(vocab=12).supernet()
    with torch.no_grad():
        for value, weight in enumerate((supernet.w_x, supernet.w_h, *supernet.edges), start=1):
            weight.fill_(value * 0.5)
        supernet.embedding.fill_(100.0)   # not a cell weight: enas_lm's var_s leaves it out
    arch = Architecture("recurrent", (0, 0, 1, 0, 2))   # nodes 2 and 3 read node 1: edges 0 and 1, not 2
    cells = 4 * 8   # entries of each (H, 2H) weight
    expected = cells * (0.5 ** 4 + 1.0 ** 4 + 1.5 ** 4 + 2.0 ** 4) / 2
    assert quartic_penalty(Model(supernet, arch)).item() == pytest.approx(expected)
    quartic, l2 = tiny_text("search.weight_decay_form=quartic"), tiny_text()
    losses = [task.train_loss(Model(supernet, arch), 0).item() for task in (quartic, l2)]
    assert losses[0] - losses[1] == pytest.approx(0.5 * expected, rel=1e-5)
    assert sgd(supernet, quartic.train_cfg).param_groups[0]["weight_decay"] == 0.0


# 5. The macro reward's batch norm


def batch_norm_modes_in_a_macro_reward(reward_bn: str) -> set[bool]:
    from enas.tasks import build_task

    config = load_config([], ["space=macro", "data.name=builtin_images", "data.image_size=8", "data.classes=2",
                              "data.train_images=40", "data.test_images=10", "macro.layers=2", "macro.filters=4",
                              "search.batch_size=4", f"controller.reward_bn={reward_bn}", "channels_last=false"])
    task = build_task(config, config.search)
    supernet = task.space.supernet().eval()
    modes: set[bool] = set()
    for module in supernet.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.register_forward_hook(lambda m, args, out: modes.add(m.training))
    arch = Controller.for_space(task.space, config.controller)(1, torch.Generator().manual_seed(0)).architectures[0]
    task.reward(Model(supernet, arch), 0)
    return modes


def test_a_moving_statistics_reward_runs_batch_norm_in_eval_mode():
    assert batch_norm_modes_in_a_macro_reward("moving") == {False}
    assert batch_norm_modes_in_a_macro_reward("batch") == {True}   # the official micro reward's


# 6. NT-ASGD as enas_lm triggers it


def test_enas_lm_averaging_starts_when_validation_is_worse_than_the_best_before_the_patience():
    # by hand, patience 2: the best of the epochs before the last two is 5; 5.5 is worse, though the
    # last epoch (4) was a new best, so a stall of two epochs has not happened
    assert starts_averaging("enas_lm", 2, 1, [5.0, 6.0, 4.0], 5.5)
    assert not starts_averaging("stall", 2, 1, [5.0, 6.0, 4.0], 5.5)
    assert not starts_averaging("enas_lm", 2, 1, [5.0, 6.0], 7.0)        # not more than 2 epochs in yet
    assert not starts_averaging("enas_lm", 2, 1, [5.0, 6.0, 4.0], 5.0)   # not worse
    assert starts_averaging("enas_lm", 1, 0, [0.5, 0.7], 0.4, lower_is_better=False)   # accuracy


def test_an_enas_lm_retrain_averages_from_its_trigger_and_tests_the_final_average(tmp_path, monkeypatch):
    import enas.run.steps
    from enas.commands.retrain import run_retrain
    from enas.console import Reporter
    from enas.run.metrics import read_metrics
    from enas.tasks.text import TextTask

    scores = iter([4.0, 5.0, 6.0, 7.0])   # epoch 3's 6 is worse than epoch 1's 4: averaging starts there
    real = TextTask.evaluate
    monkeypatch.setattr(TextTask, "evaluate", lambda self, model, split, max_batches=0, final=False:
                        next(scores) if split == "valid" else real(self, model, split, max_batches, final))
    after_steps, real_step = [], enas.run.steps.train_step

    def recording_step(loss_of, params, *args):
        params = list(params)
        outcome = real_step(loss_of, params, *args)
        after_steps.append([p.detach().clone() for p in params])
        return outcome

    monkeypatch.setattr(enas.run.steps, "train_step", recording_step)
    config = load_config([], ["data.vocab_size=12", "data.train_tokens=2000", "data.valid_tokens=400",
                              "data.test_tokens=400", "recurrent.nodes=3", "recurrent.hidden=8", "threads=1",
                              "retrain.batch_size=4", "retrain.bptt=6", "retrain.steps_per_epoch=3",
                              "retrain.epochs=4", "retrain.average_after=1", "retrain.average_rule=enas_lm"])
    result = run_retrain(config, CHAIN, tmp_path, False, Reporter(quiet=True))
    lines = [m for m in read_metrics(tmp_path / "metrics.jsonl") if m["phase"] == "retrain"]
    assert [m.get("averaged") for m in lines] == [None, None, None, 4]
    # the final average: the weights after step 9 (the start) and after each of steps 10-12
    expected = [torch.stack(ws).mean(0) for ws in zip(*after_steps[8:12])]
    saved = torch.load(tmp_path / "model.pt", weights_only=True)
    assert all(torch.allclose(saved[name], weight, atol=1e-6) for name, weight in zip(saved, expected))
    assert result.figure("valid_ppl") == 7.0 and result.averaged   # the last validation, not the best


# 7. Random BPTT as enas_lm draws it


def test_enas_lm_random_bptt_draws_a_normal_truncated_at_two_sigma():
    def lengths(form: str) -> list[int]:
        windows = RandomWindows(60_000, 35, seed=3, form=form)
        return [windows.window(i)[1] for i in range(1500)]

    drawn = lengths("enas_lm")
    assert max(drawn) <= 35 + 10 and min(drawn) >= int(17.5 - 10)    # base +- 2 sigma, sigma 5
    assert min(drawn) < 35 - 10                                       # the bptt/2 windows are there
    awd = lengths("awd")
    assert max(awd) > 45   # AWD-LSTM's untruncated normal goes past 2 sigma


# 8. Controller biases


def test_a_controller_without_biases_has_no_bias_vectors_but_keeps_the_separable_prior():
    plain = Controller.for_space(recurrent_space(), ControllerConfig(hidden=8, biases=False))
    assert plain.lstm_bias is None and all(head.bias is None for head in plain.op_heads)
    assert all(p.dim() == 2 for p in plain.parameters())   # weights, embeddings and the start only
    with torch.no_grad():
        assert len(plain(3, torch.Generator().manual_seed(0)).architectures) == 3
    micro = load_config([preset_path("cifar10_micro")], ["data.root=/nowhere"])
    from enas.spaces import build_space
    from enas.spaces.base import ImageShape

    space = build_space(micro, ImageShape(3, 8, 8, 10))
    controller = Controller.for_space(space, micro.controller)
    assert controller.lstm_bias is None and all(head.bias is not None for head in controller.op_heads)   # b_soft


# The presets that follow the official code


def preset(name: str):
    return load_config([preset_path(name)], ["data.root=/nowhere"])


def test_ptb_follows_melodyguan_enas():
    config = preset("ptb")
    assert config.recurrent.weights_per_function and config.recurrent.output == "loose_ends"
    assert config.search.decay_in_clip and config.retrain.decay_in_clip
    assert not config.controller.biases


def test_ptb_enas_lm_follows_enas_lm():
    config = preset("ptb_enas_lm")
    rec, ctrl, search, retrain = config.recurrent, config.controller, config.search, config.retrain
    assert rec.weights_per_function and rec.output == "all_nodes" and rec.first_activation == "tanh"
    assert (ctrl.biases, ctrl.init_range, ctrl.adam_beta1, ctrl.adam_eps) == (False, 0.01, 0.9, 1e-8)
    assert search.weight_decay_form == "quartic" and search.weight_decay == 8e-7 and not search.decay_unused
    assert search.random_bptt_form == retrain.random_bptt_form == "enas_lm"
    assert retrain.decay_in_clip and retrain.average_rule == "enas_lm"


def test_ptb_final_follows_enas_lms_fixed_training_and_leaves_the_cells_output_to_the_run():
    config = preset("ptb_final")
    assert config.retrain.decay_in_clip and config.retrain.average_rule == "enas_lm"
    assert config.retrain.random_bptt_form == "enas_lm"
    assert config.recurrent.output == "loose_ends"   # the default: a run's own config.yaml comes first


def test_cifar10_macro_rewards_on_moving_statistics_without_biases():
    config = preset("cifar10_macro")
    assert config.controller.reward_bn == "moving" and not config.controller.biases


def test_the_default_preset_keeps_the_papers_shared_weights():
    config = load_config([preset_path("default")], [])
    assert not config.recurrent.weights_per_function and config.controller.biases


def test_a_fixed_first_activation_is_no_sign_of_a_collapsed_policy():
    from enas.strategies.watch import watch_policy

    controller = Controller.for_space(recurrent_space(nodes=4, first_activation="tanh"), ControllerConfig(hidden=8))
    assert watch_policy(controller, 0).top_op_share[0] != "node1.activation"
