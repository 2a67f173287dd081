"""Tests for the micro (cell) space: codecs, the supernet/child equivalence, the cells' shapes,
the controller's decisions, drop path, and the published cell at the paper's final size."""

import pytest
import torch

from enas.spaces.architecture import Architecture
from enas.strategies.controller import draw_architectures
from enas.errors import UserError
from enas.spaces import from_json, from_official, official
from enas.spaces.base import ImageShape
from enas.spaces.conv_ops import drop_path
from enas.spaces.micro import MicroConfig, MicroNetwork, MicroPlan, MicroSpace, reduction_cells
from weights import copy_supernet_weights

PAPER_NORMAL = "0 2 0 0 0 4 0 1 0 4 1 1 1 0 0 1 0 2 1 1"
PAPER_REDUCE = "1 0 1 0 0 3 0 2 1 1 3 1 1 0 0 4 0 3 1 1"
PAPER_CELLS = f"{PAPER_NORMAL} {PAPER_REDUCE}"
SHAPE = ImageShape(channels=3, height=12, width=12, classes=5)
TINY = MicroConfig(layers=1, filters=4, nodes=3, aux_weight=0.4)


pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py


def test_the_published_cells_round_trip_through_the_official_string_and_json():
    arch = from_official(PAPER_CELLS, "micro")
    assert official(arch) == PAPER_CELLS
    assert from_json(arch.to_json()) == arch
    plan = MicroPlan.of(arch)
    assert plan.normal.nodes[0] == (0, 2, 0, 0)            # node 2 = avg_pool(input 0) + sep3(input 0)
    assert plan.normal.loose_ends == (2, 3, 4, 5, 6)
    assert plan.reduce.loose_ends == (2, 4, 5, 6)          # node 3 feeds node 4


@pytest.mark.parametrize("text, message", [
    ("0 2 0 0", "8B in all"),
    ("2" + PAPER_CELLS[1:], "normal.node2.x_input=2 is out of range"),
    ("0 5 0 0 " + PAPER_CELLS[8:], "op=5 is out of range"),
    ("0 2 x 0", "whitespace-separated integers"),
])
def test_bad_strings_are_one_line_user_errors(text, message):
    with pytest.raises(UserError, match=message):
        from_official(text, "micro")


def test_the_controller_samples_valid_cells_whose_reduction_nodes_read_their_own_cell():
    space = MicroSpace(TINY, SHAPE)
    decisions = space.decisions()
    assert len(decisions) == 8 * TINY.nodes
    reduce_node3 = next(d for d in decisions if d.name == "reduce.node3.x_input")
    assert reduce_node3.anchors == (0, 1, 2 + TINY.nodes)   # the cell inputs, then its own node 2
    archs = draw_architectures(space, 20)
    assert len({a.choices for a in archs}) > 10
    assert all(len(a.choices) == 8 * TINY.nodes for a in archs)


def test_supernet_and_child_compute_the_same_with_the_same_weights():
    torch.manual_seed(0)
    space = MicroSpace(TINY, SHAPE)
    supernet = space.supernet()
    images = torch.randn(6, 3, 12, 12)
    archs = draw_architectures(space, 4) + [from_official("0 4 1 4 0 4 2 4 0 4 1 4 " * 2, "micro")]
    supernet.train()
    with torch.no_grad():
        for arch in archs:  # gives the batch norms of these architectures real running statistics
            supernet(images, arch)
    supernet.eval()
    for arch in archs:
        child = space.child(arch)
        copy_supernet_weights(child, supernet)
        child.eval()
        with torch.no_grad():
            expected, _ = supernet(images, arch)
            got, _ = child(images)
        assert torch.allclose(expected, got, atol=1e-5), official(arch)
        assert sum(p.numel() for p in child.parameters()) < sum(p.numel() for p in supernet.parameters())


def test_reduction_cells_halve_the_size_and_double_the_width():
    space = MicroSpace(MicroConfig(layers=3, filters=4, nodes=2), ImageShape(3, 16, 16, 10))
    assert reduction_cells(3) == (1, 3)
    child = space.child(from_official("0 4 1 4 0 2 2 0 " * 2, "micro"))
    sizes = []
    child.cells[1].register_forward_hook(lambda m, i, out: sizes.append(tuple(out.shape[1:])))
    child.cells[3].register_forward_hook(lambda m, i, out: sizes.append(tuple(out.shape[1:])))
    child.eval()
    with torch.no_grad():
        logits, aux = child(torch.randn(2, 3, 16, 16))
    assert sizes == [(8, 8, 8), (16, 4, 4)] and logits.shape == (2, 10) and aux is None


def test_the_auxiliary_head_runs_in_training_only():
    child = MicroSpace(TINY, SHAPE).child(from_official("0 0 1 1 2 2 0 3 1 4 3 0 " * 2, "micro"))
    child.train()
    logits, aux = child(torch.randn(4, 3, 12, 12))
    assert aux is not None and aux.shape == logits.shape == (4, 5)
    child.eval()
    assert child(torch.randn(4, 3, 12, 12))[1] is None


def test_drop_path_grows_with_training_steps_in_children_only():
    cfg = MicroConfig(layers=1, filters=4, nodes=2, drop_path=0.4)
    space = MicroSpace(cfg, SHAPE, train_steps=10)
    child = space.child(Architecture("micro", (0, 0, 1, 1) * 4))
    child.train()
    assert float(child._drop_path_rate()) == pytest.approx(0.04)   # step 1 of 10
    child.steps_trained.fill_(50)
    assert float(child._drop_path_rate()) == pytest.approx(0.4)
    child.eval()
    assert child._drop_path_rate() == 0.0
    supernet = space.supernet().train()
    assert supernet._drop_path_rate() == 0.0
    child.train()
    child(torch.randn(2, 3, 12, 12))
    assert int(child.steps_trained) == 51


@pytest.mark.parametrize("keep", [0.7, torch.tensor(0.7)])
def test_drop_path_zeroes_whole_examples_and_keeps_the_expectation(keep):
    torch.manual_seed(0)
    out = drop_path(torch.ones(20000, 2, 3, 3), keep)
    per_example = out.flatten(1)
    assert torch.all(per_example == per_example[:, :1])               # whole examples, not pixels
    assert float((per_example[:, 0] == 0).float().mean()) == pytest.approx(0.3, abs=0.02)
    assert float(out.mean()) == pytest.approx(1.0, abs=0.03)


def test_render_names_every_node_and_the_loose_ends():
    text, dot = MicroSpace.render(from_official(PAPER_CELLS, "micro"))
    assert "node 4 = sep_conv_5x5(input 1) + sep_conv_5x5(node 3)" in text
    assert "output = 1x1 conv of concat(node 2, node 4, node 5, node 6)" in text
    assert dot.startswith("digraph") and "reduction_3 -> reduction_4" in dot


def test_the_published_cells_build_at_the_final_size(capsys):
    """Paper: 4.6M parameters at 15 layers of width 36 (section 3.2). Ours is smaller because every
    cell's loose ends are mixed back to the cell width by a 1x1 convolution (the official fixed
    cells pass the 4-5x wider concatenation to the next cell, whose input convolutions are then
    4-5x larger)."""
    cfg = MicroConfig(layers=15, filters=36, nodes=5, dropout=0.2, drop_path=0.4, aux_weight=0.4)
    child = MicroSpace(cfg, ImageShape(3, 32, 32, 10)).child(from_official(PAPER_CELLS, "micro"))
    total = sum(p.numel() for p in child.parameters())
    head = sum(p.numel() for p in child.aux_head.parameters())
    with capsys.disabled():
        print(f"\npublished micro cells, 15 layers x 36 filters: {total / 1e6:.2f}M parameters "
              f"({(total - head) / 1e6:.2f}M without the auxiliary head); paper 4.6M")
    assert 3.0e6 < total < 4.6e6
    child.eval()
    with torch.no_grad():
        assert child(torch.randn(1, 3, 32, 32))[0].shape == (1, 10)


def test_a_child_refuses_an_architecture_of_another_space():
    arch = Architecture("macro", (0,))
    with pytest.raises(UserError, match="set space=macro"):
        MicroSpace(TINY, SHAPE).child(arch)
    assert isinstance(MicroSpace(TINY, SHAPE).supernet(), MicroNetwork)
