"""What a user sees in an 80-column terminal: every command's output fits, with nothing dropped
(long architecture strings elided on purpose, the whole string in the run's files), the bars count
epochs out of the total and estimate the time left, the printed next commands work as shown, the
help names its arguments as README does, and `enas --help` loads no torch."""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from enas.config import describe_keys

ENAS = str(Path(sys.executable).parent / "enas")
WIDTH = 80
COMMANDS = ["search", "derive", "retrain", "rank", "compare", "export", "plot", "report", "runs", "config"]
# A micro search with 5-node cells (official strings of 40 numbers, wider than the terminal once
# in a sentence), small enough for seconds a command.
TINY = ["-c", "shapes", "threads=1", "data.train_images=200", "data.test_images=64", "data.valid_fraction=0.2",
        "micro.layers=1", "micro.filters=4", "micro.nodes=5", "search.epochs=2", "search.batch_size=16",
        "controller.steps=2", "controller.aggregate=2", "derive.samples=3", "derive.bn_batches=2",
        "retrain.epochs=1", "retrain.batch_size=16", "retrain.steps_per_epoch=4"]
CLOCK = re.compile(r"\b\d+:\d\d:\d\d\b")   # a bar's whole elapsed time, H:MM:SS


def enas(*args: str, cwd: Path, command: tuple[str, ...] = (ENAS,)) -> str:
    """What `enas ARGS` in `cwd` shows an 80-column terminal (told by COLUMNS): stderr (bars,
    tables), then stdout (results, next commands)."""
    result = subprocess.run([*command, *args], capture_output=True, text=True, timeout=600, cwd=cwd,
                            env={**os.environ, "COLUMNS": str(WIDTH)})
    assert result.returncode == 0, f"enas {' '.join(args)} exited {result.returncode}:\n{result.stderr}"
    return result.stderr + result.stdout


def assert_fits(output: str) -> list[str]:
    """The output's lines, every one of them at most WIDTH characters and none cut short by rich."""
    lines = output.splitlines()
    wide = [line for line in lines if len(line.rstrip()) > WIDTH]
    assert not wide, "lines wider than the terminal:\n" + "\n".join(wide)
    assert not re.search(r"\S…|…\S", output), output   # rich's sign of a cut cell (an elided string has " … ")
    return lines


def one(lines: list[str], start: str) -> str:
    found = [line for line in lines if line.startswith(start)]
    assert len(found) == 1, (start, lines)
    return found[0]


def typed_command() -> str:
    """How `enas` reads in a printed command here: the name when PATH finds this very script."""
    found = shutil.which("enas")
    return "enas" if found and Path(found).resolve() == Path(ENAS).resolve() else ENAS


@pytest.fixture(scope="module")
def session(tmp_path_factory) -> dict[str, object]:
    """search, then the derive and retrain it names as next, then runs: their output, in one folder."""
    home = tmp_path_factory.mktemp("terminal")
    outputs = {"search": enas("search", "-o", "runs/tiny", *TINY, cwd=home)}
    for before, step in (("search", "derive"), ("derive", "retrain")):
        command = one(outputs[before].splitlines(), "next: ")[len("next: "):]
        assert command == f"{typed_command()} {step} runs/tiny"
        outputs[step] = enas(cwd=home, command=tuple(shlex.split(command)))   # the very command printed
    outputs["runs"] = enas("runs", cwd=home)
    return {"home": home, **outputs}


def test_search_counts_epochs_estimates_the_time_left_and_elides_long_architectures(session):
    lines = assert_fits(session["search"])
    for epoch in (1, 2):
        assert CLOCK.search(one(lines, f"epoch {epoch}/2 supernet ")), lines
        controller = one(lines, f"epoch {epoch}/2 controller ")
        assert CLOCK.search(controller) and "reward " in controller and "entropy " in controller
    estimate = one(lines, "search 1/2 done in ")
    assert re.fullmatch(r"search 1/2 done in \d+:\d\d:\d\d, about \d+:\d\d:\d\d left", estimate)
    metrics = [json.loads(line) for line in (session["home"] / "runs/tiny/metrics.jsonl").read_text().splitlines()]
    for epoch, logged in enumerate((m for m in metrics if m["phase"] == "eval"), start=1):
        shown = one(lines, f"epoch {epoch}/2: valid acc ").split("most likely architecture [")[1].rstrip("]")
        head, tail = shown.split(" … ")   # the whole string is in metrics.jsonl
        assert logged["arch"].startswith(head) and logged["arch"].endswith(tail)


def test_derive_names_its_metric_and_elides_the_best_architecture(session):
    lines = assert_fits(session["derive"])
    best = one(lines, "best: ")
    arch = json.loads((session["home"] / "runs/tiny/arch.json").read_text())
    assert best.endswith(f"(valid acc {arch['valid_acc']:.4g})") and "score" not in best
    head, tail = best[len("best: "):best.rindex(" (")].split(" … ")
    assert arch["official"].startswith(head) and arch["official"].endswith(tail)
    assert any("best candidates" in line for line in lines)


def test_retrain_names_the_report_and_the_export_next(session):
    lines = assert_fits(session["retrain"])
    assert one(lines, "test_acc ")
    steps = lines[lines.index(one(lines, "next: ")):]
    assert [line.split() for line in steps] == [["next:", typed_command(), "report", "runs/tiny"],
                                                [typed_command(), "export", "runs/tiny"]]


def test_runs_keeps_every_column_whole(session):
    lines = assert_fits(session["runs"])
    assert one(lines, "run ").split() == ["run", "preset", "space", "status", "best", "time"]
    row = one(lines, "tiny ")
    assert re.fullmatch(r"tiny shapes micro retrained test acc [\d.]+ \dm \d\ds", " ".join(row.split())), row


def test_config_keys_fold_each_meaning_under_its_key(tmp_path):
    lines = assert_fits(enas("config", "--keys", cwd=tmp_path))
    for key, default, _ in describe_keys():
        assert f"{key} = {default}" in lines
    assert one(lines, "presets: ").startswith("presets: cifar10_macro")


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_help_fits_and_names_arguments_as_readme_does(command, tmp_path):
    args = [command] if command else []
    text = enas(*args, "--help", cwd=tmp_path)
    assert enas(*args, "-h", cwd=tmp_path) == text
    lines = assert_fits(text)
    usage = one(lines, "Usage: enas")
    assert not re.search(r"[{}]|\[[a-z_]+\]|<", usage), usage   # no {run_dir}, [args]... or <int range>
    assert not any(re.search(r"<[a-z]", line) for line in lines), text   # no <str>, <path>, <int range>
    if not command:   # each command's summary is a whole sentence
        summaries = lines[lines.index("Commands:") + 1:]
        assert len(summaries) == len(COMMANDS) and all(line.endswith(".") for line in summaries), text


def test_usage_lines_read_as_in_readme(tmp_path):
    usage = {command: one(enas(command, "-h", cwd=tmp_path).splitlines(), "Usage: ") for command in COMMANDS}
    assert usage["search"] == "Usage: enas search [OPTIONS] [OVERRIDES...]"
    assert usage["derive"] == "Usage: enas derive [OPTIONS] RUN_DIR"
    assert usage["retrain"] == "Usage: enas retrain [OPTIONS] [RUN_DIR] [OVERRIDES...]"
    assert usage["runs"] == "Usage: enas runs [OPTIONS] [DIR]"


@pytest.mark.parametrize("args", [["--help"], ["search", "--help"], ["retrain", "-h"], ["config", "--help"]])
def test_help_loads_no_torch(args):
    # a fresh interpreter, as the console script starts one
    code = ("import sys\nimport cli\nsys.argv = ['enas', *sys.argv[1:]]\n"
            "try:\n    cli.main()\nexcept SystemExit:\n    pass\n"
            "print('torch loaded' if 'torch' in sys.modules else 'no torch', file=sys.stderr)")
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
    assert result.stderr.strip().splitlines()[-1] == "no torch", result.stderr
    assert "Usage: enas" in result.stdout


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed: no real 80-column terminal to "
                    "check the bars in (apt-get install tmux)")
def test_a_search_in_a_real_80_column_terminal_fits(tmp_path):
    """rich draws live bars in a terminal (not in a pipe) and asks the terminal for its width."""
    server = ["tmux", "-L", f"enas-test-{os.getpid()}"]   # a server of its own: other sessions are left alone
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "TMUX")}
    script = f"{shlex.join([ENAS, 'search', '-o', 'runs/t', *TINY])}; echo __END__ $?; sleep 600"
    subprocess.run([*server, "new-session", "-d", "-x", str(WIDTH), "-y", "50", "-c", str(tmp_path), script],
                   env=env, check=True)
    try:
        screen = ""
        deadline = time.time() + 300
        while "__END__" not in screen and time.time() < deadline:
            time.sleep(1)
            # -J joins the lines the terminal wrapped, so a line too wide shows as one long line
            screen = subprocess.run([*server, "capture-pane", "-p", "-J", "-S", "-200"], capture_output=True,
                                    text=True, check=True).stdout
    finally:
        subprocess.run([*server, "kill-server"], capture_output=True)
    lines = assert_fits(screen)
    assert one(lines, "__END__") == "__END__ 0", screen
    assert CLOCK.search(one(lines, "epoch 2/2 controller ")) and one(lines, "search 1/2 done in ")
    assert one(lines, "next: ").endswith(" derive runs/t")
