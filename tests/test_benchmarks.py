"""The benchmarks run at toy sizes and report what they promise. Nothing here is timed."""

import json

import pytest
import torch

from benchmarks.__main__ import main
from benchmarks.controller import bench_controller
from benchmarks.recurrent import (MatmulPass, PlainCellLM, RnnResult, RnnSize, bench_size, paper_search_seconds,
                                  preset_config)
from benchmarks.search_probe import probe_search
from benchmarks.timing import BenchmarkError, Timing, resolve_device
from enas.arch import Architecture
from enas.config import RecurrentConfig
from enas.spaces.recurrent import CellPlan, RecurrentSpace

TOY = RnnSize("toy", nodes=3, hidden=8, batch=4, bptt=5, vocab=11)
ONE_REP = {"budget_s": 0.0, "min_reps": 1}


def test_recurrent_figures_at_a_toy_size():
    result = bench_size(TOY, torch.device("cpu"), **ONE_REP)
    assert set(result.timings) == {"supernet", "plain", "matmuls", "reward"}
    for value in (result.supernet_tokens_per_s, result.plain_tokens_per_s, result.overhead_ratio,
                  result.mfu, result.matmul_bound_tokens_per_s, result.reward_s):
        assert value > 0
    assert result.config()["hidden"] == 8


def test_the_plain_cell_computes_what_a_child_with_its_weights_computes():
    # The overhead ratio compares like with like only if the plain cell is the same model.
    arch = Architecture("recurrent", (0, 0, 1, 0, 3, 1, 2))   # two loose ends, every activation kind
    plan, hidden, vocab = CellPlan.of(arch), 6, 9
    plain = PlainCellLM(vocab, plan, hidden, init_range=0.3)
    child = RecurrentSpace(RecurrentConfig(nodes=len(plan.activations), hidden=hidden), vocab).child(arch)
    with torch.no_grad():
        child.embedding.copy_(plain.embedding)
        child.w_x.copy_(torch.cat([plain.w_xc, plain.w_xh], 1))
        child.w_h.copy_(torch.cat([plain.w_hc, plain.w_hh], 1))
        child.edges.copy_(torch.stack([torch.cat([c, h], 1) for c, h in zip(plain.w_c, plain.w_h)]))
    tokens, state = torch.randint(vocab, (5, 3)), torch.randn(3, hidden)
    for got, want in zip(plain(tokens, state), child(tokens, state)):
        assert torch.allclose(got, want, atol=1e-6)


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
    assert {"shared_phase", "controller_phase", "reward"} <= set(figures["phases_s"])


def test_paper_projection_counts_every_phase_of_the_ptb_search():
    def result(step_s: float, reward_s: float) -> RnnResult:
        return RnnResult(TOY, {"supernet": Timing(step_s, step_s, step_s, 1),
                               "reward": Timing(reward_s, reward_s, reward_s, 1)})

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
