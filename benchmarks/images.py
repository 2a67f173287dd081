"""Speed of the image spaces (micro, macro): shared-weight steps of the supernet against one fixed
child of the same shapes, and the training step of the final network that retrain trains.

At each size, these run interleaved on the same synthetic images (uniformly random pixels and
labels: the speed of a step does not depend on what the images show), each through the real
training step (`ImageTask.train_loss` + `train_step`: augmentation as the preset sets it, forward,
cross-entropy plus any auxiliary loss, backward, gradient clipping, SGD):
  supernet  the supernet with a freshly sampled architecture per step (drawn by a real, untrained
            controller, as the search draws them)
  fixed     the supernet on one of those architectures at every step
  child     `space.child(arch)` for that architecture: the network the supernet runs then, holding
            only its own weights; its drop path is off, as the supernet's is
  reward    one reward of the supernet (forward on a validation batch), for the projection
  controller  one REINFORCE update of the space's controller (constant reward), for the projection
  retrain   the child that retrain trains with the retrain preset's settings (layers, filters,
            batch, auxiliary head, drop path, cutout), for an architecture of that preset's size
The supernet's overhead is the fixed step's time over the child's: what sharing the weights of
every candidate costs over training the one architecture alone. (Against the sampled steps it would
mostly measure how much dearer the sampled architectures are than the child's: a cell of separable
convolutions costs several times one of poolings and identities.)
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable, Sequence

import torch
from torch import nn

from benchmarks.recurrent import preset_config
from benchmarks.steps import rewarder, trainer
from benchmarks.timing import Timing, interleaved, kernels_per_call, synchronizer
from enas.config import Config, ControllerConfig, TrainConfig
from enas.data.images import ImageData
from enas.run.training import model_of, place
from enas.spaces.base import ImageShape
from enas.spaces.macro import MacroSpace
from enas.spaces.micro import MicroSpace
from enas.strategies.controller import Controller, build_optimizer, draw_architectures, reinforce_update
from enas.tasks.image import ImageTask

CIFAR10 = ImageShape(channels=3, height=32, width=32, classes=10)
CIFAR10_TRAIN_IMAGES = 50_000
# cifar10 presets name a data folder that the benchmarks never open; validation only needs it named
NO_DATA = "data.root=unused-by-benchmarks"


@dataclass(frozen=True)
class ImageSize:
    """A search preset with overrides (the supernet's and the child's shapes and training settings)
    and, where the size has a retrain figure, the retrain preset with its overrides."""

    name: str
    space: str
    preset: str
    overrides: tuple[str, ...] = ()
    retrain_preset: str | None = None
    retrain_overrides: tuple[str, ...] = ()

    def search_config(self) -> Config:
        # drop path off: the supernet never drops paths, and the child is to compute what it computes
        return preset_config(self.preset, [NO_DATA, f"space={self.space}", "micro.drop_path=0.0",
                                           *self.overrides])

    def retrain_config(self) -> Config | None:
        if self.retrain_preset is None:
            return None
        return preset_config(self.retrain_preset, [NO_DATA, f"space={self.space}", *self.retrain_overrides])


def image_sizes(space: str) -> dict[str, ImageSize]:
    """default: the shapes preset (retrained with its own retrain settings); paper: the cifar10
    search preset, retrained with the final preset; reference (micro only): the paper's cell at
    width 16 and batch 64, the size a one-shot NAS library quotes 54 images/s for."""
    sizes = {"default": ImageSize("default", space, "shapes", retrain_preset="shapes")}
    if space == "micro":
        sizes["reference"] = ImageSize("reference", space, "cifar10_micro", (
            "micro.filters=16", "micro.layers=6", "micro.nodes=5", "search.batch_size=64"))
    sizes["paper"] = ImageSize("paper", space, f"cifar10_{space}", retrain_preset=f"cifar10_{space}_final")
    return sizes


def image_shape(config: Config) -> ImageShape:
    """CIFAR-10's shape for the cifar10 presets; the generated images' for builtin_images."""
    data = config.data
    if data.name == "builtin_images":
        return ImageShape(3, data.image_size, data.image_size, data.classes)
    return CIFAR10


def synthetic_images(shape: ImageShape, train: int, test: int, generator: torch.Generator) -> ImageData:
    """Uniformly random pixels and labels: the speed of a step does not depend on what they show."""
    def split(count: int) -> tuple[torch.Tensor, torch.Tensor]:
        images = torch.randint(256, (count, shape.channels, shape.height, shape.width), generator=generator,
                               dtype=torch.uint8)
        return images, torch.randint(shape.classes, (count,), generator=generator)
    return ImageData(*split(train), *split(test), tuple(str(k) for k in range(shape.classes)))


def describe(config: Config, train: TrainConfig) -> dict:
    """The settings that decide the cost of a step."""
    shape = image_shape(config)
    widths = ({"layers": config.micro.layers, "filters": config.micro.filters, "nodes": config.micro.nodes,
               "aux_weight": config.micro.aux_weight, "drop_path": config.micro.drop_path}
              if config.space == "micro" else
              {"layers": config.macro.layers, "filters": config.macro.filters, "ops": config.macro.ops})
    return {**widths, "batch": train.batch_size, "aggregate": config.controller.aggregate,
            "image": f"{shape.height}x{shape.width}x{shape.channels}",
            "classes": shape.classes, "augment": train.augment, "cutout": train.cutout}


@dataclass
class ImageSteps:
    """The configs and networks of one size, and one training step of each network, to be timed."""

    config: Config
    final: Config | None
    supernet: nn.Module
    child: nn.Module
    retrain: nn.Module | None
    steps: dict[str, Callable[[], None]]


def controller_updates(space: MicroSpace | MacroSpace, controller_cfg: ControllerConfig) -> Callable[[], None]:
    """One REINFORCE update of the space's controller per call, with a constant reward (the rewards
    are timed apart): the controller's own cost for `aggregate` architectures."""
    controller = Controller.for_space(space, controller_cfg)
    optimizer, baseline = build_optimizer(controller), [None]

    def update() -> None:
        controller.train()
        samples = controller(controller_cfg.aggregate)
        baseline[0], _ = reinforce_update(controller, optimizer, samples, [0.5] * len(samples.architectures),
                                          baseline[0])
    return update


def build_steps(size: ImageSize, device: torch.device, seed: int = 0) -> ImageSteps:
    torch.manual_seed(seed)
    config, final = size.search_config(), size.retrain_config()
    batch = max(config.search.batch_size, final.retrain.batch_size if final else 0)
    # a few batches: search holds out data.valid_fraction of them; the test split is never read
    data = synthetic_images(image_shape(config), 4 * batch, 2, torch.Generator().manual_seed(seed))
    task = ImageTask(config, config.search, hold_out=True, data=data).to(device)
    architectures = draw_architectures(task.space, 32, seed, config.controller)
    # placed and called as a run does: on CUDA, channels-last weights and bf16 autocast (config cuda.*)
    supernet = place(task.space.supernet(), config, device)
    child = place(task.space.child(architectures[0]), config, device)

    bind = partial(model_of, supernet, config, device)
    fixed, child_model = bind(architectures[0]), model_of(child, config, device)
    steps = {"supernet": trainer(supernet, task, config.search,
                                 lambda index: bind(architectures[index % len(architectures)])),
             # fixed: with its own optimiser's state, which costs what the shared one would
             "fixed": trainer(supernet, task, config.search, lambda index: fixed),
             "child": trainer(child, task, config.search, lambda index: child_model)}
    steps["reward"] = rewarder(supernet, task, architectures, bind)
    steps["controller"] = controller_updates(task.space, config.controller)
    retrain = None
    if final is not None:
        retrain_task = ImageTask(final, final.retrain, hold_out=False, data=data).to(device)
        # The search preset's controller over the retrain space: an architecture a search could
        # find at that size. Its drop path ramps from step 0, so every step draws and applies masks.
        arch = draw_architectures(retrain_task.space, 1, seed, config.controller)[0]
        retrain = place(retrain_task.space.child(arch), final, device)
        retrain_model = model_of(retrain, final, device)
        steps["retrain"] = trainer(retrain, retrain_task, final.retrain, lambda index: retrain_model)
    return ImageSteps(config, final, supernet, child, retrain, steps)


@dataclass
class ImageResult:
    size: ImageSize
    search: dict          # `describe` of the supernet's and the child's settings
    retrain: dict | None  # `describe` of the retrain settings, where the size has them
    timings: dict[str, Timing]
    kernels: int          # per supernet training step

    @property
    def images_per_s(self) -> float:
        return self.search["batch"] / self.timings["supernet"].median

    @property
    def child_images_per_s(self) -> float:
        return self.search["batch"] / self.timings["child"].median

    @property
    def overhead_ratio(self) -> float:
        """The supernet's step time over the child's, on the child's architecture: below 1 the
        supernet is the faster."""
        return self.timings["fixed"].median / self.timings["child"].median

    @property
    def reward_s(self) -> float:
        return self.timings["reward"].median

    @property
    def controller_s_per_arch(self) -> float:
        return self.timings["controller"].median / self.search["aggregate"]

    def search_hours(self) -> float:
        """Projected wall time of the size's whole search preset at the measured speeds (on
        CIFAR-10 for the cifar10 presets): per epoch the shared steps over the training images
        (45,000 of CIFAR-10's), one reward and the controller's share per sampled architecture,
        and the evaluation of the most likely architecture (batch-norm recalibration, then the
        held-out validation images)."""
        config = self.size.search_config()
        search, controller = config.search, config.controller
        images = CIFAR10_TRAIN_IMAGES if config.data.name == "cifar10" else config.data.train_images
        held_out = round(images * config.data.valid_fraction)
        steps = search.steps_per_epoch or (images - held_out) // search.batch_size
        eval_batches = search.eval_batches or -(-held_out // search.batch_size)
        rewards = controller.steps * controller.aggregate
        epoch_s = (steps * self.timings["supernet"].median + rewards * (self.reward_s + self.controller_s_per_arch)
                   + (config.derive.bn_batches + eval_batches) * self.reward_s)
        return search.epochs * epoch_s / 3600

    @property
    def retrain_images_per_s(self) -> float | None:
        return self.retrain["batch"] / self.timings["retrain"].median if self.retrain else None

    def config(self) -> dict:
        return {"space": self.size.space, "preset": self.size.preset, **self.search,
                "retrain": self.retrain and {"preset": self.size.retrain_preset, **self.retrain},
                "reps": self.timings["supernet"].reps}


def bench_images(size: ImageSize, device: torch.device, budget_s: float, min_reps: int,
                 seed: int = 0) -> ImageResult:
    """Supernet steps (sampled and fixed architecture), child step and (where the size has one)
    retrain step, interleaved."""
    built = build_steps(size, device, seed)
    # one warm-up round (allocations, kernel choices): a paper-size round takes minutes on a CPU
    timings = interleaved(built.steps, warmup=1, budget_s=budget_s, min_reps=min_reps, max_reps=30,
                          sync=synchronizer(device))
    final = built.final
    return ImageResult(size, describe(built.config, built.config.search),
                       describe(final, final.retrain) if final else None, timings,
                       kernels_per_call(built.steps["fixed"]))  # the first drawn architecture: a fixed count


def selected(space: str, names: Sequence[str]) -> list[ImageSize]:
    """The named sizes that apply to `space` (reference is micro's alone), in the order given."""
    known = image_sizes(space)
    return [known[name] for name in names if name in known]
