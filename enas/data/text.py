"""Data for the search: text corpora (a PTB-format folder or a built-in generated language) and
the batching that turns a token stream into truncated-backprop windows.

The built-in language is a second-order Markov chain whose entropy rate is computed exactly, so
the tool can report the best perplexity any model could reach (`Corpus.floor_ppl`).
"""

from __future__ import annotations

import bisect
import math
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from enas.console import Reporter, warn
from enas.errors import UserError
from enas.folder.atomic import write_file
from enas.folder.loading import Unreadable, load_torch_file, tensor_problem

EOS = "<eos>"
UNK = "<unk>"
SPLITS = ("train", "valid", "test")

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
_PROGRESS_MIN_BYTES = 8_000_000   # a folder this big (about 1.5M words or 8M characters) shows its reading
_PROGRESS_BYTES = 1 << 20          # the bar moves every MiB
_CACHE_VERSION = 1


@dataclass(frozen=True, eq=False)  # eq=False: comparing tensor fields with == is ambiguous
class Corpus:
    """A tokenised text corpus: three 1-D int64 id streams over one vocabulary."""

    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor
    vocab: tuple[str, ...]
    floor_ppl: float | None  # exp(entropy rate in nats) of the generating source; None for real text
    unit: str = "word"       # what a token is: a word, or a character (data.unit=char)
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


def _split_tokens(line: str, unit: str) -> list[str]:
    """The tokens of one line, `<eos>` last: its words, or (unit=char) its characters with `_`
    between words, as Mikolov's character-level PTB writes them."""
    words = line.split()
    return [*("_".join(words) if unit == "char" else words), EOS]


def _read_split(path: Path, unit: str, ids: dict[str, int], advance: Callable[[int], None]) -> torch.Tensor:
    """The tokens of a file, one sentence a line, as int32 ids into `ids` (token -> id in order of
    first appearance, grown as the file is read). One streaming pass: only a line at a time is
    text, so the memory is four bytes a token."""
    out, lookup, read, shown, words = array("i"), ids.__getitem__, 0, 0, 0
    with open(path, "rb") as handle:   # bytes, so that the position is known for progress and errors
        for raw in handle:
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise UserError(f"text file {path} is not valid UTF-8 ({err.reason} at byte {read + err.start})") from None
            if read == 0:
                line = line.removeprefix("\ufeff")   # a byte-order mark is not part of the first word
            tokens = _split_tokens(line, unit)
            try:
                line_ids = list(map(lookup, tokens))
            except KeyError:   # a token seen for the first time
                line_ids = [ids.setdefault(token, len(ids)) for token in tokens]
            out.extend(line_ids)
            words += len(line_ids) - 1
            read += len(raw)
            if read - shown >= _PROGRESS_BYTES:
                advance(read - shown)
                shown = read
    advance(read - shown)
    if words == 0:
        raise UserError(f"text file {path} is empty; it needs one whitespace-tokenised sentence per line")
    return torch.frombuffer(out, dtype=torch.int32)   # shares the array's memory, and keeps it alive


def text_vocab(tokens: list[str], counts: list[int], max_vocab: int = 0, min_count: int = 1) -> list[int]:
    """The vocabulary, as indices into `tokens` (every token of the corpus, in order of first
    appearance in train, then in valid and test; `counts`: how often train has each): the tokens
    seen at least `min_count` times, the `max_vocab` most frequent of them (0: all), `<eos>`
    always. `<unk>` joins, within `max_vocab`, once a token of any split is left out. The order
    stays that of first appearance, so that a corpus like PTB, whose splits need no `<unk>` beyond
    its own, keeps its ids."""
    kept = [i for i, (token, count) in enumerate(zip(tokens, counts)) if count >= min_count or token == EOS]
    unk = tokens.index(UNK) if UNK in tokens and counts[tokens.index(UNK)] >= min_count else None
    if max_vocab and len(kept) > max_vocab:
        # the most frequent (ties: the first seen), <eos> and a kept <unk> first of all
        ranked = sorted(kept, key=lambda i: (tokens[i] not in (EOS, UNK), -counts[i], i))
        kept = sorted(ranked[:max_vocab - (unk is None)])
    if len(kept) < len(tokens) and UNK not in (tokens[i] for i in kept):
        kept.append(tokens.index(UNK) if UNK in tokens else len(tokens))   # len(tokens): a new <unk>, last
    return sorted(kept)


def load_text_folder(root: str | Path, max_vocab: int = 0, min_count: int = 1, unit: str = "word",
                     cache: Path | None = None, reporter: Reporter | None = None) -> Corpus:
    """Load a PTB-format folder, read as words or (unit=char) characters; the vocabulary comes
    from the train split (`text_vocab`) and any other token becomes `<unk>`. With `cache`, the ids
    are kept in that file and read from it while the split files are unchanged."""
    corpus, keep = open_text_folder(root, max_vocab, min_count, unit, cache, reporter)
    keep()
    return corpus


def open_text_folder(root: str | Path, max_vocab: int, min_count: int, unit: str, cache: Path | None,
                     reporter: Reporter | None) -> tuple[Corpus, Callable[[], None]]:
    """The corpus `load_text_folder` gives, and what keeps its ids in `cache` (nothing to do where
    they came from there). A run calls it only once it is accepted, so that a refused one leaves
    no file behind."""
    paths = dict(zip(SPLITS, _text_split_paths(Path(root))))
    source = {"files": [[str(path.resolve()), *_size_and_time(path)] for path in paths.values()],
              "unit": unit, "max_vocab": max_vocab, "min_count": min_count, "version": _CACHE_VERSION}
    if cache is not None and (corpus := _cached_corpus(cache, source)) is not None:
        return corpus, lambda: None
    total = sum(size for _, size, _ in source["files"])
    shown = reporter if reporter and total >= _PROGRESS_MIN_BYTES else Reporter(quiet=True)
    ids: dict[str, int] = {}
    with shown.phase(f"reading {Path(root).name or root} (MB)", round(total / 1e6)) as update:
        mb = _MegabyteCounter(update)
        read = {split: _read_split(path, unit, ids, mb.advance) for split, path in paths.items()}
    corpus = _with_vocab(read, list(ids), unit, max_vocab, min_count)
    return corpus, (lambda: None) if cache is None else (lambda: _write_cache(cache, source, corpus))


def _with_vocab(read: dict[str, torch.Tensor], tokens: list[str], unit: str, max_vocab: int, min_count: int
                ) -> Corpus:
    """The corpus of the splits `read` as ids into `tokens` (every token, in order of first
    appearance), over the vocabulary `text_vocab` keeps; a token left out becomes <unk>."""
    counts = torch.bincount(read["train"], minlength=len(tokens)).tolist()
    kept = text_vocab(tokens, counts, max_vocab, min_count)
    vocab = tuple(tokens[i] if i < len(tokens) else UNK for i in kept)
    # each read id's final id; a token left out goes to <unk> (the vocabulary has one whenever any is)
    remap = torch.full((len(tokens),), vocab.index(UNK) if UNK in vocab else -1, dtype=torch.int64)
    inside = torch.tensor([i for i in kept if i < len(tokens)], dtype=torch.int64)
    remap[inside] = torch.arange(len(inside))   # kept is in vocabulary order, a new <unk> last
    known = torch.zeros(len(tokens), dtype=torch.bool)
    known[inside] = True
    return Corpus(**{split: remap.index_select(0, ids_read) for split, ids_read in read.items()},
                  vocab=vocab, floor_ppl=None, unit=unit,
                  oov={split: 1.0 - known.index_select(0, ids_read).float().mean().item()
                       for split, ids_read in read.items()})


class _MegabyteCounter:
    """Bytes read, passed on to a progress bar counted in whole megabytes."""

    def __init__(self, update: Callable[..., None]):
        self.update, self.bytes = update, 0

    def advance(self, count: int) -> None:
        self.bytes += count
        self.update(completed=round(self.bytes / 1e6))


def _size_and_time(path: Path) -> list[int]:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


def _cached_corpus(cache: Path, source: dict[str, Any]) -> Corpus | None:
    """The corpus kept in `cache` if it was read from exactly these files with these settings. One
    that is damaged, or holds what no text gives, is a warning, and the text is read again."""
    kept, problem = _read_cache(cache, source)
    if problem:
        warn(f"warning: the token cache {cache} is damaged: {problem}; reading the text folder again")
    if kept is None:
        return None
    return Corpus(**{split: kept[split].long() for split in SPLITS}, vocab=tuple(kept["vocab"]), floor_ppl=None,
                  unit=source["unit"], oov=kept["oov"])


def _read_cache(cache: Path, source: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """What `cache` keeps, if it is there and of these files and settings, and what is wrong with it."""
    if not cache.is_file():
        return None, ""
    try:
        kept = load_torch_file(cache)
    except Unreadable as error:
        return None, f"it is {error}"
    if isinstance(kept, dict) and kept.get("source") != source:
        return None, ""   # other files or settings: the text is read again, and the cache replaced
    problem = _cache_problem(kept, [size for _, size, _ in source["files"]])
    return (None, problem) if problem else (kept, "")


def _cache_problem(kept: Any, sizes: list[int]) -> str:
    """"" when `kept` is what `_write_cache` writes for split files of `sizes` bytes, else what is wrong."""
    if not isinstance(kept, dict):
        return f"it holds a {type(kept).__name__}, not a dict"
    vocab, oov = kept.get("vocab"), kept.get("oov")
    if not (isinstance(vocab, list) and vocab and all(isinstance(word, str) for word in vocab)):
        return "its vocab: not a list of words"
    if not (isinstance(oov, dict) and set(oov) <= set(SPLITS)
            and all(isinstance(share, float) and 0.0 <= share <= 1.0 for share in oov.values())):
        return "its oov: not a share per split"
    for split, size in zip(SPLITS, sizes):
        problem = tensor_problem(kept.get(split), f"its {split} split", torch.int32, 1, below=len(vocab))
        if problem:
            return problem
        if not 1 <= kept[split].numel() <= size + 1:   # a token takes a byte at least (a last line's <eos>: none)
            return f"its {split} split: {kept[split].numel()} tokens, impossible for a file of {size} bytes"
    return ""


def _write_cache(cache: Path, source: dict[str, Any], corpus: Corpus) -> None:
    kept = {"source": source, "vocab": list(corpus.vocab), "oov": corpus.oov,
            **{split: getattr(corpus, split).to(torch.int32) for split in SPLITS}}   # half the disk of int64
    write_file(cache, lambda handle: torch.save(kept, handle))


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
