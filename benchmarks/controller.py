"""Speed of the controller alone: REINFORCE updates with a cheap synthetic reward, and the no-grad
batch sampling the supernet phase uses. Figures are per architecture.

A real search pays for each update `aggregate` rewards on top (supernet forwards on validation
windows); those are the supernet's work and are left out here on purpose. The search probe
(`benchmarks.search_probe`) measures the controller's share of a real search.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from benchmarks.recurrent import preset_config
from benchmarks.timing import Timing, interleaved
from enas.spaces.architecture import Architecture
from enas.spaces.base import TextShape
from enas.spaces.recurrent import RecurrentSpace
from enas.strategies.controller import Controller, build_optimizer, reinforce_update


@dataclass
class ControllerResult:
    preset: str
    aggregate: int
    sample_batch: int
    timings: dict[str, Timing]
    config: dict

    @property
    def update_s_per_arch(self) -> float:
        """Sampling one architecture with gradients plus its share of one REINFORCE update."""
        return self.timings["update"].median / self.aggregate

    @property
    def sample_s_per_arch(self) -> float:
        """Sampling one architecture without gradients, in a batch as the supernet phase does."""
        return self.timings["sample"].median / self.sample_batch


def synthetic_reward(arch: Architecture) -> float:
    """Share of even-numbered choices (the activations) that pick tanh: cheap and architecture-dependent."""
    activations = arch.choices[::2]
    return sum(choice == 0 for choice in activations) / len(activations)


def bench_controller(preset: str, budget_s: float, min_reps: int, seed: int = 0) -> ControllerResult:
    """The preset's controller over its recurrent space; the controller runs on the CPU in a search."""
    config = preset_config(preset)
    space = RecurrentSpace(config.recurrent, TextShape(vocab_size=2))  # the vocabulary does not reach the controller
    controller = Controller.for_space(space, config.controller)
    optimizer = build_optimizer(controller)
    generator = torch.Generator().manual_seed(seed)
    baseline: list[float | None] = [None]
    sample_batch = config.search.steps_per_epoch or 100

    def update() -> None:
        controller.train()
        samples = controller(config.controller.aggregate, generator)
        rewards = [synthetic_reward(arch) for arch in samples.architectures]
        baseline[0], _ = reinforce_update(controller, optimizer, samples, rewards, baseline[0])

    def sample() -> None:
        controller.eval()
        with torch.no_grad():
            controller(sample_batch, generator)

    timings = interleaved({"update": update, "sample": sample}, warmup=2, budget_s=budget_s,
                          min_reps=min_reps, max_reps=50, sync=lambda: None)
    details = {"preset": preset, "nodes": config.recurrent.nodes, "controller_hidden": config.controller.hidden,
               "aggregate": config.controller.aggregate, "sample_batch": sample_batch,
               "reps": timings["update"].reps}
    return ControllerResult(preset, config.controller.aggregate, sample_batch, timings, details)
