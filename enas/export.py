"""Export: a retrained child turned into files that other programs run, and back into a module.

`enas export RUN_DIR --format F` writes RUN_DIR/export/: the child as model.safetensors (its
weights), model.pt (a TorchScript program) or model.onnx (an ONNX graph), beside model.json, which
holds what rebuilding the child takes (its space, architecture, the space's config section and the
data's shape) and what feeding it takes (the input and output signature; text: vocab.txt, the
words of the token ids; images: the normalisation). `load` rebuilds the child from a retrain
folder or from an export folder's model.json and model.safetensors.

The TorchScript and ONNX files hold a plain inference function, not the child's training forward
(which takes targets and returns a loss):
- text: tokens (T, B) int64 and the hidden state (B, S) -> logits (T, B, V) and the next hidden
  state (B, S); T is the retrain's bptt (the time loop is unrolled into the graph), B any size;
- images: normalised images (B, C, H, W) float32 -> logits (B, K), B any size.

Each file is run in its own runtime (a rebuilt child, torch.jit, onnxruntime) before it is
written, on a batch of another size than the one it was traced with, and must give PyTorch's
outputs to within `TOLERANCE`.
"""

from __future__ import annotations

import dataclasses
import io
import json
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from enas import __version__
from enas.config import Config, to_dict
from enas.errors import UserError
from enas.folder.atomic import write_file, write_json, write_text
from enas.folder.config_file import saved_config
from enas.folder.loading import Unreadable, load_torch_file, read_text_file
from enas.folder.names import ARCH_FILE, CONFIG_FILE, MODEL_FILE, RETRAIN_DIR, VOCAB_FILE
from enas.records import Result
from enas.spaces import from_json, load_architecture, official, space_type
from enas.spaces.base import DataShape, ImageShape, TextShape
from enas.tasks import Task, build_task
from enas.tasks.image import ImageTask

EXPORT_DIR = "export"
CARD_FILE = "model.json"
CARD_VERSION = 1
FILES = {"safetensors": "model.safetensors", "torchscript": "model.pt", "onnx": "model.onnx"}
# of the outputs' largest magnitude (at least 1): float32 kernels of other runtimes sum in other orders
TOLERANCE = 1e-4
TRACE_BATCH, CHECK_BATCH = 2, 3


class TextInference(nn.Module):
    """A language model child as a function of one window: tokens (T, B) int64 and the hidden state
    (B, S) -> logits (T, B, V) and the next hidden state (B, S) (S = H, or 2H for a state [h | c])."""

    input_names, output_names = ("tokens", "hidden"), ("logits", "next_hidden")
    batch_axes = {"tokens": 1, "hidden": 0, "logits": 1, "next_hidden": 0}

    def __init__(self, child: nn.Module, shape: TextShape, window: int):
        super().__init__()
        self.child, self.shape, self.window = child, shape, window

    def forward(self, tokens: torch.Tensor, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, hidden, _ = self.child(tokens, hidden)
        return logits, hidden

    def example(self, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Random tokens (T, batch) and a random hidden state (batch, S) in the range of tanh."""
        state = self.child.init_hidden(batch)
        return (torch.randint(self.shape.vocab_size, (self.window, batch), generator=generator),
                torch.rand(state.shape, generator=generator) * 2 - 1)


class ImageInference(nn.Module):
    """An image network child without its auxiliary head: images (B, C, H, W) float32, normalised
    as model.json says -> logits (B, K)."""

    input_names, output_names = ("images",), ("logits",)
    batch_axes = {"images": 0, "logits": 0}

    def __init__(self, child: nn.Module, shape: ImageShape):
        super().__init__()
        self.child, self.shape = child, shape

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.child(images)[0]

    def example(self, batch: int, generator: torch.Generator) -> tuple[torch.Tensor]:
        """Random normalised images (batch, C, H, W)."""
        shape = self.shape
        return (torch.randn((batch, shape.channels, shape.height, shape.width), generator=generator),)


Inference = TextInference | ImageInference


def inference(child: nn.Module, card: dict[str, Any]) -> Inference:
    """The export wrapper of `child` for its data kind, in eval mode."""
    shape = card_shape(card)
    wrapper = TextInference(child, shape, card["window"]) if isinstance(shape, TextShape) else \
        ImageInference(child, shape)
    return wrapper.eval()


def export(run_dir: Path, fmt: str) -> tuple[Path, float]:
    """Write the retrained child of `run_dir` (a search run folder holding retrain/, or a retrain
    folder) as `fmt` into run_dir/export/, with model.json (and, for text, vocab.txt).
    Returns the file written and its largest difference from PyTorch's outputs."""
    folder = retrain_folder(run_dir)
    config = saved_config(folder)
    task = build_task(config, config.retrain)
    card = describe(folder, config, task)
    wrapper = inference(load_weights(folder, card), card)
    card["signature"] = signature(wrapper)
    with warnings.catch_warnings():
        # torch.jit is deprecated upstream; the ONNX exporter notes that both inputs share one batch axis
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated", category=FutureWarning)
        warnings.filterwarnings("ignore", message="# The axis name", category=UserWarning)
        data = SAVERS[fmt](wrapper)
        difference = check(data, fmt, wrapper, card)
    out = run_dir / EXPORT_DIR
    write_file(out / FILES[fmt], lambda handle: handle.write(data))
    if isinstance(task.shape, TextShape):
        write_text(out / VOCAB_FILE, read_text_file(folder / VOCAB_FILE, "the vocabulary"))
    write_json(out / CARD_FILE, card)
    return out / FILES[fmt], difference


def retrain_folder(run_dir: Path) -> Path:
    """The folder of the retrained model: `run_dir` itself (`enas retrain -o OUT_DIR`) or its retrain/."""
    for folder in (run_dir, run_dir / RETRAIN_DIR):
        if (folder / MODEL_FILE).is_file() and (folder / CONFIG_FILE).is_file():
            return folder
    if not (run_dir / CONFIG_FILE).is_file():
        raise UserError(f"{run_dir} is not a run folder (no {CONFIG_FILE}); give the folder of `enas search` "
                        "or of `enas retrain -o`")
    raise UserError(f"{run_dir} holds no retrained model ({MODEL_FILE} or {RETRAIN_DIR}/{MODEL_FILE}); "
                    f"run `enas retrain {run_dir}` first")


def describe(folder: Path, config: Config, task: Task) -> dict[str, Any]:
    """model.json of the retrained child in `folder`, but for its signature."""
    arch = load_architecture(folder / ARCH_FILE)
    task.keep_data(folder)   # text: a one-line error unless the data still give the vocabulary it trained on
    data: dict[str, Any] = {"name": config.data.name, **dataclasses.asdict(task.shape)}
    if isinstance(task, ImageTask):
        data["normalise"] = {"mean": task.mean.tolist(), "std": task.std.tolist(),
                             "how": "pixels 0..255 / 255, then (x - mean[channel]) / std[channel]"}
    else:
        data["vocab_file"] = VOCAB_FILE   # token id = line number (from 0); unknown words: <unk>
    result = Result.read_if_any(folder)
    return {"format_version": CARD_VERSION, "enas_version": __version__, "torch_version": torch.__version__,
            "space": config.space, "arch": arch.to_json(), "official": official(arch),
            "space_config": to_dict(config)[config.space], "data": data,
            **({"window": config.retrain.bptt} if isinstance(task.shape, TextShape) else {}),
            "result": {"metric": result.metric, "value": result.value, "params": result.params} if result else {}}


def card_shape(card: dict[str, Any]) -> DataShape:
    """The data shape recorded in model.json, of the kind its space reads."""
    kind = space_type(card["space"]).data
    return kind(**{field.name: card["data"][field.name] for field in dataclasses.fields(kind)})


def build_child(card: dict[str, Any]) -> nn.Module:
    """A fresh child of the architecture and sizes that model.json names (untrained weights)."""
    space = space_type(card["space"])
    try:
        cfg, shape, arch = space.config(**card["space_config"]), card_shape(card), from_json(card["arch"])
    except (KeyError, TypeError) as error:
        raise UserError(f"{CARD_FILE} lacks or misnames a key the {card['space']} child needs ({error})") from None
    return space(cfg, shape, 0).child(arch)   # 0 training steps: only drop path's schedule reads them


def load_weights(folder: Path, card: dict[str, Any]) -> nn.Module:
    """The child of `card` with the weights of folder/model.pt (read weights-only, nothing in it runs)."""
    path = folder / MODEL_FILE
    try:
        weights = load_torch_file(path)
    except Unreadable as error:
        raise UserError(f"{path} is {error}") from None
    return fill(build_child(card), weights, path)


def fill(child: nn.Module, weights: dict[str, torch.Tensor], source: Path) -> nn.Module:
    """`child` holding `weights`, or a one-line error where they are another network's."""
    try:
        child.load_state_dict(weights)
    except RuntimeError as error:
        raise UserError(f"{source} holds the weights of another network than its config and architecture "
                        f"describe ({str(error).splitlines()[0]})") from None
    return child


def signature(wrapper: Inference) -> dict[str, list[dict[str, Any]]]:
    """Names, dtypes and shapes (the batch axis as "batch") of the wrapper's inputs and outputs."""
    inputs = wrapper.example(TRACE_BATCH, torch.Generator().manual_seed(0))
    with torch.no_grad():
        outputs = wrapper(*inputs)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)

    def entries(names: Sequence[str], tensors: Sequence[torch.Tensor]) -> list[dict[str, Any]]:
        return [{"name": name, "dtype": str(tensor.dtype).removeprefix("torch."),
                 "shape": ["batch" if axis == wrapper.batch_axes[name] else size
                           for axis, size in enumerate(tensor.shape)]} for name, tensor in zip(names, tensors)]
    return {"inputs": entries(wrapper.input_names, inputs), "outputs": entries(wrapper.output_names, outputs)}


def save_safetensors(wrapper: Inference) -> bytes:
    from safetensors.torch import save

    return save({name: tensor.contiguous() for name, tensor in wrapper.child.state_dict().items()})


def save_torchscript(wrapper: Inference) -> bytes:
    with torch.no_grad():
        # check_trace off: `check` runs the saved program on another batch anyway
        traced = torch.jit.trace(wrapper, wrapper.example(TRACE_BATCH, torch.Generator().manual_seed(0)),
                                 check_trace=False)
    buffer = io.BytesIO()
    torch.jit.save(traced, buffer)
    return buffer.getvalue()


def save_onnx(wrapper: Inference) -> bytes:
    """The torch.export-based exporter (the TorchScript-based one is deprecated), batch axes dynamic."""
    batch = torch.export.Dim("batch")
    program = torch.onnx.export(wrapper, wrapper.example(TRACE_BATCH, torch.Generator().manual_seed(0)),
                                dynamo=True, verbose=False, input_names=list(wrapper.input_names),
                                output_names=list(wrapper.output_names),
                                dynamic_shapes={name: {wrapper.batch_axes[name]: batch}
                                                for name in wrapper.input_names})
    return program.model_proto.SerializeToString()


SAVERS: dict[str, Callable[[Inference], bytes]] = {
    "safetensors": save_safetensors, "torchscript": save_torchscript, "onnx": save_onnx}


def run_safetensors(data: bytes, card: dict[str, Any], inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """The outputs of a child rebuilt from model.json and these weights, as `load` rebuilds it."""
    from safetensors.torch import load

    child = fill(build_child(card), load(data), Path(FILES["safetensors"]))
    with torch.no_grad():
        return _as_list(inference(child, card)(*inputs))


def run_torchscript(data: bytes, card: dict[str, Any], inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    with torch.no_grad():
        return _as_list(torch.jit.load(io.BytesIO(data))(*inputs))


def run_onnx(data: bytes, card: dict[str, Any], inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    import onnxruntime

    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    feed = {entry["name"]: tensor.numpy() for entry, tensor in zip(card["signature"]["inputs"], inputs)}
    return [torch.from_numpy(array) for array in session.run(None, feed)]


RUNNERS: dict[str, Callable[[bytes, dict[str, Any], Sequence[torch.Tensor]], list[torch.Tensor]]] = {
    "safetensors": run_safetensors, "torchscript": run_torchscript, "onnx": run_onnx}


def check(data: bytes, fmt: str, wrapper: Inference, card: dict[str, Any]) -> float:
    """The largest difference between the outputs of the file `data` in its runtime and PyTorch's,
    on a batch of another size than the traced one; a RuntimeError (a bug) beyond `TOLERANCE`."""
    inputs = wrapper.example(CHECK_BATCH, torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = _as_list(wrapper(*inputs))
    got = RUNNERS[fmt](data, card, inputs)
    if [g.shape for g in got] != [w.shape for w in want]:
        raise RuntimeError(f"the {fmt} file gives outputs of shapes {[tuple(g.shape) for g in got]}, "
                           f"PyTorch {[tuple(w.shape) for w in want]}")
    difference = max(float((g - w).abs().max()) for g, w in zip(got, want))
    scale = max(1.0, *(float(w.abs().max()) for w in want))
    if difference > TOLERANCE * scale:
        raise RuntimeError(f"the {fmt} file's outputs differ from PyTorch's by up to {difference:.3g} "
                           f"(outputs up to {scale:.3g}); nothing was written")
    return difference


def _as_list(outputs: torch.Tensor | tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
    return list(outputs) if isinstance(outputs, (tuple, list)) else [outputs]


def read_card(folder: Path) -> dict[str, Any]:
    """model.json of an export folder, or a one-line error."""
    path = folder / CARD_FILE
    try:
        card = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise UserError(f"{path} is not valid JSON ({error.msg} at line {error.lineno})") from None
    if not isinstance(card, dict) or card.get("format_version") != CARD_VERSION or "space" not in card:
        raise UserError(f"{path} is no model.json of `enas export` (format_version {CARD_VERSION})")
    return card


def load(path: str | Path) -> nn.Module:
    """The retrained child, in eval mode, with its weights: from an export folder (model.json and
    model.safetensors; nothing else needed), a retrain folder, or a search run folder holding
    retrain/ (these two rebuild the data, for its shape, from the saved config)."""
    path = Path(path)
    if (path / CARD_FILE).is_file():
        card, weights = read_card(path), path / FILES["safetensors"]
        if not weights.is_file():
            raise UserError(f"{path} holds no {FILES['safetensors']}; write it with "
                            "`enas export RUN_DIR --format safetensors`")
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            tensors = load_file(weights)
        except SafetensorError as error:
            raise UserError(f"{weights} is not a whole safetensors file ({error})") from None
        return fill(build_child(card), tensors, weights).eval()
    folder = retrain_folder(path)
    config = saved_config(folder)
    return load_weights(folder, describe(folder, config, build_task(config, config.retrain))).eval()
