"""Search quality: the rank statistics, `enas rank`, `enas compare`, multi-seed sweeps, and the
search's own means of ranking better (warm-up, fair sampling, longer rewards, an entropy floor)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch

from enas.commands.derive import run_derive
from enas.commands.search import run_search
from enas.config import ControllerConfig, load_config, preset_path
from enas.console import Reporter
from enas.ranking import kendall_tau, percentile, spearman_rho, top_k_overlap
from enas.report.html import write_report
from enas.run.metrics import read_metrics
from enas.spaces.base import TextShape
from enas.spaces.recurrent import RecurrentConfig, RecurrentSpace
from enas.strategies.controller import Controller, build_optimizer, reinforce_update
from enas.strategies.supernet_search import Search
from enas.strategies.watch import collapse_warning, unlearned_note, unlearned_warning, watch, watch_policy
from enas.tasks.text import TextTask

ENAS = str(Path(sys.executable).parent / "enas")
QUIET = Reporter(quiet=True)
TINY = ["threads=1", "data.vocab_size=16", "data.train_tokens=6000", "data.valid_tokens=1500",
        "data.test_tokens=1500", "recurrent.nodes=4", "recurrent.hidden=24", "search.epochs=2",
        "search.batch_size=8", "controller.steps=3", "controller.aggregate=4", "derive.samples=4",
        "retrain.epochs=1", "retrain.batch_size=8"]


# --------------------------------------------------------------------------- the statistics

def test_kendall_tau_and_spearman_rho_on_known_orderings():
    x = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert kendall_tau(x, x) == pytest.approx(1.0) and spearman_rho(x, x) == pytest.approx(1.0)
    assert kendall_tau(x, x[::-1]) == pytest.approx(-1.0) and spearman_rho(x, x[::-1]) == pytest.approx(-1.0)
    # one swapped neighbour pair of 4: 5 concordant, 1 discordant pairs; d^2 = 2, rho = 1 - 6*2/(4*15)
    assert kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)
    assert spearman_rho([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    # tau-b with a tie in y: 2 concordant, 0 discordant, one pair tied in y only -> 2 / sqrt(3 * 2)
    assert kendall_tau([1, 2, 3], [1, 2, 2]) == pytest.approx(2 / math.sqrt(6))
    assert spearman_rho([10, 30, 20, 30], [1, 3, 2, 3]) == pytest.approx(1.0)   # ties share their mean rank
    assert math.isnan(kendall_tau([1, 1, 1], [1, 2, 3])) and math.isnan(spearman_rho([1, 1, 1], [1, 2, 3]))


def test_top_k_overlap_and_percentile_on_known_numbers():
    assert top_k_overlap([5, 4, 3, 2, 1], [5, 4, 1, 2, 3], 2) == 1.0
    assert top_k_overlap([5, 4, 3, 2, 1], [1, 2, 3, 4, 5], 2) == 0.0
    assert percentile(5.5, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]) == 50.0
    assert percentile(5, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]) == 45.0    # a tie counts half
    assert percentile(11, [1, 2, 3]) == 100.0 and percentile(0, [1, 2, 3]) == 0.0


# --------------------------------------------------------------------------- the commands

@pytest.fixture(scope="module")
def searched(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("quality") / "run"
    config = load_config([preset_path("default")], TINY)
    run_search(config, run, False, QUIET)
    run_derive(config, run, QUIET)
    return run


def enas(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([ENAS, *args, "--quiet"], capture_output=True, text=True, timeout=600)


def test_rank_scores_a_panel_twice_and_reuses_what_it_trained(searched):
    result = enas("rank", str(searched), "--panel", "6", "--samples", "2", "--top", "2")
    assert result.returncode == 0, result.stderr
    assert "Kendall tau" in result.stdout
    report = json.loads((searched / "rank.json").read_text())
    panel = report["panel"]
    assert len(panel) == 6 and len({row["arch"] for row in panel}) == 6
    assert panel[0]["source"] == "most likely" and {row["source"] for row in panel} <= {"most likely", "sampled",
                                                                                        "uniform"}
    shared = [-row["shared_valid_ppl"] for row in panel]
    alone = [-row["alone_test_ppl"] for row in panel]
    assert report["kendall_tau"] == pytest.approx(kendall_tau(shared, alone))
    assert report["spearman_rho"] == pytest.approx(spearman_rho(shared, alone))
    uniform = [i for i, row in enumerate(panel) if row["source"] == "uniform"]
    assert len(uniform) >= 3                                             # 6 less the most likely and 2 samples
    assert report["kendall_tau_uniform"] == pytest.approx(kendall_tau([shared[i] for i in uniform],
                                                                      [alone[i] for i in uniform]))
    assert all(1.0 < row["alone_test_ppl"] < 16.0 for row in panel)     # trained: below the uniform 16
    assert (searched / "plots" / "rank.png").read_bytes()[:4] == b"\x89PNG"
    trained = sorted((searched / "standalone").iterdir())
    stamps = [(folder / "result.json").stat().st_mtime_ns for folder in trained]
    again = enas("rank", str(searched), "--panel", "6", "--samples", "2", "--top", "2")
    assert again.returncode == 0, again.stderr
    assert sorted((searched / "standalone").iterdir()) == trained        # nothing trained again
    assert [(folder / "result.json").stat().st_mtime_ns for folder in trained] == stamps
    assert json.loads((searched / "rank.json").read_text())["panel"] == panel


def test_compare_places_the_derived_architecture_among_random_ones(searched):
    result = enas("compare", str(searched), "--random", "4")
    assert result.returncode == 0, result.stderr
    report = json.loads((searched / "compare.json").read_text())
    derived = report["derived"]["test_ppl"]
    others = [row["test_ppl"] for row in report["random_panel"]]
    assert len(others) == 4
    assert report["percentile"] == percentile(-derived, [-o for o in others])
    assert report["beaten"] == sum(derived < o for o in others)
    assert f"percentile {report['percentile']:.0f}" in result.stdout


def test_rank_of_a_search_without_shared_weights_is_a_one_line_error(tmp_path):
    run = tmp_path / "nas_rl"
    config = load_config([preset_path("default")], [*TINY, "strategy=nas_rl", "nas_rl.updates=1",
                                                    "nas_rl.children=2", "nas_rl.child_epochs=1",
                                                    "search.steps_per_epoch=5"])
    run_search(config, run, False, QUIET)
    result = enas("rank", str(run))
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "trains no shared weights" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_seeds_run_search_derive_and_retrain_per_seed_and_summarise(tmp_path):
    out = tmp_path / "sweep"
    result = enas("search", "--seeds", "0,1", "-o", str(out), *TINY)
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "seeds.json").read_text())
    values = [json.loads((out / f"seed-{s}" / "retrain" / "result.json").read_text())["value"] for s in (0, 1)]
    assert [run["value"] for run in summary["runs"]] == values
    assert summary["value_mean"] == pytest.approx(sum(values) / 2)
    assert summary["value_std"] == pytest.approx(abs(values[0] - values[1]) / math.sqrt(2))
    assert all(run["search_s"] > 0 for run in summary["runs"])
    configs = [(out / f"seed-{s}" / "config.yaml").read_text() for s in (0, 1)]
    assert "seed: 0" in configs[0] and "seed: 1" in configs[1]
    stamp = (out / "seed-0" / "retrain" / "result.json").stat().st_mtime_ns
    again = enas("search", "--seeds", "0,1", "-o", str(out), *TINY)      # read back, not run again
    assert again.returncode == 0, again.stderr
    assert (out / "seed-0" / "retrain" / "result.json").stat().st_mtime_ns == stamp
    bad = enas("search", "--seeds", "0,x")
    assert bad.returncode == 2 and "--seeds" in bad.stderr


# --------------------------------------------------------------------------- ranking better

def test_warmup_epochs_train_the_supernet_without_controller_updates(tmp_path):
    config = load_config([preset_path("default")], [*TINY, "search.epochs=2", "search.warmup_epochs=1"])
    run_search(config, tmp_path / "run", False, QUIET)
    phases = [(m["phase"], m["epoch"]) for m in read_metrics(tmp_path / "run" / "metrics.jsonl")]
    assert ("controller", 0) not in phases and ("supernet", 0) in phases and ("eval", 0) in phases
    assert phases.count(("controller", 1)) == 3


def biased_search(fraction: float) -> Search:
    """A search whose controller picks op 0 of every op decision almost surely, past its warm-up."""
    config = load_config([preset_path("default")], [*TINY, f"search.uniform_fraction={fraction}"])
    search = Search(config, torch.device("cpu"))
    with torch.no_grad():
        for head in search.controller.op_heads:
            head.bias.copy_(torch.tensor([50.0] + [-50.0] * (head.bias.numel() - 1)))
    return search


def op_zero_share(search: Search, n: int) -> float:
    op_positions = [i for i, d in enumerate(search.controller.decisions) if d.kind == "op"]
    archs = search.supernet_architectures(n)
    return sum(arch.choices[i] == 0 for arch in archs for i in op_positions) / (n * len(op_positions))


def test_uniform_fraction_replaces_that_share_of_the_supernet_architectures_by_uniform_ones():
    assert op_zero_share(biased_search(0.0), 400) > 0.95
    # half the steps uniform: op 0 in about 0.5 * 1 + 0.5 * 1/4 of the choices
    assert op_zero_share(biased_search(0.5), 400) == pytest.approx(0.625, abs=0.05)
    assert op_zero_share(biased_search(1.0), 400) == pytest.approx(0.25, abs=0.04)


def test_a_reward_over_several_batches_is_c_over_the_perplexity_of_their_mean_loss():
    config = load_config([preset_path("default")], TINY)
    task = TextTask(config, config.search)
    search = Search(config, torch.device("cpu"))
    model = search.bind(search.sample(1)[0])
    c = config.controller.reward_constant
    single = [task.reward(model, index) for index in (3, 4)]
    mean_loss = sum(math.log(c / r) for r in single) / 2
    assert task.reward(model, 3, batches=2) == pytest.approx(c / math.exp(mean_loss))


def test_an_entropy_floor_keeps_a_rewarded_controller_from_collapsing():
    space = RecurrentSpace(RecurrentConfig(nodes=3), TextShape(8))

    def entropy_share_after_training(floor: float) -> float:
        torch.manual_seed(0)
        controller = Controller.for_space(space, ControllerConfig(lr=0.05, temperature=1.0, tanh_constant=0,
                                                                  entropy_floor=floor))
        optimizer = build_optimizer(controller)
        generator, baseline = torch.Generator().manual_seed(0), None
        for _ in range(60):   # reward: how many activations are tanh (op 0)
            samples = controller(16, generator)
            rewards = [float(sum(a.choices[i] == 0 for i in (0, 2, 4))) for a in samples.architectures]
            baseline, _ = reinforce_update(controller, optimizer, samples, rewards, baseline)
        return watch_policy(controller, seed=1).entropy_share

    assert entropy_share_after_training(0.0) < 0.4
    assert entropy_share_after_training(0.7) > 0.6


def test_watching_the_policy_logs_each_decision_and_warns_once_of_a_collapse(capsys):
    space = RecurrentSpace(RecurrentConfig(nodes=3), TextShape(8))
    controller = Controller.for_space(space, ControllerConfig(temperature=1.0, tanh_constant=0))
    figures = watch_policy(controller, seed=0)
    assert list(figures.decision_entropy) == [d.name for d in controller.decisions]
    assert sum(figures.op_frequency.values()) == pytest.approx(1.0)
    # node 2 can read node 1 only, node 3 either of the two: input "0" is read 3 times in 4
    assert figures.input_frequency.keys() == {"0", "1"} and figures.input_frequency["0"] == pytest.approx(0.75, abs=0.1)
    assert figures.entropy_share > 0.95 and collapse_warning(figures, 0, 10) is None
    with torch.no_grad():
        controller.op_heads[0].bias.copy_(torch.tensor([50.0, -50.0, -50.0, -50.0]))
    capsys.readouterr()
    metrics, warned = watch(controller, 0, 1, 10, False)
    messages = capsys.readouterr().err.splitlines()                    # the warning goes to stderr
    assert warned and len(messages) == 1 and "op tanh" in messages[0] and metrics["warning"] == messages[0]
    assert metrics["top_op"]["share"] == 1.0 and metrics["top_arch_share"] > 0.0
    _, still = watch(controller, 0, 2, 10, True)
    assert still and capsys.readouterr().err == ""                      # once a run
    drawn = Counter(watch_policy(controller, seed=0).op_frequency)
    assert drawn["tanh"] == 1.0


def test_a_policy_still_about_uniform_after_half_the_search_is_warned_once(capsys):
    space = RecurrentSpace(RecurrentConfig(nodes=3), TextShape(8))
    controller = Controller.for_space(space, ControllerConfig())   # untrained: about uniform
    figures = watch_policy(controller, seed=0)
    assert figures.entropy_share > 0.97 and unlearned_warning(figures, 3, 10) is None   # before half the search
    capsys.readouterr()
    metrics, warned = watch(controller, 0, 4, 10, False)                # epoch 5 of 10: half done
    message = capsys.readouterr().err.strip()
    assert warned and metrics["warning"] == message and "not yet learned" in message
    assert all(key in message for key in ("controller.steps", "controller.lr", "controller.temperature"))
    _, still = watch(controller, 0, 5, 10, True)
    assert still and capsys.readouterr().err == ""                      # once a run
    uniform = Controller.for_space(space, ControllerConfig()).make_uniform()
    metrics, warned = watch(uniform, 0, 9, 10, False)                   # random_ws: uniform by design
    assert not warned and "warning" not in metrics and metrics["entropy_share"] == pytest.approx(1.0)


def test_derive_and_the_report_say_when_the_controller_has_not_learned(searched, capsys):
    lines = [{"phase": "eval", "entropy_share": 0.5}, {"phase": "eval", "entropy_share": 0.99}]
    assert "had not learned" in unlearned_note(lines, learns=True)
    assert unlearned_note(lines, learns=False) is None and unlearned_note(lines[:1], learns=True) is None
    assert read_metrics(searched / "metrics.jsonl")[-1]["entropy_share"] > 0.97   # 6 controller steps learn nothing
    config = load_config([preset_path("default")], TINY)
    capsys.readouterr()
    run_derive(config, searched, Reporter())
    printed = " ".join(capsys.readouterr().err.split())                 # rich wraps the line at the width
    assert printed.count("had not learned") == 1 and "raise controller.steps" in printed
    assert "had not learned" in write_report(searched).read_text()


def test_each_eval_line_of_a_search_holds_the_policy_figures(searched):
    evals = [m for m in read_metrics(searched / "metrics.jsonl") if m["phase"] == "eval"]
    assert len(evals) == 2
    for line in evals:
        assert len(line["decision_entropy"]) == 7 and 0.0 < line["entropy_share"] <= 1.0
        assert sum(line["op_frequency"].values()) == pytest.approx(1.0, abs=1e-3)
        assert sum(line["input_frequency"].values()) == pytest.approx(1.0, abs=1e-3)
        assert 0.0 < line["top_arch_share"] <= 1.0 and line["search_s"] > 0
