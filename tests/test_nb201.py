"""Tests for the NAS-Bench-201 space (enas/spaces/nb201.py) and the benchmark's 25k/25k split:
a child computes what the supernet bound to its cell computes, each op against numbers worked by
hand, the official string in and out, the canonical key, the split, and search, derive and
retrain through the command line on built-in images."""

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch

from enas.config import load_config
from enas.data.images import split_rows
from enas.errors import UserError
from enas.spaces import from_official, load_architecture, official
from enas.spaces.architecture import Architecture
from enas.spaces.base import ImageShape
from enas.spaces.nb201 import Nb201Config, Nb201Network, Nb201Space
from enas.spaces.nb201_ops import EVALUATION, NB201_OPS, Norm, ResidualBlock, nb201_op
from enas.strategies.controller import draw_architectures
from enas.tasks.image import ImageTask

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CIFAR = DATA / "cifar-10-subset" / "cifar-10-batches-py"
JPEG_TAR = DATA / "cifar-10-jpeg" / "CIFAR-10-images-jpeg.tar.gz"
TABLE = DATA / "nas-bench-201" / "nb201-cifar10-12epochs.csv"
SHAPE = ImageShape(channels=3, height=8, width=8, classes=5)
TINY = Nb201Config(channels=4, cells=1)
ALL_SKIP = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"
STRINGS = [
    ALL_SKIP,
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|",
    "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|",
    "|avg_pool_3x3~0|+|nor_conv_1x1~0|none~1|+|nor_conv_3x3~0|skip_connect~1|nor_conv_1x1~2|",
]

pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py


# --------------------------------------------------------------------------- supernet and child


def _cells() -> list[Architecture]:
    return [from_official(text, "nb201") for text in STRINGS] + draw_architectures(Nb201Space(TINY, SHAPE), 4)


@pytest.mark.parametrize("norm", [EVALUATION, Norm(affine=False, track_running_stats=False)])
def test_a_child_computes_what_the_supernet_bound_to_its_cell_computes(norm):
    """Built with the same batch norms, a child holds a subset of the supernet's weights under the
    same names and, given them, gives the same logits in training and in eval mode."""
    torch.manual_seed(0)
    cfg = Nb201Config(channels=4, cells=2, affine=norm.affine, track_running_stats=norm.track_running_stats)
    space = Nb201Space(cfg, SHAPE)
    supernet = space.supernet()
    images = torch.randn(6, 3, 8, 8)
    for arch in _cells():
        child = space.child(arch) if norm == EVALUATION else \
            Nb201Network(cfg, SHAPE, norm, [NB201_OPS[c] for c in arch.choices])
        shared = supernet.state_dict()
        assert set(child.state_dict()) < set(shared)
        child.load_state_dict({name: shared[name] for name in child.state_dict()})
        for training in (True, False):
            supernet.train(training), child.train(training)
            with torch.no_grad():
                expected, got = supernet(images, arch)[0], child(images)[0]
            assert torch.allclose(expected, got, atol=1e-5), (official(arch), training)


def test_a_child_is_the_benchmarks_evaluation_network_whatever_the_search_norms():
    space = Nb201Space(Nb201Config(channels=4, cells=1), SHAPE)   # affine and running stats off by default
    cell_norms = lambda net: [m for name, m in net.named_modules()   # noqa: E731
                              if isinstance(m, torch.nn.BatchNorm2d) and ".edges." in name]
    supernet, child = space.supernet(), space.child(from_official(STRINGS[1], "nb201"))
    assert all(not m.affine and not m.track_running_stats for m in cell_norms(supernet))
    assert cell_norms(child) and all(m.affine and m.track_running_stats for m in cell_norms(child))
    # the cells of a stage keep the size; the two residual blocks halve it and double the width
    widths = [layer.conv_a[1].out_channels for layer in child.cells if isinstance(layer, ResidualBlock)]
    assert widths == [8, 16] and child.classifier.in_features == 16


def test_the_supernet_trains_only_the_ops_of_the_cell_it_runs():
    space = Nb201Space(TINY, SHAPE)
    supernet = space.supernet()
    arch = from_official("|nor_conv_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|none~0|avg_pool_3x3~1|nor_conv_3x3~2|",
                         "nb201")
    supernet(torch.randn(4, 3, 8, 8), arch)[0].sum().backward()
    trained = {".".join(name.split(".")[3:5]) for name, p in supernet.named_parameters()   # edge.op
               if ".edges." in name and p.grad is not None}
    assert trained == {"node1_from0.nor_conv_3x3", "node2_from0.nor_conv_1x1", "node3_from2.nor_conv_3x3"}


def test_images_whose_sides_are_not_multiples_of_4_are_a_user_error():
    with pytest.raises(UserError, match="multiples of 4"):
        Nb201Space(TINY, ImageShape(3, 10, 10, 5))


# --------------------------------------------------------------------------- the ops by hand


def test_none_gives_zeros_and_skip_connect_the_input():
    x = torch.randn(2, 3, 4, 4)
    assert torch.equal(nb201_op("none", 3, EVALUATION)(x), torch.zeros_like(x))
    assert torch.equal(nb201_op("skip_connect", 3, EVALUATION)(x), x)


def test_avg_pool_averages_only_the_pixels_inside_the_image():
    x = torch.arange(9.0).view(1, 1, 3, 3)   # 0 1 2 / 3 4 5 / 6 7 8
    out = nb201_op("avg_pool_3x3", 1, EVALUATION)(x)
    assert out.shape == x.shape
    assert out[0, 0, 0, 0] == (0 + 1 + 3 + 4) / 4        # a corner: 4 pixels, not 9
    assert out[0, 0, 0, 1] == (0 + 1 + 2 + 3 + 4 + 5) / 6  # an edge: 6
    assert out[0, 0, 1, 1] == 4.0                          # the centre: all 9


@pytest.mark.parametrize("name", ["nor_conv_1x1", "nor_conv_3x3"])
def test_the_convolutions_are_relu_conv_bn(name):
    op = nb201_op(name, 1, EVALUATION).eval()   # running statistics 0 and 1: BN divides by sqrt(1 + eps)
    torch.nn.init.constant_(op[1].weight, 0.5)
    x = torch.tensor([[-1.0, 2.0], [3.0, -4.0]]).view(1, 1, 2, 2)
    relu = torch.tensor([[0.0, 2.0], [3.0, 0.0]])
    # 1x1: each pixel's ReLU times 0.5; 3x3 (zero padding): every pixel of a 2x2 image sees all four
    expected = relu * 0.5 if name == "nor_conv_1x1" else torch.full((2, 2), relu.sum() * 0.5)
    with torch.no_grad():
        assert torch.allclose(op(x)[0, 0], expected / (1 + 1e-5) ** 0.5)


def test_without_affine_batch_norms_a_convolution_keeps_its_bias_as_the_benchmarks_does():
    search, evaluation = nb201_op("nor_conv_3x3", 4, Norm(False, False)), nb201_op("nor_conv_3x3", 4, EVALUATION)
    assert search[1].bias is not None and search[2].weight is None and search[2].running_mean is None
    assert evaluation[1].bias is None and evaluation[2].weight is not None and evaluation[2].running_mean is not None


def test_the_residual_block_halves_the_size_with_a_pooled_1x1_shortcut_without_batch_norm():
    block = ResidualBlock(4, 8)
    assert [type(m) for m in block.shortcut] == [torch.nn.AvgPool2d, torch.nn.Conv2d]
    assert block.conv_a[1].stride == (2, 2) and block.conv_b[1].stride == (1, 1)
    x = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        torch.nn.init.zeros_(block.conv_b[2].weight)   # the residual branch adds nothing: the shortcut alone
        torch.nn.init.zeros_(block.conv_b[2].bias)
        conv = block.shortcut[1].weight.view(8, 4)
        expected = torch.einsum("oc,bchw->bohw", conv, torch.nn.functional.avg_pool2d(x, 2))
        assert torch.allclose(block(x), expected, atol=1e-6)


# --------------------------------------------------------------------------- codecs


@pytest.mark.parametrize("text", STRINGS)
def test_official_strings_round_trip(text):
    arch = from_official(text, "nb201")
    assert official(arch) == text
    assert load_architecture(text, "nb201") == arch   # what `enas retrain --arch "|...|"` reads


def test_choices_follow_the_benchmarks_edge_and_op_order():
    assert NB201_OPS == ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
    assert from_official(ALL_SKIP, "nb201").choices == (1,) * 6
    assert from_official(STRINGS[1], "nb201").choices == (3, 3, 4, 1, 3, 1)   # 1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2
    assert [d.name for d in Nb201Space(TINY, SHAPE).decisions()] == \
        ["edge1<-0", "edge2<-0", "edge2<-1", "edge3<-0", "edge3<-1", "edge3<-2"]
    # a node's inputs may come in any order
    swapped = "|nor_conv_3x3~0|+|avg_pool_3x3~1|nor_conv_3x3~0|+|skip_connect~2|skip_connect~0|nor_conv_3x3~1|"
    assert from_official(swapped, "nb201") == from_official(STRINGS[1], "nb201")


@pytest.mark.parametrize("text, message", [
    ("|none~0|+|none~0|none~1|", "three |...| groups"),
    ("none~0|+|none~0|none~1|+|none~0|none~1|none~2|", "three |...| groups"),
    ("|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|", "'conv~0' in node 1"),
    ("|none~0|+|none~0|none~0|+|none~0|none~1|none~2|", "'none~0' in node 2"),
    ("|none~1|+|none~0|none~1|+|none~0|none~1|none~2|", "'none~1' in node 1"),
    ("|none~0|+|none~0|none~1|+|none~0|none~1|", "lacks edge\\(s\\) 3<-2"),
    ("|none0|+|none~0|none~1|+|none~0|none~1|none~2|", "'none0' in node 1"),
])
def test_malformed_strings_are_one_line_user_errors(text, message):
    with pytest.raises(UserError, match=message) as error:
        from_official(text, "nb201")
    assert "\n" not in str(error.value)


def test_every_string_of_the_benchmarks_table_round_trips():
    if not TABLE.is_file():
        pytest.skip(f"the NAS-Bench-201 table is not at {TABLE}")
    lines = TABLE.read_text().splitlines()
    assert lines[0].startswith("arch,")
    texts = [line.split(",")[0] for line in lines[1:]]
    archs = {from_official(text, "nb201").choices for text in texts}
    assert len(archs) == len(texts) == 5 ** 6
    assert all(official(from_official(text, "nb201")) == text for text in texts[:500])


def test_the_canonical_key_joins_cells_that_compute_the_same_function_and_only_those():
    def key(text: str) -> tuple:
        return Nb201Space.canonical(from_official(text, "nb201"))

    # node 3 reads only node 0: nodes 1 and 2 and their inputs are dead
    assert key("|nor_conv_3x3~0|+|none~0|nor_conv_1x1~1|+|skip_connect~0|none~1|none~2|") == \
        key("|avg_pool_3x3~0|+|nor_conv_1x1~0|none~1|+|skip_connect~0|none~1|none~2|")
    # a zero node (all its inputs none) gives zeros through skip and pooling, not through a conv (BN's shift)
    zero_node1 = "|none~0|+|nor_conv_3x3~0|{}~1|+|skip_connect~0|none~1|nor_conv_1x1~2|"
    assert key(zero_node1.format("skip_connect")) == key(zero_node1.format("avg_pool_3x3")) == \
        key(zero_node1.format("none"))
    assert key(zero_node1.format("nor_conv_1x1")) != key(zero_node1.format("none"))
    # nodes 1 and 2 swap places where no edge joins them
    assert key("|nor_conv_3x3~0|+|nor_conv_1x1~0|none~1|+|none~0|skip_connect~1|avg_pool_3x3~2|") == \
        key("|nor_conv_1x1~0|+|nor_conv_3x3~0|none~1|+|none~0|avg_pool_3x3~1|skip_connect~2|")
    # one conv read twice is not two convs: both reach node 3 as "conv(x) + conv(x)"
    assert key("|nor_conv_3x3~0|+|none~0|skip_connect~1|+|none~0|skip_connect~1|skip_connect~2|") != \
        key("|nor_conv_3x3~0|+|nor_conv_3x3~0|none~1|+|none~0|skip_connect~1|skip_connect~2|")
    assert len({key(text) for text in STRINGS}) == len(STRINGS)


def test_render_names_every_node_and_draws_the_ops_but_none():
    text, graph = Nb201Space.render(from_official(STRINGS[3], "nb201"))
    assert text.splitlines()[1] == "node 2 = nor_conv_1x1(node 0) + none(node 1)"
    assert [(e.source, e.target, e.label) for e in graph.edges] == [
        ("n0", "n1", "avg_pool_3x3"), ("n0", "n2", "nor_conv_1x1"), ("n0", "n3", "nor_conv_3x3"),
        ("n1", "n3", "skip_connect"), ("n2", "n3", "nor_conv_1x1")]
    assert "digraph cell" in graph.dot()


# --------------------------------------------------------------------------- the 25k/25k split


def test_the_nb201_split_halves_a_training_set_deterministically_disjointly_and_completely():
    torch.manual_seed(1)
    train, valid = split_rows(11, "nb201", 0.1)
    torch.manual_seed(2)                                   # the run's seed does not move it
    again = split_rows(11, "nb201", 0.9)                   # nor does valid_fraction
    assert torch.equal(train, again[0]) and torch.equal(valid, again[1])
    assert (len(train), len(valid)) == (6, 5)
    assert sorted(train.tolist() + valid.tolist()) == list(range(11))
    assert train.tolist() != sorted(train.tolist())        # a permutation, not the first half
    cifar = split_rows(50_000, "nb201", 0.1)
    assert (len(cifar[0]), len(cifar[1])) == (25_000, 25_000)
    assert len(set(cifar[0].tolist()) | set(cifar[1].tolist())) == 50_000


def test_the_tail_split_holds_out_the_last_valid_fraction():
    train, valid = split_rows(50, "tail", 0.1)
    assert train.tolist() == list(range(45)) and valid.tolist() == list(range(45, 50))


def test_search_trains_and_validates_on_the_two_halves_and_retrain_on_all():
    config = load_config([], ["space=nb201", "data.name=builtin_images", "data.train_images=100",
                              "data.test_images=20", "data.split=nb201"])
    search, retrain = ImageTask(config, config.search, hold_out=True), ImageTask(config, config.retrain, hold_out=False)
    assert [len(search.images[s]) for s in ("train", "valid", "test")] == [50, 50, 20]
    assert [len(retrain.images[s]) for s in ("train", "valid", "test")] == [100, 20, 20]
    _, valid = split_rows(100, "nb201", 0.0)
    assert torch.equal(search.images["valid"], retrain.images["train"][valid])


@pytest.mark.skipif(not CIFAR.is_dir(), reason=f"the real CIFAR-10 subset is not at {CIFAR}")
def test_the_real_cifar10_batches_split_25k_25k_style():
    config = load_config([], ["space=nb201", "data.name=cifar10", f"data.root={CIFAR}", "data.split=nb201"])
    task = ImageTask(config, config.search, hold_out=True)
    assert [len(task.images[s]) for s in ("train", "valid", "test")] == [2000, 2000, 1000]
    train = {bytes(image.numpy()) for image in task.images["train"]}
    assert not train & {bytes(image.numpy()) for image in task.images["valid"]}
    assert task.shape == ImageShape(3, 32, 32, 10)


@pytest.mark.skipif(not JPEG_TAR.is_file(), reason=f"the CIFAR-10 JPEG archive is not at {JPEG_TAR}")
def test_the_jpeg_image_folder_splits_the_same_way(tmp_path):
    taken: dict[tuple[str, str], int] = {}
    with tarfile.open(JPEG_TAR) as archive:   # 4 images per class and split
        for member in archive:
            parts = Path(member.name).parts
            if member.isfile() and len(parts) >= 3 and parts[-3] in ("train", "test"):
                key = (parts[-3], parts[-2])
                if taken.get(key, 0) < 4:
                    taken[key] = taken.get(key, 0) + 1
                    target = tmp_path / parts[-3] / parts[-2] / parts[-1]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(archive.extractfile(member).read())
            if len(taken) == 20 and all(v == 4 for v in taken.values()):
                break
    settings = ["space=nb201", "data.name=image_folder", f"data.root={tmp_path}", "data.cache=none",
                "data.split=nb201", "search.batch_size=4"]
    config = load_config([], settings)
    task = ImageTask(config, config.search, hold_out=True)
    assert [len(task.images[s]) for s in ("train", "valid", "test")] == [20, 20, 40]
    (tmp_path / "valid" / "cat").mkdir(parents=True)
    (tmp_path / "valid" / "cat" / "0000.jpg").write_bytes((tmp_path / "test" / "cat" / "0000.jpg").read_bytes())
    with pytest.raises(UserError, match="data.split=nb201 halves the training set"):
        ImageTask(load_config([], settings), config.search, hold_out=True)


# --------------------------------------------------------------------------- the command line


TINY_RUN = ["threads=1", "data.name=builtin_images", "data.image_size=8", "data.classes=4", "data.train_images=256",
            "data.test_images=64", "data.split=nb201", "nb201.channels=4", "nb201.cells=1", "search.epochs=3",
            "search.batch_size=32", "search.eval_batches=2", "controller.steps=2", "controller.aggregate=4",
            "derive.samples=3", "derive.bn_batches=2", "retrain.epochs=2", "retrain.batch_size=32",
            "retrain.steps_per_epoch=4"]


def enas(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The command line in its own process (a native crash fails the test instead of the suite)."""
    result = subprocess.run([sys.executable, "-c", "import cli; cli.main()", *args, "--quiet"], cwd=cwd,
                            capture_output=True, text=True, timeout=600,
                            env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    return result


def test_search_derive_and_retrain_run_the_nb201_preset_through_the_command_line(tmp_path):
    run = tmp_path / "run"
    enas("search", "-c", "nb201", "-o", str(run), *TINY_RUN, cwd=tmp_path)
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [m["loss"] for m in metrics if m["phase"] == "supernet"]
    assert len(losses) == 3 and losses[-1] < losses[0]                     # the shared weights learned
    assert "nb201:" in (run / "config.yaml").read_text()
    enas("derive", str(run), cwd=tmp_path)
    derived = json.loads((run / "arch.json").read_text())
    assert derived["space"] == "nb201" and from_official(derived["official"], "nb201").choices == \
        tuple(derived["choices"])
    enas("retrain", str(run), cwd=tmp_path)
    assert json.loads((run / "retrain" / "result.json").read_text())["metric"] == "test_acc"
    out = tmp_path / "all_skip"
    enas("retrain", "--arch", ALL_SKIP, "-c", "nb201", "-o", str(out), *TINY_RUN, cwd=tmp_path)
    assert json.loads((out / "result.json").read_text())["metric"] == "test_acc"
