"""The speed switches (config `cuda.*`, `channels_last`): what runs on a GPU is exercised on the CPU.

bf16 autocast is the same mechanism on both devices, so every space's supernet trains under the
CPU's autocast here and its gradients are checked against float32 ones. On the CPU a run ignores
the cuda switches, and a search with all of them on gives exactly the run with all of them off;
channels_last acts on both devices.
"""

import math
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
import torch.nn.functional as F
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode

from enas.commands.retrain import Retrain
from enas.config import load_config, preset_path
from enas.run.progress import FiguresInFlight
from enas.run.session import Session
from enas.run.steps import Steps
from enas.run.training import model_of, place, setup_runtime
from enas.spaces.base import ImageShape, Model, TextShape
from enas.spaces.macro import MacroConfig, MacroSpace
from enas.spaces.micro import MicroConfig, MicroSpace
from enas.spaces.recurrent import RecurrentConfig, RecurrentSpace
from enas.strategies.controller import draw_architectures
from enas.strategies.supernet_search import Search
from enas.tasks.image import ImageTask

pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py

SHAPE = ImageShape(channels=3, height=8, width=8, classes=4)


@pytest.fixture
def cpu_autocast(monkeypatch):
    """`Model(..., autocast=True)` runs under CUDA's bf16 autocast; here under the CPU's, the same
    mechanism, so that the model's own autocast path (float32 outputs included) runs on the CPU."""
    autocast = torch.autocast
    monkeypatch.setattr(torch, "autocast", lambda device_type, **kwargs: autocast(
        "cpu" if device_type == "cuda" else device_type, **kwargs))


def recurrent_case():
    space = RecurrentSpace(RecurrentConfig(nodes=5, hidden=16), TextShape(vocab_size=23))
    tokens = torch.randint(0, 23, (7, 4), generator=torch.Generator().manual_seed(0))

    def loss(forward):
        return forward(tokens[:-1], None, tokens[1:])[0]
    return space, loss


def image_case(space):
    images = torch.randn(16, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(16) % 4

    def loss(forward):
        return F.cross_entropy(forward(images)[0], labels)
    return space, loss


CASES = {
    "recurrent": recurrent_case,
    "micro": lambda: image_case(MicroSpace(MicroConfig(layers=1, filters=4, nodes=3), SHAPE, train_steps=10)),
    "macro": lambda: image_case(MacroSpace(MacroConfig(layers=3, filters=4), SHAPE)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_supernet_trains_under_bf16_autocast_with_float32_gradients(name, cpu_autocast):
    space, loss_of = CASES[name]()
    torch.manual_seed(0)
    supernet = space.supernet().train()
    arch = draw_architectures(space, 1, seed=1)[0]

    torch.manual_seed(2)   # the same dropout masks in both passes
    loss_of(Model(supernet, arch)).backward()
    want = {n: p.grad.clone() for n, p in supernet.named_parameters() if p.grad is not None}
    supernet.zero_grad(set_to_none=True)
    torch.manual_seed(2)
    loss = loss_of(Model(supernet, arch, autocast=True))
    assert loss.dtype == torch.float32   # outputs come back in float32
    loss.backward()
    got = {n: p.grad for n, p in supernet.named_parameters() if p.grad is not None}

    assert got.keys() == want.keys()
    for key in want:
        assert got[key].dtype == torch.float32 and torch.isfinite(got[key]).all(), key
    flat_got, flat_want = (torch.cat([g[k].flatten() for k in sorted(want)]) for g in (got, want))
    # bf16 keeps about 3 significant digits: the gradient points the same way (measured 0.95-0.98
    # over four micro cells, whose stacks of separable convolutions at width 4 amplify the rounding,
    # and above 0.99 for macro and recurrent)
    assert F.cosine_similarity(flat_got, flat_want, dim=0) > 0.9
    assert not torch.equal(flat_got, flat_want)   # bf16 did run: the cpu_autocast fixture took effect


@pytest.mark.parametrize("space", ["micro", "macro"])
def test_the_image_task_scores_a_supernet_under_autocast(space, cpu_autocast):
    # what a CUDA run with cuda.amp hands the task: the supernet bound under autocast; batch-norm
    # recalibration and the reward must still find the module behind it
    config = load_config([preset_path("shapes")], [f"space={space}", "data.train_images=64", "data.test_images=16",
                                                   "micro.layers=1", "micro.filters=4", "micro.nodes=2",
                                                   "macro.layers=3", "macro.filters=4", "search.batch_size=8"])
    task = ImageTask(config, config.search, hold_out=True)
    supernet = task.space.supernet()
    model = Model(supernet, draw_architectures(task.space, 1)[0], autocast=True)
    norms = [m for m in supernet.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    before = [m.num_batches_tracked.item() for m in norms]
    task.calibrate(model)
    assert any(m.num_batches_tracked.item() != b for m, b in zip(norms, before))   # it reached the module
    supernet.eval()
    assert 0.0 <= task.reward(model, 0) <= 1.0
    assert 0.0 <= task.evaluate(model, "valid") <= 1.0


def test_on_the_cpu_autocast_is_off_and_channels_last_follows_its_switch():
    config = load_config([preset_path("shapes")], [])
    model = torch.nn.Conv2d(3, 4, 3)
    assert model_of(model, config, torch.device("cpu")) == Model(model)
    assert model_of(model, config, torch.device("cuda")) == Model(model, autocast=True)   # cuda.amp is on
    assert place(model, config, torch.device("cpu")).weight.is_contiguous(memory_format=torch.channels_last)
    config = load_config([preset_path("shapes")], ["channels_last=false"])
    assert place(torch.nn.Conv2d(3, 4, 3), config, torch.device("cpu")).weight.is_contiguous()


def test_a_search_with_every_switch_on_equals_one_with_every_switch_off_on_the_cpu(tmp_path):
    from enas.console import Reporter
    from enas.strategies.supernet_search import run_search

    tiny = ["data.train_images=200", "data.test_images=32", "micro.layers=1", "micro.filters=4", "micro.nodes=2",
            "search.epochs=1", "search.steps_per_epoch=4", "search.batch_size=8", "controller.steps=2",
            "controller.aggregate=2", "device=cpu"]
    runs = {}
    for switch in ("true", "false"):
        overrides = [f"cuda.{key}={switch}" for key in ("amp", "tf32", "cudnn_benchmark")]
        config = load_config([preset_path("shapes")], tiny + overrides)
        search = run_search(config, tmp_path / switch, False, Reporter(quiet=True))
        runs[switch] = search.supernet.state_dict()
    for key, value in runs["true"].items():  # tensors, and the extra state of micro networks
        assert torch.equal(value, runs["false"][key]) if isinstance(value, torch.Tensor) else \
            value == runs["false"][key], key


TINY_RUNS = {
    "recurrent": ("default", ["data.vocab_size=16", "data.train_tokens=2000", "data.valid_tokens=500",
                              "data.test_tokens=500", "recurrent.nodes=4", "recurrent.hidden=16", "search.batch_size=4",
                              "retrain.batch_size=4", "retrain.ar_alpha=1", "retrain.tar_beta=1"]),
    "micro": ("shapes", ["data.train_images=64", "data.test_images=16", "micro.layers=1", "micro.filters=4",
                         "micro.nodes=2", "micro.drop_path=0.4", "search.batch_size=8", "retrain.batch_size=8",
                         "retrain.cutout=4"]),
    "macro": ("shapes", ["data.train_images=64", "data.test_images=16", "space=macro", "macro.layers=3",
                         "macro.filters=4", "search.batch_size=8", "retrain.batch_size=8", "retrain.cutout=4"]),
}


class NoHostReads(TorchDispatchMode):
    """Raises where a tensor's value is read on the host (`.item()`, `bool()`, `int()`, `float()`)."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            raise AssertionError("a tensor's value was read on the host")
        return func(*args, **(kwargs or {}))


def tiny_runs(space: str, *extra: str) -> list[tuple[Any, Callable[[int], None]]]:
    """A search and a retrain of `space` at a tiny size, each with a function that trains on step
    `index` through its session, as the real loops do (one architecture, so shapes repeat)."""
    preset, overrides = TINY_RUNS[space]
    config = load_config([preset_path(preset)], [*overrides, *extra])
    device = setup_runtime(config)
    search = Search(config, device)
    arch = search.sample(1)[0]
    retrain = Retrain(config, arch, device)
    return [stepper(search, search.bind(arch), search.supernet, search.supernet_optimizer, config.search.grad_clip),
            stepper(retrain, retrain.model, retrain.module, retrain.optimizer, config.retrain.grad_clip)]


def stepper(target: Any, model: Model, module: torch.nn.Module, optimizer: torch.optim.SGD,
            grad_clip: float) -> tuple[Any, Callable[[int], None]]:
    target.task.start_epoch(target.shuffler)
    steps = Steps(Session(Path(), target, None))  # train_on touches no file

    def train_on(index: int) -> None:
        steps.train_on(target.task, model, index, module.parameters(), optimizer, grad_clip)
    return target, train_on


@pytest.mark.parametrize("space", sorted(TINY_RUNS))
def test_a_training_step_never_waits_for_the_device(space):
    """On a GPU, reading a tensor's value on the host makes the host wait for the device. Two
    steps each of search and retrain run here under FakeTensorMode, where the tensors a step
    computes have shapes but no values (so reading one, `.tolist()` included, raises), and under
    NoHostReads, which catches scalar reads of any tensor. The device-side skip and the figures'
    bookkeeping are included; the real tensors stay untouched."""
    for target, train_on in tiny_runs(space, "device=cpu", "threads=1"):
        with FakeTensorMode(allow_non_fake_inputs=True), NoHostReads():
            for index in range(2):
                train_on(index=index)
            FiguresInFlight(target.progress)  # sending the figures to the host does not wait either
        assert target.progress.step == 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (benchmarks/gpu.sh runs it on one)")
@pytest.mark.parametrize("space", sorted(TINY_RUNS))
def test_on_a_gpu_a_training_step_never_synchronises(space):
    """CUDA's sync debug mode raises at any host-device synchronisation: none in four steps each of
    search and retrain (after one warm-up step), bf16 autocast and channels_last on."""
    for target, train_on in tiny_runs(space, "device=cuda", "threads=1", "cuda.amp=true", "cuda.cudnn_benchmark=true"):
        train_on(index=0)
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            for index in range(1, 5):
                train_on(index=index)
        finally:
            torch.cuda.set_sync_debug_mode("default")
        figures = FiguresInFlight(target.progress).read()
        assert figures.step == 5 and figures.skipped == 0 and math.isfinite(figures.mean_loss)
