"""Image data for the convolutional spaces: the labelled splits (`ImageData`), CIFAR-10 python
batches and built-in generated patterns; plus the paper's normalisation and augmentation (crop,
flip, cutout). Image folders are read by image_folder.py, torchvision's sets by torchvision_sets.py.

Images are kept as uint8 tensors (N, C, H, W) and turned into normalised floats one batch at a
time, so the 50,000 CIFAR-10 training images take 150 MB rather than 600 MB.
"""

from __future__ import annotations

import codecs
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from enas.data.config import SPLITS
from enas.errors import UserError

CIFAR_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST_FILE = "test_batch"
CIFAR_LAYOUT = "a cifar-10-batches-py folder with data_batch_1..data_batch_5 and test_batch " \
               "(the python version of CIFAR-10)"
PAD = 4  # the paper's random crop: 4 pixels of zero padding on each side


@dataclass(frozen=True, eq=False)  # eq=False: comparing tensor fields with == is ambiguous
class ImageData:
    """A labelled image dataset: uint8 images (N, C, H, W) and int64 labels (N,) per split; the
    valid split only where the data brings one of its own (an image folder's valid/)."""

    train: torch.Tensor
    train_labels: torch.Tensor
    test: torch.Tensor
    test_labels: torch.Tensor
    classes: tuple[str, ...]
    valid: torch.Tensor | None = None
    valid_labels: torch.Tensor | None = None


# --------------------------------------------------------------------------- CIFAR-10 batches


_RECONSTRUCT = np.zeros(0).__reduce__()[0]  # numpy's array-unpickling function, whatever its module


class _CifarUnpickler(pickle.Unpickler):
    """Rebuilds only what a CIFAR-10 batch holds: dicts, lists, strings, bytes and numpy arrays.

    A pickle can run any code it names; refusing every global but numpy's array reconstruction
    means a foreign or tampered file fails to load instead of executing.
    """

    def find_class(self, module: str, name: str) -> object:
        # numpy 1 writes numpy.core.multiarray._reconstruct, numpy 2 numpy._core.multiarray._reconstruct
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name == "_reconstruct":
            return _RECONSTRUCT
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        if (module, name) == ("_codecs", "encode"):  # how Python 3 writes bytes in protocol 2 pickles
            return codecs.encode
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a CIFAR-10 batch")


def _unpickle(path: Path) -> dict:
    """A CIFAR-10 pickle as a dict with str keys; a UserError when it is something else."""
    try:
        with open(path, "rb") as handle:
            # The official files are Python 2 pickles: their str objects arrive as bytes here.
            loaded = _CifarUnpickler(handle, encoding="bytes").load()
        return {(k.decode() if isinstance(k, bytes) else k): v for k, v in loaded.items()}
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, TypeError, ValueError) as error:
        raise UserError(f"{path} is not a CIFAR-10 python batch ({error}); expected {CIFAR_LAYOUT}") from None


def _read_cifar_batch(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch file -> images (N, 3, 32, 32) uint8, labels (N,) int64."""
    batch = _unpickle(path)
    try:
        data, labels = batch["data"], batch["labels"]
        if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
                and data.shape[1] == 3072 and len(labels) == data.shape[0]):
            raise ValueError("data must be uint8 N x 3072 with N labels")
    except (KeyError, TypeError, ValueError) as error:
        raise UserError(f"{path} is not a CIFAR-10 python batch ({error}); expected {CIFAR_LAYOUT}") from None
    images = torch.from_numpy(data.copy()).view(-1, 3, 32, 32)  # rows are channel-major R, G, B planes
    return images, torch.tensor(labels, dtype=torch.int64)


def _cifar_folder(root: Path) -> Path:
    """`root` itself or its cifar-10-batches-py subfolder, whichever holds the batches."""
    for folder in (root, root / "cifar-10-batches-py"):
        if (folder / CIFAR_TRAIN_FILES[0]).is_file():
            return folder
    if not root.is_dir():
        raise UserError(f"cifar10 dataset folder {root} does not exist; expected {CIFAR_LAYOUT}")
    raise UserError(f"cifar10 dataset folder {root} lacks {CIFAR_TRAIN_FILES[0]}; expected {CIFAR_LAYOUT}")


def load_cifar10(root: str | Path) -> ImageData:
    """The python CIFAR-10 batches, read directly (no download, no checksum)."""
    folder = _cifar_folder(Path(root))
    missing = [name for name in (*CIFAR_TRAIN_FILES, CIFAR_TEST_FILE) if not (folder / name).is_file()]
    if missing:
        raise UserError(f"cifar10 dataset folder {folder} lacks {', '.join(missing)}; expected {CIFAR_LAYOUT}")
    train = [_read_cifar_batch(folder / name) for name in CIFAR_TRAIN_FILES]
    test, test_labels = _read_cifar_batch(folder / CIFAR_TEST_FILE)
    classes = tuple(str(i) for i in range(10))
    meta = folder / "batches.meta"
    if meta.is_file():
        names = _unpickle(meta).get("label_names", [])
        classes = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names) or classes
    return ImageData(torch.cat([images for images, _ in train]), torch.cat([labels for _, labels in train]),
                     test, test_labels, classes)


# --------------------------------------------------------------------------- the search's hold-out

NB201_SPLIT_SEED = 201       # the permutation of split nb201: fixed, whatever the run's seed


def split_rows(count: int, split: str, fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The rows of a training set of `count` images that search trains on and those it holds out
    for validation (int64, disjoint, together every row once).

    tail:  the last round(count * fraction) rows are held out, in order (CIFAR-10 at 0.1: the last
           5,000 of 50,000, as the official ENAS code).
    nb201: a random permutation of the rows drawn from torch.Generator().manual_seed(201), whatever
           the run's seed; its first count - count // 2 rows train, the other count // 2 validate
           (CIFAR-10: 25,000 / 25,000, the halves NAS-Bench-201 searches on). `fraction` is unused.
    """
    if split == "nb201":
        order = torch.randperm(count, generator=torch.Generator().manual_seed(NB201_SPLIT_SEED))
        return order[:count - count // 2], order[count - count // 2:]
    if split != "tail":
        raise ValueError(f"unknown split {split!r}; splits: {', '.join(SPLITS)}")
    kept = count - round(count * fraction)
    return torch.arange(kept), torch.arange(kept, count)


# --------------------------------------------------------------------------- built-in patterns

# A pattern's mask, from the rows and columns inside its patch, the patch's side and the stroke
# width (1 or 2 pixels), all int tensors that broadcast together.
Mask = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]

# Pattern masks by class. Each is left-right symmetric up to a shift, so a horizontal flip keeps
# the class. The first four are textures, each at two scales (the stroke width), told apart by
# small filters; the others are shapes drawn at every patch size, which need a view of the whole
# patch: a ring, a diamond and a solid square look alike in most 3 x 3 windows.
PATTERNS: dict[str, Mask] = {
    "stripes": lambda r, c, s, w: r // w % 2 == 0,
    "columns": lambda r, c, s, w: c // w % 2 == 0,
    "checker": lambda r, c, s, w: (r // w + c // w) % 2 == 0,
    "dots": lambda r, c, s, w: (r % (3 * w) < w) & (c % (3 * w) < w),
    "ring": lambda r, c, s, w: torch.minimum(torch.minimum(r, c), torch.minimum(s - 1 - r, s - 1 - c)) < w,
    "plus": lambda r, c, s, w: ((2 * r - s + 1).abs() <= w) | ((2 * c - s + 1).abs() <= w),
    "cross": lambda r, c, s, w: ((r - c).abs() < w) | ((r + c - s + 1).abs() < w),
    "diamond": lambda r, c, s, w: ((2 * r - s + 1).abs() + (2 * c - s + 1).abs() - s + 1).abs() < 2 * w,
    "triangle": lambda r, c, s, w: (2 * c - s + 1).abs() <= r,
    "solid": lambda r, c, s, w: r >= 0,
}
NOISE = 0.08            # standard deviation of the pixel noise, on the 0..1 scale
DISTRACTED = 0.5        # share of the images with a distractor patch of random pixels
SIDES = (1 / 2, 3 / 4)  # the smallest and largest patch side, as shares of the image side
WIDTHS = (1, 2)         # the thinnest and thickest stroke, in pixels


def builtin_images(size: int, classes: int, train: int, test: int, seed: int) -> ImageData:
    """Patterned patches of random position, size, stroke and colour, some over a distractor,
    deterministic from `seed`.

    Each image holds one square patch of its class's pattern (PATTERNS) at a random position, side
    (SIDES: 1/2 to 3/4 of the image) and stroke width (1 or 2 pixels), in a random colour on a
    background of another random colour, plus noise. In half of the images (DISTRACTED) a patch of
    random pixels in a third colour lies beneath it and shows through the pattern's gaps, so that
    edge density or a colour blob does not tell the class. Nothing but the pattern depends on the
    class, so every class has the same mean image and a linear model of the pixels stays near
    chance. Seeing through the variation (scale, stroke, clutter) takes several layers of
    features, and the shapes a wide receptive field, so retrained micro cells reach clearly
    different accuracies (`python -m benchmarks.image_spread`).
    """
    if not 2 <= classes <= len(PATTERNS) or size < 8:
        raise UserError(f"builtin images need 2..{len(PATTERNS)} classes and at least 8 pixels, "
                        f"got {classes} classes of {size} pixels")
    names = tuple(PATTERNS)[:classes]
    images, labels = _paint(names, size, train + test, torch.Generator().manual_seed(seed))
    return ImageData(images[:train], labels[:train], images[train:], labels[train:], names)


def _paint(names: tuple[str, ...], size: int, count: int, generator: torch.Generator
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """`count` images (N, 3, size, size) uint8 of the patterns `names`, labels balanced."""
    labels = (torch.arange(count) % len(names))[torch.randperm(count, generator=generator)]
    background = torch.rand(count, 3, 1, 1, generator=generator)
    # The distractor: random pixels in a random colour over a random patch, in some images only.
    _, _, _, inside = _patch(size, count, generator)
    shown = torch.rand(count, 1, 1, 1, generator=generator) < DISTRACTED
    speckle = torch.rand(count, 1, size, size, generator=generator) < 0.5
    pixels = torch.where(inside & shown & speckle, torch.rand(count, 3, 1, 1, generator=generator), background)
    # The pattern on top, in the background's colour shifted by 0.25..0.75 per channel (mod 1):
    # always visible, and uniformly distributed like it, so neither colour tells the class.
    rows, cols, side, inside = _patch(size, count, generator)
    width = torch.randint(WIDTHS[0], WIDTHS[1] + 1, (count, 1, 1, 1), generator=generator)
    drawn = torch.zeros_like(inside)
    for label, name in enumerate(names):
        rows_of = labels == label
        drawn[rows_of] = PATTERNS[name](rows[rows_of], cols[rows_of], side[rows_of], width[rows_of])
    colour = (background + 0.25 + 0.5 * torch.rand(count, 3, 1, 1, generator=generator)) % 1.0
    pixels = torch.where(inside & drawn, colour, pixels)
    pixels = pixels + NOISE * torch.randn(pixels.shape, generator=generator)
    return (pixels.clamp(0, 1) * 255).round().to(torch.uint8), labels


def _patch(size: int, count: int, generator: torch.Generator
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A random square patch per image: each pixel's row and column inside it (N, 1, H, W), the
    patch's side (N, 1, 1, 1), and which pixels it covers (N, 1, H, W)."""
    low, high = round(SIDES[0] * size), round(SIDES[1] * size)
    side = torch.randint(low, high + 1, (count, 1, 1, 1), generator=generator)
    corner = (torch.rand(count, 2, generator=generator) * (size - side.view(count, 1) + 1)).long()
    rows = (torch.arange(size).view(1, 1, size, 1) - corner[:, 0].view(count, 1, 1, 1)).expand(-1, -1, -1, size)
    cols = (torch.arange(size).view(1, 1, 1, size) - corner[:, 1].view(count, 1, 1, 1)).expand(-1, -1, size, -1)
    inside = (rows >= 0) & (rows < side) & (cols >= 0) & (cols < side)
    return rows, cols, side, inside


# --------------------------------------------------------------------------- preprocessing


def channel_stats(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and standard deviation of uint8 images (N, C, H, W) on the 0..1 scale."""
    mean = torch.zeros(images.shape[1], dtype=torch.float64)
    square = torch.zeros_like(mean)
    for chunk in images.split(4096):  # in chunks: a float copy of all of CIFAR-10 would take 600 MB
        pixels = chunk.to(torch.float64).div_(255).transpose(0, 1).flatten(1)
        mean += pixels.sum(1)
        square += pixels.pow(2).sum(1)
    count = images.numel() / images.shape[1]
    mean /= count
    std = (square / count - mean.pow(2)).clamp_min(1e-12).sqrt()
    return mean.float(), std.float()


def normalise(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 (B, C, H, W) -> float (B, C, H, W), each channel standardised with the train statistics."""
    return (images.float().div_(255) - mean[:, None, None]) / std[:, None, None]


def augment(x: torch.Tensor, crop: bool, cutout: int) -> torch.Tensor:
    """The paper's training augmentation of a normalised batch (B, C, H, W): random crop after
    4-pixel zero padding, horizontal flip, and cutout (DeVries & Taylor 2017) of a `cutout`-pixel
    square centred anywhere in the image. Random numbers are drawn on the batch's device (nothing
    waits for a copy from the host), from torch's global generator there, whose state every
    checkpoint keeps."""
    batch, _, height, width = x.shape
    device = x.device
    if crop:
        offsets = torch.randint(0, 2 * PAD + 1, (batch, 2), device=device)
        flips = torch.rand(batch, device=device) < 0.5
        padded = F.pad(x, (PAD, PAD, PAD, PAD))
        rows = (offsets[:, :1] + torch.arange(height, device=device))[:, None, :, None]
        cols = offsets[:, 1:] + torch.arange(width, device=device)
        cols = torch.where(flips[:, None], cols.flip(1), cols)[:, None, None, :]
        x = padded[torch.arange(batch, device=device)[:, None, None, None],
                   torch.arange(x.shape[1], device=device)[None, :, None, None], rows, cols]
    if cutout:
        centres = torch.rand(batch, 2, device=device)
        row_starts = (centres[:, :1] * height).long() - cutout // 2
        col_starts = (centres[:, 1:] * width).long() - cutout // 2
        inside_rows = (torch.arange(height, device=device) - row_starts).clamp_min(-1) // cutout == 0
        inside_cols = (torch.arange(width, device=device) - col_starts).clamp_min(-1) // cutout == 0
        x = x * ~(inside_rows[:, None, :, None] & inside_cols[:, None, None, :])
    return x
