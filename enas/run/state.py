"""The run-state schema: what a checkpoint of a search or a retrain holds, under named keys.

Every writer and reader of a run state (the ENAS strategy, retrain, derive, the resume checks,
the checkpoint files) names its entries through these constants, and a state carries the schema
version it was written with. A file of another version is refused in one line that says which
way it differs.
"""

from __future__ import annotations

from typing import Any

SCHEMA_VERSION = 3

# Every run state
SCHEMA, KIND, CONFIG, PROGRESS, METRICS_LINES = "schema_version", "kind", "config", "progress", "metrics_lines"
ELAPSED = "elapsed"                  # seconds the loop has run, over all its sessions
RNG, TASK, SHUFFLER = "rng", "task", "shuffler"   # global generators, the task's data state, the data order
# A distributed run: rank 0's entries are the ones above; RANKS holds, for ranks 1.., their own
# values of PER_RANK (each draws its own random numbers and carries its own part of the data).
WORLD_SIZE, RANKS = "world_size", "ranks"
PER_RANK = (RNG, TASK, SHUFFLER)
# A search (KIND "search"): ENAS keeps a supernet, NAS-RL none
SUPERNET, CONTROLLER = "supernet", "controller"
SUPERNET_OPTIMIZER, CONTROLLER_OPTIMIZER = "supernet_optimizer", "controller_optimizer"
SAMPLER = "sampler"                  # the generator architectures are drawn with
STRATEGY = "strategy"                # the loop's own figures: the baseline, the reward position
ARCHITECTURES = "architectures"      # ENAS: the current supernet phase's sampled architectures
TRIALS_LINES = "trials_lines"        # NAS-RL: lines of trials.jsonl written by the checkpoint
# A retrain (KIND "retrain")
CHILD, OPTIMIZER = "child", "optimizer"
BEST, BEST_WEIGHTS = "best", "best_weights"
AVERAGE = "average"                  # retrain.average_after: the averaged weights and what they count


def schema_problem(state: Any, path: object) -> str:
    """"" when `state` is a run state of this schema, else what is wrong, in one line."""
    if not isinstance(state, dict) or not isinstance(state.get(SCHEMA), int):
        return f"{path} is not an enas checkpoint"
    version = state[SCHEMA]
    if version < SCHEMA_VERSION:
        return (f"{path} was written by an older enas (run-state schema {version}; this one reads "
                f"{SCHEMA_VERSION}): start the run again, or finish it with the enas that started it")
    if version > SCHEMA_VERSION:
        return (f"{path} was written by a newer enas (run-state schema {version}; this one reads "
                f"{SCHEMA_VERSION}): upgrade enas to resume it")
    return ""
