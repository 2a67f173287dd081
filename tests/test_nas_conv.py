"""Tests for the Zoph & Le convolutional space (nas_conv): the controller's decisions, the codecs,
the paper's building rules (concatenation, padding, the image as default input, loose ends), the
supernet/child equivalence with copied weights, training, and bad input."""

import pytest
import torch
import torch.nn.functional as F

from enas.errors import UserError
from enas.spaces.architecture import Architecture
from enas.spaces.base import ImageShape
from enas.spaces.nas_conv import MAX_KERNEL, NasConvConfig, NasConvNetwork, NasConvPlan, NasConvSpace, filter_counts
from enas.strategies.controller import draw_architectures
from enas.tasks.image import batch_statistics

pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py

SHAPE = ImageShape(channels=3, height=8, width=8, classes=4)
SMALL = NasConvConfig(layers=4, filters_scale=0.25)                 # filters 6, 9, 12, 16
STRIDED = NasConvConfig(layers=4, strides=True, filters_scale=0.25)
# 4 layers, no strides: per layer height, width, filters indices, then one bit per earlier layer
#   layer 1: 3x5, 6 filters (image)     layer 2: 1x7, 9 filters, no skips: the image
#   layer 3: 5x3, 16 filters, reads layers 1 and 2     layer 4: 7x1, 12 filters, reads layer 1
HAND_MADE = "1 2 0  0 3 1 0  2 1 3 1 1  3 0 2 1 0 0"
# with strides: layer 1 strides 3 (8x8 -> 3x3), layer 2 reads the image at stride 1, layer 3 reads both
STRIDED_HAND_MADE = "1 1 0 2  1 1 1 0 0  0 0 0 0 1 1"


def arch_of(text: str) -> Architecture:
    arch = Architecture("nas_conv", NasConvSpace.from_official(text, None))
    NasConvSpace.check(arch.choices)
    return arch


def copy_into_child(child: NasConvNetwork, supernet: NasConvNetwork, plan: NasConvPlan, channels: int) -> None:
    """The supernet's weights for `plan`, written out independently of the module's own slicing:
    input blocks are [image, then `widest` columns per earlier layer], the kernel window is centred."""
    widest = supernet.widest
    with torch.no_grad():
        for mine, shared, spec in zip(child.layers, supernet.layers, plan.layers):
            top, left = (MAX_KERNEL - spec.height) // 2, (MAX_KERNEL - spec.width) // 2
            columns = list(range(channels)) if not spec.inputs else \
                [channels + j * widest + k for j in spec.inputs for k in range(plan.layers[j].filters)]
            weight = shared.conv.weight[:spec.filters, columns, top:top + spec.height, left:left + spec.width]
            mine.conv.weight.copy_(weight)
            for name in ("weight", "bias", "running_mean", "running_var"):
                getattr(mine.bn, name).copy_(getattr(shared.bn, name)[:spec.filters])
        columns = [j * widest + k for j in plan.loose_ends() for k in range(plan.layers[j].filters)]
        child.classifier.weight.copy_(supernet.classifier.weight[:, columns])
        child.classifier.bias.copy_(supernet.classifier.bias)


def test_decisions_follow_the_paper_with_one_anchor_per_layer():
    decisions = NasConvSpace(STRIDED, SHAPE).decisions()
    assert [d.name for d in decisions[:9]] == [
        "layer1.height", "layer1.width", "layer1.filters", "layer1.stride",
        "layer2.height", "layer2.width", "layer2.filters", "layer2.stride", "layer2.skips"]
    assert len(decisions) == 5 * 4 - 1 and len(NasConvSpace(SMALL, SHAPE).decisions()) == 4 * 4 - 1
    ends = [d.name for d in decisions if d.ends_node]
    assert ends == ["layer1.stride", "layer2.skips", "layer3.skips", "layer4.skips"]
    assert [d.size for d in decisions if d.kind == "skip"] == [1, 2, 3]   # layer i reads among layers 0..i-1


@pytest.mark.parametrize("text", [HAND_MADE, STRIDED_HAND_MADE, "3 3 3", "0 1 2 2"])
def test_official_strings_round_trip(text):
    arch = arch_of(text)
    assert NasConvSpace.to_official(arch.choices, "zoph_le") == " ".join(text.split())


def test_lengths_shared_by_two_layouts_are_told_apart():
    # 19 choices: 5 layers without strides or 4 with; both decode and check
    for cfg in (NasConvConfig(layers=5, filters_scale=0.25), STRIDED):
        arch = draw_architectures(NasConvSpace(cfg, SHAPE), 1)[0]
        assert len(arch.choices) == 19
        NasConvSpace.check(arch.choices)
        assert len(NasConvPlan.of(arch).layers) == cfg.layers


def test_plan_decodes_sizes_inputs_and_loose_ends():
    plan = NasConvPlan.of(arch_of(HAND_MADE), 0.25)
    assert filter_counts(0.25) == (6, 9, 12, 16) and filter_counts(1.0) == (24, 36, 48, 64)
    assert [(s.height, s.width, s.filters, s.stride) for s in plan.layers] == \
        [(3, 5, 6, 1), (1, 7, 9, 1), (5, 3, 16, 1), (7, 1, 12, 1)]
    assert [s.inputs for s in plan.layers] == [(), (), (0, 1), (0,)]
    assert plan.loose_ends() == (2, 3)


def test_inputs_are_concatenated_the_image_is_the_default_and_loose_ends_feed_the_classifier():
    child = NasConvSpace(SMALL, SHAPE).child(arch_of(HAND_MADE))
    assert [layer.conv.in_channels for layer in child.layers] == [3, 3, 6 + 9, 6]
    assert child.layers[0].conv.kernel_size == (3, 5) and child.layers[0].conv.padding == (1, 2)
    assert child.classifier.in_features == 16 + 12
    seen_inputs, outputs = {}, {}
    for i, layer in enumerate(child.layers):
        layer.register_forward_pre_hook(lambda m, args, i=i: seen_inputs.__setitem__(i, args[0]))
        layer.register_forward_hook(lambda m, args, out, i=i: outputs.__setitem__(i, out))
    images = torch.randn(2, 3, 8, 8)
    child.eval()
    with torch.no_grad():
        logits, aux = child(images)
    assert aux is None
    assert torch.equal(seen_inputs[1], images)                              # no skips: the image
    assert torch.equal(seen_inputs[2], torch.cat([outputs[0], outputs[1]], 1))
    features = torch.cat([outputs[2], outputs[3]], 1).mean((2, 3))         # layers 3 and 4, unread
    assert torch.allclose(logits, child.classifier(features), atol=1e-6)


def test_smaller_maps_are_zero_padded_at_the_bottom_and_right():
    child = NasConvSpace(STRIDED, SHAPE).child(arch_of(STRIDED_HAND_MADE))
    seen = {}
    child.layers[2].register_forward_pre_hook(lambda m, args: seen.__setitem__("x", args[0]))
    child.layers[0].register_forward_hook(lambda m, args, out: seen.__setitem__("first", out))
    child.eval()
    with torch.no_grad():
        child(torch.randn(2, 3, 8, 8))
    first = seen["first"]
    assert first.shape == (2, 6, 3, 3)                                     # ceil(8 / 3)
    x = seen["x"]
    assert x.shape == (2, 6 + 9, 8, 8)
    assert torch.equal(x[:, :6, :3, :3], first)
    assert not x[:, :6, 3:].any() and not x[:, :6, :, 3:].any()


@pytest.mark.parametrize("cfg", [SMALL, STRIDED], ids=["stride1", "strides"])
def test_sampled_architectures_build_and_run_in_the_supernet_and_as_children(cfg):
    space = NasConvSpace(cfg, SHAPE)
    archs = draw_architectures(space, 20)
    supernet = space.supernet()
    images = torch.randn(4, 3, 8, 8)
    for arch in archs:
        for model, extra in ((supernet, {"arch": arch}), (space.child(arch), {})):
            logits, aux = model(images, **extra)
            assert logits.shape == (4, 4) and aux is None and torch.isfinite(logits).all()
    plans = [NasConvPlan.of(a) for a in archs]
    assert any(len(p.loose_ends()) > 1 for p in plans) and any(not s.inputs for p in plans for s in p.layers[1:])
    if cfg.strides:
        assert any(s.stride > 1 for p in plans for s in p.layers)


@pytest.mark.parametrize("cfg", [SMALL, STRIDED], ids=["stride1", "strides"])
def test_supernet_and_child_compute_the_same_with_the_same_weights(cfg):
    torch.manual_seed(0)
    space = NasConvSpace(cfg, SHAPE)
    supernet = space.supernet()
    images = torch.randn(6, 3, 8, 8)
    archs = draw_architectures(space, 6, seed=1)
    supernet.train()
    with torch.no_grad():
        for arch in archs:   # running statistics of every architecture, mixed as in a search
            supernet(images, arch)
    supernet.eval()
    for arch in archs:
        plan = NasConvPlan.of(arch, cfg.filters_scale)
        child = space.child(arch)
        copy_into_child(child, supernet, plan, SHAPE.channels)
        child.eval()
        with torch.no_grad():
            assert torch.allclose(supernet(images, arch)[0], child(images)[0], atol=1e-5), arch


def test_sliced_batch_norm_updates_only_its_channels_like_a_plain_one():
    arch = arch_of(HAND_MADE)                       # layer 1 has 6 of the widest 16 filters
    supernet = NasConvSpace(SMALL, SHAPE).supernet()
    child = NasConvSpace(SMALL, SHAPE).child(arch)
    copy_into_child(child, supernet, NasConvPlan.of(arch, 0.25), 3)
    batches = [torch.randn(4, 3, 8, 8) + 1 for _ in range(3)]
    for momentum in (0.1, None):                    # None: the task's calibration (a plain average)
        for model in (supernet, child):
            model.layers[0].bn.reset_running_stats()
            with torch.no_grad(), batch_statistics(model, momentum):
                for images in batches:
                    model(images, arch) if model is supernet else model(images)
        shared, own = supernet.layers[0].bn, child.layers[0].bn
        assert torch.allclose(shared.running_mean[:6], own.running_mean, atol=1e-6)
        assert torch.allclose(shared.running_var[:6], own.running_var, atol=1e-6)
        assert not shared.running_mean[6:].any() and torch.equal(shared.running_var[6:], torch.ones(10))


def test_the_supernet_trains_only_the_weights_an_architecture_uses():
    arch = arch_of(HAND_MADE)
    supernet = NasConvSpace(SMALL, SHAPE).supernet()
    logits, _ = supernet(torch.randn(4, 3, 8, 8), arch)
    F.cross_entropy(logits, torch.tensor([0, 1, 2, 3])).backward()
    first = supernet.layers[0].conv.weight.grad != 0            # 3x5 window of 7x7, 6 of 16 filters
    assert first[:6, :, 2:5, 1:6].any() and first.sum() == first[:6, :, 2:5, 1:6].sum()
    third = supernet.layers[2].conv.weight.grad != 0            # blocks: image 0:3, layer 1 3:19, layer 2 19:35
    read = third[:, 3:3 + 6].sum() + third[:, 19:19 + 9].sum()  # 6 of layer 1's 16 columns, 9 of layer 2's
    assert third[:, 3:3 + 6].any() and third[:, 19:19 + 9].any() and third.sum() == read


def test_a_child_trains():
    torch.manual_seed(0)
    child = NasConvSpace(SMALL, SHAPE).child(arch_of(HAND_MADE))
    images, labels = torch.randn(16, 3, 8, 8), torch.arange(16) % 4
    optimizer = torch.optim.SGD(child.parameters(), lr=0.1, momentum=0.9)
    losses = []
    for _ in range(40):
        loss = F.cross_entropy(child(images)[0], labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]


def test_render_lists_layers_inputs_and_the_classifier():
    text, graph = NasConvSpace.render(arch_of(HAND_MADE))
    dot = graph.dot()
    assert text.splitlines() == ["layer 1: conv 3x5, 24 filters (image)",
                                 "layer 2: conv 1x7, 36 filters (image)",
                                 "layer 3: conv 5x3, 64 filters (layer 1 + layer 2)",
                                 "layer 4: conv 7x1, 48 filters (layer 1)",
                                 "classifier: layer 3 + layer 4"]
    assert "image -> layer2;" in dot and "layer1 -> layer4;" in dot and "layer3 -> classifier;" in dot
    assert "stride 3" in NasConvSpace.render(arch_of(STRIDED_HAND_MADE))[0]


@pytest.mark.parametrize("text, message", [
    ("1 2 0 0 3 1 0 2", r"L\(L\+5\)/2 numbers .* got 8, the nearest are 7 or 12, or 4 or 9 with strides"),
    ("4 0 0", r"layer1\.height=4 is out of range \(allowed: 0=height_1"),
    ("0 0 0 0 0 0 2", r"layer2\.skips must be 1 bits of 0/1"),
    ("0 0 0 3", r"layer1\.stride=3 is out of range"),
    ("0 0 a", "whitespace-separated integers"),
])
def test_bad_strings_are_one_line_user_errors(text, message):
    with pytest.raises(UserError, match=message) as error:
        NasConvSpace.check(NasConvSpace.from_official(text, None))
    assert "\n" not in str(error.value)


def test_bad_choices_and_styles_are_one_line_user_errors():
    with pytest.raises(UserError, match=r"4L-1 choices .* got 5, the nearest are 3 or 7, or 4 or 9 with strides"):
        NasConvSpace.check((0, 0, 0, 0, 0))
    with pytest.raises(UserError, match="unknown nas_conv string style"):
        NasConvSpace.to_official((0, 0, 0), "enas")
    with pytest.raises(UserError, match="cannot be built in the nas_conv space"):
        NasConvSpace(SMALL, SHAPE).child(Architecture("macro", (0,)))
