"""The controller alone: sampling is valid and seeded, and REINFORCE learns from a synthetic reward."""

import math
from collections import Counter

import pytest
import torch

from enas.config import ControllerConfig
from enas.spaces.architecture import Architecture
from enas.spaces.base import TextShape
from enas.spaces.recurrent import RecurrentConfig, RecurrentSpace
from enas.strategies.controller import Controller, build_optimizer, reinforce_update

NODES = 4
TARGET = Architecture("recurrent", (3, 0, 1, 1, 2, 2, 0))  # sigmoid, relu(1), identity(2), tanh(3)


def update(controller, optimizer, reward_of, baseline, generator):
    """One REINFORCE update from the controller's own samples, as the search makes it."""
    controller.train()
    samples = controller(controller.cfg.aggregate, generator)
    return reinforce_update(controller, optimizer, samples, [reward_of(a) for a in samples.architectures], baseline)


def recurrent_decisions(nodes: int):
    return RecurrentSpace(RecurrentConfig(nodes=nodes), TextShape(2)).decisions()


def make_controller(**overrides) -> Controller:
    cfg = ControllerConfig(**{"hidden": 32, "lr": 5e-3, "aggregate": 10, **overrides})
    return Controller("recurrent", recurrent_decisions(NODES), 0, cfg)


def target_frequency(controller: Controller, n: int = 400) -> float:
    with torch.no_grad():
        samples = controller(n, torch.Generator().manual_seed(123)).architectures
    return sum(arch == TARGET for arch in samples) / n


def matching_reward(arch: Architecture) -> float:
    """Fraction of decisions that agree with TARGET: the synthetic reward the controller climbs."""
    return sum(a == b for a, b in zip(arch.choices, TARGET.choices)) / len(TARGET.choices)


def test_samples_are_valid_architectures_and_seeded():
    controller = make_controller()
    first = controller(8, torch.Generator().manual_seed(0))
    again = controller(8, torch.Generator().manual_seed(0))
    other = controller(8, torch.Generator().manual_seed(1))
    assert first.architectures == again.architectures
    assert first.architectures != other.architectures
    assert first.log_prob.shape == first.entropy.shape == (8,)
    assert torch.all(first.log_prob < 0) and torch.all(first.entropy > 0)


def test_log_prob_is_the_probability_of_the_sampled_architecture():
    # With one op decision the log-probability is that of a softmax; exp sums to one over the options.
    controller = Controller("recurrent", recurrent_decisions(1), 0, ControllerConfig(hidden=8))
    with torch.no_grad():
        samples = controller(2000, torch.Generator().manual_seed(0))
    probs = {}
    for arch, lp in zip(samples.architectures, samples.log_prob):
        probs[arch] = lp.exp().item()
    assert abs(sum(probs.values()) - 1) < 1e-5
    for arch, p in probs.items():
        frequency = sum(a == arch for a in samples.architectures) / 2000
        assert abs(frequency - p) < 0.05


def test_reinforce_raises_the_probability_of_the_rewarded_architecture():
    torch.manual_seed(0)
    controller = make_controller()
    optimizer = build_optimizer(controller)
    chance = target_frequency(controller)
    baseline, generator, rewards = None, torch.Generator().manual_seed(0), []
    for _ in range(300):
        baseline, stats = update(controller, optimizer, matching_reward, baseline, generator)
        rewards.append(stats.reward)
    learned = target_frequency(controller)
    assert chance < 0.01                    # 1 / (4^4 * 1 * 2 * 3) = 1/1536 at the start
    assert learned > 0.3, learned           # well above chance after a few hundred updates
    assert sum(rewards[-20:]) / 20 > sum(rewards[:20]) / 20 + 0.3
    with torch.no_grad():
        assert controller(1, greedy=True).architectures[0] == TARGET


def test_entropy_bonus_keeps_the_policy_broader():
    def final_entropy(weight: float) -> float:
        """Mean entropy of the last 20 updates of 300: long enough for the policy to narrow (it
        barely moves in the first hundred; measured 1.9 without the bonus, 3.0 with it)."""
        torch.manual_seed(0)
        controller = make_controller(entropy_weight=weight)
        optimizer = build_optimizer(controller)
        baseline, generator, entropies = None, torch.Generator().manual_seed(0), []
        for _ in range(300):
            baseline, stats = update(controller, optimizer, matching_reward, baseline, generator)
            entropies.append(stats.entropy)
        return sum(entropies[-20:]) / 20

    assert final_entropy(1.0) > final_entropy(0.0) + 0.5


def test_the_position_prior_favours_recent_nodes_as_the_official_ptb_controllers_do():
    space = RecurrentSpace(RecurrentConfig(nodes=4), TextShape(5))
    n = 6000

    def last_input_shares(prior: bool) -> list[float]:
        controller = Controller.for_space(space, ControllerConfig(position_prior=prior)).make_uniform()
        archs = controller(n, torch.Generator().manual_seed(0)).architectures
        counts = Counter(arch.choices[5] for arch in archs)    # node 4 reads node 1, 2 or 3
        return [counts[j] / n for j in range(3)]

    weights = [math.exp(-d * d / 6) for d in (3, 2, 1)]           # distances back from node 4
    expected = [w / sum(weights) for w in weights]
    assert last_input_shares(True) == pytest.approx(expected, abs=0.02)
    assert last_input_shares(False) == pytest.approx([1 / 3] * 3, abs=0.02)
