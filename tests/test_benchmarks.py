"""The benchmarks run at toy sizes and report what they promise. Nothing here is timed."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks.__main__ import main
from benchmarks.controller import bench_controller
from benchmarks.images import ImageSize, bench_images, build_steps, image_shape, image_sizes
from benchmarks.recurrent import (
    MatmulPass,
    PlainCellLM,
    RnnResult,
    RnnSize,
    bench_size,
    paper_search_seconds,
    preset_config,
)
from benchmarks.search_probe import probe_search
from benchmarks.timing import BenchmarkError, Timing, kernels_per_call, resolve_device
from enas.spaces import checked_architecture
from enas.spaces.base import ImageShape, TextShape
from enas.spaces.recurrent import RecurrentConfig, RecurrentPlan, RecurrentSpace

TOY = RnnSize("toy", nodes=3, hidden=8, batch=4, bptt=5, vocab=11)
ONE_REP = {"budget_s": 0.0, "min_reps": 1}


def test_recurrent_figures_at_a_toy_size():
    result = bench_size(TOY, torch.device("cpu"), **ONE_REP)
    assert set(result.timings) == {"supernet", "plain", "matmuls", "reward"}
    for value in (result.supernet_tokens_per_s, result.plain_tokens_per_s, result.overhead_ratio,
                  result.mfu, result.matmul_bound_tokens_per_s, result.reward_s, result.kernels):
        assert value > 0
    assert result.config()["hidden"] == 8


def test_the_plain_cell_computes_what_a_child_with_its_weights_computes():
    # The overhead ratio compares like with like only if the plain cell is the same model.
    arch = checked_architecture("recurrent", (0, 0, 1, 0, 3, 1, 2))   # two loose ends, every activation kind
    plan, hidden, vocab = RecurrentPlan.of(arch), 6, 9
    plain = PlainCellLM(vocab, plan, hidden, init_range=0.3)
    child = RecurrentSpace(RecurrentConfig(nodes=len(plan.activations), hidden=hidden), TextShape(vocab)).child(arch)
    with torch.no_grad():
        child.embedding.copy_(plain.embedding)
        child.w_x.copy_(torch.cat([plain.w_xc, plain.w_xh], 1))
        child.w_h.copy_(torch.cat([plain.w_hc, plain.w_hh], 1))
        for edge, c, h in zip(child.edges, plain.w_c, plain.w_h):
            edge.copy_(torch.cat([c, h], 1))
    tokens, state = torch.randint(vocab, (5, 3)), torch.randn(3, hidden)
    for got, want in zip(plain(tokens, state), child(tokens, state)):
        assert torch.allclose(got, want, atol=1e-6)


def test_kernels_are_counted_without_views_or_allocations():
    x = torch.ones(4, 4)

    def call():
        out = torch.empty(3, 4)                   # an allocation: no kernel
        torch.mul(x.t()[1:], 2, out=out)          # two views, then one kernel
        x.add_(1).sum()                           # two kernels
    assert kernels_per_call(call) == 3
    assert kernels_per_call(lambda: x.view(16).t()) == 0


def test_the_matmul_pass_does_three_times_the_forward_flops(monkeypatch):
    counted = []
    mm = torch.mm

    def counting_mm(a, b, **kwargs):
        counted.append(2 * a.shape[0] * a.shape[1] * b.shape[1])
        return mm(a, b, **kwargs)

    monkeypatch.setattr(torch, "mm", counting_mm)
    MatmulPass(TOY, torch.device("cpu"))()
    assert sum(counted) == 3 * TOY.forward_flops()


def test_controller_figures():
    result = bench_controller("default", budget_s=0.0, min_reps=1)
    assert result.update_s_per_arch > 0 and result.sample_s_per_arch > 0
    assert result.config["aggregate"] == result.aggregate


def test_search_probe_reports_the_controller_share_and_peak_memory():
    tiny = ["recurrent.nodes=3", "recurrent.hidden=8", "controller.hidden=8", "controller.steps=1",
            "controller.aggregate=2", "data.train_tokens=1000", "data.valid_tokens=200",
            "data.test_tokens=200", "threads=1"]
    figures = probe_search(epochs=1, device="cpu", overrides=tiny)
    assert 0 < figures["controller_share"] < 1
    assert figures["peak_rss_mb"] > 0
    assert {"supernet_phase", "controller_phase", "reward"} <= set(figures["phases_s"])


def test_paper_projection_counts_every_phase_of_the_ptb_search():
    def result(step_s: float, reward_s: float) -> RnnResult:
        return RnnResult(TOY, {"supernet": Timing(step_s, step_s, step_s, 1),
                               "reward": Timing(reward_s, reward_s, reward_s, 1)}, kernels=0)

    ptb = preset_config("ptb")
    epochs, steps = ptb.search.epochs, ptb.search.steps_per_epoch
    rewards = ptb.controller.steps * ptb.controller.aggregate
    assert paper_search_seconds(result(1.0, 0.0), 0.0, 0.0) == pytest.approx(epochs * steps)
    assert paper_search_seconds(result(0.0, 0.0), 1.0, 0.0) == pytest.approx(epochs * rewards)
    evaluation = paper_search_seconds(result(0.0, 1.0), 0.0, 0.0) - epochs * rewards
    assert evaluation == pytest.approx(epochs * 33)  # all of PTB's validation text: 33 windows of 64 x 35


@pytest.fixture
def keep_threads():
    threads = torch.get_num_threads()  # main() sets the process's threads as a run does
    yield
    torch.set_num_threads(threads)


def test_json_output_names_the_figures(capsys, keep_threads):
    assert main(["--json", "--reps", "1", "--threads", "1", "--only", "controller"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert set(figures["controller_ms_per_arch"]) == {"default", "ptb"}
    assert {"spread", "configs", "machine"} <= set(figures)


def test_cuda_without_cuda_is_a_clear_error(capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(BenchmarkError, match="no CUDA device"):
        resolve_device("cuda")
    assert main(["--device", "cuda", "--only", "controller"]) == 2
    assert "no CUDA device" in capsys.readouterr().err


TOY_IMAGES = ("data.image_size=8", "micro.layers=1", "micro.filters=2", "micro.nodes=2", "macro.layers=3",
              "macro.filters=2", "search.batch_size=4", "retrain.batch_size=4", "controller.hidden=8")


def toy_image_size(space: str) -> ImageSize:
    # the retrain child with an auxiliary head and drop path, as the final micro preset has them
    return ImageSize("toy", space, "shapes", TOY_IMAGES, "shapes",
                     TOY_IMAGES + ("micro.aux_weight=0.4", "micro.drop_path=0.4"))


@pytest.mark.parametrize("space", ["micro", "macro"])
def test_image_figures_at_a_toy_size(space, one_thread):
    result = bench_images(toy_image_size(space), torch.device("cpu"), **ONE_REP)
    assert set(result.timings) == {"supernet", "fixed", "child", "retrain", "reward", "controller"}
    for value in (result.images_per_s, result.child_images_per_s, result.overhead_ratio,
                  result.retrain_images_per_s, result.reward_s, result.controller_s_per_arch, result.kernels):
        assert value > 0
    # the projection adds up its parts: 10 epochs of shapes, each at least its shared steps
    assert result.search_hours() * 3600 > 10 * (2700 // 4) * result.timings["supernet"].median
    assert result.config()["batch"] == 4 and result.config()["retrain"]["preset"] == "shapes"


@pytest.mark.parametrize("space", ["micro", "macro"])
def test_every_timed_image_step_trains_its_network(space, one_thread):
    built = build_steps(toy_image_size(space), torch.device("cpu"))
    networks = {"supernet": built.supernet, "fixed": built.supernet, "child": built.child, "retrain": built.retrain}
    assert set(built.steps) == set(networks) | {"reward", "controller"}
    for name, network in networks.items():
        before = [p.detach().clone() for p in network.parameters()]
        built.steps[name]()
        assert any(not torch.equal(old, new) for old, new in zip(before, network.parameters())), name
    if space == "micro":  # the retrain child is built with the retrain settings, the child without drop path
        assert built.retrain.aux_head is not None and built.retrain.cfg.drop_path == 0.4
        assert built.child.cfg.drop_path == 0.0


def test_image_sizes_take_the_presets_shapes():
    micro, macro = image_sizes("micro"), image_sizes("macro")
    assert list(micro) == ["default", "reference", "paper"] and list(macro) == ["default", "paper"]
    reference = micro["reference"].search_config()
    assert (reference.micro.filters, reference.micro.layers, reference.micro.nodes,
            reference.search.batch_size) == (16, 6, 5, 64)
    assert image_shape(reference) == ImageShape(3, 32, 32, 10) and micro["reference"].retrain_config() is None
    final = micro["paper"].retrain_config()
    assert (final.micro.layers, final.micro.filters, final.retrain.batch_size,
            final.micro.aux_weight) == (15, 36, 144, 0.4)
    assert macro["paper"].retrain_config().macro.layers == 24
    assert macro["default"].search_config().space == "macro"
    assert image_shape(macro["default"].search_config()) == ImageShape(3, 16, 16, 8)


def test_json_output_names_the_image_figures(capsys, keep_threads):
    assert main(["--json", "--quick", "--reps", "1", "--threads", "1", "--only", "micro",
                 "--image-sizes", "default"]) == 0
    figures = json.loads(capsys.readouterr().out)
    for name in ("micro_images_per_s", "micro_child_images_per_s", "micro_overhead_ratio",
                 "micro_retrain_images_per_s", "micro_kernels_per_step"):
        assert set(figures[name]) == {"default"} and figures[name]["default"] > 0
    assert figures["configs"]["micro/default"]["layers"] == 2
    with pytest.raises(SystemExit):
        main(["--only", "micro", "--image-sizes", "huge"])


def test_the_quality_benchmark_reports_tau_and_percentile_per_seed_beside_their_ceilings(tmp_path):
    from test_quality import TINY

    command = [sys.executable, "-m", "benchmarks.quality", "--seeds", "0,1", "--train-seeds", "0,1", "--panel", "3",
               "--samples", "1", "--random", "2", "--epochs", "1", "--out", str(tmp_path), *TINY]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=Path(__file__).parents[1])
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "default" / "quality.json").read_text())
    assert [row["seed"] for row in report["rows"]] == [0, 1] and report["train_seeds"] == [0, 1]
    for row in report["rows"]:
        assert -1.0 <= row["kendall_tau"] <= 1.0 and 0.0 <= row["percentile"] <= 100.0
        assert -1.0 <= row["tau_ceiling"] <= 1.0 and -1.0 <= row["compare_ceiling"] <= 1.0
        assert len(row["percentile_seeds"]) == 2
    assert set(report["summary"]) >= {"kendall_tau", "tau_ceiling", "percentile", "compare_ceiling", "derived",
                                      "search_s"}
    # the uniform architectures are shared by the seeds: 2 of them, plus per seed at most 3 more; each trained
    # under both training seeds
    assert len(list((tmp_path / "standalone").iterdir())) <= 2 * (2 + 2 * 3)
    assert "kendall_tau" in result.stdout and "tau_ceiling" in result.stdout


def test_text_load_reads_a_repeated_folder_from_the_text_then_from_its_cache(tmp_path):
    for name, text in (("train.txt", "a b c\nb c\n" * 50), ("valid.txt", "a b\n"), ("test.txt", "c\n")):
        (tmp_path / name).write_text(text)
    result = subprocess.run([sys.executable, "-m", "benchmarks.text_load", str(tmp_path), "--tokens", "2000"],
                            capture_output=True, text=True, timeout=120, check=True)
    assert "train split 6 times over" in result.stdout        # 350 tokens a copy
    assert result.stdout.count("2,100 train tokens, 4 symbols") == 2
    assert "from the cache" in result.stdout and "tokens.pt" in result.stdout
