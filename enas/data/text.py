"""Data for the search: text corpora (a PTB-format folder or a built-in generated language) and
the batching that turns a token stream into truncated-backprop windows.

The built-in language is a second-order Markov chain whose entropy rate is computed exactly, so
the tool can report the best perplexity any model could reach (`Corpus.floor_ppl`).
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch

from enas.errors import UserError

EOS = "<eos>"
UNK = "<unk>"

# The two accepted file-name conventions of a text folder, in order of preference.
TEXT_SPLIT_FILES: tuple[tuple[str, str, str], ...] = (
    ("ptb.train.txt", "ptb.valid.txt", "ptb.test.txt"),
    ("train.txt", "valid.txt", "test.txt"),
)

# Probability of drawing the next built-in token from the global Zipfian distribution instead of
# the context's preferred successors; it makes every transition possible, hence the chain
# irreducible and aperiodic, so the stationary distribution is unique.
TEXT_MIX_PROB = 0.05
# The transition table holds V**3 float64 entries: 256 -> 128 MiB, beyond that it is too big.
MAX_BUILTIN_VOCAB = 256
_STATIONARY_TOL = 1e-13
_STATIONARY_MAX_ITERS = 100_000


@dataclass(frozen=True, eq=False)  # eq=False: comparing tensor fields with == is ambiguous
class Corpus:
    """A tokenised text corpus: three 1-D int64 id streams over one vocabulary."""

    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor
    vocab: tuple[str, ...]
    floor_ppl: float | None  # exp(entropy rate in nats) of the generating source; None for real text
    oov: dict[str, float] = field(default_factory=dict)  # split -> share of its words mapped to <unk>

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)


# --------------------------------------------------------------------------- text folder


def _expected_text_files() -> str:
    return " or ".join(", ".join(names) for names in TEXT_SPLIT_FILES)


def _text_split_paths(root: Path) -> tuple[Path, Path, Path]:
    if not root.is_dir():
        raise UserError(
            f"text dataset folder {root} does not exist; "
            f"expected a folder holding {_expected_text_files()}"
        )
    for names in TEXT_SPLIT_FILES:
        train, valid, test = (root / name for name in names)
        if train.is_file() and valid.is_file() and test.is_file():
            return train, valid, test
    raise UserError(
        f"text dataset folder {root} lacks its split files; expected {_expected_text_files()}"
    )


def _read_text_words(path: Path) -> list[str]:
    """All words of a file, one sentence per line, with `<eos>` closing every line."""
    try:
        text = path.read_text(encoding="utf-8-sig")   # a byte-order mark is not part of the first word
    except UnicodeDecodeError as err:
        raise UserError(f"text file {path} is not valid UTF-8 ({err.reason} at byte {err.start})") from err
    if not text.strip():
        raise UserError(f"text file {path} is empty; it needs one whitespace-tokenised sentence per line")
    words: list[str] = []
    for line in text.splitlines():
        words.extend(line.split())
        words.append(EOS)
    return words


def text_vocab(train: list[str], others: list[list[str]], max_vocab: int = 0, min_count: int = 1) -> dict[str, int]:
    """The vocabulary of the training words: those seen at least `min_count` times, the
    `max_vocab` most frequent of them (0: all), `<eos>` always. `<unk>` joins, within
    `max_vocab`, once a word of any split is left out. Ids follow the first appearance in train,
    so that a corpus like PTB, whose splits need no `<unk>` beyond its own, keeps its ids."""
    counts = Counter(train)
    order = {word: index for index, word in enumerate(dict.fromkeys(train))}
    kept = [word for word in order if counts[word] >= min_count or word == EOS]
    if max_vocab and len(kept) > max_vocab:
        kept = _most_frequent(kept, counts, order, max_vocab - (UNK not in kept))
    known = set(kept)
    if UNK not in known and (len(known) < len(order) or any(w not in known for words in others for w in words)):
        kept.append(UNK)
    kept.sort(key=lambda word: order.get(word, len(order)))
    return {word: index for index, word in enumerate(kept)}


def _most_frequent(words: list[str], counts: Counter, order: dict[str, int], n: int) -> list[str]:
    """The n most frequent of `words` (ties: first appearance), `<eos>` and a present `<unk>` among them."""
    ranked = sorted(words, key=lambda word: (word not in (EOS, UNK), -counts[word], order[word]))
    return ranked[:n]


def _encode_text(words: list[str], vocab: dict[str, int]) -> tuple[torch.Tensor, float]:
    """The ids of `words`, and the share of them that are not in the vocabulary (mapped to <unk>)."""
    unk = vocab.get(UNK)
    ids = [vocab.get(word, unk) for word in words]
    missing = sum(word not in vocab for word in words)
    return torch.tensor(ids, dtype=torch.int64), missing / len(words)


def load_text_folder(root: str | Path, max_vocab: int = 0, min_count: int = 1) -> Corpus:
    """Load a PTB-format folder; the vocabulary comes from the train split (`text_vocab`) and any
    other word becomes `<unk>`."""
    paths = dict(zip(("train", "valid", "test"), _text_split_paths(Path(root))))
    words = {split: _read_text_words(path) for split, path in paths.items()}
    vocab = text_vocab(words["train"], [words["valid"], words["test"]], max_vocab, min_count)
    encoded = {split: _encode_text(split_words, vocab) for split, split_words in words.items()}
    return Corpus(**{split: ids for split, (ids, _) in encoded.items()}, vocab=tuple(vocab), floor_ppl=None,
                  oov={split: share for split, (_, share) in encoded.items()})


# --------------------------------------------------------------------------- built-in text


@dataclass(frozen=True, eq=False)
class TextChain:
    """A second-order Markov chain over tokens: probs[a, b, c] = P(next = c | previous two = a, b)."""

    probs: torch.Tensor  # (V, V, V) float64, rows sum to one
    stationary: torch.Tensor  # (V, V) float64: stationary probability of each (a, b) pair
    entropy_rate: float  # nats per token


def _zipf(vocab_size: int) -> torch.Tensor:
    ranks = torch.arange(1, vocab_size + 1, dtype=torch.float64)
    return (1.0 / ranks) / (1.0 / ranks).sum()


def _text_transitions(vocab_size: int, branching: int, generator: torch.Generator) -> torch.Tensor:
    zipf = _zipf(vocab_size)
    contexts = vocab_size * vocab_size
    successors = torch.multinomial(
        zipf.expand(contexts, vocab_size), branching, replacement=False, generator=generator
    )
    # Normalised unit exponentials are a Dirichlet(1, ..., 1) draw.
    weights = torch.empty(contexts, branching, dtype=torch.float64).exponential_(generator=generator)
    preferred = torch.zeros(contexts, vocab_size, dtype=torch.float64)
    preferred.scatter_(1, successors, weights / weights.sum(1, keepdim=True))
    probs = (1.0 - TEXT_MIX_PROB) * preferred + TEXT_MIX_PROB * zipf
    return probs.view(vocab_size, vocab_size, vocab_size)


def _pair_stationary(probs: torch.Tensor) -> torch.Tensor:
    """Stationary distribution over pairs by power iteration: pair (a, b) moves to (b, c)."""
    vocab_size = probs.shape[0]
    pi = torch.full((vocab_size, vocab_size), 1.0 / vocab_size**2, dtype=torch.float64)
    for _ in range(_STATIONARY_MAX_ITERS):
        nxt = torch.einsum("ab,abc->bc", pi, probs)
        nxt /= nxt.sum()  # keep rounding drift from accumulating
        if (nxt - pi).abs().sum().item() < _STATIONARY_TOL:
            return nxt
        pi = nxt
    raise RuntimeError("power iteration for the text chain's stationary distribution did not converge")


def make_text_chain(vocab_size: int, branching: int, generator: torch.Generator) -> TextChain:
    """Draw a random chain: each context prefers `branching` Zipf-drawn successors."""
    probs = _text_transitions(vocab_size, branching, generator)
    stationary = _pair_stationary(probs)
    row_entropy = -torch.special.xlogy(probs, probs).sum(-1)
    return TextChain(probs, stationary, float((stationary * row_entropy).sum()))


def sample_text_chain(chain: TextChain, length: int, generator: torch.Generator) -> torch.Tensor:
    """A 1-D int64 run of `length` tokens starting from the stationary pair distribution."""
    vocab_size = chain.probs.shape[0]
    start = int(torch.multinomial(chain.stationary.flatten(), 1, generator=generator))
    a, b = divmod(start, vocab_size)
    # Sampling is inherently sequential; plain Python lists and bisect keep a step cheap.
    cdf_rows = chain.probs.cumsum(-1).view(vocab_size * vocab_size, vocab_size).tolist()
    uniforms = torch.rand(max(length - 2, 0), dtype=torch.float64, generator=generator).tolist()
    tokens = [a, b]
    last = vocab_size - 1  # clamp: rounding can leave a row's final cumulative value below u
    for u in uniforms:
        a, b = b, min(bisect.bisect_right(cdf_rows[a * vocab_size + b], u), last)
        tokens.append(b)
    return torch.tensor(tokens[:length], dtype=torch.int64)


def _check_builtin_args(vocab_size: int, branching: int, token_counts: dict[str, int]) -> None:
    if not 2 <= vocab_size <= MAX_BUILTIN_VOCAB:
        raise UserError(f"builtin text vocab_size is {vocab_size}; it must lie in 2..{MAX_BUILTIN_VOCAB}")
    if not 1 <= branching <= vocab_size:
        raise UserError(f"builtin text branching is {branching}; it must lie in 1..vocab_size ({vocab_size})")
    for name, count in token_counts.items():
        if count < 1:
            raise UserError(f"builtin text {name} is {count}; it must be a positive token count")


def builtin_text(
    vocab_size: int, branching: int, train_tokens: int, valid_tokens: int, test_tokens: int, seed: int
) -> Corpus:
    """A generated corpus with a known floor perplexity; valid and test continue the train run."""
    _check_builtin_args(
        vocab_size,
        branching,
        {"train_tokens": train_tokens, "valid_tokens": valid_tokens, "test_tokens": test_tokens},
    )
    generator = torch.Generator().manual_seed(seed)
    chain = make_text_chain(vocab_size, branching, generator)
    stream = sample_text_chain(chain, train_tokens + valid_tokens + test_tokens, generator)
    train, valid, test = stream.split([train_tokens, valid_tokens, test_tokens])
    return Corpus(
        train=train.clone(),  # clones so each split owns its storage rather than viewing the run
        valid=valid.clone(),
        test=test.clone(),
        vocab=tuple(f"w{index}" for index in range(vocab_size)),
        floor_ppl=math.exp(chain.entropy_rate),
    )


def unigram_ppl(corpus: Corpus) -> float:
    """Test perplexity under the add-one-smoothed unigram distribution of train: the naive baseline."""
    counts = torch.bincount(corpus.train, minlength=corpus.vocab_size).to(torch.float64) + 1.0
    log_probs = counts.log() - counts.sum().log()
    return math.exp(-log_probs[corpus.test].mean().item())


# --------------------------------------------------------------------------- batching


def batchify(tokens: torch.Tensor, batch_size: int, split: str = "text") -> torch.Tensor:
    """(T, B) layout: column b is a contiguous stretch of `tokens`; the remainder is dropped.

    `split` only names the data in the error raised when it is too short.
    """
    if batch_size < 1:
        raise UserError(f"batch size is {batch_size}; it must be at least 1")
    rows = tokens.numel() // batch_size
    if rows < 2:  # a window needs an input row and the target row after it
        raise UserError(
            f"the {split} split has {tokens.numel()} tokens, too few for batch size {batch_size} "
            f"(needs at least {2 * batch_size}); lower the batch size or use a larger split"
        )
    return tokens[: rows * batch_size].view(batch_size, rows).t().contiguous()
