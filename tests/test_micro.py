"""Tests for the micro (cell) space: codecs, the ops a child shares with the supernet, the cells' shapes,
the controller's decisions, drop path, and the published cell at the paper's final size."""

import pytest
import torch

from enas.errors import UserError
from enas.run.training import auxiliary_parameters, count_parameters
from enas.spaces import from_json, from_official, official
from enas.spaces.architecture import Architecture
from enas.spaces.base import ImageShape
from enas.spaces.conv_ops import drop_path
from enas.spaces.micro import MicroConfig, MicroNetwork, MicroPlan, MicroSpace, reduction_cells
from enas.strategies.controller import draw_architectures

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


def test_a_childs_ops_are_the_supernets_and_compute_the_same_nodes_with_its_weights():
    """The child's cells join their nodes as the official fixed cells do and the supernet's as the
    searched ones do (module docstring), so the networks differ around the nodes; the ops, the
    shared weights, are the same modules under the same names."""
    torch.manual_seed(0)
    space = MicroSpace(TINY, SHAPE)
    supernet = space.supernet().eval()
    shared = supernet.state_dict()
    for arch in draw_architectures(space, 3) + [from_official("0 4 1 4 0 4 2 4 0 4 1 4 " * 2, "micro")]:
        child = space.child(arch).eval()
        ops = {name: shared[name] for name in child.state_dict() if ".edges." in name}
        assert ops and all(shared[name].shape == child.state_dict()[name].shape for name in ops)
        child.load_state_dict(ops, strict=False)
        plan = MicroPlan.of(arch)
        for child_cell, supernet_cell in zip(child.cells, supernet.cells):
            cell_plan = plan.reduce if child_cell.reduction else plan.normal
            c = child_cell.width // len(cell_plan.loose_ends)
            inputs = list(torch.randn(2, 3, c, 6, 6))
            with torch.no_grad():
                expected = supernet_cell.nodes(inputs, cell_plan)
                got = child_cell.nodes(inputs, cell_plan)
            assert all(torch.allclose(e, g, atol=1e-5) for e, g in zip(expected, got)), official(arch)


def test_a_child_cell_passes_on_all_its_loose_ends_and_the_next_cell_shrinks_them():
    # normal cell: no node reads input 1, so it is a loose end (official `used` counts the inputs)
    arch = from_official("0 4 0 4 0 4 0 4 0 4 2 4 " + "0 0 1 1 2 4 2 4 0 4 2 4", "micro")
    plan = MicroPlan.of(arch)
    assert plan.normal.loose_ends == (1, 3, 4) and plan.reduce.loose_ends == (3, 4)
    cfg = MicroConfig(layers=3, filters=4, nodes=3)
    child = MicroSpace(cfg, SHAPE).child(arch)
    widths = []
    for cell in child.cells:
        cell.register_forward_hook(lambda m, i, out: widths.append(out.shape[1]))
    child.eval()
    with torch.no_grad():
        child(torch.randn(2, 3, 12, 12))
    # normal (width 4), reduction (8), normal (8), reduction (16), normal (16): 3, 2, 3, 2, 3 loose ends
    assert widths == [c.width for c in child.cells] == [12, 16, 24, 32, 48]
    after = child.cells[2]   # reads the normal cell (12 channels, full size) and the reduction cell (16)
    assert after.pre0[1].even.in_channels == 12 and after.pre1[1].in_channels == 16
    assert after.base[1].in_channels == after.base[1].out_channels == 8     # official `layer_base`
    assert child.classifier.in_features == 48
    # this reduction cell reads both inputs; the supernet's keeps a reduction for each, used when unread
    assert not child.cells[1].calibrate and set(MicroSpace(cfg, SHAPE).supernet().cells[1].calibrate) == \
        {"input0", "input1"}


def test_the_supernet_mixes_in_an_unused_cell_input_as_the_official_enas_layer_does():
    arch = from_official("0 4 0 4 2 4 2 4 3 4 3 4 " * 2, "micro")   # input 1 unused in both cells
    supernet = MicroSpace(MicroConfig(layers=1, filters=4, nodes=3), SHAPE).supernet()
    logits, _ = supernet(torch.randn(2, 3, 12, 12), arch)
    logits.sum().backward()
    for cell in supernet.cells:
        assert cell.combine["input1"].grad is not None and cell.combine["node2"].grad is None
    assert supernet.cells[1].calibrate["input1"].even.weight.grad is not None   # halved first


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
    # loose ends: normal cell 2 and 3, reduction cell 3: the child passes 2 x 4 and 1 x 16 channels on
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
    text, graph = MicroSpace.render(from_official(PAPER_CELLS, "micro"))
    dot = graph.dot()
    assert "node 4 = sep_conv_5x5(input 1) + sep_conv_5x5(node 3)" in text
    assert "output = concat(node 2, node 4, node 5, node 6)" in text
    assert dot.startswith("digraph") and "reduction_3 -> reduction_4" in dot


def official_numbers(arch: Architecture) -> tuple[int, ...]:
    """The official string's numbers: per node idx1 op1 idx2 op2."""
    return tuple(int(t) for t in official(arch).split())


def official_micro_parameters(arch: tuple[int, ...], layers: int, filters: int, nodes: int,
                              classes: int = 10, size: int = 32) -> tuple[int, int]:
    """(network, auxiliary head): the trainable variables of melodyguan/enas micro_child.py's fixed
    model, tallied from its code; its batch norms hold a trainable scale and offset, its linear
    layers no bias. Its own count (`_build_train`) leaves the auxiliary head out."""
    def bn(c): return 2 * c
    def conv1x1(c_in, c_out): return c_in * c_out + bn(c_out)        # ReLU-1x1 conv-BN
    def reduction(c_in, c_out): return c_in * c_out + bn(c_out)      # _factorized_reduction: 2 halves
    def sep_stack(k, c): return 2 * (k * k * c + c * c + bn(c))      # _fixed_conv: 2 x (depthwise, pointwise, BN)
    cells = (arch[:4 * nodes], arch[4 * nodes:])
    total, head = 3 * 3 * 3 * 3 * filters + bn(3 * filters), 0
    inputs, c, pools = [(size, 3 * filters)] * 2, filters, (layers // 3, 2 * (layers // 3) + 1)
    for i in range(layers + 2):
        stride = 2 if i in pools else 1
        c *= stride
        (hw0, c0), (hw1, c1) = inputs
        total += reduction(c0, c) if hw0 != hw1 else conv1x1(c0, c) if c0 != c else 0   # pool_x
        total += (conv1x1(c1, c) if c1 != c else 0) + conv1x1(c, c)                     # pool_y, layer_base
        used = [0] * (nodes + 2)
        for k in range(2 * nodes):
            source, op_id = cells[stride - 1][2 * k:2 * k + 2]
            used[source] += 1
            total += sep_stack((3, 5)[op_id], c) if op_id < 2 else \
                reduction(c, c) if op_id == 4 and source < 2 and stride == 2 else 0
        loose = [p for p in range(nodes + 2) if not used[p]]
        total += sum(reduction(c, c) for p in loose if p < 2 and stride == 2)   # _fixed_combine
        inputs = [inputs[1], (hw1 // stride, len(loose) * c)]
        if i == pools[1] + 1:
            pooled = (inputs[1][0] - 5) // 3 + 1
            head = conv1x1(inputs[1][1], 128) + pooled * pooled * 128 * 768 + bn(768) + 768 * classes
    return total + inputs[1][1] * classes, head


def test_the_published_cells_at_the_final_size_have_the_official_parameters(capsys):
    """The official code builds 3.89M parameters for the published cells at 15 layers of width 36,
    4.39M with the auxiliary head; the paper reports 4.6M (section 3.2). Ours are the same
    variables plus the two classifiers' biases."""
    arch = from_official(PAPER_CELLS, "micro")
    cfg = MicroConfig(layers=15, filters=36, nodes=5, dropout=0.2, drop_path=0.4, aux_weight=0.4)
    child = MicroSpace(cfg, ImageShape(3, 32, 32, 10)).child(arch)
    head = sum(p.numel() for p in child.aux_head.parameters())
    network = sum(p.numel() for p in child.parameters()) - head
    official_network, official_head = official_micro_parameters(official_numbers(arch), 15, 36, 5)
    with capsys.disabled():
        print(f"\npublished micro cells, 15 layers x 36 filters: {network / 1e6:.3f}M parameters, auxiliary "
              f"head {head / 1e6:.3f}M (official code {official_network / 1e6:.3f}M + {official_head / 1e6:.3f}M; "
              f"paper 4.6M)")
    assert (network, head) == (official_network + 10, official_head + 10)
    assert official_network == 3_894_372 and official_head == 494_848
    # retrain's result.json counts as the official code does: the head apart
    assert (count_parameters(child), auxiliary_parameters(child)) == (network, head)
    child.eval()
    with torch.no_grad():
        assert child(torch.randn(1, 3, 32, 32))[0].shape == (1, 10)


def test_a_small_child_trains_forward_and_backward():
    torch.manual_seed(0)
    cfg = MicroConfig(layers=3, filters=4, nodes=5, drop_path=0.4, aux_weight=0.4)
    arch = from_official(PAPER_CELLS, "micro")
    child = MicroSpace(cfg, ImageShape(3, 16, 16, 10), train_steps=10).child(arch)
    head = sum(p.numel() for p in child.aux_head.parameters())   # pools a 4x4 map whole, unlike the official
    assert sum(p.numel() for p in child.parameters()) - head == \
        official_micro_parameters(official_numbers(arch), 3, 4, 5, size=16)[0] + 10
    child.train()
    logits, aux = child(torch.randn(4, 3, 16, 16))
    (logits.logsumexp(1).sum() + 0.4 * aux.logsumexp(1).sum()).backward()
    assert all(p.grad is not None for p in child.parameters())


def test_a_child_refuses_an_architecture_of_another_space():
    arch = Architecture("macro", (0,))
    with pytest.raises(UserError, match="set space=macro"):
        MicroSpace(TINY, SHAPE).child(arch)
    assert isinstance(MicroSpace(TINY, SHAPE).supernet(), MicroNetwork)
