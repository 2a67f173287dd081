"""Issue 27, the records half: every record a run folder holds, damaged in turn, read by every
command that reads it. Each command answers in one line (exit 2, one `error:` line naming the file,
nothing written in the folder) or goes on with at most one `warning:` line; `enas runs` lists the
run as unreadable and goes on. A log's last line cut off by a kill mid-write is left out, never an
error; a damaged line elsewhere is one. A panel cache entry that cannot be read is trained again.

One tiny text run (search, derive, retrain, rank, compare) and one tiny NAS-RL run are built once;
each case damages a copy. Runs go through the CLI in this process.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
from test_readback_inputs import TINY, one_line, write_corpus
from test_reliability import tree
from typer.testing import CliRunner

from cli import app
from enas.commands.standalone import cache_entry
from enas.errors import UserError
from enas.records import Result
from enas.report.runs import describe
from enas.run.metrics import read_metrics

SIZES = [*TINY, "derive.samples=2", "retrain.epochs=1", "retrain.steps_per_epoch=2", "retrain.batch_size=4"]
NAS_RL = ["strategy=nas_rl", "nas_rl.children=2", "nas_rl.updates=1", "nas_rl.child_epochs=1", "controller.hidden=8"]
PANEL = ["--panel", "2", "--samples", "0", "--epochs", "1"]


def invoke(*args: str, check: bool = False) -> subprocess.CompletedProcess:
    """The command line in this process, as typed (test_reliability's `enas` adds --quiet, which
    plot, report, export and runs do not take); a traceback fails the test."""
    result = CliRunner().invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert not check or result.exit_code == 0, result.stderr
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)


COMMANDS: dict[str, Callable[[Path], list[str]]] = {
    "derive": lambda run: ["derive", str(run), "--quiet"],
    "retrain": lambda run: ["retrain", str(run), "--quiet"],
    "export": lambda run: ["export", str(run)],
    "report": lambda run: ["report", str(run)],
    "plot": lambda run: ["plot", str(run)],
    "runs": lambda run: ["runs", str(run.parent)],
    "rank": lambda run: ["rank", str(run), *PANEL, "--quiet"],
    "compare": lambda run: ["compare", str(run), "--random", "1", "--epochs", "1", "--quiet"],
    "resume": lambda run: ["search", "-o", str(run), "--resume", "search.epochs=2", "nas_rl.updates=2", "--quiet"],
}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    """A text run that went through every command that writes a record, and a NAS-RL run derived."""
    tmp = tmp_path_factory.mktemp("records")
    data = write_corpus(tmp / "data", 60)
    runs = {"enas": tmp / "enas", "nas_rl": tmp / "nas_rl"}
    invoke("search", "-o", str(runs["enas"]), *SIZES, f"data.root={data}", "--quiet", check=True)
    invoke("search", "-o", str(runs["nas_rl"]), *SIZES, *NAS_RL, f"data.root={data}", "--quiet", check=True)
    for command in ("derive", "retrain", "rank", "compare"):
        invoke(*COMMANDS[command](runs["enas"]), check=True)
    invoke(*COMMANDS["derive"](runs["nas_rl"]), check=True)
    return runs


# --------------------------------------------------------------------------- the damage

def edit_line(relative: str, number: int, edit: Callable[[str], str]) -> Callable[[Path], None]:
    """Replace line `number` (from 1) of a JSON-lines file by `edit` of it."""
    def damage(run: Path) -> None:
        lines = (run / relative).read_text().splitlines(keepends=True)
        lines[number - 1] = edit(lines[number - 1].rstrip("\n")) + "\n"
        (run / relative).write_text("".join(lines))
    return damage


def cut_last_line(relative: str) -> Callable[[Path], None]:
    """The last line cut off in the middle, as a kill mid-write leaves it."""
    return lambda run: (run / relative).write_bytes((run / relative).read_bytes()[:-15])


def append_partial(relative: str) -> Callable[[Path], None]:
    """A line begun after the last checkpoint and cut off by a kill."""
    def damage(run: Path) -> None:
        with open(run / relative, "a") as log:
            log.write('{"phase": "tri')
    return damage


def keep_lines(relative: str, count: int) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        lines = (run / relative).read_text().splitlines(keepends=True)
        (run / relative).write_text("".join(lines[:count]))
    return damage


def write(relative: str, content: bytes) -> Callable[[Path], None]:
    return lambda run: (run / relative).write_bytes(content)


def truncate(relative: str) -> Callable[[Path], None]:
    return lambda run: (run / relative).write_bytes((run / relative).read_bytes()[:40])


def set_json(relative: str, key: str, value: str) -> Callable[[Path], None]:
    """`key` of a JSON file set to the JSON text `value` (NaN included)."""
    def damage(run: Path) -> None:
        text = (run / relative).read_text()
        (run / relative).write_text(re.sub(rf'"{key}": [^,\n]+', f'"{key}": {value}', text, count=1))
    return damage


def both(*damages: Callable[[Path], None]) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        for each in damages:
            each(run)
    return damage


@dataclass(frozen=True)
class Damage:
    run: str                       # the run folder it damages: "enas" or "nas_rl"
    damage: Callable[[Path], None]
    says: str                      # what the error line says (with the file's name)
    refuse: tuple[str, ...]        # commands that answer one error line ("runs": an unreadable row)
    recover: tuple[str, ...] = ()  # commands that go on
    warns: str = ""                # what their one warning line says ("": they go on without a word)


GARBAGE = b"\x00\xffnot a record\n"
DAMAGES = {
    "config.yaml not YAML": Damage("enas", write("config.yaml", b"seed: [1\n"), "config.yaml",
                                   ("derive", "retrain", "report", "plot", "runs", "rank", "compare", "resume")),
    "metrics.jsonl garbage in the middle": Damage(
        "enas", edit_line("metrics.jsonl", 2, lambda line: "garbage"), "metrics.jsonl line 2 is damaged",
        ("report", "plot", "runs", "resume")),
    "metrics.jsonl a line without its phase": Damage(
        "enas", edit_line("metrics.jsonl", 1, lambda line: '{"epoch": 0}'),
        "metrics.jsonl line 1 is damaged (no 'phase')", ("report", "plot", "runs", "resume")),
    "metrics.jsonl a last line cut off": Damage("enas", append_partial("metrics.jsonl"), "", (),
                                                ("report", "runs", "resume")),
    "trials.jsonl a last line cut off": Damage(
        "nas_rl", cut_last_line("trials.jsonl"), "trials.jsonl holds 1 whole line(s) where its checkpoint counts 2",
        ("resume",), ("derive", "runs")),
    "trials.jsonl a line begun after the checkpoint": Damage("nas_rl", append_partial("trials.jsonl"), "", (),
                                                             ("derive",)),   # resume: see below
    "trials.jsonl a list line": Damage("nas_rl", edit_line("trials.jsonl", 1, lambda line: "[1, 2]"),
                                       "trials.jsonl line 1 is damaged (not a JSON object)",
                                       ("derive", "report", "plot", "resume")),
    "trials.jsonl garbage in the middle": Damage(
        "nas_rl", edit_line("trials.jsonl", 1, lambda line: line[:30]),
        "trials.jsonl line 1 is damaged (not valid JSON", ("derive", "report", "resume")),
    "trials.jsonl a NaN reward": Damage(
        "nas_rl", edit_line("trials.jsonl", 2, lambda line: re.sub(r'"reward": [^,]+', '"reward": NaN', line)),
        "trials.jsonl line 2 is damaged ('reward' is nan, not a finite number)", ("derive", "report", "resume")),
    "trials.jsonl fewer lines than the checkpoint": Damage(
        "nas_rl", keep_lines("trials.jsonl", 1), "holds 1 whole line(s) where its checkpoint counts 2", ("resume",)),
    "candidates.jsonl garbage": Damage("enas", write("candidates.jsonl", GARBAGE), "candidates.jsonl line 1",
                                       ("report", "plot")),
    # (enas runs reads arch.json only for a run not retrained yet: see test_runs_lists_what_it_can_read)
    "arch.json cut off": Damage("enas", truncate("arch.json"), "arch.json", ("retrain", "compare", "report", "plot")),
    "arch.json a score that is text": Damage("enas", set_json("arch.json", "valid_ppl", '"abc"'),
                                             "arch.json is damaged ('valid_ppl' is 'abc'", ("report",)),
    "retrain/arch.json cut off": Damage("enas", truncate("retrain/arch.json"), "retrain/arch.json", ("export",)),
    "retrain/result.json value NaN": Damage("enas", set_json("retrain/result.json", "value", "NaN"),
                                            "result.json is damaged ('value' is nan",
                                            ("export", "report", "plot", "runs")),
    "retrain/result.json a list": Damage("enas", write("retrain/result.json", b"[1]\n"),
                                         "result.json is damaged (not a JSON object)", ("export", "report", "runs")),
    "rank.json cut off": Damage("enas", truncate("rank.json"), "rank.json is damaged", ("report", "plot")),
    "compare.json a percentile that is text": Damage("enas", set_json("compare.json", "percentile", '"abc"'),
                                                     "compare.json is damaged ('percentile'", ("report",)),
    "vocab.txt not UTF-8": Damage("enas", write("vocab.txt", b"a\n\xff\n"), "vocab.txt", ("derive", "rank")),
    "retrain/model.pt foreign": Damage("enas", write("retrain/model.pt", GARBAGE), "model.pt", ("export",)),
    "last.pt damaged": Damage("enas", write("checkpoints/last.pt", GARBAGE), "", (), ("derive", "rank"),
                              "last.pt is truncated, foreign or unsafe"),
    "last.pt and previous.pt damaged": Damage(
        "enas", both(write("checkpoints/last.pt", GARBAGE), write("checkpoints/previous.pt", GARBAGE)),
        "no valid checkpoint", ("derive", "rank", "resume")),
    "tokens.pt cut off": Damage("enas", truncate("tokens.pt"), "", (), ("derive", "rank"), "the token cache"),
}
CASES = [pytest.param(name, command, True, id=f"{name}: {command}")
         for name, damage in DAMAGES.items() for command in damage.refuse]
CASES += [pytest.param(name, command, False, id=f"{name}: {command} goes on")
          for name, damage in DAMAGES.items() for command in damage.recover]


def damaged_copy(built: dict[str, Path], tmp_path: Path, name: str, command: str) -> Path:
    run = tmp_path / "runs" / "run"
    shutil.copytree(built[DAMAGES[name].run], run)
    if command == "retrain":   # a fresh retrain writes retrain/: none yet
        shutil.rmtree(run / "retrain")
    DAMAGES[name].damage(run)
    return run


@pytest.mark.parametrize("name, command, refused", CASES)
def test_a_damaged_record_is_one_line_or_read_around(built, tmp_path, name, command, refused):
    run = damaged_copy(built, tmp_path, name, command)
    before = tree(tmp_path)
    result = invoke(*COMMANDS[command](run))
    if command == "runs":   # the other runs are listed: exit 0, the damaged one's row says so
        assert result.returncode == 0 and result.stderr == "", result.stderr
        assert ("unreadable" in result.stdout) == refused, result.stdout
    elif refused:
        line = one_line(result, 2, "error: ")
        assert DAMAGES[name].says in line, line
        assert tree(tmp_path) == before   # nothing written, nothing changed
    elif DAMAGES[name].warns:
        assert DAMAGES[name].warns in one_line(result, 0, "warning: ")
    else:
        assert result.returncode == 0 and result.stderr == "", result.stderr


def test_a_cut_off_trial_is_left_out_and_a_resume_cuts_it_away(built, tmp_path):
    run = damaged_copy(built, tmp_path, "trials.jsonl a line begun after the checkpoint", "resume")
    assert len(read_metrics(run / "trials.jsonl")) == 2
    invoke(*COMMANDS["resume"](run), check=True)
    assert len(read_metrics(run / "trials.jsonl")) == 4   # the partial line cut away, two more children


# --------------------------------------------------------------------------- the panel cache

CACHE_DAMAGE = {
    "result.json cut off": truncate("result.json"),
    "value NaN": set_json("result.json", "value", "NaN"),
    "value text": set_json("result.json", "value", '"abc"'),
    "a list": write("result.json", b"[1]\n"),
    "both checkpoints, no result": both(lambda entry: (entry / "result.json").unlink(),
                                        write("checkpoints/last.pt", GARBAGE),
                                        write("checkpoints/previous.pt", GARBAGE)),
}


def cache_copy(built: dict[str, Path], tmp_path: Path, damage: str) -> tuple[Path, Path]:
    """A copy of the text run with one entry of its panel cache damaged; the run and the entry."""
    run = tmp_path / "run"
    shutil.copytree(built["enas"], run)
    panel = {row["arch"] for row in json.loads((run / "rank.json").read_text())["panel"]}
    entry = min(path.parent for path in (run / "standalone").glob("*/result.json")
                if json.loads(path.read_text())["arch"] in panel)   # one that rank reads
    CACHE_DAMAGE[damage](entry)
    return run, entry


@pytest.mark.parametrize("damage", list(CACHE_DAMAGE))
def test_a_damaged_panel_cache_entry_is_discarded_with_one_warning(built, tmp_path, capsys, damage):
    _, entry = cache_copy(built, tmp_path, damage)
    assert cache_entry(entry) == (None, False)   # train_alone trains it again from scratch
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: discarded a damaged entry of the panel cache"), lines
    assert str(entry) in lines[0]


@pytest.mark.parametrize("damage", ["value NaN", "both checkpoints, no result"])
def test_rank_trains_a_damaged_cache_entry_again(built, tmp_path, damage):
    run, entry = cache_copy(built, tmp_path, damage)
    result = invoke(*COMMANDS["rank"](run))
    assert "discarded a damaged entry of the panel cache" in one_line(result, 0, "warning: ")
    assert Result.read(entry).value == Result.read(built["enas"] / "standalone" / entry.name).value
    assert json.loads((run / "rank.json").read_text())["kendall_tau"] in (-1.0, 1.0)   # not NaN


# --------------------------------------------------------------------------- enas runs

def without_retrain(run: Path) -> None:
    shutil.rmtree(run / "retrain")


def test_runs_lists_what_it_can_read(built, tmp_path):
    runs = tmp_path / "runs"
    for name, damage in (("good", None), ("no-config", write("config.yaml", b"seed: [1\n")),
                         ("no-arch", both(without_retrain, truncate("arch.json")))):
        shutil.copytree(built["enas"], runs / name)
        if damage is not None:
            damage(runs / name)
    rows = {row["run"]: row for row in describe(runs)}
    assert {name: row["status"] for name, row in rows.items()} == \
        {"good": "retrained", "no-config": "unreadable", "no-arch": "unreadable"}
    assert "config.yaml" in rows["no-config"]["best"] and "arch.json" in rows["no-arch"]["best"]
    result = invoke("runs", str(runs))
    assert result.returncode == 0 and result.stderr == "" and result.stdout.count("unreadable") == 2


# --------------------------------------------------------------------------- numbers no float holds

@pytest.mark.parametrize("value", ["1" * 400, "1" * 5000, "NaN", "-Infinity", '"abc"', "[1]", "true"])
def test_a_score_no_finite_float_holds_is_one_line(tmp_path, value):
    (tmp_path / "result.json").write_text(
        f'{{"metric": "test_ppl", "value": {value}, "params": 1, "time_s": 1.0, "arch": "0 0 0"}}')
    with pytest.raises(UserError, match="result.json is damaged") as raised:
        Result.read(tmp_path)
    assert "\n" not in str(raised.value)


# --------------------------------------------------------------------------- --seed

@pytest.mark.parametrize("command", ["rank", "compare"])
@pytest.mark.parametrize("seed", ["99999999999999999999", "-1"])
def test_a_panel_seed_beyond_the_generator_is_one_line(built, tmp_path, command, seed):
    before = tree(built["enas"])
    result = invoke(*COMMANDS[command](built["enas"]), "--seed", seed)
    assert f"--seed={seed} must be at" in one_line(result, 2, "error: ")
    assert tree(built["enas"]) == before
