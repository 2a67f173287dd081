"""Typed run configuration: dataclass schema, YAML presets in conf/, dotlist overrides, validation.

Everything a run reads comes from `Config`. It is built once by `load_config` (defaults, then the
preset or a saved run's config.yaml, then `key=value` overrides), checked with every mistake
reported at once, and handed on as plain dataclasses: no omegaconf object leaves this module.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field, make_dataclass
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from enas.data.config import IMAGE_DATASETS, MAX_SEED, TEXT_DATASETS, DataConfig, data_errors
from enas.errors import UserError
from enas.fields import field_problem, option
from enas.folder.names import CONFIG_FILE
from enas.spaces import SPACES
from enas.spaces.base import ImageShape, TextShape
from enas.strategies import STRATEGIES
from enas.tables.config import BenchConfig, bench_errors

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
DATASETS = {TextShape: TEXT_DATASETS, ImageShape: IMAGE_DATASETS}  # by the data a space reads


@dataclass
class ControllerConfig:
    hidden: int = option(64, "LSTM hidden size of the controller", min=1)
    temperature: float = option(5.0, "logits are divided by this before the tanh clipping", min=1e-6)
    tanh_constant: float = option(2.5, "C in C*tanh(logits); 0 disables the clipping", min=0.0)
    op_tanh_reduce: float = option(1.0, "op logits use tanh_constant / op_tanh_reduce", min=1e-6)
    lr: float = option(3.5e-4, "Adam learning rate", min=0.0)
    baseline_decay: float = option(0.95, "decay of the moving-average reward baseline", min=0.0, max=1.0)
    entropy_weight: float = option(1e-4, "weight of the entropy bonus added to the reward", min=0.0)
    reward_constant: float = option(80.0, "text reward is reward_constant / validation perplexity", min=1e-6)
    steps: int = option(20, "controller updates per search epoch", min=0)
    aggregate: int = option(10, "sampled architectures whose gradients make one update", min=1)
    skip_target: float = option(0.4, "skip decisions: target probability of a skip connection", min=0.01, max=0.99)
    skip_weight: float = option(0.8, "skip decisions: weight of the KL penalty toward skip_target", min=0.0)
    skip_form: str = option("enas", "skip decisions: enas (the official general_controller.py: a bit is drawn from a "
                            "softmax over [-q, q], so P(skip) = sigmoid(2q), while the KL penalty reads sigmoid(q)) "
                            "or sigmoid (P(skip) = sigmoid(q), NAS-RL); either way the penalty sums a layer's bits "
                            "and averages over layers", choices=("enas", "sigmoid"))
    entropy_form: str = option("full", "the entropy in the reward's bonus: full (every option's -p log p, the "
                               "official micro controller) or sampled (only the chosen option's -p(a) log p(a), the "
                               "official macro and PTB controllers)", choices=("full", "sampled"))
    node_step: bool = option(False, "one more LSTM step, on the embedding of a node's last choice, makes the node's "
                             "anchor, and the next node starts from the start embedding (official micro controller)")
    separable_bias: bool = option(False, "op decisions: start the op head's bias at 10 for separable convolutions "
                                  "and 0 for the rest, and add a fixed +0.25 / -0.25 after the clipping in the normal "
                                  "cell (official micro controller's b_soft and b_soft_no_learn)")
    position_prior: bool = option(False, "index decisions: subtract (distance)^2 / 6 from the clipped logits and "
                                  "divide the chosen anchor by 0.1 + distance (both official PTB controllers)")
    reward_batches: int = option(1, "validation batches whose mean loss (text) or accuracy (images) makes one "
                                 "reward (the official code: 1)", min=1)
    calibrate_rewards: bool = option(False, "images: recompute each architecture's batch-norm statistics "
                                     "(derive.bn_batches) before its reward and reward in eval mode, instead of "
                                     "normalising with the reward batch's own statistics (the official code)")
    reward_bn: str = option("batch", "images: the reward's batch norm uses each batch's statistics (batch: official "
                            "micro_child.py:804) or moving ones (general_child.py:691)", choices=("batch", "moving"))
    entropy_floor: float = option(0.0, "keep the policy's entropy above this share of its maximum: an update whose "
                                  "samples fall below it also climbs the entropy's gradient; 0 disables",
                                  min=0.0, max=1.0)
    biases: bool = option(True, "bias vectors in the LSTM and op heads; the official controllers have none but micro's "
                          "b_soft, separable_bias (general_controller.py:84-124, enas_lm controller.py _build_params)")
    init_range: float = option(0.1, "uniform initialisation range (official: 0.1, general_controller.py:84; enas_lm "
                               "controller.py _build_params: 0.01)", min=0.0)
    adam_beta1: float = option(0.0, "Adam's beta1 (official: 0, utils.py:218; enas_lm: TF's 0.9)", min=0.0, max=0.999)
    adam_eps: float = option(1e-3, "Adam's epsilon (official: 1e-3, utils.py:218; enas_lm: TF's 1e-8)", min=0.0)


@dataclass
class TrainConfig:
    """Shared-weight training in search and from-scratch training in retrain use the same knobs."""

    epochs: int = option(30, "passes over the training split", min=1)
    batch_size: int = option(32, "sequences (text) or images per batch", min=1)
    bptt: int = option(20, "truncated back-propagation length in tokens", min=2)
    lr: float = option(10.0, "SGD learning rate", min=0.0)
    momentum: float = option(0.0, "SGD momentum", min=0.0, max=1.0)
    nesterov: bool = option(False, "Nesterov momentum (needs momentum > 0)")
    weight_decay: float = option(1e-6, "L2 weight decay: SGD adds weight_decay * w to the gradient (the official "
                                 "loss term l2 * sum(w^2) is weight_decay = 2 * l2)", min=0.0)
    decay_unused: bool = option(False, "weight decay and momentum also move the parameters a step did not use "
                                "(supernet weights off the sampled architecture), as the official code's L2 over "
                                "every variable does; off: they stay exactly as they were")
    grad_clip: float = option(0.25, "clip the global gradient norm to this; 0 disables", min=0.0)
    decay_in_clip: bool = option(False, "add weight_decay * w to the gradient before the clipping, as both official "
                                 "PTB codes clip loss + L2 (utils.py:118-140, enas_lm fixed_lib.py); off: after it")
    weight_decay_form: str = option("l2", "l2, or quartic: the loss adds weight_decay * sum(w^4) / 2 of the cell "
                                    "weights used (enas_lm child.py: l2_loss(w ** 2))", choices=("l2", "quartic"))
    lr_decay: float = option(1.0, "learning rate multiplied by this every epoch from lr_decay_start", min=0.0, max=1.0)
    lr_decay_start: int = option(0, "first epoch (0-based) at which lr_decay applies", min=0)
    lr_min: float = option(0.0, "lower bound of the decayed learning rate", min=0.0)
    lr_schedule: str = option("exponential", "exponential (lr_decay per epoch) or cosine (from lr down to lr_min, "
                            "with warm restarts: SGDR, as the official CIFAR-10 code)",
                            choices=("exponential", "cosine"))
    cosine_period: int = option(0, "cosine: epochs of the first cycle (official lr_T_0); 0 means one cycle "
                              "over all epochs", min=0)
    cosine_period_mult: int = option(1, "cosine: each cycle is this many times longer than the one before "
                                   "(official lr_T_mul)", min=1)
    augment: bool = option(True, "images: random crop after 4-pixel zero padding and horizontal flip in training")
    cutout: int = option(0, "images: side of the square cut out of each training image (16 in the paper's "
                       "final training); 0 disables", min=0)
    steps_per_epoch: int = option(0, "training steps per epoch; 0 means one full pass over the train split", min=0)
    random_bptt: bool = option(False, "text: random-length BPTT (AWD-LSTM, enas_lm): each training window is "
                               "N(bptt, 5) tokens long with probability 0.95, else N(bptt/2, 5), at least 5, and "
                               "its learning rate is scaled by length/bptt; the lengths follow from the seed and the "
                               "step, the windows walk contiguously through the train split")
    random_bptt_form: str = option("awd", "random_bptt lengths: awd (above) or enas_lm (a normal truncated at 2 sigma, "
                                   "enas_lm data_utils.py input_producer)", choices=("awd", "enas_lm"))
    ar_alpha: float = option(0.0, "activation regularisation: alpha * mean(h_t^2) of the cell outputs", min=0.0)
    tar_beta: float = option(0.0, "temporal activation regularisation (slowness): beta * mean((h_t - h_(t-1))^2)",
                           min=0.0)


@dataclass
class SearchConfig(TrainConfig):
    eval_batches: int = option(0, "validation batches in the per-epoch evaluation; 0 means all", min=0)
    warmup_epochs: int = option(0, "enas: first epochs that train the shared weights on uniformly sampled "
                                "architectures, without controller updates", min=0)
    uniform_fraction: float = option(0.0, "enas: share of every supernet phase's steps that train a uniformly "
                                     "sampled architecture instead of one from the controller (fair path sampling)",
                                     min=0.0, max=1.0)


@dataclass
class RetrainConfig(TrainConfig):
    """From-scratch training of the derived architecture (the final recipe)."""

    average_after: int = option(0, "parameter averaging (NT-ASGD, enas_lm fixed_lib.py): once validation has not "
                                "improved for this many epochs, average the weights over every step from then on; "
                                "validation, the kept weights, model.pt and the test score use the average; 0 disables",
                                min=0)
    average_rule: str = option("stall", "stall (above; the best weights tested) or enas_lm: start once validation is "
                               "worse than before the last N epochs and test the last weights (enas_lm fixed.py train)",
                               choices=("stall", "enas_lm"))
    eval_batch_size: int = option(0, "text: batch size of the final test score of the kept weights (the paper's "
                                  "test: 1, both official codes); the per-epoch validation keeps batch_size, as the "
                                  "official code's; 0 means batch_size", min=0)
    eval_bptt: int = option(0, "text: window length of the final test score (the official test: 1); with the state "
                            "carried it changes only the speed and the rounding, not the perplexity; 0 means bptt",
                            min=0)


@dataclass
class DeriveConfig:
    samples: int = option(100, "architectures sampled from the trained controller", min=1)
    top: int = option(5, "rows of the printed table of the best candidates", min=1)
    bn_batches: int = option(10, "images: training batches that recompute the batch-norm statistics of each "
                           "candidate before it is scored (derive and the search's per-epoch evaluation)",
                           min=1)


@dataclass
class CudaConfig:
    """Speed switches that act only on a CUDA device; on the CPU they are ignored."""

    amp: bool = option(True, "bf16 autocast of the forward passes (losses, rewards and scores in float32)")
    tf32: bool = option(True, "TF32 tensor cores for float32 matmuls and convolutions")
    cudnn_benchmark: bool = option(True, "let cuDNN time its convolution algorithms and keep the fastest")


@dataclass
class LoggingConfig:
    """What a run writes beside metrics.jsonl."""

    tensorboard: bool = option(False, "also write TensorBoard event files beside metrics.jsonl: every figure "
                               "of its lines as a scalar, the derived cell's picture, the test score")


@dataclass
class RunConfig:
    """The keys of every run; `Config` adds one section per search space."""

    preset: str = option("", "the preset or YAML file the run's config came from, recorded by itself (the last "
                         "file of the config that names none); shown in the plots, the report and `enas runs`")
    seed: int = option(0, "seed of everything random in the run", min=0, max=MAX_SEED)
    strategy: str = option("enas", "search strategy: " + "; ".join(f"{name} ({strategy.summary})" for name, strategy
                                                                  in STRATEGIES.items()), choices=tuple(STRATEGIES))
    space: str = option("recurrent", f"search space: {', '.join(SPACES)}", choices=tuple(SPACES))
    device: str = option("auto", "auto (CUDA when present), cpu or cuda", choices=("auto", "cpu", "cuda"))
    threads: int = option(0, "CPU threads for torch; 0 uses the cores free when the run starts (every core "
                         "of an idle machine, fewer where other processes are busy)", min=0)
    channels_last: bool = option(True, "images: channels-last memory layout of batches and conv weights (on "
                                 "CPU and GPU alike, convolutions and pooling run 2-3x faster in it)")
    cuda: CudaConfig = field(default_factory=CudaConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    bench: BenchConfig = field(default_factory=BenchConfig)
    data: DataConfig = field(default_factory=DataConfig)
    controller: ControllerConfig = field(default_factory=ControllerConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    derive: DeriveConfig = field(default_factory=DeriveConfig)
    retrain: RetrainConfig = field(default_factory=RetrainConfig)


# A search space brings its own config section, named after it (`micro.filters`), and so does a
# strategy with keys of its own (`nas_rl.updates`): registering it is all it takes.
SECTIONS = {**{name: space.config for name, space in SPACES.items()},
            **{s.section: s.config for s in STRATEGIES.values() if s.section}}
Config = make_dataclass("Config", [(name, section, field(default_factory=section)) for name, section in SECTIONS.items()],
                        bases=(RunConfig,))
Config.__doc__ = "The whole configuration of a run: RunConfig's keys, a section per search space and per strategy."


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
        if path.name != CONFIG_FILE:   # a preset names itself; a run's saved config keeps the name it has
            loaded.setdefault("preset", path.stem)
        sources.append((str(path), loaded))
    errors = []
    for item in overrides:
        if "=" not in item:
            raise UserError(f"override {item!r} is not key=value (e.g. search.epochs=3)")
        if not _is_utf8(item):
            errors.append(f"{item!r} is not UTF-8 text (a file name in another encoding?); rename the file")
            continue
        sources.append(("command line", OmegaConf.to_container(OmegaConf.from_dotlist([item]))))

    schema = OmegaConf.structured(Config)
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


def _is_utf8(text: str) -> bool:
    """False for a command-line argument with bytes that are not UTF-8 (Python keeps them as lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


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
    try:   # the key's own node alone: merging into the whole schema copied it for every key (0.2 s each)
        OmegaConf.merge(OmegaConf.masked_copy(node, [name]), {name: value})
    except OmegaConfBaseException:
        expected = type(OmegaConf.select(schema, key)).__name__
        return f"{key}={value!r} has the wrong type: expected {expected}"
    return None


def _all_keys(schema: Any) -> list[str]:
    return [key for key, _ in _leaves(OmegaConf.to_container(schema))]


def validate(config: Config) -> None:
    """The checks of every field (`field_problem`) and of how fields go together; every violation
    reported at once."""
    errors = [problem for key, value, meta in _fields(config) if (problem := field_problem(key, value, meta))]
    errors += data_errors(config.data) + bench_errors(config.bench)
    datasets = DATASETS[SPACES[config.space].data] if config.space in SPACES else ()
    if datasets and config.data.name not in datasets:
        errors.append(f"space={config.space} needs data.name in {', '.join(datasets)}, not {config.data.name}")
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
