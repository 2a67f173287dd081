"""The nas_cell space (Zoph & Le's tree cell): its equations by hand, the published PTB cell,
supernet/child equivalence under the controller's decisions, the carried hidden state, codecs
and validation."""

import math

import pytest
import torch
import torch.nn.functional as F
from weights import copy_supernet_weights

from enas.errors import UserError
from enas.spaces.architecture import Architecture
from enas.spaces.base import TextShape
from enas.spaces.nas_cell import PUBLISHED_PTB, NasCellConfig, NasCellPlan, NasCellSpace
from enas.strategies.controller import draw_architectures

pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py

# NAS Fig. 5: tree 0 add tanh, tree 1 elem_mult relu, tree 2 elem_mult sigmoid; inject add relu;
# c_t from tree 1 (before its activation), c_{t-1} injected into tree 0.
FIG5 = (0, 1, 1, 3, 1, 2, 0, 3, 1, 0)


def published_child(hidden: int = 6, vocab: int = 13):
    arch = Architecture("nas_cell", NasCellSpace.from_official(PUBLISHED_PTB, None))
    NasCellSpace.check(arch.choices)
    return NasCellSpace(NasCellConfig(base=4, hidden=hidden), TextShape(vocab)).child(arch)


def sigmoid(v: float) -> float:
    return 1 / (1 + math.exp(-v))


def test_two_leaf_cell_matches_the_paper_example_by_hand():
    space = NasCellSpace(NasCellConfig(base=2, hidden=1), TextShape(3))
    model = space.child(Architecture("nas_cell", FIG5)).eval()
    with torch.no_grad():
        model.embedding.copy_(torch.tensor([[1.0], [2.0], [-1.0]]))
        model.w_x.copy_(torch.tensor([[0.5, -1.0]]))     # W_0, W_1
        model.w_h.copy_(torch.tensor([[2.0, -0.25]]))    # U_0, U_1

    def by_hand(x: float, h: float, c: float) -> tuple[float, float]:
        a0 = math.tanh(0.5 * x + 2.0 * h)
        pre1 = (-1.0 * x) * (-0.25 * h)                  # c_t: tree 1 before its activation
        a0_new = max(a0 + c, 0.0)                        # inject: relu(a_0 + c_{t-1})
        return sigmoid(a0_new * max(pre1, 0.0)), pre1    # h_t = tree 2

    h1, c1 = by_hand(2.0, 0.5, -0.3)   # token 1, from h_0 = 0.5, c_0 = -0.3
    h2, c2 = by_hand(1.0, h1, c1)      # token 0
    _, hidden, outputs = model(torch.tensor([[1], [0]]), torch.tensor([[0.5, -0.3]]))
    assert torch.allclose(outputs.flatten(), torch.tensor([h1, h2]), atol=1e-6)
    assert torch.allclose(hidden, torch.tensor([[h2, c2]]), atol=1e-6)   # [h | c]
    assert abs(c1 - 0.25) < 1e-12 and h1 > 0.5                          # the example is not degenerate


def published_by_hand(model, tokens: torch.Tensor, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Zoph & Le's PTB cell (NAS appendix; TensorFlow's NASCell, no biases) written out, with the
    model's weights: m_i = W_i x_t and n_i = U_i h_{t-1} for the 8 leaves."""
    size = model.cfg.hidden
    w, u = model.w_x.split(size, 1), model.w_h.split(size, 1)
    h, c = hidden.split(size, 1)
    outputs = []
    for x in F.embedding(tokens, model.embedding):
        m, n = [x @ w_i for w_i in w], [h @ u_i for u_i in u]
        o = [torch.sigmoid(m[0] + n[0]), torch.relu(m[1] + n[1]), torch.sigmoid(m[2] + n[2]),
             torch.relu(m[3] * n[3]), torch.tanh(m[4] + n[4]), torch.sigmoid(m[5] + n[5]),
             torch.tanh(m[6] + n[6]), torch.sigmoid(m[7] + n[7])]
        l1, l2 = torch.tanh(o[0] * o[1]), torch.tanh(o[2] + o[3])
        l3, l4 = torch.tanh(o[4] * o[5]), torch.sigmoid(o[6] + o[7])
        l1 = torch.tanh(l1 + c)                # the cell inject
        c = l1 * l2                            # c_t
        h = torch.tanh(c * torch.tanh(l3 + l4))
        outputs.append(h)
    return torch.stack(outputs), torch.cat([h, c], 1)


def test_published_cell_computes_the_published_equations():
    torch.manual_seed(0)
    model = published_child().eval()
    assert NasCellPlan.of(Architecture("nas_cell", NasCellSpace.from_official(PUBLISHED_PTB, None))).base == 8
    tokens, hidden = torch.randint(0, 13, (7, 3)), torch.randn(3, 12)
    with torch.no_grad():
        _, last, outputs = model(tokens, hidden)
        expected_outputs, expected_last = published_by_hand(model, tokens, hidden)
    assert torch.allclose(outputs, expected_outputs, atol=1e-6)
    assert torch.allclose(last, expected_last, atol=1e-6)


def test_published_cell_trains_on_a_synthetic_stream():
    torch.manual_seed(0)
    model = published_child(hidden=16, vocab=11).train()
    stream = torch.tensor([(t * t + 3 * t) % 11 for t in range(8 * 41)]).view(8, 41).t()  # (41, 8)
    optimizer = torch.optim.SGD(model.parameters(), lr=2.0)
    hidden, losses = None, []
    for step in range(40):
        start = (step % 5) * 8
        loss, hidden, _ = model(stream[start:start + 8], hidden, stream[start + 1:start + 9])
        hidden = hidden.detach()   # truncated BPTT, as the text task carries it
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < losses[0] - 0.3, losses


@pytest.mark.parametrize("base", [2, 4, 8])
def test_supernet_and_child_compute_the_same_for_drawn_architectures(base):
    torch.manual_seed(base)
    space = NasCellSpace(NasCellConfig(base=base, hidden=5), TextShape(9))
    supernet = space.supernet().eval()
    tokens, hidden = torch.randint(0, 9, (6, 2)), torch.randn(2, 10)
    for arch in draw_architectures(space, 4, seed=base):
        NasCellSpace.check(arch.choices)
        child = space.child(arch).eval()
        copy_supernet_weights(child, supernet)
        with torch.no_grad():
            got, want = child(tokens, hidden), supernet(tokens, hidden, arch=arch)
        assert all(torch.equal(a, b) for a, b in zip(got, want))


def test_decisions_follow_the_paper_order():
    decisions = NasCellSpace(NasCellConfig(base=2), TextShape(3)).decisions()
    assert [d.name for d in decisions] == [
        "tree0.combination", "tree0.activation", "tree1.combination", "tree1.activation",
        "tree2.combination", "tree2.activation", "inject.combination", "inject.activation",
        "cell_index.c_t", "cell_index.inject"]
    assert [d.name for d in decisions if d.ends_node] == ["tree0.activation", "tree1.activation", "tree2.activation"]
    assert [d.anchors for d in decisions if d.kind == "index"] == [(0, 1, 2), (0, 1, 2)]


def test_carried_hidden_state_continues_one_long_run():
    torch.manual_seed(1)
    space = NasCellSpace(NasCellConfig(base=4, hidden=8), TextShape(11))
    model = space.child(draw_architectures(space, 1, seed=5)[0]).eval()
    tokens = torch.randint(0, 11, (13, 3))
    inputs, targets = tokens[:-1], tokens[1:]
    with torch.no_grad():
        loss, hidden, outputs = model(inputs, None, targets)
        loss_a, hidden_a, outputs_a = model(inputs[:5], None, targets[:5])
        loss_b, hidden_b, outputs_b = model(inputs[5:], hidden_a, targets[5:])
    assert hidden.shape == (3, 16) and outputs.shape == (12, 3, 8)
    assert torch.allclose(torch.cat([outputs_a, outputs_b]), outputs, atol=1e-6)
    assert torch.allclose(hidden_b, hidden, atol=1e-6)
    assert abs((5 * loss_a + 7 * loss_b) / 12 - loss) < 1e-5


@pytest.mark.parametrize("base", [3, 6, 0])
def test_a_base_that_is_not_a_power_of_two_is_a_one_line_error(base):
    with pytest.raises(UserError, match=r"nas_cell\.base") as error:
        NasCellSpace(NasCellConfig(base=base), TextShape(5))
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("text, message", [
    (PUBLISHED_PTB.rsplit(" ", 1)[0], r"4B\+2 choices .*nas_cell\.base.*got 33"),
    (" ".join(["0"] * 14), r"got 14"),                                  # 4B+2 with B = 3
    (PUBLISHED_PTB.rsplit(" ", 1)[0] + " 15", r"cell_index\.inject=15 is out of range"),
    ("0 4" + PUBLISHED_PTB[3:], r"tree0\.activation=4 is out of range"),
    ("0 2 x", r"whitespace-separated integers"),
])
def test_bad_architecture_strings_are_one_line_errors(text, message):
    with pytest.raises(UserError, match=message) as error:
        NasCellSpace.check(NasCellSpace.from_official(text, None))
    assert "\n" not in str(error.value)


def test_official_string_round_trips_and_renders():
    choices = NasCellSpace.from_official(PUBLISHED_PTB, None)
    assert NasCellSpace.to_official(choices, "zoph_le") == PUBLISHED_PTB
    with pytest.raises(UserError, match="unknown nas_cell string style"):
        NasCellSpace.to_official(choices, "enas")
    text, graph = NasCellSpace.render(Architecture("nas_cell", choices))
    dot = graph.dot()
    assert "tree 3: relu(elem_mult(W_3 x_t, U_3 h_(t-1)))" in text
    assert "tree 8: tanh(elem_mult(tree 0, tree 1)), then tanh(add(., c_(t-1)))" in text
    assert text.endswith("c_t = tree 12 before its activation\nh_t = tree 14")
    assert dot.startswith("digraph cell {") and "n12 -> n14;" in dot


def test_supernet_needs_an_architecture_of_its_base():
    supernet = NasCellSpace(NasCellConfig(base=4, hidden=4), TextShape(5)).supernet()
    tokens = torch.zeros(2, 1, dtype=torch.long)
    with pytest.raises(ValueError):
        supernet(tokens, None)
    with pytest.raises(ValueError, match="base-2"):
        supernet(tokens, None, arch=Architecture("nas_cell", FIG5))
