"""Image classification as a search task: batches, training loss, reward and accuracy.

The same interface as the text task (`Task`), so search, derive and retrain run the convolutional
spaces unchanged. A model (`Model`: the supernet bound to an architecture, or a child) maps images
(B, C, H, W) to logits (B, K) and auxiliary logits (B, K) or None.

Splits: search trains on the first part of the training set and validates on the rest (the last
`data.valid_fraction`, 5,000 of CIFAR-10's 50,000 as in the official code; or, with
`data.split=nb201`, a seeded random half, NAS-Bench-201's 25,000 / 25,000); retrain trains on all
of it, as the paper's final CIFAR-10 training does, and its validation split is the test set. Data
with a validation split of its own (an image folder's valid/) keeps it apart from training in both:
search trains on the whole training set and validates on it, and retrain picks its best epoch on it,
so that the test set is only ever scored, never chosen by.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from enas.config import Config, TrainConfig
from enas.console import Reporter
from enas.data.config import DataConfig
from enas.data.image_folder import cache_folder, load_image_folder
from enas.data.images import ImageData, augment, builtin_images, channel_stats, load_cifar10, normalise, split_rows
from enas.data.torchvision_sets import load_torchvision
from enas.errors import UserError
from enas.folder.atomic import write_text
from enas.folder.loading import read_text_file
from enas.folder.names import CLASSES_FILE
from enas.run.distributed import World
from enas.spaces import build_space
from enas.spaces.base import ImageShape, Model


def load_images(cfg: DataConfig, reporter: Reporter | None = None) -> ImageData:
    """The image dataset a config names; `reporter` shows the progress of a long decoding."""
    if cfg.name == "cifar10":
        return load_cifar10(cfg.root)
    if cfg.name == "image_folder":
        return load_image_folder(cfg.root, cache_folder(cfg.cache), reporter)
    if cfg.name == "torchvision":
        return load_torchvision(cfg.dataset, cfg.root)
    return builtin_images(cfg.image_size, cfg.classes, cfg.train_images, cfg.test_images, cfg.seed)


class ImageTask:
    """Classification of uint8 images normalised with the training split's channel statistics."""

    metric = "acc"
    lower_is_better = False
    final_layout_differs = False

    def __init__(self, config: Config, train: TrainConfig, hold_out: bool, data: ImageData | None = None,
                 reporter: Reporter | None = None, shard: World = World()):
        """`hold_out`: without a validation split of the data's own, validate on the end of the
        training set (search) rather than the test set (retrain). `shard`: this rank trains on
        images rank*B .. rank*B + B - 1 of the size*B that make a training batch of the whole job
        (B = batch_size); validation and test are whole on every rank."""
        self.shard = shard
        data = data if data is not None else load_images(config.data, reporter)
        self.train_cfg, self.bn_batches = train, config.derive.bn_batches
        self.calibrate_rewards = config.controller.calibrate_rewards
        self.reward_bn = config.controller.reward_bn
        # of the batches, as training.place lays out the weights
        self.memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        if hold_out and data.valid is not None and config.data.split == "nb201":
            raise UserError("data.split=nb201 halves the training set, but this image folder has a valid/ split "
                            "of its own; remove valid/ or use data.split=tail")
        rows = split_rows(len(data.train), config.data.split, config.data.valid_fraction) \
            if hold_out and data.valid is None else None
        splits = _splits(data, rows)
        self.images = {split: images for split, (images, _) in splits.items()}
        self.labels = {split: labels for split, (_, labels) in splits.items()}
        self.valid_is_test = data.valid is None and (rows is None or len(rows[1]) == 0)
        for split in ("train", "valid"):
            if len(self.images[split]) < 2:
                raise UserError(f"the {split} split has {len(self.images[split])} images; it needs at least 2 "
                                "(raise data.valid_fraction or use more images)")
        kept = len(self.images["train"])
        if kept < train.batch_size * shard.size:
            raise UserError(f"the train split has {kept} images, fewer than one batch of {train.batch_size} "
                            f"for each of {shard.size} process(es); lower the batch size")
        self.mean, self.std = channel_stats(self.images["train"])
        self.class_names = data.classes
        self.classes = len(data.classes)
        self._order = torch.arange(kept)
        self.shape = ImageShape(data.train.shape[1], data.train.shape[2], data.train.shape[3], self.classes)
        steps = train.epochs * (train.steps_per_epoch or self.batches("train"))
        self.space = build_space(config, self.shape, steps)

    def to(self, device: torch.device) -> ImageTask:
        self.images = {split: images.to(device) for split, images in self.images.items()}
        self.labels = {split: labels.to(device) for split, labels in self.labels.items()}
        self.mean, self.std = self.mean.to(device), self.std.to(device)
        return self

    def batches(self, split: str) -> int:
        """Training drops the last partial batch (batch norm needs several images); evaluation keeps it."""
        count, size = len(self.images[split]), self.train_cfg.batch_size
        return count // (size * self.shard.size) if split == "train" else -(-count // size)

    def _batch(self, split: str, rows: torch.Tensor | slice, augmented: bool = False
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised images (augmented as the training config says, if `augmented`) in the
        models' memory layout, and their labels."""
        images = normalise(self.images[split][rows], self.mean, self.std)
        if augmented:
            images = augment(images, self.train_cfg.augment, self.train_cfg.cutout)
        return images.contiguous(memory_format=self.memory_format), self.labels[split][rows]

    def start_epoch(self, generator: torch.Generator) -> None:
        """A fresh order of the training images, drawn from `generator` (on the CPU) and kept beside
        the images, so that a step's batch is gathered without a copy from the host."""
        self._order = torch.randperm(len(self.images["train"]), generator=generator).to(self.images["train"].device)

    def state_dict(self) -> dict:
        return {"order": self._order}

    def load_state_dict(self, state: dict) -> None:
        self._order = state["order"].to(self.images["train"].device)

    def train_loss(self, model: Model, index: int) -> torch.Tensor:
        """Cross-entropy (plus the weighted auxiliary loss) of training step `index`, augmented.

        `index` counts steps since the start of training; it wraps around the split."""
        size = self.train_cfg.batch_size
        start = ((index % self.batches("train")) * self.shard.size + self.shard.rank) * size
        images, labels = self._batch("train", self._order[start:start + size], augmented=True)
        logits, aux = model(images)
        loss = F.cross_entropy(logits, labels)
        if aux is not None:
            loss = loss + self.space.aux_weight * F.cross_entropy(aux, labels)
        return loss

    @torch.no_grad()
    def reward(self, model: Model, index: int, batches: int = 1) -> float:
        """ENAS image reward: accuracy on validation batches index .. index + batches - 1 with the
        shared weights.

        The search loop puts the supernet in eval mode for the controller phase, but its running
        batch-norm statistics mix every architecture trained so far and fit none of them. Like the
        official micro code (micro_child.py:804 forces is_training=True), batch norm here normalises
        with each batch's own statistics; dropout stays off, so the reward is not noisier than it must
        be. With `controller.reward_bn` moving the batches run in eval mode on those running
        statistics, as the official macro reward does (general_child.py:691, is_training=False).
        With `controller.calibrate_rewards` the architecture's own statistics are recomputed first
        (`calibrate`) and the batches run in eval mode, as derive scores a candidate.
        """
        size = self.train_cfg.batch_size
        full_batches = max(1, len(self.images["valid"]) // size)  # a partial batch is a poorer statistic
        if self.calibrate_rewards:
            self.calibrate(model)
        # momentum 0: the running statistics stay untouched
        eval_mode = self.calibrate_rewards or self.reward_bn == "moving"
        normalisation = nullcontext() if eval_mode else batch_statistics(model.module, momentum=0.0)
        correct = 0.0
        with normalisation:
            for batch in range(index, index + batches):
                start = (batch % full_batches) * size
                images, labels = self._batch("valid", slice(start, start + size))
                logits, _ = model(images)
                correct += (logits.argmax(1) == labels).float().mean().item()
        return correct / batches

    def keep_data(self, folder: Path) -> str:
        """The class names, one a line in label order, in `folder`/classes.txt: written on the
        folder's first run, compared on every later one, since a network's outputs mean those
        classes in that order. Returns "": nothing about image data needs saying."""
        path, names = folder / CLASSES_FILE, "".join(f"{name}\n" for name in self.class_names)
        if not path.exists():
            write_text(path, names)
        elif read_text_file(path, "the class names, one a line") != names:
            raise UserError(f"the images at data.root have other classes than {path} lists: the data has changed "
                            f"since this folder's run began; point data.root at that run's data")
        return ""

    def other_units(self, value: float) -> dict[str, float]:
        """Accuracy is the one unit."""
        return {}

    @torch.no_grad()
    def calibrate(self, model: Model) -> None:
        """Recompute the batch-norm statistics of `model`'s architecture on the first
        `derive.bn_batches` training batches (unaugmented), before it is scored in eval mode."""
        for norm in _batch_norms(model.module):
            norm.reset_running_stats()
        size = self.train_cfg.batch_size
        with batch_statistics(model.module, momentum=None):  # None: a plain average over the batches
            for index in range(min(self.bn_batches, self.batches("train"))):
                model(self._batch("train", slice(index * size, (index + 1) * size))[0])

    def lr_scale(self, index: int) -> float:
        """Every batch trains at the epoch's learning rate."""
        return 1.0

    @torch.no_grad()
    def evaluate(self, model: Model, split: str, max_batches: int = 0, final: bool = False) -> float:
        """Accuracy over the split (or its first `max_batches` batches), in the model's current mode;
        a final score is taken as any other."""
        correct, count, size = 0, 0, self.train_cfg.batch_size
        limit = self.batches(split) if max_batches == 0 else min(max_batches, self.batches(split))
        for index in range(limit):
            images, labels = self._batch(split, slice(index * size, (index + 1) * size))
            logits, _ = model(images)
            correct += int((logits.argmax(1) == labels).sum())
            count += len(labels)
        return correct / count

    def describe(self) -> dict[str, float]:
        """Reference figures printed beside a model's accuracy."""
        return {"chance_acc": 1.0 / self.classes}


def _splits(data: ImageData, rows: tuple[torch.Tensor, torch.Tensor] | None
            ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Images and labels of train, valid and test: valid is the data's own valid split where it has
    one, else the training rows `rows` holds out (`split_rows`), else (none held out) the test split."""
    train, valid = (data.train, data.train_labels), (data.test, data.test_labels)
    if data.valid is not None:
        valid = data.valid, data.valid_labels
    elif rows is not None and len(rows[1]):
        kept, held = rows
        train, valid = (data.train[kept], data.train_labels[kept]), (data.train[held], data.train_labels[held])
    return {"train": train, "valid": valid, "test": (data.test, data.test_labels)}


def _batch_norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@contextmanager
def batch_statistics(model: nn.Module, momentum: float | None) -> Iterator[None]:
    """Batch norm in training mode (normalising with batch statistics, updating the running ones
    with `momentum`), everything else as it was; restored on exit."""
    norms = _batch_norms(model)
    saved = [(m.training, m.momentum) for m in norms]
    for m in norms:
        m.train()
        m.momentum = momentum
    try:
        yield
    finally:
        for m, (training, old) in zip(norms, saved):
            m.train(training)
            m.momentum = old
