"""The three commands through the CLI, as a user runs them: real tiny trainings, real files."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from enas.run.metrics import read_metrics, without_wall_clock

ENAS = str(Path(sys.executable).parent / "enas")
PTB = Path(__file__).resolve().parents[2] / "shared" / "data" / "ptb"

TINY = ["data.vocab_size=16", "data.train_tokens=12000", "data.valid_tokens=2000", "data.test_tokens=2000",
        "recurrent.nodes=4", "recurrent.hidden=32", "search.epochs=4", "search.batch_size=8", "search.lr=10",
        "controller.steps=5", "controller.aggregate=4", "derive.samples=6",
        "retrain.epochs=4", "retrain.batch_size=8", "retrain.lr=10", "threads=1"]


def enas(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([ENAS, *args, "--quiet"], capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"enas {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
    return result


@pytest.fixture(scope="module")
def searched(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "tiny"
    result = enas("search", "-o", str(run), *TINY)
    assert f"enas derive {run}" in result.stdout  # tells the user the next command
    return run


def test_search_writes_the_run_folder_and_learns(searched):
    assert (searched / "config.yaml").is_file()
    assert (searched / "checkpoints" / "last.pt").is_file()
    metrics = read_metrics(searched / "metrics.jsonl")
    shared = [m["loss"] for m in metrics if m["phase"] == "supernet"]
    assert len(shared) == 4 and shared[-1] < shared[0] - 0.2      # the supernet learned
    controller = [m for m in metrics if m["phase"] == "controller"]
    assert len(controller) == 4 * 5 and all({"reward", "baseline", "entropy"} <= m.keys() for m in controller)
    evals = [m for m in metrics if m["phase"] == "eval"]
    assert len(evals) == 4 and all(m["valid_ppl"] > 1 for m in evals)


def test_derive_then_retrain_beats_the_unigram_model(searched):
    result = enas("derive", str(searched))
    assert f"enas retrain {searched}" in result.stdout
    arch = json.loads((searched / "arch.json").read_text())
    assert arch["space"] == "recurrent" and arch["format_version"] == 2
    candidates = [json.loads(line) for line in (searched / "candidates.jsonl").read_text().splitlines()]
    assert len(candidates) == 6
    assert arch["valid_ppl"] == min(c["valid_ppl"] for c in candidates)
    assert (searched / "cell.dot").read_text().startswith("digraph")
    assert "h_t = mean(" in (searched / "cell.txt").read_text()

    result = enas("retrain", str(searched))
    out = searched / "retrain"
    summary = json.loads((out / "result.json").read_text())
    assert summary["metric"] == "test_ppl" and summary["params"] > 0
    assert summary["floor"] < summary["value"] < 0.7 * summary["unigram_ppl"]
    assert "floor" in result.stdout
    weights = torch.load(out / "model.pt", weights_only=True)
    assert sum(name.startswith("edges.") for name in weights) == 3   # a 4-node child has 3 edges


def test_retrain_takes_an_official_string_without_a_run(tmp_path):
    out = tmp_path / "fixed"
    enas("retrain", "--arch", "0 0 1 0 2", "-o", str(out), *TINY)
    assert json.loads((out / "result.json").read_text())["arch"] == "0 0 1 0 2"


def test_resumed_search_equals_an_uninterrupted_one(tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    common = [*TINY, "search.epochs=2"]
    enas("search", "-o", str(straight), *common)
    enas("search", "-o", str(resumed), *TINY, "search.epochs=1")
    enas("search", "-o", str(resumed), "--resume", "search.epochs=2")

    def strip(path):
        return without_wall_clock(read_metrics(path / "metrics.jsonl"))

    assert strip(straight) == strip(resumed)
    a = torch.load(straight / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(resumed / "checkpoints" / "last.pt", weights_only=True)
    for key in ("supernet", "controller"):
        assert all(torch.equal(a[key][name], b[key][name]) for name in a[key])


@pytest.mark.parametrize("args, message", [
    (["search", "search.epoch=1"], "did you mean search.epochs?"),
    (["search", "-c", "nope"], "unknown preset 'nope'"),
    (["search", "-c", "ptb"], "data.name=text needs data.root"),
    (["search", "data.name=text", "data.root=/no/such/folder"], "/no/such/folder"),
    (["derive", "/no/such/run"], "is not a run folder"),
    (["retrain", "--arch", "0 1 2", "-c", "default"], "out of range"),
    (["retrain", "--arch", "missing.json"], "does not exist"),
])
def test_user_mistakes_exit_2_with_one_line_and_write_nothing(tmp_path, args, message):
    result = subprocess.run([ENAS, *args, "--quiet"], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()


def test_existing_run_needs_resume_and_resume_needs_a_checkpoint(searched, tmp_path):
    result = enas("search", "-o", str(searched), check=False)
    assert result.returncode == 2 and "already holds a run" in result.stderr
    result = enas("search", "-o", str(tmp_path / "empty"), "--resume", check=False)
    assert result.returncode == 2 and "holds no checkpoint" in result.stderr
    result = enas("search", "-o", str(searched), "--resume", "seed=5", check=False)
    assert result.returncode == 2 and "cannot change seed" in result.stderr


@pytest.mark.skipif(not PTB.is_dir(), reason=f"real PTB not found at {PTB}")
def test_the_three_commands_run_on_real_ptb(tmp_path):
    run = tmp_path / "ptb"
    small = [f"data.root={PTB}", "recurrent.hidden=32", "recurrent.nodes=4", "search.epochs=1",
             "search.steps_per_epoch=30", "search.eval_batches=3", "controller.steps=2",
             "controller.aggregate=2", "derive.samples=2", "retrain.epochs=1", "retrain.steps_per_epoch=30",
             "threads=2"]
    enas("search", "-c", "ptb", "-o", str(run), *small)
    enas("derive", str(run))
    enas("retrain", str(run))
    summary = json.loads((run / "retrain" / "result.json").read_text())
    assert "floor" not in summary                       # real text has no known floor
    assert summary["value"] < 10000 / 4                 # 30 steps already far better than uniform
    assert summary["unigram_ppl"] > 500                 # PTB's unigram model, for reference


def test_a_corpus_with_words_outside_its_train_split_searches_and_keeps_its_vocabulary(tmp_path):
    # A corpus not preprocessed like PTB: valid and test hold words train lacks, and no <unk>.
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    words = [f"w{i}" for i in range(40)]
    lines = [" ".join(words[(7 * n + 3 * k) % 40] for k in range(8)) for n in range(300)]
    (corpus / "train.txt").write_text("\n".join(lines) + "\n")
    (corpus / "valid.txt").write_text("w1 w2 whale w3\n" * 30)
    (corpus / "test.txt").write_text("w4 squid w5 w6\n" * 30)
    run, data = tmp_path / "run", ["data.name=text", f"data.root={corpus}", *TINY[4:]]
    result = subprocess.run([ENAS, "search", "-o", str(run), *data], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "mapped to <unk>: 20.00% of valid, 20.00% of test" in result.stderr
    vocabulary = (run / "vocab.txt").read_text().split("\n")[:-1]
    assert len(vocabulary) == 42 and vocabulary[-1] == "<unk>"
    enas("derive", str(run))
    (corpus / "train.txt").write_text("\n".join(lines[:5]) + "\n")   # the data changes under the run
    stale = enas("derive", str(run), check=False)
    assert stale.returncode == 2 and "another vocabulary" in stale.stderr and len(stale.stderr.splitlines()) == 1
