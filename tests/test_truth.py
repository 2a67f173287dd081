"""The ground truth of rank and compare: a budget that is a whole schedule, the mean over training
seeds with its noise ceiling, a diverged panel member as a result, bits per character."""

from __future__ import annotations

import dataclasses
import json
import math
import random
import statistics
from pathlib import Path

import pytest
from test_quality import QUIET, TINY, enas

from enas.commands import standalone
from enas.commands.compare import run_compare
from enas.commands.derive import run_derive
from enas.commands.rank import run_rank
from enas.commands.search import run_search
from enas.commands.standalone import Budget, scaled_schedule
from enas.commands.truth import GroundTruth, Truth
from enas.config import RetrainConfig, load_config, preset_path
from enas.folder.config_file import saved_config
from enas.ranking import seed_agreement
from enas.records import CompareReport, RankReport
from enas.report.html import write_report
from enas.run.training import learning_rate
from enas.spaces import official

# --------------------------------------------------------------------------- a budget's schedule


def test_a_budget_compresses_every_epoch_schedule_of_the_recipe():
    recipe = RetrainConfig(epochs=20, lr=1.0, lr_decay=0.9, lr_decay_start=12, average_after=10, cosine_period=4)
    half = scaled_schedule(recipe, 10)
    assert (half.epochs, half.lr_decay_start, half.average_after, half.cosine_period) == (10, 6, 5, 2)
    assert [learning_rate(half, epoch) for epoch in (5, 6, 9)] == pytest.approx([1.0, 0.81, 0.81 ** 4])
    assert learning_rate(half, 9) == pytest.approx(learning_rate(recipe, 19))   # it ends where the recipe ends
    assert scaled_schedule(recipe, 20) == recipe
    # the nearest whole epoch, halves up; a non-zero one stays at least 1; 0 keeps its meaning
    assert scaled_schedule(dataclasses.replace(recipe, lr_decay_start=15), 10).lr_decay_start == 8
    tiny = scaled_schedule(dataclasses.replace(recipe, lr_decay_start=1, average_after=0, cosine_period=0), 2)
    assert (tiny.lr_decay_start, tiny.average_after, tiny.cosine_period) == (1, 0, 0)


def test_the_default_recipe_decays_within_a_half_budget():
    config = load_config([preset_path("default")], [])
    assert (config.retrain.epochs, config.retrain.lr_decay_start) == (20, 15)
    trained = Budget(10, seed=0, train_seeds=(3, 4)).config(config, 4)
    assert (trained.seed, trained.retrain.epochs, trained.retrain.lr_decay_start) == (4, 10, 8)   # 7.5 rounds up
    assert learning_rate(trained.retrain, 9) < learning_rate(trained.retrain, 0)


# --------------------------------------------------------------------------- seeds and their ceiling

def test_two_identical_seed_orders_have_a_noise_ceiling_of_1():
    order = [3.0, 1.0, 2.0, 5.0]
    assert seed_agreement([order, order]) == pytest.approx(1.0)
    reversed_order = [-v for v in order]
    assert seed_agreement([order, reversed_order]) == pytest.approx(-1.0)
    assert seed_agreement([order, order, reversed_order]) == pytest.approx(-1 / 3)   # the mean over the 3 pairs
    same = GroundTruth("test_ppl", True, (0, 1), [Truth((v, v), 10) for v in order])
    assert same.noise_ceiling() == pytest.approx(1.0)
    assert GroundTruth("test_ppl", True, (0,), [Truth((v,), 10) for v in order]).noise_ceiling() is None
    with pytest.raises(ValueError):
        seed_agreement([order])


def test_the_truth_of_a_panel_is_the_mean_over_seeds_and_a_diverged_member_is_the_worst():
    truth = GroundTruth("test_ppl", True, (0, 1), [Truth((10.0, 12.0), 100, (3.0, 3.2)), Truth((math.nan, 5.0), 90),
                                                    Truth((11.0, 11.5), 80, (3.1, 3.15))])
    assert truth.scores() == [-11.0, -math.inf, -11.25]
    assert truth.seed_scores() == [[-10.0, -math.inf, -11.0], [-12.0, -5.0, -11.5]]
    assert truth.diverged == 1 and truth.percentiles(0) == [100.0, 0.0]
    assert truth.row(0, "alone_") == {"alone_test_ppl": 11.0, "alone_test_ppl_std": pytest.approx(math.sqrt(2)),
                                      "alone_test_ppl_seeds": [10.0, 12.0], "alone_test_bpc": pytest.approx(3.1),
                                      "alone_params": 100, "diverged": False}
    assert truth.row(1) == {"test_ppl": None, "test_ppl_std": None, "test_ppl_seeds": [None, 5.0], "test_bpc": None,
                            "params": 90, "diverged": True}


def test_duplicate_training_seeds_are_refused(tmp_path):
    for command in ("rank", "compare"):
        result = enas(command, str(tmp_path), "--train-seeds", "0,0")
        assert result.returncode == 2 and "--train-seeds needs distinct integers" in result.stderr


# --------------------------------------------------------------------------- at a tiny size, on characters

@pytest.fixture(scope="module")
def char_run(tmp_path_factory) -> Path:
    """A tiny search and derive on a character-level corpus of a toy grammar."""
    root = tmp_path_factory.mktemp("truth")
    corpus, rng = root / "corpus", random.Random(0)
    corpus.mkdir()
    subjects, verbs, objects = ["the cat", "a dog", "the old man"], ["sat on", "ran to", "saw"], ["the mat", "a log"]
    for split, lines in (("train", 600), ("valid", 80), ("test", 80)):
        (corpus / f"{split}.txt").write_text("".join(f"{rng.choice(subjects)} {rng.choice(verbs)} "
                                                     f"{rng.choice(objects)}\n" for _ in range(lines)))
    config = load_config([preset_path("default")], [*TINY, "search.epochs=1", "data.name=text",
                                                    f"data.root={corpus}", "data.unit=char"])
    run = root / "run"
    run_search(config, run, False, QUIET)
    run_derive(config, run, QUIET)
    return run


def per_seed_results(cache: Path) -> dict[tuple[str, int], dict]:
    """Every result.json of a panel cache, by (architecture, training seed)."""
    return {(json.loads((folder / "result.json").read_text())["arch"], saved_config(folder).seed):
            json.loads((folder / "result.json").read_text()) for folder in cache.iterdir()
            if (folder / "result.json").is_file()}


def test_compare_over_two_seeds_averages_them_and_shows_the_percentile_beside_its_ceiling(char_run):
    result = enas("compare", str(char_run), "--random", "3", "--epochs", "1", "--train-seeds", "0,1")
    assert result.returncode == 0, result.stderr
    report = json.loads((char_run / "compare.json").read_text())
    assert report["schema"] == 2 and report["budget"]["train_seeds"] == [0, 1]
    trained = per_seed_results(char_run / "standalone")
    rows = [report["derived"], *report["random_panel"]]
    for row in rows:
        seeds = [trained[row["arch"], seed] for seed in (0, 1)]
        assert row["test_ppl_seeds"] == [r["value"] for r in seeds]
        assert row["test_ppl"] == pytest.approx(statistics.fmean(r["value"] for r in seeds))
        assert row["test_ppl_std"] == pytest.approx(statistics.stdev(r["value"] for r in seeds))
        assert row["test_bpc"] == pytest.approx(statistics.fmean(r["test_bpc"] for r in seeds))
        assert row["diverged"] is False
    orders = [[-row["test_ppl_seeds"][seed] for row in rows] for seed in (0, 1)]
    assert report["noise_ceiling"] == pytest.approx(seed_agreement(orders))
    assert len(report["percentile_seeds"]) == 2
    assert f"percentile {report['percentile']:.0f}, per seed" in result.stdout
    assert f"noise ceiling {report['noise_ceiling']:.3f}" in result.stdout and "bits per character" in result.stdout


def test_rank_over_two_seeds_keeps_each_members_spread_and_the_ceiling(char_run):
    result = enas("rank", str(char_run), "--panel", "4", "--samples", "1", "--epochs", "1", "--train-seeds", "0,1")
    assert result.returncode == 0, result.stderr
    report = json.loads((char_run / "rank.json").read_text())
    assert report["truth_metric"] == "test_ppl" and report["diverged"] == 0
    orders = [[-row["alone_test_ppl_seeds"][seed] for row in report["panel"]] for seed in (0, 1)]
    assert report["noise_ceiling"] == pytest.approx(seed_agreement(orders))
    for row in report["panel"]:
        assert row["alone_test_ppl"] == pytest.approx(statistics.fmean(row["alone_test_ppl_seeds"]))
        assert row["alone_test_ppl_std"] >= 0 and 0 < row["alone_test_bpc"] < row["alone_test_ppl"]
    assert f"Kendall tau {report['kendall_tau']:.3f} (noise ceiling {report['noise_ceiling']:.3f})" in result.stdout


def test_a_diverged_panel_member_is_ranked_worst_and_the_panel_goes_on(char_run, tmp_path, monkeypatch):
    config = saved_config(char_run)
    real, trained = standalone.run_retrain, []

    def absurd_for_the_first(config, arch, folder, *args, **kwargs):   # a real divergence, of one member
        trained.append(official(arch))
        if len(trained) == 1:
            config = dataclasses.replace(config, retrain=dataclasses.replace(config.retrain, lr=1e9))
        return real(config, arch, folder, *args, **kwargs)

    monkeypatch.setattr(standalone, "run_retrain", absurd_for_the_first)
    cache = tmp_path / "cache"
    report = run_compare(config, char_run, 2, Budget(1, 0), cache, "rerun", QUIET)   # the derived one first
    assert report.diverged == 1 and report.derived["diverged"] is True
    assert report.derived["test_ppl"] is None and report.derived["test_bpc"] is None
    assert report.percentile == 0.0 and report.beaten == 0 and report.noise_ceiling is None
    assert CompareReport.read(char_run) == report
    assert len([f for f in cache.iterdir() if (f / "diverged.json").is_file()]) == 1
    trained.clear()
    assert run_compare(config, char_run, 2, Budget(1, 0), cache, "rerun", QUIET) == report
    assert trained == []                                                  # the divergence is read back
    trained.clear()
    ranked = run_rank(config, char_run, 3, 0, Budget(1, 0), cache, 2, "rerun", QUIET)
    assert ranked.panel[0]["diverged"] is True and ranked.panel[0]["alone_test_ppl"] is None and ranked.diverged >= 1
    assert RankReport.read(char_run) == ranked
    page = write_report(char_run).read_text()
    assert "1 diverged" in page and "noise ceiling n/a: one training seed" in page
