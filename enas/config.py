"""Typed run configuration: dataclass schema, YAML presets in conf/, dotlist overrides, validation.

Everything a run reads comes from `Config`. It is built once by `load_config` (defaults, then the
preset or a saved run's config.yaml, then `key=value` overrides), checked with every mistake
reported at once, and handed on as plain dataclasses: no omegaconf object leaves this module.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from enas.errors import UserError

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
TEXT_DATASETS = ("builtin_text", "text")
IMAGE_DATASETS = ("builtin_images", "cifar10", "image_folder")
SPACE_DATA = {"recurrent": TEXT_DATASETS, "micro": IMAGE_DATASETS, "macro": IMAGE_DATASETS}


def _opt(default: Any, help: str, *, min: float | None = None, max: float | None = None,
         choices: tuple[str, ...] | None = None) -> Any:
    """A config field with its help text and the range `validate` enforces."""
    meta = {"help": help, "min": min, "max": max, "choices": choices}
    return field(default=default, metadata=meta)


@dataclass
class DataConfig:
    name: str = _opt("builtin_text", "dataset: builtin_text (generated) or text (a PTB-format folder); "
                     "images: builtin_images (generated), cifar10 (cifar-10-batches-py) or image_folder "
                     "(train/<class>/*, test/<class>/*)", choices=TEXT_DATASETS + IMAGE_DATASETS)
    root: str = _opt("", "folder of the dataset when name=text (ptb.train.txt, ... or train.txt, ...), "
                     "cifar10 (data_batch_1..5, test_batch) or image_folder (train/, test/)")
    vocab_size: int = _opt(32, "builtin_text: vocabulary size", min=4, max=512)
    branching: int = _opt(4, "builtin_text: preferred successors per two-token context", min=1)
    train_tokens: int = _opt(60_000, "builtin_text: tokens in the train split", min=1000)
    valid_tokens: int = _opt(8_000, "builtin_text: tokens in the valid split", min=100)
    test_tokens: int = _opt(8_000, "builtin_text: tokens in the test split", min=100)
    seed: int = _opt(1234, "builtin_text, builtin_images: seed of the generated data "
                     "(independent of the run seed)")
    valid_fraction: float = _opt(0.1, "images: share of the training set held out for validation in search "
                                 "(CIFAR-10: the last 5,000 of 50,000); retrain trains on all of it",
                                 min=0.0, max=0.5)
    image_size: int = _opt(16, "builtin_images: height and width in pixels", min=8, max=64)
    classes: int = _opt(4, "builtin_images: number of classes (patterns: stripes, columns, checker, solid, "
                        "ring, ...)", min=2, max=8)
    train_images: int = _opt(2000, "builtin_images: images in the train split (search holds out valid_fraction)",
                             min=20)
    test_images: int = _opt(500, "builtin_images: images in the test split", min=10)


@dataclass
class RecurrentConfig:
    nodes: int = _opt(8, "nodes in the recurrent cell (12 in the paper's PTB search)", min=1)
    hidden: int = _opt(64, "embedding and hidden size (tied embeddings need them equal)", min=1)
    init_range: float = _opt(0.1, "uniform initialisation range of all weights", min=0.0)
    dropout_embedding: float = _opt(0.0, "probability of dropping a whole word embedding", min=0.0, max=0.99)
    dropout_input: float = _opt(0.0, "locked dropout on the embedded input", min=0.0, max=0.99)
    dropout_hidden: float = _opt(0.0, "variational dropout on the recurrent state h_{t-1}", min=0.0, max=0.99)
    dropout_output: float = _opt(0.0, "locked dropout on the cell output before the decoder", min=0.0, max=0.99)


@dataclass
class MicroConfig:
    """The micro (cell) space: a stem, then cells; the paper's CIFAR-10 cell search (section 2.4)."""

    layers: int = _opt(2, "L: normal cells; 2 reduction cells go at L//3 and 2*(L//3)+1 (official num_layers)",
                       min=1)
    filters: int = _opt(8, "width of the first cells (official out_filters); doubles at each reduction", min=1)
    nodes: int = _opt(5, "B: nodes per cell (official num_cells)", min=1)
    dropout: float = _opt(0.0, "dropout before the classifier (official 1 - keep_prob)", min=0.0, max=0.99)
    drop_path: float = _opt(0.0, "drop-path probability reached by the last cell at the end of training "
                            "(official 1 - drop_path_keep_prob); ramps with depth and step; children only",
                            min=0.0, max=0.99)
    aux_weight: float = _opt(0.0, "weight of the auxiliary head's loss, the head after the second reduction "
                             "(0.4 in the paper); 0 builds no head", min=0.0)


@dataclass
class MacroConfig:
    """The macro (whole network) space: L layers, each an op plus skip connections (section 2.3)."""

    layers: int = _opt(6, "L: layers; factorized reductions after layers L//3-1 and 2*(L//3)-1", min=1)
    filters: int = _opt(8, "width of the first layers (official out_filters); doubles at each reduction", min=1)
    ops: int = _opt(6, "the controller picks among the first N of conv_3x3, sep_conv_3x3, conv_5x5, sep_conv_5x5, "
                    "avg_pool_3x3, max_pool_3x3 (official num_branches)", min=1, max=6)
    dropout: float = _opt(0.0, "dropout before the classifier (official 1 - keep_prob)", min=0.0, max=0.99)


@dataclass
class ControllerConfig:
    hidden: int = _opt(64, "LSTM hidden size of the controller", min=1)
    temperature: float = _opt(5.0, "logits are divided by this before the tanh clipping", min=1e-6)
    tanh_constant: float = _opt(2.5, "C in C*tanh(logits); 0 disables the clipping", min=0.0)
    op_tanh_reduce: float = _opt(1.0, "op logits use tanh_constant / op_tanh_reduce", min=1e-6)
    lr: float = _opt(3.5e-4, "Adam learning rate", min=0.0)
    baseline_decay: float = _opt(0.95, "decay of the moving-average reward baseline", min=0.0, max=1.0)
    entropy_weight: float = _opt(1e-4, "weight of the entropy bonus added to the reward", min=0.0)
    reward_constant: float = _opt(80.0, "text reward is reward_constant / validation perplexity", min=1e-6)
    steps: int = _opt(20, "controller updates per search epoch", min=0)
    aggregate: int = _opt(10, "sampled architectures whose gradients make one update", min=1)
    skip_target: float = _opt(0.4, "skip decisions: target probability of a skip connection", min=0.01, max=0.99)
    skip_weight: float = _opt(0.8, "skip decisions: weight of the KL penalty toward skip_target", min=0.0)


@dataclass
class TrainConfig:
    """Shared-weight training in search and from-scratch training in retrain use the same knobs."""

    epochs: int = _opt(30, "passes over the training split", min=1)
    batch_size: int = _opt(32, "sequences (text) or images per batch", min=1)
    bptt: int = _opt(20, "truncated back-propagation length in tokens", min=2)
    lr: float = _opt(10.0, "SGD learning rate", min=0.0)
    momentum: float = _opt(0.0, "SGD momentum", min=0.0, max=1.0)
    nesterov: bool = _opt(False, "Nesterov momentum (needs momentum > 0)")
    weight_decay: float = _opt(1e-6, "L2 weight decay", min=0.0)
    grad_clip: float = _opt(0.25, "clip the global gradient norm to this; 0 disables", min=0.0)
    lr_decay: float = _opt(1.0, "learning rate multiplied by this every epoch from lr_decay_start", min=0.0, max=1.0)
    lr_decay_start: int = _opt(0, "first epoch (0-based) at which lr_decay applies", min=0)
    lr_min: float = _opt(0.0, "lower bound of the decayed learning rate", min=0.0)
    lr_schedule: str = _opt("exponential", "exponential (lr_decay per epoch) or cosine (from lr down to lr_min, "
                            "with warm restarts: SGDR, as the official CIFAR-10 code)",
                            choices=("exponential", "cosine"))
    cosine_period: int = _opt(0, "cosine: epochs of the first cycle (official lr_T_0); 0 means one cycle "
                              "over all epochs", min=0)
    cosine_period_mult: int = _opt(1, "cosine: each cycle is this many times longer than the one before "
                                   "(official lr_T_mul)", min=1)
    augment: bool = _opt(True, "images: random crop after 4-pixel zero padding and horizontal flip in training")
    cutout: int = _opt(0, "images: side of the square cut out of each training image (16 in the paper's "
                       "final training); 0 disables", min=0)
    steps_per_epoch: int = _opt(0, "training steps per epoch; 0 means one full pass over the train split", min=0)
    ar_alpha: float = _opt(0.0, "activation regularisation: alpha * mean(h_t^2) of the cell outputs", min=0.0)
    tar_beta: float = _opt(0.0, "temporal activation regularisation (slowness): beta * mean((h_t - h_(t-1))^2)",
                           min=0.0)


@dataclass
class SearchConfig(TrainConfig):
    eval_batches: int = _opt(0, "validation batches in the per-epoch evaluation; 0 means all", min=0)


@dataclass
class RetrainConfig(TrainConfig):
    """From-scratch training of the derived architecture (the final recipe)."""


@dataclass
class DeriveConfig:
    samples: int = _opt(100, "architectures sampled from the trained controller", min=1)
    top: int = _opt(5, "rows of the printed table of the best candidates", min=1)
    bn_batches: int = _opt(10, "images: training batches that recompute the batch-norm statistics of each "
                           "candidate before it is scored (derive and the search's per-epoch evaluation)",
                           min=1)


@dataclass
class CudaConfig:
    """Speed switches that act only on a CUDA device; on the CPU they are ignored."""

    amp: bool = _opt(True, "bf16 autocast of the forward passes (losses, rewards and scores in float32)")
    tf32: bool = _opt(True, "TF32 tensor cores for float32 matmuls and convolutions")
    cudnn_benchmark: bool = _opt(True, "let cuDNN time its convolution algorithms and keep the fastest")


@dataclass
class Config:
    seed: int = _opt(0, "seed of everything random in the run")
    space: str = _opt("recurrent", "search space: recurrent (text), micro or macro (images)",
                      choices=tuple(SPACE_DATA))
    device: str = _opt("auto", "auto (CUDA when present), cpu or cuda", choices=("auto", "cpu", "cuda"))
    threads: int = _opt(0, "CPU threads for torch; 0 uses every core", min=0)
    channels_last: bool = _opt(True, "images: channels-last memory layout of batches and conv weights (on CPU "
                               "and GPU alike, convolutions and pooling run 2-3x faster in it)")
    cuda: CudaConfig = field(default_factory=CudaConfig)
    data: DataConfig = field(default_factory=DataConfig)
    recurrent: RecurrentConfig = field(default_factory=RecurrentConfig)
    micro: MicroConfig = field(default_factory=MicroConfig)
    macro: MacroConfig = field(default_factory=MacroConfig)
    controller: ControllerConfig = field(default_factory=ControllerConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    derive: DeriveConfig = field(default_factory=DeriveConfig)
    retrain: RetrainConfig = field(default_factory=RetrainConfig)


def preset_path(name: str) -> Path:
    """`name` is a preset in conf/ (without .yaml) or a path to a YAML file."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise UserError(f"config file {path} does not exist")
        return path
    path = CONF_DIR / f"{name}.yaml"
    if not path.is_file():
        raise UserError(f"unknown preset {name!r}; choose one of: {', '.join(preset_names())} "
                        "or give a path to a .yaml file")
    return path


def preset_names() -> list[str]:
    return sorted(p.stem for p in CONF_DIR.glob("*.yaml"))


def load_config(layers: list[Path], overrides: list[str]) -> Config:
    """Defaults, then each YAML file of `layers` in order, then `key=value` overrides."""
    sources: list[tuple[str, dict]] = []
    for path in layers:
        try:
            loaded = OmegaConf.to_container(OmegaConf.load(path)) or {}
        except (OmegaConfBaseException, yaml.YAMLError, OSError, ValueError) as error:
            raise UserError(f"cannot read {path}: {_first_line(error)}") from None
        if not isinstance(loaded, dict):
            raise UserError(f"{path} must hold a mapping of config keys")
        sources.append((str(path), loaded))
    for item in overrides:
        if "=" not in item:
            raise UserError(f"override {item!r} is not key=value (e.g. search.epochs=3)")
        sources.append(("command line", OmegaConf.to_container(OmegaConf.from_dotlist([item]))))

    schema = OmegaConf.structured(Config)
    errors = []
    for origin, values in sources:
        for key, value in _leaves(values):
            message = _check_leaf(schema, key, value)
            if message:
                errors.append(f"{message} (from {origin})" if origin != "command line" else message)
    if errors:
        raise UserError("; ".join(errors))
    merged = OmegaConf.merge(schema, *(values for _, values in sources))
    config: Config = OmegaConf.to_object(merged)
    validate(config)
    return config


def _leaves(values: dict, prefix: str = "") -> list[tuple[str, Any]]:
    items = []
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            items += _leaves(value, path + ".")
        else:
            items.append((path, value))
    return items


def _check_leaf(schema: Any, key: str, value: Any) -> str | None:
    """None when `key=value` fits the schema, else a one-line reason with a hint."""
    parent, _, name = key.rpartition(".")
    node = OmegaConf.select(schema, parent) if parent else schema
    if node is None or not OmegaConf.is_dict(node) or name not in node:
        known = [f"{parent}.{k}" if parent else k for k in (node.keys() if OmegaConf.is_dict(node) else [])]
        close = difflib.get_close_matches(key, known or _all_keys(schema), n=1)
        hint = f"; did you mean {close[0]}?" if close else "; see `enas search --help` and README"
        return f"unknown config key {key}{hint}"
    nested: Any = value
    for part in reversed(key.split(".")):
        nested = {part: nested}
    try:
        OmegaConf.merge(schema, nested)
    except OmegaConfBaseException:
        expected = type(OmegaConf.select(schema, key)).__name__
        return f"{key}={value!r} has the wrong type: expected {expected}"
    return None


def _all_keys(schema: Any) -> list[str]:
    return [key for key, _ in _leaves(OmegaConf.to_container(schema))]


def validate(config: Config) -> None:
    """Range and choice checks from the field metadata; every violation reported at once."""
    errors = []
    for key, value, meta in _fields(config):
        if meta.get("choices") and value not in meta["choices"]:
            errors.append(f"{key}={value!r} is not one of {', '.join(meta['choices'])}")
        if meta.get("min") is not None and value < meta["min"]:
            errors.append(f"{key}={value} must be at least {meta['min']}")
        if meta.get("max") is not None and value > meta["max"]:
            errors.append(f"{key}={value} must be at most {meta['max']}")
    if config.data.name == "text" and not config.data.root:
        errors.append("data.name=text needs data.root=FOLDER holding ptb.train.txt, ptb.valid.txt, ptb.test.txt")
    if config.data.name == "cifar10" and not config.data.root:
        errors.append("data.name=cifar10 needs data.root=FOLDER (cifar-10-batches-py: data_batch_1..5, "
                      "test_batch)")
    if config.data.name == "image_folder" and not config.data.root:
        errors.append("data.name=image_folder needs data.root=FOLDER holding train/<class>/* and test/<class>/*")
    if config.space in SPACE_DATA and config.data.name not in SPACE_DATA[config.space]:
        errors.append(f"space={config.space} needs data.name in {', '.join(SPACE_DATA[config.space])}, "
                      f"not {config.data.name}")
    if errors:
        raise UserError("; ".join(errors))


def _fields(obj: Any, prefix: str = "") -> list[tuple[str, Any, dict]]:
    out = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            out += _fields(value, f"{prefix}{f.name}.")
        else:
            out.append((f"{prefix}{f.name}", value, dict(f.metadata)))
    return out


def describe_keys() -> list[tuple[str, str, str]]:
    """(key, default, help) for every config key, for the CLI help and the README."""
    return [(key, repr(value), meta.get("help", "")) for key, value, meta in _fields(Config())]


def to_yaml(config: Config) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(config))


def to_dict(config: Config) -> dict:
    return dataclasses.asdict(config)


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
