"""Tests for enas.data.images: CIFAR-10 python batches, the built-in patterns (learnable by a
convolution, not by a linear model of the pixels), and the augmentation. Image folders:
tests/test_image_folders.py; torchvision's sets: tests/test_torchvision_sets.py."""

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from enas.data.config import DataConfig
from enas.data.images import augment, builtin_images, channel_stats, load_cifar10, normalise
from enas.errors import UserError
from enas.tasks.image import load_images

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CIFAR = DATA / "cifar-10-subset" / "cifar-10-batches-py"
needs_cifar = pytest.mark.skipif(not CIFAR.is_dir(), reason=f"the real CIFAR-10 subset is not at {CIFAR}")


pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py


# --------------------------------------------------------------------------- CIFAR-10 batches


@needs_cifar
def test_the_real_cifar10_subset_loads_from_its_folder_or_the_folder_above():
    data = load_cifar10(CIFAR)
    assert data.train.shape == (4000, 3, 32, 32) and data.train.dtype == torch.uint8
    assert data.test.shape == (1000, 3, 32, 32) and data.test_labels.shape == (1000,)
    assert data.classes[:3] == ("airplane", "automobile", "bird") and len(data.classes) == 10
    assert set(data.train_labels.tolist()) == set(range(10))
    again = load_cifar10(CIFAR.parent)
    assert torch.equal(again.train, data.train)
    # rows are R, G, B planes of 1024 pixels: the first image's red plane is its first 1024 bytes
    raw = pickle.load(open(CIFAR / "data_batch_1", "rb"), encoding="bytes")[b"data"][0]
    assert torch.equal(data.train[0, 0].flatten(), torch.from_numpy(raw[:1024].copy()))


def _write_batch(path: Path, images: np.ndarray, labels: list[int]) -> None:
    with open(path, "wb") as handle:
        pickle.dump({b"batch_label": b"fake", b"labels": labels, b"data": images}, handle, protocol=2)


def test_a_cifar_folder_made_of_numpy_pickles_loads(tmp_path):
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        _write_batch(tmp_path / name, rng.integers(0, 256, (3, 3072), dtype=np.uint8), [1, 2, 3])
    data = load_cifar10(tmp_path)
    assert data.train.shape == (15, 3, 32, 32) and data.classes == tuple(str(i) for i in range(10))


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "ran"

    class Exploit:
        def __reduce__(self):
            return (Path.touch, (marker,))

    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(tmp_path / name, "wb") as handle:
            pickle.dump({"data": Exploit(), "labels": [0]}, handle)
    with pytest.raises(UserError, match="is not a CIFAR-10 python batch.*pathlib"):
        load_cifar10(tmp_path)
    assert not marker.exists()


@pytest.mark.parametrize("setup, message", [
    (lambda root: None, "does not exist; expected a cifar-10-batches-py folder"),
    (lambda root: root.mkdir(), "lacks data_batch_1; expected"),
    (lambda root: (root.mkdir(), (root / "data_batch_1").write_bytes(b"junk")), "lacks data_batch_2"),
])
def test_missing_or_broken_cifar_folders_are_one_line_errors(tmp_path, setup, message):
    root = tmp_path / "cifar"
    setup(root)
    with pytest.raises(UserError, match=message) as error:
        load_cifar10(root)
    assert "\n" not in str(error.value)


def test_a_truncated_batch_is_a_user_error(tmp_path):
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        _write_batch(tmp_path / name, np.zeros((2, 3072), np.uint8), [0, 1])
    (tmp_path / "test_batch").write_bytes((tmp_path / "test_batch").read_bytes()[:100])
    with pytest.raises(UserError, match="test_batch is not a CIFAR-10 python batch"):
        load_cifar10(tmp_path)


# --------------------------------------------------------------------------- built-in patterns


def test_builtin_images_are_deterministic_and_balanced():
    data = builtin_images(16, 4, 400, 100, seed=7)
    again = builtin_images(16, 4, 400, 100, seed=7)
    other = builtin_images(16, 4, 400, 100, seed=8)
    assert torch.equal(data.train, again.train) and torch.equal(data.test_labels, again.test_labels)
    assert not torch.equal(data.train, other.train)
    assert data.train.shape == (400, 3, 16, 16) and data.classes == ("stripes", "columns", "checker", "dots")
    assert torch.bincount(torch.cat([data.train_labels, data.test_labels])).tolist() == [125] * 4
    assert load_images(DataConfig(name="builtin_images", image_size=16, classes=4, train_images=400,
                                  test_images=100, seed=7)).train.equal(data.train)
    assert builtin_images(16, 10, 400, 100, seed=7).classes[-2:] == ("triangle", "solid")
    with pytest.raises(UserError, match="2..10 classes"):
        builtin_images(16, 11, 10, 10, 0)


def _fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, lr: float) -> None:
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(epochs):
        for rows in torch.randperm(len(x)).split(50):
            optimizer.zero_grad()
            F.cross_entropy(model(x[rows]), y[rows]).backward()
            optimizer.step()


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def test_builtin_images_defeat_a_linear_model_but_not_a_small_convolution():
    torch.manual_seed(0)
    data = builtin_images(16, 8, 1500, 500, seed=1234)
    mean, std = channel_stats(data.train)
    x_train, x_test = normalise(data.train, mean, std), normalise(data.test, mean, std)
    linear = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 8))
    _fit(linear, x_train, data.train_labels, epochs=20, lr=1e-3)
    conv = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1, stride=2),
                         nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(32, 8))
    _fit(conv, x_train, data.train_labels, epochs=6, lr=3e-3)
    linear_acc, conv_acc = _accuracy(linear, x_test, data.test_labels), _accuracy(conv, x_test, data.test_labels)
    assert _accuracy(linear, x_train, data.train_labels) > 0.5     # it fits the training set...
    assert linear_acc < 0.25                                       # ...but stays near chance (0.125) on the test
    # 6 epochs of 1,500 images: 0.76-0.84 over seeds, far above chance but short of the ceiling
    assert conv_acc > 0.6, (linear_acc, conv_acc)


# --------------------------------------------------------------------------- preprocessing


def test_channel_stats_and_normalise():
    images = torch.randint(0, 256, (50, 3, 4, 4), dtype=torch.uint8)
    mean, std = channel_stats(images)
    pixels = images.double().div(255).transpose(0, 1).flatten(1)
    assert torch.allclose(mean.double(), pixels.mean(1), atol=1e-6)
    assert torch.allclose(std.double(), pixels.std(1, unbiased=False), atol=1e-6)
    x = normalise(images, mean, std)
    assert torch.allclose(x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)


def test_augment_crops_flips_and_cuts_out():
    torch.manual_seed(0)
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8) + 1
    assert torch.equal(augment(x, crop=False, cutout=0), x)
    crops = augment(x.repeat(200, 1, 1, 1), crop=True, cutout=0)
    assert crops.shape == (400, 3, 8, 8)
    # every crop is a shifted (maybe mirrored) window of the zero-padded image
    padded = F.pad(x, (4, 4, 4, 4))
    for i in range(0, 400, 37):
        image = padded[i % 2]
        windows = [image[:, r:r + 8, c:c + 8] for r in range(9) for c in range(9)]
        assert any(torch.equal(crops[i], w) or torch.equal(crops[i], w.flip(-1)) for w in windows)
    windows = [padded[0, :, r:r + 8, c:c + 8] for r in range(9) for c in range(9)]
    mirrored = sum(any(torch.equal(crops[i], w.flip(-1)) for w in windows) for i in range(0, 400, 2))
    assert 60 < mirrored < 140   # about half of the 200 crops of image 0 are mirrored
    cut = augment(torch.ones(500, 1, 16, 16), crop=False, cutout=4)
    zeros = (cut == 0).sum(dim=(1, 2, 3))
    assert zeros.max() == 16 and zeros.min() >= 4      # 4 x 4, clipped at the border to at least 2 x 2
