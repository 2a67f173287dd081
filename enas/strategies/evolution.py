"""Regularized ("aging") evolution (Real et al. 2019), the strongest multi-trial baseline of
NAS-Bench-201: a population of the last `evolution.population` children. Each cycle draws
`evolution.sample` of them at random, mutates the best (one decision changed to another value),
trains the child alone (or looks it up in bench.table), adds it and removes the oldest member:
age, not fitness, decides who leaves. The first `population` cycles fill the population with
uniform architectures. The cycles run in the NAS-RL loop (child_search.py), one child each, with
its trials, cache, resume and derive."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from enas.errors import UserError
from enas.fields import option
from enas.strategies.base import Phase
from enas.strategies.nas_rl import NasRL

if TYPE_CHECKING:
    from enas.config import Config
    from enas.run.session import Session
    from enas.spaces.architecture import Architecture, Choice
    from enas.spaces.base import Decision
    from enas.strategies.child_search import ChildSearch

EVOLUTION = "evolution"   # one metrics line per cycle
MUTATION_TRIES = 100      # redraws of a mutation the space refuses before giving up


@dataclass
class EvolutionConfig:
    cycles: int = option(500, "children in the whole search, one per cycle; the first `population` are uniform",
                         min=1)
    population: int = option(10, "P: the members kept, the youngest (NAS-Bench-201's REA: 10)", min=2)
    sample: int = option(3, "S: members drawn per cycle; the best of them is mutated (NAS-Bench-201's REA: 3)",
                         min=1)


class Evolution(NasRL):
    """The NAS-RL loop's strategy with its proposals and learning replaced: search, derive and scorer are NAS-RL's."""

    name = "evolution"
    summary = "regularized evolution, children trained alone or looked up (Real et al. 2019)"
    section, config = "evolution", EvolutionConfig
    budget, unit = "evolution.cycles", "cycle"
    phases = (Phase(EVOLUTION, ("reward", "best_reward", "population_reward", "search_s")),)
    done_phase = reward_phase = EVOLUTION
    rewards = {"ppl": "c / validation perplexity²", "acc": "validation accuracy³ (with bench.table: bench.reward)"}
    scored_by = "trained from scratch"
    epoch_shape = ()
    learns = False   # the controller stays uniform: it draws the first population only

    def per_update(self, config: Config) -> int:
        return 1

    def propose(self, search: ChildSearch, n: int) -> list[Architecture]:
        from enas.strategies.child_search import controller_draw

        if len(search.state.population) < search.config.evolution.population:
            return controller_draw(search, n)
        return [mutate(search, parent(search)) for _ in range(n)]

    def learn(self, search: ChildSearch, session: Session) -> None:
        state, cfg = search.state, search.config.evolution
        state.population += [[choices, reward] for choices, reward in zip(state.architectures, state.rewards)]
        del state.population[:-cfg.population]   # the oldest leave
        rewards = [reward for _, reward in state.population]
        session.metrics.write(EVOLUTION, search.progress.epoch, search.progress.epoch + 1,
                              reward=sum(state.rewards) / len(state.rewards),
                              best_reward=max(t["reward"] for t in state.trials.values()),
                              population_reward=sum(rewards) / len(rewards), search_s=round(session.elapsed, 2))


def parent(search: ChildSearch) -> list[Choice]:
    """The best of `evolution.sample` members drawn at random (with replacement, as Real et al.)."""
    population = search.state.population
    drawn = torch.randint(len(population), (search.config.evolution.sample,), generator=search.sampler).tolist()
    return max((population[i] for i in drawn), key=lambda member: member[1])[0]


def mutate(search: ChildSearch, choices: list[Choice]) -> Architecture:
    """`choices` with one decision changed to another of its values (a skip decision: one bit
    flipped), redrawn while the space refuses the result."""
    from enas.spaces import checked_architecture

    space = search.task.space
    decisions = space.decisions()
    for _ in range(MUTATION_TRIES):
        index = int(torch.randint(len(decisions), (), generator=search.sampler))
        mutated = list(choices)
        mutated[index] = other_value(decisions[index], choices[index], search.sampler)
        try:
            return checked_architecture(space.name, [tuple(c) if isinstance(c, list) else c for c in mutated])
        except UserError:
            continue
    raise UserError(f"no valid mutation of {choices} in {MUTATION_TRIES} draws; the {space.name} space is too "
                    "constrained for evolution")


def other_value(decision: Decision, value: Choice, generator: torch.Generator) -> Choice:
    """Another value of `decision` than `value`, uniformly (a skip decision: one bit flipped)."""
    if decision.kind == "skip":
        bits = list(value)
        bit = int(torch.randint(len(bits), (), generator=generator)) if bits else 0
        return tuple(b ^ (i == bit) for i, b in enumerate(bits))
    options = len(decision.options) if decision.kind == "op" else decision.size
    if options < 2:
        return value
    shift = 1 + int(torch.randint(options - 1, (), generator=generator))
    return (value + shift) % options
