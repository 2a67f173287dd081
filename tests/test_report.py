"""What a run shows: its plots, the report page, TensorBoard events and `enas runs`, on a real tiny
search, derive and retrain through the command line (and the cell drawing of every space)."""

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import time
from html.parser import HTMLParser
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
from matplotlib import rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text
from matplotlib.transforms import Bbox
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_cli import ENAS, TINY, enas
from test_nas_conv import HAND_MADE, arch_of

from enas.report.cell_drawing import draw_graph, write_cell
from enas.report.plots import new_figure
from enas.report.result_plots import derive_figure, rank_figure, retrain_figure
from enas.report.run_files import RunFiles
from enas.report.runs import describe
from enas.report.search_plots import search_figures
from enas.run.metrics import read_metrics
from enas.spaces import from_official, space_type
from enas.spaces.architecture import Architecture
from enas.spaces.published import PUBLISHED

# search.lr never changes in TINY: its value is in the report, and no plot of it is drawn
SEARCH_PLOTS = {"search_reward.png", "search_entropy.png", "search_loss.png", "search_valid.png",
                "search_choices.png"}
EVERY_PLOT = SEARCH_PLOTS | {"derive_scores.png", "cell.png", "retrain.png"}
NO_DOT = {**os.environ, "PATH": str(Path(sys.executable).parent)}   # the venv's bin: no graphviz there


def plots(run: Path) -> set[str]:
    return {p.name for p in (run / "plots").iterdir()} if (run / "plots").is_dir() else set()


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A search, derive and retrain of the tiny default, TensorBoard on, an entropy floor, with the
    plots after each."""
    run = tmp_path_factory.mktemp("report") / "tiny"
    enas("search", "-o", str(run), *TINY, "logging.tensorboard=true", "controller.entropy_floor=0.2")
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
    assert len(titles) == len(SEARCH_PLOTS) and not any("tiny" in title for title in titles)   # the page names it


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


@pytest.fixture(scope="module")
def ranked(run, tmp_path_factory) -> Path:
    """A copy of the tiny run, ranked and compared at the smallest sizes (one epoch alone each)."""
    folder = copy_run(run, tmp_path_factory.mktemp("ranked") / "tiny", ("report.html", "events.out.*"))
    enas("rank", str(folder), "--panel", "3", "--samples", "2", "--top", "2", "--epochs", "1")
    enas("compare", str(folder), "--random", "3", "--epochs", "1")
    return folder


def outside(figure: Figure) -> list[str]:
    """The texts of `figure` drawn past its edges (a clipped title, label or legend)."""
    FigureCanvasAgg(figure)   # a canvas to draw on, as savefig draws the PNG
    figure.canvas.draw()
    renderer, edges, undrawn = figure.canvas.get_renderer(), figure.bbox, undrawn_tick_labels(figure)
    texts = [text for text in figure.findobj(Text)
             if text.get_visible() and text.get_text().strip() and id(text) not in undrawn]
    return [text.get_text() for text in texts if not within(text.get_window_extent(renderer), edges)]


def undrawn_tick_labels(figure: Figure) -> set[int]:
    """The ids of the tick labels matplotlib keeps but does not draw: their ticks lie outside the view."""
    undrawn = set()
    for axes in figure.axes:
        for axis in (axes.xaxis, axes.yaxis):
            low, high = sorted(axis.get_view_interval())
            slack = 1e-9 * (high - low)
            for tick in [*axis.get_major_ticks(), *axis.get_minor_ticks()]:
                if not low - slack <= tick.get_loc() <= high + slack:
                    undrawn |= {id(tick.label1), id(tick.label2)}
    return undrawn


def within(box: Bbox, edges: Bbox, slack: float = 1.0) -> bool:
    """Whether `box` lies inside `edges`, give or take `slack` pixels of rounding."""
    return (edges.x0 - slack <= box.x0 and box.x1 <= edges.x1 + slack
            and edges.y0 - slack <= box.y0 and box.y1 <= edges.y1 + slack)


def every_figure(folder: Path) -> dict[str, Figure]:
    """Every plot of a run folder as a figure, as `enas plot` draws them (the cell with matplotlib)."""
    files = RunFiles(folder)
    _, graph = space_type(files.space).render(files.arch.architecture())
    return {**search_figures(files), "derive_scores.png": derive_figure(files),
            "retrain.png": retrain_figure(files.retrain), "rank.png": rank_figure(files),
            "cell.png": draw_graph(graph, "the derived recurrent architecture")}


def test_no_plot_of_a_tiny_run_draws_text_past_its_edges(ranked):
    with rc_context({"text.parse_math": False}):
        figures = every_figure(ranked)
        assert set(figures) == EVERY_PLOT | {"rank.png"} and all(figures.values())
        for name, figure in figures.items():
            assert not outside(figure), (name, outside(figure))


def test_the_entropy_plot_shows_shares_of_the_maximum_the_floor_and_the_top_architecture(run):
    figure = search_figures(RunFiles(run))["search_entropy.png"]
    heatmap = next(image for axes in figure.axes for image in axes.images).get_array()
    shares = heatmap[~np.isnan(heatmap)]                  # a decision of one option (node2.input) is left blank
    assert shares.size and 0.0 <= shares.min() and shares.max() <= 1.0   # shares, whatever a decision's options
    legends = {text.get_text() for axes in figure.axes if axes.get_legend() for text in axes.get_legend().get_texts()}
    assert {"entropy floor: 0.2", "most sampled architecture's share"} <= legends
    assert any(label.startswith("entropy floor (0.2 of the maximum)") for label in legends)   # in nats per update


def test_the_report_answers_at_the_top_and_names_the_deciding_keys(ranked):
    result = subprocess.run([ENAS, "report", str(ranked)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    page = Page()
    page.feed((ranked / "report.html").read_text())
    text = " ".join(page.text)
    top = text[text.index("of the chosen architecture"):text.index("report written")]   # the Run section
    arch = json.loads((ranked / "arch.json").read_text())
    result = json.loads((ranked / "retrain" / "result.json").read_text())
    compare = json.loads((ranked / "compare.json").read_text())
    assert f"→ {arch['valid_ppl']:.4g} → {result['valid_ppl']:.4g}; test {result['value']:.4g}" in top
    assert "median of 3 random architectures" in top and f"beats {compare['beaten']} of 3" in top
    environment = json.loads((ranked / "environment.json").read_text())
    assert environment["threads"] == 1 and f"torch {environment['torch']}, cpu, 1 thread of" in top
    assert "wall time: search" in top and "derive writes no time" in top
    assert re.search(r"wall time: retrain \d+(\.\d)? s", top)                  # units, not "time s 44.3"
    assert re.search(r"time \d+(\.\d)? s", text) and "time s" not in text
    for key in ("recurrent.nodes", "recurrent.hidden", "search.lr", "retrain.lr", "controller.lr", "search.batch_size",
                "retrain.batch_size", "search.epochs", "retrain.epochs", "threads"):
        assert key in text
    assert "supernet learning rate 10, every epoch" in text


def test_a_title_longer_than_its_figure_wraps_inside_it():
    title = "default-20261129-083000 (default): validation perplexity of the most likely architecture (shared weights)"
    figure, _ = new_figure(title)
    assert "\n" in figure.get_suptitle() and not outside(figure)   # in one line it ran past both edges
