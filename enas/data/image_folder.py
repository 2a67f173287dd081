"""Image folders: `root/train/<class>/*`, an optional `root/valid/<class>/*` and `root/test/<class>/*`,
decoded by worker processes and kept as one tensor file in a cache.

The classes are the train split's folder names, sorted; a label is a class's index among them.
Pillow spends about 50-100 µs on a small image, most of it in Python, so threads gain nothing and
a large folder is decoded in chunks by one process per core. The decoded splits are saved in the
cache folder (`data.cache`) and read back while the folder's file list (names, sizes, modification
times) is unchanged; any change decodes the folder again and replaces the file.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import sys
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from enas.console import Reporter, warn
from enas.data.images import ImageData
from enas.errors import UserError
from enas.folder.atomic import write_file
from enas.folder.loading import Unreadable, load_torch_file, tensor_problem

FOLDER_LAYOUT = "train/<class>/*, optionally valid/<class>/*, and test/<class>/* (png, jpg, ...), all of one size"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
SPLITS = ("train", "valid", "test")    # valid is optional
CACHE_VERSION = 1                      # of the cache file's layout: another version is decoded again
PARALLEL_FROM = 2_000                  # fewer images decode in under a second: no workers, no progress bar
CHUNK = 256                            # images a worker decodes per task


@dataclass(frozen=True)
class Listing:
    """The image files of a folder by split, their labels, and a digest of every file's name, size
    and modification time."""

    classes: tuple[str, ...]
    files: dict[str, list[str]]
    labels: dict[str, list[int]]
    fingerprint: str


def cache_folder(setting: str) -> Path | None:
    """The folder `data.cache` names: "" the per-user cache ($XDG_CACHE_HOME/enas, else
    ~/.cache/enas), "none" no cache."""
    if setting == "none":
        return None
    if setting:
        return Path(setting).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "enas"


def load_image_folder(root: str | Path, cache: Path | None = None, reporter: Reporter | None = None,
                      workers: int = 0) -> ImageData:
    """The images of `root` (FOLDER_LAYOUT), read from `cache` when it holds them as they are now.

    `workers`: decoding processes, 0 for one per core from PARALLEL_FROM images on. The training
    images come in a fixed shuffled order, so that the validation images a search holds out at the
    end of the training set (when there is no valid/) are of every class, as in the CIFAR-10 batches."""
    root = Path(root)
    listing = list_folder(root)
    path = cache / f"image_folder-{hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]}.pt" \
        if cache is not None else None
    splits = read_cache(path, listing) if path is not None else None
    if splits is None:
        splits = decode_listing(listing, root, reporter, workers)
        if path is not None:
            write_cache(path, listing, splits)
    (train, train_labels), (test, test_labels) = splits["train"], splits["test"]
    valid, valid_labels = splits.get("valid", (None, None))
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))
    return ImageData(train[order], train_labels[order], test, test_labels, listing.classes, valid, valid_labels)


# --------------------------------------------------------------------------- the file list


def list_folder(root: Path) -> Listing:
    """Every split's image files in label order, then name order."""
    classes = _class_folders(root / "train", None)
    files: dict[str, list[str]] = {}
    labels: dict[str, list[int]] = {}
    stamps = [f"version {CACHE_VERSION}"]
    for split in SPLITS:
        folder = root / split
        if split == "valid" and not folder.exists():
            continue
        _class_folders(folder, classes)
        files[split], labels[split] = [], []
        for label, name in enumerate(classes):
            for entry in _images_in(folder / name):
                stat = entry.stat()
                stamps.append(f"{split}/{name}/{entry.name}\t{stat.st_size}\t{stat.st_mtime_ns}")
                files[split].append(entry.path)
                labels[split].append(label)
        if not files[split]:
            raise UserError(f"{folder} holds no images; expected {FOLDER_LAYOUT}")
    return Listing(classes, files, labels, hashlib.sha256("\n".join(stamps).encode()).hexdigest())


def _class_folders(folder: Path, classes: tuple[str, ...] | None) -> tuple[str, ...]:
    """The class folders of a split, sorted; those of valid/ and test/ must be among train's `classes`."""
    if not folder.is_dir():
        raise UserError(f"image folder {folder} does not exist; expected {FOLDER_LAYOUT}")
    found = tuple(sorted(d.name for d in folder.iterdir() if d.is_dir()))
    if not found or (classes is not None and set(found) - set(classes)):
        expected = "" if classes is None else f", expected a subset of {list(classes)}"
        raise UserError(f"{folder} has class folders {list(found)}{expected}; layout: {FOLDER_LAYOUT}")
    return found


def _images_in(folder: Path) -> list[os.DirEntry]:
    """The image files of a class folder, by name; none where the class has no folder in this split."""
    if not folder.is_dir():
        return []
    with os.scandir(folder) as entries:
        found = [e for e in entries if e.is_file() and os.path.splitext(e.name)[1].lower() in IMAGE_SUFFIXES]
    return sorted(found, key=lambda e: e.name)


# --------------------------------------------------------------------------- decoding


def decode_listing(listing: Listing, root: Path, reporter: Reporter | None, workers: int
                   ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Images (N, 3, H, W) uint8 and labels (N,) int64 of every split, all files decoded in one pass."""
    paths = [path for split in listing.files for path in listing.files[split]]
    chunks = [paths[start:start + CHUNK] for start in range(0, len(paths), CHUNK)]
    large = len(paths) >= PARALLEL_FROM
    shown = reporter if reporter is not None and large else Reporter(quiet=True)
    progress = shown.phase(f"decoding the {len(paths):,} images of {root}", len(paths))
    arrays: list[np.ndarray] = []
    with _pool(workers or (_cores() if large else 1), len(chunks)) as pool:
        decoded = pool.map(decode_files, chunks)   # forks the workers before the progress bar starts its thread
        with progress as update:
            for chunk, array in zip(chunks, decoded):
                if arrays and array.shape[1:] != arrays[0].shape[1:]:
                    raise UserError(f"image {chunk[0]} is {array.shape[1:3]} pixels, the others "
                                    f"{arrays[0].shape[1:3]}; expected {FOLDER_LAYOUT}")
                arrays.append(array)
                update(advance=len(chunk))
    images = torch.from_numpy(np.concatenate(arrays)).permute(0, 3, 1, 2).contiguous()  # (N, H, W, 3) -> (N, 3, H, W)
    splits, start = {}, 0
    for split, labels in listing.labels.items():
        splits[split] = images[start:start + len(labels)], torch.tensor(labels, dtype=torch.int64)
        start += len(labels)
    return splits


def decode_files(paths: list[str]) -> np.ndarray:
    """Images of one size (N, H, W, 3) uint8, grey and palette images made RGB; a worker's task."""
    arrays = []
    for path in paths:
        try:
            with Image.open(path) as file:
                pixels = np.asarray(file.convert("RGB"))
        except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as error:
            raise UserError(f"cannot decode image {path} ({error})") from None
        if arrays and pixels.shape != arrays[0].shape:
            raise UserError(f"image {path} is {pixels.shape[:2]} pixels, the others {arrays[0].shape[:2]}; "
                            f"expected {FOLDER_LAYOUT}")
        arrays.append(pixels)
    return np.stack(arrays)


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class _Serial:
    """The executor of one worker: the calling process itself."""

    def map(self, function: Callable[[Any], Any], items: Iterable) -> Iterator:
        return map(function, items)

    def __enter__(self) -> _Serial:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def _pool(workers: int, tasks: int) -> Executor | _Serial:
    """Worker processes, forked on Linux (instant: nothing to import; torch's DataLoader does the
    same), spawned elsewhere; the calling process alone for one worker or where none can start."""
    workers = min(workers, tasks)
    if workers <= 1:
        return _Serial()
    context = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
    try:
        return ProcessPoolExecutor(workers, mp_context=context)
    except (OSError, NotImplementedError):   # no semaphores (some sandboxes): decode here
        return _Serial()


# --------------------------------------------------------------------------- the cache


def read_cache(path: Path, listing: Listing) -> dict[str, tuple[torch.Tensor, torch.Tensor]] | None:
    """The cached splits of `listing`, or None when the file is absent or of other files. One that
    is damaged, or holds what the folder cannot give, is a warning, and the folder is decoded again."""
    saved, problem = _load_cache(path, listing)
    if problem:
        warn(f"warning: the image cache {path} is damaged: {problem}; decoding the images again")
    if saved is None:
        return None
    return {split: (saved["images"][split], saved["labels"][split]) for split in listing.files}


def _load_cache(path: Path, listing: Listing) -> tuple[dict[str, Any] | None, str]:
    """What `path` keeps, if it is there and of the folder's files as they are now, and what is wrong with it."""
    if not path.is_file():
        return None, ""
    try:
        saved = load_torch_file(path)
    except Unreadable as error:
        return None, f"it is {error}"
    if not (isinstance(saved, dict) and saved.get("version") == CACHE_VERSION
            and saved.get("fingerprint") == listing.fingerprint and saved.get("classes") == list(listing.classes)):
        return None, ""   # of other files: decoded again, and the cache replaced
    problem = cache_problem(saved, listing)
    return (None, problem) if problem else (saved, "")


def cache_problem(saved: dict[str, Any], listing: Listing) -> str:
    """"" when `saved` holds, for every split of `listing`, one image (3 x H x W, of the first image's
    size) and the class folder's label per file, else what is wrong."""
    images, labels = saved.get("images"), saved.get("labels")
    if not (isinstance(images, dict) and isinstance(labels, dict) and set(images) == set(labels) == set(listing.files)):
        return f"its splits: not the folder's ({', '.join(listing.files)})"
    size = _image_size(listing.files["train"][0])
    for split, files in listing.files.items():
        problem = (tensor_problem(images[split], f"its {split} images", torch.uint8, 4)
                   or tensor_problem(labels[split], f"its {split} labels", torch.int64, 1, len(listing.classes)))
        if problem:
            return problem
        if images[split].shape != (len(files), 3, *size):
            return f"its {split} images: {list(images[split].shape)}, not the folder's {[len(files), 3, *size]}"
        if not torch.equal(labels[split], torch.tensor(listing.labels[split], dtype=torch.int64)):
            return f"its {split} labels: not the class folders of the files"
    return ""


def _image_size(path: str) -> tuple[int, int]:
    """(height, width) of an image, from its header alone; (0, 0) where it cannot be read."""
    try:
        with Image.open(path) as file:
            return file.height, file.width
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
        return 0, 0   # no cache matches: decoding says what is wrong with the file


def write_cache(path: Path, listing: Listing, splits: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Save the decoded splits atomically; a cache that cannot be written is a warning, not a failure."""
    saved = {"version": CACHE_VERSION, "fingerprint": listing.fingerprint, "classes": list(listing.classes),
             "images": {split: images for split, (images, _) in splits.items()},
             "labels": {split: labels for split, (_, labels) in splits.items()}}
    try:
        write_file(path, lambda handle: torch.save(saved, handle))
    except (OSError, RuntimeError) as error:   # torch.save wraps the OSError of a full disk
        warn(f"warning: cannot write the image cache {path} ({error}); the images will be decoded again "
             "next time (data.cache=FOLDER moves the cache, data.cache=none turns it off)")
