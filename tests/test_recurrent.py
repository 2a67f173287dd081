"""The recurrent space: supernet/child equivalence, the fused decoder loss, architecture codecs,
validation, rendering."""

import random

import pytest
import torch
import torch.nn.functional as F
from weights import copy_supernet_weights

from enas.errors import UserError
from enas.spaces import decoder_loss, from_json, from_official, official
from enas.spaces.architecture import Architecture
from enas.spaces.base import TextShape
from enas.spaces.recurrent import ACTIVATIONS, RecurrentConfig, RecurrentPlan, RecurrentSpace

PAPER_STRING = "0 0 0 1 1 2 1 2 0 2 0 5 1 1 0 6 1 8 1 8 1 8 1"   # official enas ptb example
ENAS_LM_STRING = "0 2 1 0 2 1 2 2 4 0 5 0 3 2 6 2"               # google-research/enas_lm example


def random_arch(nodes: int, rng: random.Random) -> Architecture:
    choices = [rng.randrange(d.size) for d in RecurrentSpace(RecurrentConfig(nodes=nodes), TextShape(2)).decisions()]
    return Architecture("recurrent", tuple(choices))


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("switches", [{}, {"weights_per_function": True, "output": "all_nodes"},
                                      {"weights_per_function": True, "first_activation": "tanh"}])
def test_child_computes_exactly_what_the_supernet_computes(seed, switches):
    rng = random.Random(seed)
    cfg = RecurrentConfig(nodes=6, hidden=12, **switches)
    space = RecurrentSpace(cfg, TextShape(20))
    torch.manual_seed(seed)
    supernet = space.supernet().eval()
    arch = random_arch(6, rng)
    child = space.child(arch).eval()
    copy_supernet_weights(child, supernet)
    tokens = torch.randint(0, 20, (9, 4))
    hidden = torch.randn(4, 12)
    logits_s, hidden_s, out_s = supernet(tokens, hidden, arch=arch)
    logits_c, hidden_c, out_c = child(tokens, hidden)
    assert torch.equal(logits_s, logits_c)
    assert torch.equal(hidden_s, hidden_c)
    assert torch.equal(out_s, out_c)


def test_child_gradients_match_the_supernet_rows_it_uses():
    cfg = RecurrentConfig(nodes=5, hidden=8)
    space = RecurrentSpace(cfg, TextShape(11))
    supernet = space.supernet()
    arch = random_arch(5, random.Random(3))
    child = space.child(arch)
    copy_supernet_weights(child, supernet)
    tokens = torch.randint(0, 11, (6, 3))
    supernet(tokens, None, arch=arch)[0].sum().backward()
    child(tokens, None)[0].sum().backward()
    rows = list(RecurrentPlan.of(arch).edge_rows)
    for edge, row in zip(child.edges, rows):
        assert torch.allclose(supernet.edges[row].grad, edge.grad, atol=1e-6)
    unused = [edge for row, edge in enumerate(supernet.edges) if row not in rows]
    assert all(edge.grad is None for edge in unused)  # only the sampled subgraph is trained


def test_supernet_needs_an_architecture():
    supernet = RecurrentSpace(RecurrentConfig(nodes=3, hidden=4), TextShape(5)).supernet()
    with pytest.raises(ValueError):
        supernet(torch.zeros(2, 1, dtype=torch.long), None)


def test_cell_output_is_the_mean_of_the_loose_ends():
    # node 1 <- x,h ; node 2 <- node 1 ; node 3 <- node 1: nodes 2 and 3 are loose ends
    arch = Architecture("recurrent", (0, 0, 1, 0, 2))
    plan = RecurrentPlan.of(arch)
    assert plan.loose_ends == (1, 2)
    assert plan.activations == ("tanh", "relu", "identity")


def test_official_enas_string_round_trips():
    arch = from_official(PAPER_STRING, "recurrent")
    assert len(RecurrentPlan.of(arch).activations) == 12
    assert official(arch) == PAPER_STRING
    assert from_json(arch.to_json()) == arch


def test_enas_lm_string_uses_its_own_function_order():
    arch = from_official(ENAS_LM_STRING, "recurrent")
    plan = RecurrentPlan.of(arch)
    assert plan.activations[0] == "tanh"                  # enas_lm's fixed base node
    assert plan.activations[1] == "sigmoid"               # enas_lm function 2 is sigmoid
    assert plan.activations[8] == "sigmoid"
    assert "identity" not in plan.activations[:2]
    assert official(arch, "enas_lm") == ENAS_LM_STRING
    assert official(arch, "enas").split()[0] == str(ACTIVATIONS.index("tanh"))


@pytest.mark.parametrize("text, message", [
    ("0 0", "2N-1 choices"),                 # even length read as enas style explicitly below
    ("0 1 0", "node2.input=1 is out of range"),
    ("0 0 7", "node2.activation=7 is out of range"),
    ("0 a 1", "whitespace-separated integers"),
])
def test_bad_official_strings_are_one_line_user_errors(text, message):
    with pytest.raises(UserError, match=message) as info:
        from_official(text, "recurrent", "enas")
    assert "\n" not in str(info.value)


def test_bad_json_architectures_are_user_errors():
    with pytest.raises(UserError, match="space"):
        from_json({"choices": [0]})
    with pytest.raises(UserError, match="unknown search space"):
        from_json({"space": "nope", "choices": [0]})
    with pytest.raises(UserError, match="format_version"):
        from_json({"space": "recurrent", "choices": [0], "format_version": 99})


def test_render_names_every_node_and_the_output():
    text, graph = RecurrentSpace.render(Architecture("recurrent", (0, 0, 1, 0, 2)))
    dot = graph.dot()
    assert text.splitlines() == ["node 1: tanh(x_t, h_(t-1))", "node 2: relu(node 1)",
                                 "node 3: identity(node 1)", "h_t = mean(node 2, node 3)"]
    assert dot.startswith("digraph") and "n0 -> n1;" in dot and "n2 -> out;" in dot


CELLS = {  # choices: f_1, then (input, f) per node
    "mixed": (0, 0, 1, 0, 2, 1, 3, 2, 0),   # every activation, a shared input node, two loose ends
    "chain": (1, 0, 3, 1, 0, 2, 1),         # one node per level
    "star": (0, 0, 0, 0, 0, 0, 1, 0, 1),    # four nodes reading node 1, in runs of one activation
    "wide": (2, 0, 0, 1, 2, 1, 0, 0, 3, 3, 1),
}


@pytest.mark.parametrize("cell", sorted(CELLS))
@pytest.mark.parametrize("masked", ["none", "hidden", "every node"])
def test_the_cells_hand_written_backward_matches_numerical_gradients(masked, cell):
    # In double precision, every input's gradient against central differences.
    from enas.spaces.recurrent import run_cell

    arch = Architecture("recurrent", CELLS[cell])
    plan = RecurrentPlan.of(arch)
    torch.manual_seed(0)
    steps, batch, size = 3, 2, 4
    x_proj = torch.randn(steps, batch, 2 * size, dtype=torch.double, requires_grad=True)
    hidden = torch.randn(batch, size, dtype=torch.double, requires_grad=True)
    w_h = (0.5 * torch.randn(size, 2 * size, dtype=torch.double)).requires_grad_()
    weights = [(0.5 * torch.randn(size, 2 * size, dtype=torch.double)).requires_grad_() for _ in plan.inputs]
    mask = torch.bernoulli(torch.full((batch, size), 0.7, dtype=torch.double)) / 0.7 if masked != "none" else None
    node_mask = mask if masked == "every node" else None

    inputs = (x_proj, hidden, w_h, *weights)
    projection = torch.randn(steps, batch, size, dtype=torch.double)

    def loss(x_proj, hidden, w_h, *weights):  # a random projection of the outputs: one backward checks every path
        return (run_cell(x_proj, hidden, w_h, weights, plan, mask, node_mask) * projection).sum()

    loss(*inputs).backward()  # the cell's backward runs once per graph, so check it by hand
    eps = 1e-6
    with torch.no_grad():
        for tensor in inputs:
            numeric = torch.zeros_like(tensor)
            for i in range(tensor.numel()):
                flat = tensor.view(-1)
                flat[i] += eps
                up = loss(*inputs)
                flat[i] -= 2 * eps
                down = loss(*inputs)
                flat[i] += eps
                numeric.view(-1)[i] = (up - down) / (2 * eps)
            assert torch.allclose(tensor.grad, numeric, atol=1e-6), (tensor.grad - numeric).abs().max()


@pytest.mark.parametrize("chunk", [7 * 11, 1 << 20])   # several chunks (7 rows each), and one
def test_the_fused_decoder_loss_equals_cross_entropy_of_the_logits_with_the_same_gradients(monkeypatch, chunk):
    monkeypatch.setattr(decoder_loss, "CHUNK_ELEMENTS", chunk)
    generator = torch.Generator().manual_seed(0)
    outputs, weight, bias = (torch.randn(*shape, generator=generator, requires_grad=True)
                             for shape in ((30, 5), (11, 5), (11,)))
    targets = torch.randint(0, 11, (30,), generator=generator)
    want = F.cross_entropy(F.linear(outputs, weight, bias), targets)
    want_grads = torch.autograd.grad(3 * want, (outputs, weight, bias))
    got = decoder_loss.decoded_cross_entropy(outputs, weight, bias, targets)
    got_grads = torch.autograd.grad(3 * got, (outputs, weight, bias))   # the backward scales by its input
    assert torch.allclose(got, want, atol=1e-6)
    for g, w in zip(got_grads, want_grads):
        assert torch.allclose(g, w, atol=1e-6)
    with torch.no_grad():   # rewards and evaluation: the loss alone
        assert torch.allclose(decoder_loss.decoded_cross_entropy(outputs, weight, bias, targets), want, atol=1e-6)


def test_the_language_model_with_targets_gives_the_cross_entropy_of_its_logits():
    space = RecurrentSpace(RecurrentConfig(nodes=4, hidden=8), TextShape(13))
    supernet = space.supernet().eval()
    arch = random_arch(4, random.Random(1))
    tokens = torch.randint(0, 13, (6, 3))
    logits, hidden, outputs = supernet(tokens[:-1], None, arch=arch)
    loss, hidden_too, outputs_too = supernet(tokens[:-1], None, tokens[1:], arch=arch)
    assert torch.allclose(loss, F.cross_entropy(logits.flatten(0, 1), tokens[1:].flatten()), atol=1e-6)
    assert torch.equal(hidden, hidden_too) and torch.equal(outputs, outputs_too)


def test_the_fused_decoder_loss_under_bf16_autocast_sums_its_gradients_in_float32(monkeypatch):
    monkeypatch.setattr(decoder_loss, "CHUNK_ELEMENTS", 40 * 50)   # 40 chunks of 40 rows
    generator = torch.Generator().manual_seed(0)
    outputs, weight, bias = (torch.randn(*shape, generator=generator, requires_grad=True)
                             for shape in ((1600, 16), (50, 16), (50,)))
    targets = torch.randint(0, 50, (1600,), generator=generator)
    want = torch.autograd.grad(F.cross_entropy(F.linear(outputs, weight, bias), targets), (weight, bias))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = decoder_loss.decoded_cross_entropy(outputs, weight, bias, targets)
    got = torch.autograd.grad(loss, (weight, bias))
    assert loss.dtype == torch.float32 and all(g.dtype == torch.float32 for g in got)
    for g, w in zip(got, want):   # measured 0.47% off; summed in bf16 over the 40 chunks, 0.75% and 0.95%
        assert (g - w).norm() < 0.006 * w.norm()


def test_a_child_refuses_an_architecture_of_another_space():
    with pytest.raises(UserError, match="a micro architecture cannot be built in the recurrent space; set space=micro"):
        RecurrentSpace(RecurrentConfig(nodes=3, hidden=4), TextShape(5)).child(Architecture("micro", (0,) * 8))


def reference_cell(x_proj, hidden, w_h, weights, plan, mask):
    """ENAS eqs. 1-2 in plain autograd, masking h_(t-1) and every node's input before its product
    with one mask, as both official PTB codes do; the highway carries the unmasked input."""
    act = {"tanh": torch.tanh, "relu": torch.relu, "identity": lambda x: x, "sigmoid": torch.sigmoid}
    outputs, h = [], hidden
    for t in range(x_proj.shape[0]):
        c, f = (x_proj[t] + (h * mask) @ w_h).chunk(2, dim=-1)
        nodes = [h + torch.sigmoid(c) * (act[plan.activations[0]](f) - h)]
        for j, weight in enumerate(weights, start=1):
            prev = nodes[plan.inputs[j - 1]]
            c, f = ((prev * mask) @ weight).chunk(2, dim=-1)
            nodes.append(prev + torch.sigmoid(c) * (act[plan.activations[j]](f) - prev))
        h = torch.stack([nodes[n] for n in plan.loose_ends]).mean(0)
        outputs.append(h)
    return torch.stack(outputs)


def test_hidden_dropout_masks_every_nodes_input_with_one_mask_like_the_official_code():
    from enas.spaces.language_model import dropout_mask

    arch = Architecture("recurrent", CELLS["mixed"])
    cfg = RecurrentConfig(nodes=5, hidden=6, dropout_hidden=0.5)
    model = RecurrentSpace(cfg, TextShape(11)).child(arch).double().train()
    tokens = torch.randint(0, 11, (4, 3))
    torch.manual_seed(7)
    output = model(tokens, None)[2]
    torch.manual_seed(7)   # the same draw: the model's only dropout is the hidden mask
    hidden = torch.zeros(3, 6, dtype=torch.double)
    mask = dropout_mask(hidden, 0.5)
    x_proj = model.embed(tokens) @ model.w_x
    expected = reference_cell(x_proj, hidden, model.w_h, list(model.edges), model.plan, mask)
    assert torch.allclose(output, expected, atol=1e-12)
    output.sum().backward()
    params = [model.w_x, model.w_h, model.embedding, *model.edges]
    grads = [p.grad.clone() for p in params]
    model.zero_grad()
    expected.sum().backward()
    for grad, param in zip(grads, params):
        assert torch.allclose(grad, param.grad, atol=1e-10)
