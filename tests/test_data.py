"""Tests for enas.data: the text folder loader, the built-in Markov language and batching."""

import math
import os
import time
from pathlib import Path

import pytest
import torch

from enas.config import load_config
from enas.console import Reporter
from enas.data.text import Corpus, batchify, builtin_text, load_text_folder, make_text_chain, unigram_ppl
from enas.errors import UserError
from enas.tasks.text import TextTask

PTB_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "ptb"
SMALL = dict(vocab_size=64, branching=4, train_tokens=60_000, valid_tokens=8_000, test_tokens=8_000)


@pytest.fixture(scope="module")
def small_corpus() -> Corpus:
    return builtin_text(**SMALL, seed=0)


# --------------------------------------------------------------------------- built-in text


def test_builtin_text_is_deterministic_from_its_seed(small_corpus: Corpus) -> None:
    again = builtin_text(**SMALL, seed=0)
    other = builtin_text(**SMALL, seed=1)
    for split in ("train", "valid", "test"):
        assert torch.equal(getattr(small_corpus, split), getattr(again, split))
    assert small_corpus.floor_ppl == again.floor_ppl
    assert not torch.equal(small_corpus.train, other.train)
    assert small_corpus.floor_ppl != other.floor_ppl


def test_builtin_text_shapes_and_vocab(small_corpus: Corpus) -> None:
    assert [len(small_corpus.train), len(small_corpus.valid), len(small_corpus.test)] == [60_000, 8_000, 8_000]
    assert small_corpus.train.dtype == torch.int64
    assert small_corpus.vocab_size == 64
    assert small_corpus.vocab[:3] == ("w0", "w1", "w2")
    assert 0 <= int(small_corpus.train.min()) and int(small_corpus.train.max()) < 64


def test_chain_stationary_distribution_is_stationary() -> None:
    chain = make_text_chain(16, 3, torch.Generator().manual_seed(3))
    assert torch.allclose(chain.probs.sum(-1), torch.ones(16, 16, dtype=torch.float64))
    moved = torch.einsum("ab,abc->bc", chain.stationary, chain.probs)
    assert torch.allclose(moved, chain.stationary, atol=1e-12)


def test_sample_nll_under_true_chain_matches_entropy_rate(small_corpus: Corpus) -> None:
    # builtin_text draws its chain first from the seeded generator, so this rebuilds the same chain.
    chain = make_text_chain(SMALL["vocab_size"], SMALL["branching"], torch.Generator().manual_seed(0))
    assert small_corpus.floor_ppl == pytest.approx(math.exp(chain.entropy_rate))
    run = torch.cat([small_corpus.train, small_corpus.valid, small_corpus.test])
    nll = -chain.probs[run[:-2], run[1:-1], run[2:]].log().mean().item()
    assert nll == pytest.approx(chain.entropy_rate, rel=0.03)


def test_floor_ppl_is_far_below_unigram_ppl(small_corpus: Corpus) -> None:
    assert small_corpus.floor_ppl is not None
    assert small_corpus.floor_ppl * 3 < unigram_ppl(small_corpus)


def test_unigram_ppl_of_uniform_text_is_vocab_size() -> None:
    tokens = torch.arange(4).repeat(10)
    corpus = Corpus(tokens, tokens, tokens, ("a", "b", "c", "d"), None)
    assert unigram_ppl(corpus) == pytest.approx(4.0)


def test_builtin_text_generation_is_fast() -> None:
    start = time.perf_counter()
    builtin_text(**SMALL, seed=5)
    assert time.perf_counter() - start < 2.0


@pytest.mark.parametrize(
    "overrides",
    [dict(vocab_size=1), dict(vocab_size=10_000), dict(branching=0), dict(branching=65), dict(test_tokens=0)],
)
def test_builtin_text_rejects_bad_settings(overrides: dict) -> None:
    with pytest.raises(UserError):
        builtin_text(**{**SMALL, **overrides}, seed=0)


# --------------------------------------------------------------------------- batching


def test_batchify_columns_are_contiguous_and_remainder_dropped() -> None:
    stream = batchify(torch.arange(23), 4)
    assert stream.shape == (5, 4)
    assert torch.equal(stream[:, 1], torch.arange(5, 10))
    assert torch.equal(stream.t().flatten(), torch.arange(20))


def test_batchify_too_short_names_the_split() -> None:
    with pytest.raises(UserError, match="valid split has 7 tokens.*batch size 4"):
        batchify(torch.arange(7), 4, split="valid")


# --------------------------------------------------------------------------- text folder


PTB_NAMES = ("ptb.train.txt", "ptb.valid.txt", "ptb.test.txt")
PLAIN_NAMES = ("train.txt", "valid.txt", "test.txt")
TEXTS = ("the cat sat\n the <unk> ran \n", "the dog sat\n", "cat ran\n")


def _write_split_files(root: Path, names: tuple[str, ...], texts: tuple[str, ...]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in zip(names, texts):
        (root / name).write_text(text, encoding="utf-8")
    return root


@pytest.mark.parametrize("names", [PTB_NAMES, PLAIN_NAMES])
def test_load_text_folder_both_conventions(tmp_path: Path, names: tuple[str, str, str]) -> None:
    corpus = load_text_folder(_write_split_files(tmp_path / "data", names, TEXTS))
    assert corpus.vocab == ("the", "cat", "sat", "<eos>", "<unk>", "ran")
    assert corpus.floor_ppl is None
    assert corpus.train.tolist() == [0, 1, 2, 3, 0, 4, 5, 3]
    assert corpus.valid.tolist() == [0, 4, 2, 3]  # "dog" is not in train: mapped to <unk>
    assert corpus.test.tolist() == [1, 5, 3]


def test_words_outside_the_train_split_become_unk_and_are_counted(tmp_path: Path) -> None:
    root = _write_split_files(tmp_path, PTB_NAMES, ("a b\n", "a zebra\n", "b\n"))
    corpus = load_text_folder(root)
    assert corpus.vocab == ("a", "b", "<eos>", "<unk>")
    assert corpus.valid.tolist() == [0, 3, 2]   # zebra -> <unk>
    assert corpus.oov == {"train": 0.0, "valid": pytest.approx(1 / 3), "test": 0.0}


def test_vocabulary_limits_keep_the_most_frequent_training_words(tmp_path: Path) -> None:
    train = "a a a b b c d\n" * 2 + "e\n"
    root = _write_split_files(tmp_path, PTB_NAMES, (train, "a b c e f\n", "d\n"))
    rare = load_text_folder(root, min_count=2)   # e is seen once
    assert rare.vocab == ("a", "b", "c", "d", "<eos>", "<unk>")
    assert rare.oov["train"] == pytest.approx(1 / 18) and rare.oov["valid"] == pytest.approx(2 / 6)
    top = load_text_folder(root, max_vocab=4)    # <eos>, <unk> and the two most frequent words
    assert top.vocab == ("a", "b", "<eos>", "<unk>") and top.vocab_size == 4
    assert top.test.tolist() == [3, 2]
    assert load_text_folder(root).vocab == ("a", "b", "c", "d", "<eos>", "e", "<unk>")   # f is in valid only


def test_utf8_with_a_byte_order_mark_and_crlf_line_ends_read_as_plain_text(tmp_path: Path) -> None:
    root = tmp_path / "crlf"
    root.mkdir()
    for name, text in zip(PTB_NAMES, ("\ufeffthe cat\r\nthe dog\r\n", "the cat\r\n", "dog\r\n")):
        (root / name).write_bytes(text.encode("utf-8"))
    corpus = load_text_folder(root)
    assert corpus.vocab == ("the", "cat", "<eos>", "dog") and corpus.oov == {"train": 0, "valid": 0, "test": 0}
    (root / PTB_NAMES[2]).write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(UserError, match="not valid UTF-8"):
        load_text_folder(root)


def test_missing_file_error_is_one_line_naming_path_and_files(tmp_path: Path) -> None:
    root = _write_split_files(tmp_path / "partial", PTB_NAMES[:2], TEXTS[:2])
    with pytest.raises(UserError) as info:
        load_text_folder(root)
    message = str(info.value)
    assert "\n" not in message
    assert str(root) in message
    for name in (*PTB_NAMES, *PLAIN_NAMES):
        assert name in message


def test_missing_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist.*ptb.train.txt"):
        load_text_folder(tmp_path / "nowhere")


def test_empty_split_is_an_error(tmp_path: Path) -> None:
    root = _write_split_files(tmp_path, PTB_NAMES, ("a b\n", "a\n", "  \n"))
    with pytest.raises(UserError, match=r"ptb\.test\.txt is empty"):
        load_text_folder(root)


def test_real_ptb_counts() -> None:
    if not PTB_DIR.is_dir():
        pytest.skip(f"real PTB not found at {PTB_DIR}")
    start = time.perf_counter()
    corpus = load_text_folder(PTB_DIR)
    elapsed = time.perf_counter() - start
    assert (len(corpus.train), len(corpus.valid), len(corpus.test)) == (929_589, 73_760, 82_430)
    assert corpus.vocab_size == 10_000
    assert "<unk>" in corpus.vocab and "<eos>" in corpus.vocab
    assert corpus.oov == {"train": 0.0, "valid": 0.0, "test": 0.0}   # PTB's own <unk> covers every split
    assert elapsed < 5.0


# --------------------------------------------------------------------------- characters, the id cache, progress


def test_characters_read_with_an_underscore_between_words_and_eos_ending_each_line(tmp_path: Path) -> None:
    root = _write_split_files(tmp_path, PTB_NAMES, (" ab  c\r\nca b\n", "a_b\n", "cab z\n"))
    corpus = load_text_folder(root, unit="char")
    assert corpus.unit == "char" and corpus.vocab == ("a", "b", "_", "c", "<eos>", "<unk>")
    assert corpus.train.tolist() == [0, 1, 2, 3, 4, 3, 0, 2, 1, 4]
    assert corpus.valid.tolist() == [0, 2, 1, 4]        # a literal _ reads as a word boundary
    assert corpus.test.tolist() == [3, 0, 1, 2, 5, 4]   # z is not in train
    assert corpus.oov["test"] == pytest.approx(1 / 6)


def test_real_ptb_as_characters_is_mikolovs_character_level_ptb() -> None:
    if not PTB_DIR.is_dir():
        pytest.skip(f"real PTB not found at {PTB_DIR}")
    corpus = load_text_folder(PTB_DIR, unit="char")
    # 49 characters (26 letters, N for numbers, _ between words, < and > of <unk>, ...) and <eos>
    assert corpus.vocab_size == 50 and "_" in corpus.vocab and "<eos>" in corpus.vocab
    assert (len(corpus.train), len(corpus.valid), len(corpus.test)) == (5_017_482, 393_042, 442_423)
    assert corpus.oov == {"train": 0.0, "valid": 0.0, "test": 0.0}
    assert "".join(corpus.vocab[i] for i in corpus.train[:12].tolist()) == "aer_banknote"


def test_char_level_scores_are_also_given_in_bits_per_character(tmp_path: Path) -> None:
    root = _write_split_files(tmp_path, PTB_NAMES, ("ab ba\n" * 200, "ab\n" * 40, "ba\n" * 40))
    config = load_config([], ["data.name=text", f"data.root={root}", "data.unit=char", "search.batch_size=4"])
    task = TextTask(config, config.search)
    assert task.other_units(8.0) == {"bpc": 3.0}
    words = load_config([], ["data.name=text", f"data.root={root}", "search.batch_size=4"])
    assert TextTask(words, words.search).other_units(8.0) == {}
    with pytest.raises(UserError, match="data.unit=char reads a text folder"):
        load_config([], ["data.unit=char"])


def test_the_ids_are_cached_and_read_back_while_the_text_is_unchanged(tmp_path: Path) -> None:
    root = _write_split_files(tmp_path / "data", PTB_NAMES, ("a b c\nb c\n", "a c\n", "c b\n"))
    cache = tmp_path / "run" / "tokens.pt"
    first = load_text_folder(root, cache=cache)
    assert cache.is_file()
    again = load_text_folder(root, cache=cache)
    assert again.vocab == first.vocab and again.train.dtype == torch.int64
    assert all(torch.equal(getattr(again, s), getattr(first, s)) for s in ("train", "valid", "test"))
    # The cache is what is read: a file changed to the same size and time is not read again ...
    train = root / PTB_NAMES[0]
    stat = train.stat()
    train.write_text("c c c\nb a\n")
    os.utime(train, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert load_text_folder(root, cache=cache).train.tolist() == first.train.tolist()
    # ... but any other change is, and so is another unit; a broken cache is read from the text again.
    os.utime(train, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert load_text_folder(root, cache=cache).train.tolist() == [0, 0, 0, 1, 2, 3, 1]
    assert load_text_folder(root, unit="char", cache=cache).unit == "char"
    cache.write_bytes(b"not a checkpoint")
    assert load_text_folder(root, cache=cache).vocab == ("c", "<eos>", "b", "a")
    assert torch.load(cache, weights_only=True)["vocab"] == ["c", "<eos>", "b", "a"]


def test_a_large_corpus_shows_its_reading(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    line = " ".join(f"w{i % 97}" for i in range(60)) + "\n"   # 228 bytes
    root = _write_split_files(tmp_path, PTB_NAMES, (line * 40_000, line * 10, line * 10))   # 9 MB
    corpus = load_text_folder(root, reporter=Reporter())
    assert len(corpus.train) == 61 * 40_000
    assert "reading" in capsys.readouterr().err
    load_text_folder(root, reporter=Reporter(quiet=True))
    assert capsys.readouterr().err == ""
