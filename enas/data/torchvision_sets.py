"""The standard image sets as torchvision keeps them on disk (MNIST, FashionMNIST, CIFAR-10,
CIFAR-100, SVHN), read by torchvision's own dataset classes with download=False: nothing is
fetched, and `data.root` is the folder torchvision is given as `root`.

torchvision checks the CIFAR and SVHN files against the MD5 sums of the official ones before it
reads them (its CIFAR reader unpickles without restriction; the checksum is what makes that safe),
so those must be the published files; the MNIST readers only parse the idx format. MNIST and
FashionMNIST stay grey: 1 channel of 28 x 28 pixels. torchvision is imported here only, so that
the rest of the tool runs without it.
"""

from __future__ import annotations

import importlib.util
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from enas.data.images import ImageData
from enas.errors import UserError

_IDX = "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte " \
       "(unpacked from their .gz)"
_OFFICIAL = "the official files (torchvision checks their MD5)"


@dataclass(frozen=True)
class TorchvisionSet:
    """Where torchvision expects a set's files, and how its dataset object holds the images."""

    layout: str
    pixels: str               # NHW (grey), NHWC or NCHW
    labels: str = "targets"   # the attribute with the labels


SETS = {
    "MNIST": TorchvisionSet(f"ROOT/MNIST/raw/ with {_IDX}", "NHW"),
    "FashionMNIST": TorchvisionSet(f"ROOT/FashionMNIST/raw/ with {_IDX}", "NHW"),
    "CIFAR10": TorchvisionSet(f"ROOT/cifar-10-batches-py/ with data_batch_1..data_batch_5, test_batch and "
                              f"batches.meta, {_OFFICIAL}", "NHWC"),
    "CIFAR100": TorchvisionSet(f"ROOT/cifar-100-python/ with train, test and meta, {_OFFICIAL}", "NHWC"),
    "SVHN": TorchvisionSet(f"ROOT/train_32x32.mat and ROOT/test_32x32.mat, {_OFFICIAL}", "NCHW", labels="labels"),
}


def load_torchvision(name: str, root: str | Path) -> ImageData:
    """Train and test split of the torchvision set `name` under `root`; the classes are the
    dataset's own names where it has them (SVHN has none: its digits)."""
    kind = getattr(_datasets(name), name)
    train, test = (_open(kind, name, str(root), split) for split in ("train", "test"))
    (train_images, train_labels), (test_images, test_labels) = _tensors(train, name, root), _tensors(test, name, root)
    names = getattr(train, "classes", None) or range(int(train_labels.max()) + 1)
    return ImageData(train_images, train_labels, test_images, test_labels, tuple(str(c) for c in names))


def _datasets(name: str) -> Any:
    """torchvision.datasets, after the checks that its reader for `name` can run at all."""
    if name == "SVHN" and importlib.util.find_spec("scipy") is None:
        raise UserError("torchvision reads SVHN's .mat files with scipy, which is not installed: pip install scipy")
    try:
        import torchvision.datasets  # a second's import that only this path needs
    except ImportError:
        raise UserError("data.name=torchvision needs torchvision (the version that matches torch): "
                        "pip install torchvision") from None
    return torchvision.datasets


def _open(kind: type, name: str, root: str, split: str) -> Any:
    arguments = {"split": split} if name == "SVHN" else {"train": split == "train"}
    try:
        return kind(root, download=False, **arguments)
    except (RuntimeError, OSError, ValueError, TypeError, KeyError, EOFError, pickle.UnpicklingError) as error:
        # torchvision's own words up to the first full stop: "Dataset not found or corrupted", or
        # what a malformed file broke (its advice to download=True does not apply here)
        reason = str(error).strip().splitlines()[0].split(". ")[0] if str(error).strip() else type(error).__name__
        raise UserError(f"torchvision cannot read {name} {split} under {root} ({reason}); "
                        f"expected {SETS[name].layout}") from None


def _tensors(dataset: Any, name: str, root: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """images (N, C, H, W) uint8 and labels (N,) int64 of a torchvision dataset object."""
    images = torch.as_tensor(np.asarray(dataset.data))
    layout = SETS[name].pixels
    if layout == "NHW":
        images = images.unsqueeze(1)
    elif layout == "NHWC":
        images = images.permute(0, 3, 1, 2).contiguous()
    labels = torch.as_tensor(np.asarray(getattr(dataset, SETS[name].labels)), dtype=torch.int64)
    if images.dtype != torch.uint8 or images.ndim != 4 or len(labels) != len(images):
        raise UserError(f"{name} under {root} holds {len(images)} images ({images.dtype}) and {len(labels)} labels; "
                        f"expected as many uint8 images as labels in {SETS[name].layout}")
    return images, labels
