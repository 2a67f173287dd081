"""torchvision's standard sets read offline (enas/data/torchvision_sets.py): tiny files written in
torchvision's own layout, read through torchvision's dataset classes; a grey 28-pixel set searched,
derived and retrained through the CLI in both convolutional spaces; the mistakes as one-line errors.

torchvision checks the CIFAR files against the MD5 sums of the official ones, which tiny files
cannot match; the tests that read tiny CIFAR files in this process clear those sums on the class
(monkeypatch), and a test without that shows the mismatch is the one-line layout error."""

import importlib.util
import json
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from enas.config import load_config
from enas.data.config import TORCHVISION_SETS
from enas.data.torchvision_sets import SETS, load_torchvision
from enas.errors import UserError
from enas.tasks import build_task

datasets = pytest.importorskip("torchvision.datasets", reason="torchvision is not installed (the tool reads these "
                               "sets through it)")

ENAS = str(Path(sys.executable).parent / "enas")
TINY = ["threads=1", "micro.layers=1", "micro.filters=4", "micro.nodes=2", "macro.layers=3", "macro.filters=4",
        "search.epochs=2", "search.batch_size=16", "controller.steps=2", "controller.aggregate=2",
        "derive.samples=3", "derive.bn_batches=2", "retrain.epochs=2", "retrain.batch_size=16"]


def write_idx(path: Path, array: np.ndarray) -> None:
    """An idx file as MNIST's: magic (0, 0, type 8 = uint8, dimensions), big-endian sizes, the bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def bars(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Grey 28 x 28 digits-to-be: class k (of 4) is a bright bar across rows 7k .. 7k+4, in noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 4
    images = rng.integers(0, 80, (count, 28, 28))
    for index, label in enumerate(labels):
        images[index, 7 * label:7 * label + 5, 3:25] = 230
    return images.astype(np.uint8), labels.astype(np.uint8)


def write_mnist(root: Path, name: str = "MNIST", train: int = 320, test: int = 80) -> Path:
    raw = root / name / "raw"
    for prefix, count, seed in (("train", train, 0), ("t10k", test, 1)):
        images, labels = bars(count, seed)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return root


def write_cifar100(root: Path) -> Path:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, count in (("train", 6), ("test", 3)):
        batch = {"data": rng.integers(0, 256, (count, 3072), dtype=np.uint8),
                 "fine_labels": list(range(count)), "coarse_labels": [0] * count}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    (folder / "meta").write_bytes(pickle.dumps({"fine_label_names": [f"fine{k}" for k in range(100)],
                                                "coarse_label_names": ["all"]}, protocol=2))
    return root


def without_checksums(monkeypatch: pytest.MonkeyPatch, kind: type) -> None:
    """Let torchvision read tiny files where it would insist on the official ones' MD5 sums."""
    monkeypatch.setattr(kind, "train_list", [[name, None] for name, _ in kind.train_list])
    monkeypatch.setattr(kind, "test_list", [[name, None] for name, _ in kind.test_list])
    monkeypatch.setattr(kind, "meta", {**kind.meta, "md5": None})


def enas(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([ENAS, *args, "--quiet"], capture_output=True, text=True, cwd=cwd, timeout=600)


# --------------------------------------------------------------------------- reading


def test_every_set_the_config_offers_has_a_layout():
    assert set(TORCHVISION_SETS) == set(SETS)
    assert all(hasattr(datasets, name) for name in SETS)


@pytest.mark.parametrize("name", ["MNIST", "FashionMNIST"])
def test_mnist_idx_files_load_grey_at_28_pixels_with_torchvisions_class_names(tmp_path, name):
    data = load_torchvision(name, write_mnist(tmp_path, name))
    assert data.train.shape == (320, 1, 28, 28) and data.train.dtype == torch.uint8
    assert data.test.shape == (80, 1, 28, 28) and data.train_labels.dtype == torch.int64
    images, labels = bars(320, 0)
    assert torch.equal(data.train[:, 0], torch.from_numpy(images))
    assert data.train_labels.tolist() == labels.tolist()
    assert data.classes == tuple(getattr(datasets, name).classes) and len(data.classes) == 10
    assert data.classes[0] == ("0 - zero" if name == "MNIST" else "T-shirt/top")


def test_cifar100_pickles_load_channels_first_with_the_fine_labels_and_names(tmp_path, monkeypatch):
    without_checksums(monkeypatch, datasets.CIFAR100)
    root = write_cifar100(tmp_path)
    data = load_torchvision("CIFAR100", root)
    assert data.train.shape == (6, 3, 32, 32) and data.test.shape == (3, 3, 32, 32)
    assert data.train_labels.tolist() == list(range(6)) and data.classes[:2] == ("fine0", "fine1")
    raw = pickle.loads((root / "cifar-100-python" / "train").read_bytes())["data"]
    assert torch.equal(data.train[0, 0].flatten(), torch.from_numpy(raw[0, :1024].copy()))   # red plane first


def test_cifar10_reads_through_torchvision_as_through_the_tools_own_reader(tmp_path, monkeypatch):
    from enas.data.images import load_cifar10
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"labels": [1, 0], "data": rng.integers(0, 256, (2, 3072), dtype=np.uint8)}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": ["plane", "car"]}, protocol=2))
    without_checksums(monkeypatch, datasets.CIFAR10)
    ours, theirs = load_cifar10(folder), load_torchvision("CIFAR10", tmp_path)
    assert torch.equal(ours.train, theirs.train) and torch.equal(ours.test_labels, theirs.test_labels)
    assert ours.classes == theirs.classes == ("plane", "car")


# --------------------------------------------------------------------------- mistakes


@pytest.mark.parametrize("name, layout", [
    ("MNIST", "ROOT/MNIST/raw/ with train-images-idx3-ubyte"),
    ("FashionMNIST", "ROOT/FashionMNIST/raw/"),
    ("CIFAR10", "ROOT/cifar-10-batches-py/ with data_batch_1..data_batch_5, test_batch and batches.meta"),
    ("CIFAR100", "ROOT/cifar-100-python/ with train, test and meta"),
])
def test_a_missing_set_is_a_one_line_error_naming_its_layout(tmp_path, name, layout):
    with pytest.raises(UserError, match=r"Dataset not found") as raised:
        load_torchvision(name, tmp_path)
    assert layout in str(raised.value) and "\n" not in str(raised.value)


def test_files_that_are_not_the_official_ones_are_the_same_error(tmp_path):
    with pytest.raises(UserError, match=r"cannot read CIFAR100 train .*\(Dataset not found or corrupted\); expected "
                                        r"ROOT/cifar-100-python/ .*MD5"):
        load_torchvision("CIFAR100", write_cifar100(tmp_path))


def test_a_truncated_idx_file_is_a_user_error(tmp_path):
    root = write_mnist(tmp_path)
    path = root / "MNIST" / "raw" / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(UserError, match="cannot read MNIST train under .*; expected ROOT/MNIST/raw/"):
        load_torchvision("MNIST", root)


def test_svhn_without_scipy_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "scipy", None)   # how Python marks a module as not importable
    with pytest.raises(UserError, match=r"^torchvision reads SVHN's .mat files with scipy, .*: pip install scipy$"):
        load_torchvision("SVHN", tmp_path)


@pytest.mark.skipif(importlib.util.find_spec("scipy") is None, reason="scipy is not installed (SVHN needs it)")
def test_svhn_mat_files_load_channels_first_with_0_for_the_digit_0(tmp_path, monkeypatch):
    import scipy.io
    rng = np.random.default_rng(0)
    for split, count in (("train", 5), ("test", 2)):
        scipy.io.savemat(tmp_path / f"{split}_32x32.mat",
                         {"X": rng.integers(0, 256, (32, 32, 3, count), dtype=np.uint8),
                          "y": np.array([[10], [1], [2], [3], [4]][:count], dtype=np.uint8)})
        monkeypatch.setitem(datasets.SVHN.split_list, split,
                            [*datasets.SVHN.split_list[split][:2], None])
    data = load_torchvision("SVHN", tmp_path)
    assert data.train.shape == (5, 3, 32, 32) and data.train_labels.tolist() == [0, 1, 2, 3, 4]
    assert data.classes == tuple(str(k) for k in range(5))


def test_cli_mistakes_exit_2_with_one_line(tmp_path):
    root = f"data.root={tmp_path}"
    for args, message in [
        ([root, "data.dataset=ImageNet"], "data.dataset='ImageNet' is not one of MNIST, FashionMNIST, CIFAR10"),
        (["data.dataset=MNIST"], "data.name=torchvision needs data.root=FOLDER"),
        ([root, "data.dataset=MNIST"], f"expected {SETS['MNIST'].layout}"),
    ]:
        result = enas("search", "-o", str(tmp_path / "run"), "space=micro", "data.name=torchvision", *args,
                      cwd=tmp_path)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1 and message in lines[0], result.stderr


# --------------------------------------------------------------------------- searched and retrained


def test_a_grey_28_pixel_set_sizes_the_stem_and_normalisation_from_its_one_channel(tmp_path):
    config = load_config([], ["space=macro", "data.name=torchvision", "data.dataset=MNIST",
                              f"data.root={write_mnist(tmp_path)}", *TINY])
    task = build_task(config, config.search)
    assert task.images["train"].shape == (288, 1, 28, 28) and task.mean.shape == task.std.shape == (1,)
    assert task.space.supernet().stem[0].in_channels == 1


@pytest.mark.parametrize("space", ["micro", "macro"])
def test_mnist_layout_searches_derives_and_retrains_through_the_cli(tmp_path, space):
    run = tmp_path / "run"
    data = ["-c", "shapes", f"space={space}", "data.name=torchvision", "data.dataset=MNIST",
            f"data.root={write_mnist(tmp_path / 'data')}", *TINY]
    for command in (["search", "-o", str(run), *data], ["derive", str(run)], ["retrain", str(run)]):
        result = enas(*command, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
    assert (run / "classes.txt").read_text().splitlines()[:2] == ["0 - zero", "1 - one"]
    summary = json.loads((run / "retrain" / "result.json").read_text())
    # four bar classes of 80 test images: chance is 1/4 of them (1/10 of MNIST's classes, as reported)
    assert summary["metric"] == "test_acc" and summary["chance_acc"] == pytest.approx(0.1)
    assert summary["value"] > 0.75, summary
