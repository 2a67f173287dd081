"""What a run shows: its plots, the report page, TensorBoard events and `enas runs`, on a real tiny
search, derive and retrain through the command line (and the cell drawing of every space)."""

import base64
import json
import os
import shutil
import subprocess
import sys
import time
from html.parser import HTMLParser
from io import BytesIO
from pathlib import Path

import pytest
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_cli import ENAS, TINY, enas
from test_nas_conv import HAND_MADE, arch_of

from enas.report.cell_drawing import draw_graph, write_cell
from enas.report.run_files import RunFiles
from enas.report.runs import describe
from enas.report.search_plots import search_figures
from enas.run.metrics import read_metrics
from enas.spaces import from_official, space_type
from enas.spaces.architecture import Architecture
from enas.spaces.published import PUBLISHED

SEARCH_PLOTS = {"search_reward.png", "search_entropy.png", "search_loss.png", "search_valid.png",
                "search_choices.png", "search_lr.png"}
EVERY_PLOT = SEARCH_PLOTS | {"derive_scores.png", "cell.png", "retrain.png"}
NO_DOT = {**os.environ, "PATH": str(Path(sys.executable).parent)}   # the venv's bin: no graphviz there


def plots(run: Path) -> set[str]:
    return {p.name for p in (run / "plots").iterdir()} if (run / "plots").is_dir() else set()


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A search, derive and retrain of the tiny default, TensorBoard on, with the plots after each."""
    run = tmp_path_factory.mktemp("report") / "tiny"
    enas("search", "-o", str(run), *TINY, "logging.tensorboard=true")
    assert plots(run) == SEARCH_PLOTS                       # drawn at the end of the search
    enas("derive", str(run))
    assert plots(run) == SEARCH_PLOTS | {"derive_scores.png", "cell.png"}
    enas("retrain", str(run))
    return run


def check_png(data: bytes) -> tuple[int, int]:
    image = Image.open(BytesIO(data))
    assert image.format == "PNG"
    image.verify()
    return image.size


def test_search_derive_and_retrain_draw_every_plot(run):
    assert plots(run) == EVERY_PLOT   # retrain's plot goes to the run's plots/, beside the search's
    for name in EVERY_PLOT:
        width, height = check_png((run / "plots" / name).read_bytes())
        assert 400 <= width <= 2400 and 250 <= height <= 2400, (name, width, height)
    assert not (run / "retrain" / "plots").exists()


def test_enas_plot_draws_them_again_without_graphviz(run):
    shutil.rmtree(run / "plots")
    result = subprocess.run([ENAS, "plot", str(run)], capture_output=True, text=True, env=NO_DOT, timeout=300)
    assert result.returncode == 0, result.stderr
    assert plots(run) == EVERY_PLOT and f"wrote {len(EVERY_PLOT)} plots" in result.stdout
    titles = [figure.get_suptitle() for figure in search_figures(RunFiles(run)).values()]
    assert len(titles) == len(SEARCH_PLOTS) and all(title.startswith("tiny (default): ") for title in titles)


@pytest.mark.parametrize("name, space, panels", [
    ("recurrent", "recurrent", 1), ("enas_micro_cifar10", "micro", 2), ("enas_macro_cifar10", "macro", 1),
    ("nas_rl_ptb", "nas_cell", 1), ("nas_conv", "nas_conv", 1)])
def test_the_cell_is_drawn_with_matplotlib_for_every_space(name, space, panels, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))   # no `dot` to be found
    if name in PUBLISHED:
        arch = from_official(PUBLISHED[name][1], space)
    else:
        arch = Architecture("recurrent", (0, 0, 1, 0, 2, 1, 3, 2, 0)) if space == "recurrent" else arch_of(HAND_MADE)
    _, graph = space_type(space).render(arch)
    figure = draw_graph(graph, name)
    assert len(figure.axes) == panels                        # micro: the normal and the reduction cell
    drawn = {text.get_text() for axes in figure.axes for text in axes.texts}
    assert {node.label for node in graph.nodes} <= drawn     # every node is in the picture
    assert {edge.label for edge in graph.edges if edge.label} <= drawn
    width, height = check_png(write_cell(graph, tmp_path / "cell.png", name).read_bytes())
    assert width >= 300 and height >= 200


class Page(HTMLParser):
    """The parts of a page the test looks at: section ids, image sources, every URL-like attribute, tags."""

    def __init__(self):
        super().__init__()
        self.sections, self.images, self.links, self.tags, self.text = [], [], [], set(), []

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        attrs = dict(attrs)
        if tag == "section":
            self.sections.append(attrs.get("id"))
        if tag == "img":
            self.images.append(attrs["src"])
        self.links += [value for key, value in attrs.items() if key in ("src", "href") and value]

    def handle_data(self, data):
        self.text.append(data)


def test_the_report_is_one_self_contained_page(run):
    result = subprocess.run([ENAS, "report", str(run)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    path = run / "report.html"
    assert f"wrote {path}" in result.stdout
    page = Page()
    page.feed(path.read_text())
    assert page.sections == ["run", "config", "search", "derive", "retrain", "rank", "compare"]
    assert len(page.images) == len(EVERY_PLOT)
    prefix = "data:image/png;base64,"
    for source in page.images:
        assert source.startswith(prefix)
        check_png(base64.b64decode(source[len(prefix):]))
    assert all(link.startswith(("#", prefix)) for link in page.links)   # nothing loaded from anywhere
    assert not page.tags & {"script", "link", "iframe"}
    text = " ".join(page.text)
    result = json.loads((run / "retrain" / "result.json").read_text())
    assert "entropy floor" in text and f"{result['floor']:.4g}" in text and f"{result['value']:.4g}" in text
    assert "not ranked: enas rank" in text and "retrained" in text and "tiny (default)" in text
    candidates = read_metrics(run / "candidates.jsonl")
    assert all(c["arch"] in text for c in candidates)       # the candidate table


def test_tensorboard_events_hold_the_plotted_scalars_and_the_cell(run):
    events = EventAccumulator(str(run), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    tags = set(events.Tags()["scalars"])
    metrics = read_metrics(run / "metrics.jsonl")
    eval_line = next(m for m in metrics if m["phase"] == "eval")
    expected = {"supernet/loss", "supernet/lr", "controller/reward", "controller/baseline", "controller/entropy",
                "eval/valid_ppl", "derive/valid_ppl"}
    expected |= {f"eval/{key}/{name}" for key in ("decision_entropy", "op_frequency", "input_frequency")
                 for name in eval_line[key]}
    assert expected <= tags
    losses = [m["loss"] for m in metrics if m["phase"] == "supernet"]
    assert [e.step for e in events.Scalars("supernet/loss")] == list(range(len(losses)))
    assert [e.value for e in events.Scalars("supernet/loss")] == pytest.approx(losses)
    assert len(events.Scalars("controller/reward")) == sum(m["phase"] == "controller" for m in metrics)
    assert events.Tags()["images"] == ["derive/cell"]
    picture = events.Images("derive/cell")[0]
    assert check_png(picture.encoded_image_string) == check_png((run / "plots" / "cell.png").read_bytes())

    retrained = EventAccumulator(str(run / "retrain"))
    retrained.Reload()
    assert {"retrain/loss", "retrain/valid_ppl", "retrain/lr", "result/test_ppl"} <= set(retrained.Tags()["scalars"])
    test_ppl = json.loads((run / "retrain" / "result.json").read_text())["value"]
    assert retrained.Scalars("result/test_ppl")[0].value == pytest.approx(test_ppl)


def copy_run(run: Path, to: Path, drop: tuple[str, ...]) -> Path:
    shutil.copytree(run, to, ignore=shutil.ignore_patterns(*drop))
    return to


def test_enas_runs_tells_each_state_apart(run, tmp_path):
    runs = tmp_path / "runs"
    later = ("retrain", "report.html", "plots", "events.out.*")
    copy_run(run, runs / "a-retrained", ("report.html",))
    copy_run(run, runs / "b-derived", later)
    searched = copy_run(run, runs / "sweep" / "seed-0" / "c-searched", (*later, "arch.json", "candidates.jsonl"))
    for name, age in (("d-searching", 0), ("e-interrupted", 3600)):   # killed after its first epoch
        folder = copy_run(searched, runs / name, ())
        lines = (folder / "metrics.jsonl").read_text().splitlines(keepends=True)
        first_epoch = next(i for i, line in enumerate(lines) if json.loads(line)["phase"] == "eval") + 1
        (folder / "metrics.jsonl").write_text("".join(lines[:first_epoch]))
        stamp = time.time() - age
        for path in [folder / "metrics.jsonl", *(folder / "checkpoints").iterdir()]:
            os.utime(path, (stamp, stamp))
    rows = {row["run"]: row for row in describe(runs)}
    assert {name: row["status"] for name, row in rows.items()} == {
        "a-retrained": "retrained", "b-derived": "derived", "sweep/seed-0/c-searched": "searched",
        "d-searching": "searching", "e-interrupted": "interrupted"}
    assert rows["a-retrained"]["best"].startswith("test ppl ") and rows["b-derived"]["best"].startswith("valid ppl ")

    result = subprocess.run([ENAS, "runs", str(runs)], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    cells = [line.split() for line in result.stdout.splitlines()]   # no borders: a row starts with its run
    table = {words[0]: " ".join(words) for words in cells if words and words[0] in rows}
    assert set(table) == set(rows)
    for name, row in rows.items():
        assert all(cell in table[name] for cell in ("default", "recurrent", row["status"], row["best"]))


def test_a_plot_that_fails_is_a_warning_and_the_derive_goes_on(run, tmp_path):
    folder = copy_run(run, tmp_path / "run", ("retrain", "plots", "arch.json", "candidates.jsonl", "events.out.*"))
    (folder / "plots").write_text("a file where the plots' folder should be")
    result = subprocess.run([ENAS, "derive", str(folder), "--quiet"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert (folder / "arch.json").is_file()
    warnings = [line for line in result.stderr.splitlines() if "plots" in line]
    assert len(warnings) == 1 and warnings[0].startswith(f"warning: the plots of {folder} were not drawn")


@pytest.mark.parametrize("args, message", [
    (["plot", "/no/such/run"], "/no/such/run is not a run folder (no config.yaml)"),
    (["report", "/no/such/run"], "/no/such/run is not a run folder (no config.yaml)"),
    (["runs", "/no/such/runs"], "/no/such/runs is not a folder"),
    (["plot", "CONFIG_ONLY"], "holds nothing to plot yet"),
])
def test_bad_folders_are_one_line_errors_with_exit_2(args, message, run, tmp_path):
    if "CONFIG_ONLY" in args:   # a run folder that has not written a line yet
        (tmp_path / "fresh").mkdir()
        shutil.copy(run / "config.yaml", tmp_path / "fresh" / "config.yaml")
        args = [a.replace("CONFIG_ONLY", str(tmp_path / "fresh")) for a in args]
    result = subprocess.run([ENAS, *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and lines[0].startswith("error: "), result.stderr
