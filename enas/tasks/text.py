"""Language modelling as a search task: batches, training loss, reward and perplexity.

A task hides what differs between data kinds from the search, derive and retrain loops (`Task`).
A model (`Model`: the supernet bound to an architecture, or a child) maps tokens (T, B), a hidden
state (B, H) or None and targets (T, B) to their mean cross-entropy, the last hidden state (B, H)
and the cell outputs (T, B, H), so the same code trains, rewards and scores both.

Training windows are `bptt` long, or of random length (`random_bptt`, AWD-LSTM style: the
step's learning rate follows the length, `lr_scale`). A retrain's final scores may read the
split in another layout (`eval_batch_size`, `eval_bptt`: the paper's test is batch 1, BPTT 1).
"""

from __future__ import annotations

import bisect
import math
from pathlib import Path
from typing import Callable

import torch

from enas.config import Config, RetrainConfig, TrainConfig
from enas.console import Reporter
from enas.data.text import UNK, Corpus, batchify, builtin_text, open_text_folder, unigram_ppl
from enas.errors import UserError
from enas.folder.atomic import write_text
from enas.folder.loading import read_text_file
from enas.folder.names import TOKENS_FILE, VOCAB_FILE
from enas.run.distributed import World
from enas.spaces import build_space
from enas.spaces.base import Model, TextShape


def load_corpus(config: Config, folder: Path | None = None, reporter: Reporter | None = None
                ) -> tuple[Corpus, Callable[[], None]]:
    """The config's corpus, and what keeps a text folder's ids in `folder`/tokens.pt, where they
    are read from while the text is unchanged (nothing to do for built-in text)."""
    data = config.data
    if data.name == "text":
        return open_text_folder(data.root, data.max_vocab, data.min_count, data.unit,
                                folder / TOKENS_FILE if folder else None, reporter)
    return builtin_text(data.vocab_size, data.branching, data.train_tokens, data.valid_tokens,
                        data.test_tokens, data.seed), lambda: None


class TextTask:
    """Truncated-BPTT language modelling on a corpus; the hidden state carries across train windows."""

    metric = "ppl"
    lower_is_better = True
    valid_is_test = False

    def __init__(self, config: Config, train: TrainConfig, corpus: Corpus | None = None,
                 folder: Path | None = None, reporter: Reporter | None = None, shard: World = World()):
        """`shard`: this rank trains on sequences rank*B .. rank*B + B - 1 of the size*B that make
        a training batch of the whole job (B = batch_size); validation and test are whole on every rank."""
        # the ids are cached by keep_data, once the run is accepted: a refused one writes nothing
        self.corpus, self.keep_ids = (corpus, lambda: None) if corpus is not None else \
            load_corpus(config, folder, reporter)
        self.train_cfg = train
        self.reward_constant = config.controller.reward_constant
        size = train.batch_size
        self.streams = {split: batchify(getattr(self.corpus, split), size, split) for split in ("valid", "test")}
        every = batchify(self.corpus.train, size * shard.size, "train")
        self.streams["train"] = every[:, shard.rank * size:(shard.rank + 1) * size].contiguous()
        # the final scores' layout (retrain's eval_batch_size, eval_bptt; the paper's test: 1 and 1)
        eval_batch = train.eval_batch_size if isinstance(train, RetrainConfig) else 0
        self.eval_bptt = (train.eval_bptt if isinstance(train, RetrainConfig) else 0) or train.bptt
        self.final_streams = self.streams if eval_batch in (0, train.batch_size) else {
            split: batchify(getattr(self.corpus, split), eval_batch, split) for split in ("valid", "test")}
        self.final_layout_differs = self.final_streams is not self.streams or self.eval_bptt != train.bptt
        self._hidden: torch.Tensor | None = None
        self._random_windows = RandomWindows(self.streams["train"].shape[0], train.bptt, config.seed,
                                             train.random_bptt_form) if train.random_bptt else None
        self.shape = TextShape(self.corpus.vocab_size)
        self.space = build_space(config, self.shape)

    def to(self, device: torch.device) -> TextTask:
        same = self.final_streams is self.streams
        self.streams = {split: stream.to(device) for split, stream in self.streams.items()}
        self.final_streams = self.streams if same else {
            split: stream.to(device) for split, stream in self.final_streams.items()}
        return self

    def batches(self, split: str) -> int:
        return _windows(self.streams[split], self.train_cfg.bptt)

    def _window(self, split: str, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if split == "train" and self._random_windows is not None:
            start, length = self._random_windows.window(index)
            stream = self.streams[split]
            return stream[start:start + length], stream[start + 1:start + 1 + length]
        return _window(self.streams[split], self.train_cfg.bptt, index)

    def lr_scale(self, index: int) -> float:
        """The learning rate of training step `index`, relative to the epoch's: length/bptt of its
        window under random-length BPTT (a shorter window's gradient counts for less), else 1."""
        if self._random_windows is None:
            return 1.0
        return self._random_windows.window(index)[1] / self.train_cfg.bptt

    def start_epoch(self, generator: torch.Generator) -> None:
        """Text is read in order, so an epoch only resets the carried hidden state."""
        self._hidden = None

    def state_dict(self) -> dict:
        return {"hidden": self._hidden}

    def load_state_dict(self, state: dict) -> None:
        self._hidden = state["hidden"]

    def calibrate(self, model: Model) -> None:
        """Nothing to prepare before scoring: the language models keep no normalisation statistics."""

    def train_loss(self, model: Model, index: int) -> torch.Tensor:
        """Loss of train window `index` (cross-entropy plus activation regularisation).

        `index` counts steps since the start of training; it wraps around the split."""
        inputs, targets = self._window("train", index)
        loss, hidden, outputs = model(inputs, self._hidden, targets)
        self._hidden = hidden.detach()  # truncated BPTT: carry the state, not its history
        cfg = self.train_cfg
        if cfg.ar_alpha > 0:
            loss = loss + cfg.ar_alpha * outputs.pow(2).mean()
        if cfg.tar_beta > 0:
            loss = loss + cfg.tar_beta * (outputs[1:] - outputs[:-1]).pow(2).mean()
        if cfg.weight_decay_form == "quartic":
            loss = loss + cfg.weight_decay * quartic_penalty(model)
        return loss

    @torch.no_grad()
    def reward(self, model: Model, index: int, batches: int = 1) -> float:
        """ENAS text reward: c / perplexity on validation windows index .. index + batches - 1, each
        from a zero state (their mean loss makes the perplexity)."""
        losses = []
        for window in range(index, index + batches):
            inputs, targets = self._window("valid", window)
            losses.append(model(inputs, None, targets)[0].item())
        return self.reward_constant / math.exp(min(sum(losses) / batches, 50.0))

    @torch.no_grad()
    def evaluate(self, model: Model, split: str, max_batches: int = 0, final: bool = False) -> float:
        """Perplexity over the split (or its first `max_batches` windows), state carried throughout;
        `final`: in the final scores' layout (eval_batch_size sequences, eval_bptt windows)."""
        stream = (self.final_streams if final else self.streams)[split]
        bptt = self.eval_bptt if final else self.train_cfg.bptt
        windows = _windows(stream, bptt)
        limit = windows if max_batches == 0 else min(max_batches, windows)
        # Summed on the device: with one-token windows, a host read per window would cost more than the window.
        total, hidden = stream.new_zeros((), dtype=torch.float64), None
        for index in range(limit):
            inputs, targets = _window(stream, bptt, index)
            loss, hidden, _ = model(inputs, hidden, targets)
            total += loss * targets.numel()
        count = min(limit * bptt, stream.shape[0] - 1) * stream.shape[1]
        return math.exp(min(total.item() / count, 50.0))

    def keep_data(self, folder: Path) -> str:
        """The vocabulary, one word a line in id order, in `folder`/vocab.txt: written on the
        folder's first run, compared on every later one; and the ids, in the tokens.pt of the folder
        the task was built with, where they were read from the text. Returns the share of each
        split outside the vocabulary where there is any."""
        path, words = folder / VOCAB_FILE, "".join(f"{word}\n" for word in self.corpus.vocab)
        if not path.exists():
            write_text(path, words)
        elif read_text_file(path, "the vocabulary, a word a line") != words:
            raise UserError(f"the text at data.root gives another vocabulary than {path} holds: the data has changed "
                            f"since this folder's run began; point data.root at that run's data")
        self.keep_ids()
        outside = {split: share for split, share in self.corpus.oov.items() if share > 0}
        return "" if not outside else (f"vocabulary {self.corpus.vocab_size:,} words; mapped to {UNK}: " +
                                       ", ".join(f"{share:.2%} of {split}" for split, share in outside.items()))

    def other_units(self, value: float) -> dict[str, float]:
        """Character-level perplexity as bits per character, log2(ppl), the unit char-level results are given in."""
        return {"bpc": math.log2(value)} if self.corpus.unit == "char" else {}

    def describe(self) -> dict[str, float]:
        """Reference figures printed beside a model's perplexity, and the shares of the valid and test
        words outside the vocabulary (real text)."""
        figures = {"unigram_ppl": unigram_ppl(self.corpus)}
        figures.update((f"oov_{split}", share) for split, share in self.corpus.oov.items() if split != "train")
        if self.corpus.floor_ppl is not None:
            figures["floor"] = self.corpus.floor_ppl  # the best perplexity the source allows
        return figures


def quartic_penalty(model: Model) -> torch.Tensor:
    """sum(w^4) / 2 over the cell weights `model`'s architecture multiplies by: enas_lm's search
    penalty weight_decay * l2_loss(w ** 2) (src/child.py _forward) without the weight decay. enas_lm
    leaves out the first searched node's edge (var_s = [w_prev] + w_skip[1:], an off-by-one kept from
    the old code's w_skip[0] = None); here every used edge counts."""
    module = getattr(model.module, "module", model.module)   # the model inside DistributedDataParallel
    w_x, w_h, edges = module.cell_weights(module.plan_of(model.arch))
    return sum(weight.pow(4).sum() for weight in (w_x, w_h, *edges)) / 2


def _windows(stream: torch.Tensor, bptt: int) -> int:
    """Windows of `bptt` rows in a (T, B) stream (the last one shorter), each with its target row."""
    return math.ceil((stream.shape[0] - 1) / bptt)


def _window(stream: torch.Tensor, bptt: int, index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and targets (L, B) of window `index` (it wraps around the stream)."""
    start = (index % _windows(stream, bptt)) * bptt
    length = min(bptt, stream.shape[0] - 1 - start)
    return stream[start:start + length], stream[start + 1:start + 1 + length]


class RandomWindows:
    """Random-length BPTT windows (Merity et al. 2018, AWD-LSTM; enas_lm). Each window's mean is
    bptt with probability 0.95, else bptt/2; its length is drawn around it (`form`, `_length`).
    The windows tile the stream pass after pass, each pass drawn from a generator seeded by the run
    seed and the pass number, so that the window of every step follows from its index: a resumed
    run draws exactly the same windows."""

    def __init__(self, rows: int, bptt: int, seed: int, form: str = "awd"):
        self.rows, self.bptt, self.seed, self.form = rows, bptt, seed, form
        self.firsts: list[int] = []                   # index of each pass's first window
        self.windows: list[list[tuple[int, int]]] = []  # per pass: (start row, length) of its windows

    def window(self, index: int) -> tuple[int, int]:
        """(start row, length) of training window `index`."""
        while not self.firsts or index >= self.firsts[-1] + len(self.windows[-1]):
            self._draw_pass()
        which = bisect.bisect_right(self.firsts, index) - 1
        return self.windows[which][index - self.firsts[which]]

    def _draw_pass(self) -> None:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + len(self.windows))
        windows, start = [], 0
        while start < self.rows - 1:
            base = self.bptt if torch.rand((), generator=generator) < 0.95 else self.bptt / 2
            length = self._length(base, generator)
            windows.append((start, min(length, self.rows - 1 - start)))
            start += length
        self.firsts.append(self.firsts[-1] + len(self.windows[-1]) if self.windows else 0)
        self.windows.append(windows)

    def _length(self, base: float, generator: torch.Generator) -> int:
        """awd: int(N(base, 5)), at least 5 (AWD-LSTM main.py). enas_lm: int of N(base, 5) redrawn
        outside base +- 10, as tf.random.truncated_normal draws (src/data_utils.py input_producer);
        its cap at bptt + 20 never binds then. At least 1, which enas_lm's bptt 35 never reaches."""
        if self.form == "awd":
            return max(5, int(base + 5 * torch.randn((), generator=generator)))
        deviation = torch.randn((), generator=generator)
        while deviation.abs() > 2:
            deviation = torch.randn((), generator=generator)
        return max(1, int(base + 5 * deviation))
