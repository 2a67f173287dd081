"""`enas export` and `enas.load` on real tiny retrains: each format, run in its own runtime, gives
the outputs of the retrained child in PyTorch; the folders and mistakes a user may give."""

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest
import torch

import enas
from enas.config import load_config, preset_path, to_yaml
from enas.errors import UserError

ENAS = str(Path(sys.executable).parent / "enas")
FORMATS = ("safetensors", "torchscript", "onnx")
TOLERANCE = 1e-4   # of the outputs' largest magnitude (at least 1)
BATCH = 5          # neither the traced batch nor the one `enas export` checks with

STEPS = ["retrain.epochs=1", "retrain.steps_per_epoch=3", "retrain.batch_size=8", "threads=1"]
RETRAINS = {
    "recurrent": ["--arch", "0 0 1 0 2", "data.vocab_size=16", "data.train_tokens=2000", "data.valid_tokens=500",
                  "data.test_tokens=500", "recurrent.nodes=3", "recurrent.hidden=16", "retrain.bptt=6"],
    # with drop path and the auxiliary head, which inference leaves out
    "micro": ["--arch", "0 0 1 2 2 1 0 4 1 3 0 1 2 0 1 4", "-c", "shapes", "data.train_images=64",
              "data.test_images=16", "micro.layers=1", "micro.filters=4", "micro.nodes=2", "micro.drop_path=0.4",
              "micro.aux_weight=0.4"],
    "macro": ["--arch", "0 3 1 2 0 1", "-c", "shapes", "space=macro", "data.train_images=64", "data.test_images=16",
              "macro.layers=3", "macro.filters=4"],
}


def enas_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([ENAS, *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Callable[[str], tuple[Path, dict]]:
    """kind -> a retrain folder of that kind exported in every format, and the figures `measure`
    took of the files; each made once, when a test first asks for it."""
    made: dict[str, tuple[Path, dict]] = {}

    def get(kind: str) -> tuple[Path, dict]:
        if kind not in made:
            out = tmp_path_factory.mktemp(kind) / "retrain"
            result = enas_cli("retrain", "-o", str(out), *RETRAINS[kind], *STEPS, "--quiet")
            assert result.returncode == 0, result.stderr
            # in a child process: torch's CPU kernels can crash natively at small shapes
            result = subprocess.run([sys.executable, __file__, str(out)], capture_output=True, text=True,
                                    timeout=300)
            assert result.returncode == 0, result.stderr
            made[kind] = out, json.loads(result.stdout.splitlines()[-1])
        return made[kind]
    return get


@pytest.mark.parametrize("kind", RETRAINS)
def test_onnx_under_onnxruntime_gives_the_outputs_of_pytorch(exported, kind):
    _, figures = exported(kind)
    print(f"onnx: max |difference| {figures['onnx']:.3g}, outputs up to {figures['scale']:.3g}")
    assert figures["onnx"] <= TOLERANCE * max(1.0, figures["scale"])
    assert figures["onnx_batch_is_free"]


@pytest.mark.parametrize("kind", RETRAINS)
def test_torchscript_gives_the_outputs_of_pytorch(exported, kind):
    _, figures = exported(kind)
    print(f"torchscript: max |difference| {figures['torchscript']:.3g}")
    assert figures["torchscript"] <= TOLERANCE * max(1.0, figures["scale"])


@pytest.mark.parametrize("kind", RETRAINS)
def test_safetensors_through_enas_load_give_exactly_the_retrained_child(exported, kind):
    assert exported(kind)[1]["safetensors"] == 0.0


def test_a_language_model_carries_its_state_from_window_to_window(exported):
    # two windows through ONNX, the state passed on, compute what PyTorch computes on both at once
    _, figures = exported("recurrent")
    assert figures["chained"] <= TOLERANCE * max(1.0, figures["scale"])


@pytest.mark.parametrize("kind", RETRAINS)
def test_model_json_names_what_rebuilds_and_feeds_the_child(exported, kind):
    out, _ = exported(kind)
    card = json.loads((out / "export" / "model.json").read_text())
    arch = json.loads((out / "arch.json").read_text())
    result = json.loads((out / "result.json").read_text())
    assert card["arch"]["choices"] == arch["choices"] and card["space"] == arch["space"]
    assert card["enas_version"] == enas.__version__ and card["result"]["value"] == result["value"]
    inputs = {entry["name"]: entry for entry in card["signature"]["inputs"]}
    outputs = {entry["name"]: entry for entry in card["signature"]["outputs"]}
    if kind == "recurrent":
        assert inputs["tokens"] == {"name": "tokens", "dtype": "int64", "shape": [6, "batch"]}   # retrain.bptt
        assert outputs["logits"]["shape"] == [6, "batch", 16] and inputs["hidden"]["shape"] == ["batch", 16]
        assert (out / "export" / "vocab.txt").read_text() == (out / "vocab.txt").read_text()
    else:
        assert inputs["images"]["shape"] == ["batch", 3, 16, 16] and outputs["logits"]["shape"] == ["batch", 8]
        assert len(card["data"]["normalise"]["mean"]) == 3 and card["data"]["classes"] == 8
    assert {p.name for p in (out / "export").iterdir()} >= {"model.json", "model.safetensors", "model.pt",
                                                             "model.onnx"}


def test_the_command_exports_a_run_folder_holding_retrain_into_its_own_export(exported):
    out, _ = exported("recurrent")
    run_dir = out.parent
    result = enas_cli("export", str(run_dir), "--format", "safetensors")
    assert result.returncode == 0, result.stderr
    assert f"wrote {run_dir / 'export' / 'model.safetensors'}" in result.stdout and "checked" in result.stdout
    assert json.loads((run_dir / "export" / "model.json").read_text())["space"] == "recurrent"


@pytest.mark.parametrize("make, args, message", [
    (lambda tmp: tmp / "nothing", [], "is not a run folder (no config.yaml)"),
    (lambda tmp: _unfinished(tmp), [], "holds no retrained model (model.pt or retrain/model.pt)"),
    (lambda tmp: _unfinished(tmp), ["--format", "csv"], "'csv' is not one of 'safetensors', 'torchscript', 'onnx'"),
])
def test_mistakes_exit_2_with_one_line_and_write_nothing(tmp_path, make, args, message):
    run_dir = make(tmp_path)
    result = enas_cli("export", str(run_dir), *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    if not args:   # typer's own usage message takes more than a line
        assert len(result.stderr.strip().splitlines()) == 1
    assert not (run_dir / "export").exists()


def _unfinished(tmp: Path) -> Path:
    """A search run folder whose retrain has not finished: a config, no model.pt."""
    (tmp / "retrain").mkdir()
    (tmp / "config.yaml").write_text(to_yaml(load_config([preset_path("default")], [])))
    return tmp


def test_load_refuses_an_export_folder_without_whole_weights(exported, tmp_path):
    out, _ = exported("macro")
    folder = tmp_path / "export"
    shutil.copytree(out / "export", folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(UserError, match="is not a whole safetensors file"):
        enas.load(folder)
    weights.unlink()
    with pytest.raises(UserError, match="holds no model.safetensors; write it with `enas export RUN_DIR --format"):
        enas.load(folder)


def test_load_architecture_reads_a_file_a_published_name_and_an_official_string(tmp_path):
    path = tmp_path / "arch.json"
    path.write_text(json.dumps({"format_version": 2, "space": "macro", "choices": [0, 3, [1]]}))
    assert enas.load_architecture(path).choices == (0, 3, (1,))
    assert enas.load_architecture(str(path)) == enas.load_architecture("0 3 1", "macro")
    assert enas.load_architecture("enas_micro_cifar10").space == "micro"
    with pytest.raises(UserError, match="an official string needs its space"):
        enas.load_architecture("0 3 1")
    with pytest.raises(UserError, match="does not exist"):
        enas.load_architecture(tmp_path / "missing.json")


def test_the_traced_cell_computes_what_the_hand_written_one_computes_masks_included():
    from enas.spaces.architecture import Architecture
    from enas.spaces.recurrent_cell import RecurrentPlan, _traceable_cell, run_cell

    plan = RecurrentPlan.of(Architecture("recurrent", (0, 0, 1, 0, 3, 1, 2)))   # every activation, two loose ends
    generator = torch.Generator().manual_seed(0)
    x_proj, hidden = (torch.randn(shape, generator=generator, dtype=torch.double) for shape in ((4, 3, 10), (3, 5)))
    w_h, *weights = (torch.randn(5, 10, generator=generator, dtype=torch.double) for _ in range(4))
    masks = [torch.rand(3, 5, generator=generator, dtype=torch.double) for _ in range(2)]
    for hidden_mask, node_mask in ((None, None), masks):
        want = run_cell(x_proj, hidden, w_h, weights, plan, hidden_mask, node_mask)
        assert torch.allclose(_traceable_cell(x_proj, hidden, w_h, weights, plan, hidden_mask, node_mask), want)


# ---------------------------------------------------------------- run in a child process by `exported`

def measure(out: Path) -> dict:
    """Export `out` (a retrain folder) in every format, then run each file in its own runtime on a
    fresh batch: the largest differences from the child that enas.load rebuilds from model.pt."""
    import onnxruntime

    from enas.export import export

    for fmt in FORMATS:
        export(out, fmt)
    card = json.loads((out / "export" / "model.json").read_text())
    child, loaded = enas.load(out), enas.load(out / "export")
    generator = torch.Generator().manual_seed(5)
    inputs = _inputs(card, BATCH, generator)
    want = _outputs(child, inputs)
    scripted = torch.jit.load(out / "export" / "model.pt")
    session = onnxruntime.InferenceSession(out / "export" / "model.onnx", providers=["CPUExecutionProvider"])

    def onnx(*tensors: torch.Tensor) -> list[torch.Tensor]:
        feed = {i.name: t.numpy() for i, t in zip(session.get_inputs(), tensors)}
        return [torch.from_numpy(array) for array in session.run(None, feed)]

    with torch.no_grad():
        figures = {"scale": max(float(w.abs().max()) for w in want),
                   "safetensors": _difference(_outputs(loaded, inputs), want),
                   "torchscript": _difference(_listed(scripted(*inputs)), want),
                   "onnx": _difference(onnx(*inputs), want),
                   "onnx_batch_is_free": all(isinstance(i.shape[_batch_axis(card, i.name)], str)
                                             for i in session.get_inputs())}
        if card["space"] == "recurrent":
            tokens, hidden = inputs
            later = torch.randint(card["data"]["vocab_size"], tokens.shape, generator=generator)
            first = onnx(tokens, hidden)
            whole = child(torch.cat([tokens, later]), hidden)[0]
            figures["chained"] = _difference(onnx(later, first[1])[:1], [whole[len(tokens):]])
    return figures


def _batch_axis(card: dict, name: str) -> int:
    """The batch axis of input `name` in model.json's signature."""
    entry = next(e for e in card["signature"]["inputs"] if e["name"] == name)
    return entry["shape"].index("batch")


def _inputs(card: dict, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """Random inputs of the signature in model.json, `batch` for its batch axes."""
    return tuple(torch.randint(card["data"]["vocab_size"], size, generator=generator) if entry["dtype"] == "int64"
                 else torch.rand(size, generator=generator) * 2 - 1
                 for entry in card["signature"]["inputs"]
                 for size in [[batch if s == "batch" else s for s in entry["shape"]]])


def _outputs(child: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
    """The child's inference outputs: from tokens and a state (text) the logits and the next state,
    from images the logits."""
    with torch.no_grad():
        outputs = child(*inputs)
    return list(outputs[:2]) if len(inputs) == 2 else [outputs[0]]


def _listed(outputs: torch.Tensor | tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
    return list(outputs) if isinstance(outputs, tuple) else [outputs]


def _difference(got: list[torch.Tensor], want: list[torch.Tensor]) -> float:
    assert [g.shape for g in got] == [w.shape for w in want]
    return max(float((g - w).abs().max()) for g, w in zip(got, want))


if __name__ == "__main__":
    print(json.dumps(measure(Path(sys.argv[1]))))
