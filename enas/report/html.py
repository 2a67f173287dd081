"""`enas report RUN_DIR`: the whole run on one self-contained page, RUN_DIR/report.html.

Sections, each present whether or not its step has run (one that has not says what to type):
the run, opening with the answer (summary.py: the chosen architecture's score at each stage, the
test score, the random baseline, the time of each phase, the environment), then its status,
preset, space and strategy; the config's deciding keys, the search's curves, the derived
architecture with its picture and the candidate table, the retrain's result (on built-in text
against the entropy floor), and rank's and compare's results where they exist. The plots are
drawn again first and inlined as base64 PNGs; the CSS is inline; the page loads nothing.
"""

from __future__ import annotations

import base64
import dataclasses
import struct
import time
from collections import Counter
from html import escape
from pathlib import Path
from typing import Any, Sequence

from enas.config import to_yaml
from enas.folder.atomic import write_text
from enas.folder.names import PLOTS_DIR, REPORT_FILE
from enas.records.panels import ceiling_text, diverged_text, seeds_text, truth_cells, truth_headers
from enas.report.plots import DPI, WIDE
from enas.report.run_files import RunFiles, plots_folder
from enas.report.run_plots import CELL_PLOT, DERIVE_PLOT, RANK_PLOT, RETRAIN_PLOT, draw_after
from enas.report.runs import status
from enas.report.search_plots import SEARCH_PLOTS, constant_lr
from enas.report.summary import baseline, elapsed, environment, number, phase_times, score_line, stages
from enas.strategies.base import CONTROLLER
from enas.strategies.watch import unlearned_note

SECTIONS = {"run": "Run", "config": "Config", "search": "Search", "derive": "Derived architecture",
            "retrain": "Retrain", "rank": "Rank", "compare": "Compare"}
CANDIDATE_ROWS = 10
WIDE_PX = WIDE * DPI * 0.75   # a plot at least this wide (pixels) spans both columns
CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222; margin: 0; background: #f6f7f9; }
main { max-width: 1320px; margin: 0 auto; padding: 1.2em 2em 3em; }
h1 { font-size: 1.6em; margin: 0.2em 0; } h2 { border-bottom: 2px solid #d0d7e2; padding-bottom: 0.2em; margin-top: 1.8em; }
nav { position: sticky; top: 0; background: #1f3b73; padding: 0.5em 2em; z-index: 1; }
nav a { color: #fff; margin-right: 1.4em; text-decoration: none; font-weight: 600; }
section { scroll-margin-top: 3em; background: #fff; border-radius: 8px; padding: 0.4em 1.4em 1.2em; margin-top: 1.2em; box-shadow: 0 1px 3px #0002; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.92em; }
th, td { border: 1px solid #d0d7e2; padding: 0.3em 0.7em; text-align: left; vertical-align: top; }
th { background: #eef2f8; } table.facts th { font-weight: normal; color: #444; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.plots { display: grid; grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 1em; align-items: start; }
.plots .wide { grid-column: 1 / -1; }
figure { margin: 0.6em 0; } img { max-width: 100%; height: auto; border: 1px solid #e3e7ee; }
pre { background: #f1f3f6; padding: 0.8em; overflow-x: auto; font-size: 0.88em; }
.note { color: #666; } .missing { color: #8a5a00; background: #fff6e0; padding: 0.5em 0.8em; border-radius: 4px; }
code { background: #f1f3f6; padding: 0 0.25em; }
"""


def write_report(folder: Path) -> Path:
    """Draw the plots again, then write the report of the run in `folder` (a retrain's output in
    RUN_DIR/retrain reports the run); return its path."""
    folder = plots_folder(folder)
    run = RunFiles(folder).read_all()   # a one-line error before anything is drawn: no run folder, a damaged file
    draw_after(folder)
    body = [run_section(run), config_section(run), search_section(run), derive_section(run),
            retrain_section(run), rank_section(run), compare_section(run)]
    nav = "".join(f'<a href="#{key}">{escape(title)}</a>' for key, title in SECTIONS.items())
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(run.label)}: enas report'
            f'</title>\n<style>{CSS}</style></head>\n<body><nav>{nav}</nav><main>\n<h1>{escape(run.label)}</h1>\n'
            + "\n".join(body) + "\n</main></body></html>\n")
    path = folder / REPORT_FILE
    write_text(path, page)
    return path


def section(key: str, *parts: str) -> str:
    return f'<section id="{key}">\n<h2>{escape(SECTIONS[key])}</h2>\n' + "\n".join(p for p in parts if p) + "\n</section>"


def missing(text: str) -> str:
    return f'<p class="missing">{escape(text)}</p>'


def image(path: Path, alt: str) -> str:
    """`path` inline as a data URI (the plot's title says what it is), or nothing where it was not
    drawn. In a grid of plots, a wide one (heatmaps) takes a row of its own, so that the plots of
    one height pair up and no short plot sits beside a tall one."""
    if not path.is_file():
        return ""
    png = path.read_bytes()
    wide = struct.unpack(">I", png[16:20])[0] > WIDE_PX   # the width in the PNG's header (IHDR)
    data = base64.b64encode(png).decode("ascii")
    spans = ' class="wide"' if wide else ""
    return f'<figure{spans}><img src="data:image/png;base64,{data}" alt="{escape(alt)}"></figure>'


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(cell(value) for value in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def facts(rows: Sequence[tuple[str, Any]]) -> str:
    """A table of (name, value) rows, without a header."""
    body = "".join(f"<tr><th>{escape(name)}</th>{cell(value)}</tr>" for name, value in rows)
    return f'<table class="facts"><tbody>{body}</tbody></table>'


def cell(value: Any) -> str:
    if isinstance(value, float):
        return f'<td class="num">{value:.4g}</td>'
    if isinstance(value, int):
        return f'<td class="num">{value:,}</td>'
    return f"<td>{escape(str(value))}</td>"


def run_section(run: RunFiles) -> str:
    """What the run found and what it took, first; then where it is."""
    shown = [(f"{run.metric_name} of the chosen architecture: search → derive → retrain", score_line(run))]
    shown += [(f"{stage.name}: {stage.how}", number(stage.value)) for stage in stages(run)]
    shown += [("random baseline (enas compare)", baseline(run))]
    shown += [(f"wall time: {phase}", text) for phase, text in phase_times(run)]
    shown += [("environment", environment(run))]
    where = [("folder", str(run.folder.resolve())), ("status", status(run, time.time())),
             ("preset", run.preset or "(not recorded)"), ("space", run.space), ("strategy", run.strategy.name),
             ("report written", time.strftime("%Y-%m-%d %H:%M:%S"))]
    return section("run", facts(shown), facts(where))


def config_section(run: RunFiles) -> str:
    rows = [(key, run.setting(key)) for key in result_keys(run)]
    text = to_yaml(run.config)
    return section("config", table(("key", "value"), rows),
                   f"<details><summary>config.yaml, every key</summary><pre>{escape(text)}</pre></details>")


def result_keys(run: RunFiles) -> list[str]:
    """The keys that decide a result: the data, the seed, the space's sizes (its whole-number keys),
    the budgets, batch sizes and learning rates, and where it ran."""
    section = getattr(run.config, run.space)
    sizes = [f"{run.space}.{f.name}" for f in dataclasses.fields(section)
             if isinstance(getattr(section, f.name), int) and not isinstance(getattr(section, f.name), bool)]
    budget = [run.strategy.budget] if run.strategy.budget != "search.epochs" else []
    training = [f"{part}.{key}" for part in ("search", "retrain") for key in ("epochs", "batch_size", "lr")]
    return ["data.name", "seed", *sizes, *budget, *training, "controller.lr", "device", "threads"]


def search_section(run: RunFiles) -> str:
    if not run.searched:
        why = "this folder is a retrain's own output" if run.retrain is run else "no search epoch logged yet"
        return section("search", missing(f"no search: {why}"))
    plots = run.folder / PLOTS_DIR
    done = len(run.phase(run.strategy.done_phase))
    shown = [(f"{run.strategy.unit}s logged", f"{done} of {run.setting(run.strategy.budget)}"),
             ("controller updates", len(run.phase(CONTROLLER)))]
    if (lr := constant_lr(run)) is not None:
        shown.append(("supernet learning rate", f"{lr:g}, every epoch (so no plot of it)"))
    last = run.evals[-1] if run.evals else None
    if last is not None and last.score(run.metric) is not None:
        shown += [(f"last validation {run.metric_name} of the most likely architecture", last.score(run.metric)),
                  ("that architecture (official string)", last.arch)]
    warnings = [m["warning"] for m in run.metrics if "warning" in m]
    images = "".join(image(plots / name, name.removesuffix(".png").replace("_", " ")) for name in SEARCH_PLOTS)
    return section("search", facts(shown), "".join(f"<p class=\"missing\">{escape(w)}</p>" for w in warnings),
                   f'<div class="plots">{images}</div>')


def derive_section(run: RunFiles) -> str:
    if run.arch is None:
        return section("derive", missing(f"not derived yet: enas derive {run.folder}"))
    arch, plots = run.arch, run.folder / PLOTS_DIR
    if not run.searched:
        given = run.result.arch if run.result else ""
        return section("derive", missing("no derive in this folder (a retrain's own output); the architecture it "
                                         f"retrained: {given}"), image(plots / CELL_PLOT, "the retrained architecture"))
    name, score = arch.score or ("score", "")
    shown = [("official string", arch.official), (name.replace("_", " "), score), ("candidates sampled", arch.sampled),
             *((f"{column} in the benchmark table", f"{f['value']:g}: rank {f['rank']:,} of {f['rows']:,}, "
                f"percentile {f['percentile']:.2f}") for column, f in arch.bench.get("metrics", {}).items())]
    text = "\n".join(arch.cell)
    note = unlearned_note(run.metrics, run.strategy.learns)
    return section("derive", facts(shown), missing(note) if note else "",
                   image(plots / CELL_PLOT, "the derived architecture"),
                   f"<pre>{escape(text)}</pre>", "<h3>Best candidates</h3>", candidates_table(run),
                   image(plots / DERIVE_PLOT, "the distribution of the candidates' scores"))


def candidates_table(run: RunFiles) -> str:
    """The distinct candidates, best first, with how often each was sampled."""
    key = f"valid_{run.metric}"
    scored = [c for c in run.candidates if key in c]
    counts = Counter(c["arch"] for c in scored)
    distinct = {c["arch"]: c[key] for c in scored}
    ranked = sorted(distinct.items(), key=lambda item: item[1], reverse=not run.lower_is_better)
    rows = [(rank, value, counts[arch], arch) for rank, (arch, value) in enumerate(ranked[:CANDIDATE_ROWS], start=1)]
    note = f'<p class="note">{len(distinct)} distinct of {len(scored)} scored; the best {len(rows)} shown.</p>'
    return table(("rank", f"validation {run.metric_name}", "sampled", "architecture (official string)"), rows) + note


def retrain_section(run: RunFiles) -> str:
    retrain = run.retrain
    if retrain is None or retrain.result is None:
        hint = "retraining" if retrain is not None else f"not retrained yet: enas retrain {run.folder}"
        return section("retrain", missing(hint))
    result = retrain.result
    rows = [("params", result.params), ("time", elapsed(result.time_s)),
            *((key.replace("_", " "), value) for key, value in result.figures.items())]
    if result.aux_params:
        rows.append(("aux params", result.aux_params))
    headline = f"{result.metric.replace('_', ' ')} {result.value:.4g}"
    if floor := result.figure("floor"):
        headline += (f": {result.value / floor:.2f} times the entropy floor {floor:.4g}, "
                     "the best perplexity the built-in language allows")
    if unigram := result.figure("unigram_ppl"):
        headline += f" (the unigram model: {unigram:.4g})"
    return section("retrain", f"<p><strong>{escape(headline)}</strong></p>", facts(rows),
                   image(run.folder / PLOTS_DIR / RETRAIN_PLOT, "retrain: training, validation and test"))


def rank_section(run: RunFiles) -> str:
    report = run.rank
    if report is None:
        return section("rank", missing(f"not ranked: enas rank {run.folder}"))
    ceiling = ceiling_text(report.noise_ceiling)
    shown = [("Kendall tau", f"{report.kendall_tau:.4g} ({ceiling})"), ("Spearman rho", report.spearman_rho),
             (f"top-{report.top_k} overlap", report.top_k_overlap),
             ("Kendall tau, uniform draws alone", report.kendall_tau_uniform or ""),
             ("training seeds", seeds_of(report.budget)), ("diverged when trained alone", report.diverged)]
    metric, alone = report.metric, report.alone_metric
    rows = [(row["source"], row[f"shared_valid_{metric}"], *truth_cells(row, alone), row["arch"])
            for row in report.panel]
    headers = ("source", f"shared valid {metric}", *truth_headers(report.panel[0], alone), "architecture")
    return section("rank", facts(shown), image(run.folder / PLOTS_DIR / RANK_PLOT, "rank"), table(headers, rows))


def compare_section(run: RunFiles) -> str:
    report = run.compare
    if report is None:
        return section("compare", missing(f"not compared: enas compare {run.folder}"))
    metric = report.metric
    headline = (f"the derived architecture beats {report.beaten} of {report.random} random ones "
                f"(percentile {report.percentile:.0f}{seeds_text(report.percentile_seeds)}; "
                f"{ceiling_text(report.noise_ceiling)}) at {metric.replace('_', ' ')}{diverged_text(report.diverged)}")
    rows = [("derived", *truth_cells(report.derived, metric), report.derived["params"] or "", report.derived["arch"])]
    rows += [("random", *truth_cells(row, metric), row["params"] or "", row["arch"]) for row in report.random_panel]
    headers = ("", *truth_headers(report.derived, metric), "params", "architecture")
    return section("compare", f"<p><strong>{escape(headline)}</strong></p>", f"<p>training seeds: "
                   f"{escape(seeds_of(report.budget))}</p>", table(headers, rows))


def seeds_of(budget: dict[str, Any]) -> str:
    """The training seeds a panel's record names (version 1: its one seed)."""
    return ", ".join(str(s) for s in budget.get("train_seeds") or [budget.get("seed", "")])
