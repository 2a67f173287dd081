"""How a search searches: the controller and the search strategies, by name.

Registering a strategy is one entry in `STRATEGIES`; its config section, `strategy=` value, the
commands, the plots, the report and `enas runs` follow from the class (base.py says what it
declares). enas and nas_rl learn a controller; random_ws and random are their baselines.
"""

from __future__ import annotations

from enas.errors import UserError
from enas.strategies.base import Strategy
from enas.strategies.enas import Enas, RandomWS
from enas.strategies.evolution import Evolution
from enas.strategies.nas_rl import NasRL, Random

STRATEGIES: dict[str, Strategy] = {strategy.name: strategy for strategy in (
    Enas(),        # ENAS, shared weights (Pham et al. 2018)
    RandomWS(),    # random search with weight sharing (Li & Talwalkar 2019)
    NasRL(),       # children trained from scratch (Zoph & Le 2017)
    Random(),      # random search, children trained from scratch
    Evolution(),   # regularized evolution, children trained from scratch (Real et al. 2019)
)}


def strategy_of(name: str) -> Strategy:
    try:
        return STRATEGIES[name]
    except KeyError:
        raise UserError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}") from None
