"""When a retrain starts averaging its weights (NT-ASGD) and which weights it keeps for the test.

Two rules (`retrain.average_rule`), both with the patience `retrain.average_after` = N:
- stall: averaging starts once N epochs in a row made no new best validation score, and the best
  validated weights (after the start: the best validated average) are tested.
- enas_lm: averaging starts once an epoch's validation is worse than the best of the epochs before
  the last N, the non-monotone trigger of NT-ASGD (Merity et al. 2018) as enas_lm src/fixed.py
  train() writes it: `valid_ppl > min(best_valid_ppl[:-threshold])` once more than N epochs are in;
  the last weights, the final average, are tested (fixed.py: eval_test after the last step).
"""

from __future__ import annotations

from typing import Sequence

RULES = ("stall", "enas_lm")


def starts_averaging(rule: str, patience: int, stale: int, history: Sequence[float], value: float,
                     lower_is_better: bool = True) -> bool:
    """Whether the epoch whose validation score is `value` starts the average. `stale`: epochs in a
    row without a new best, this one included; `history`: the scores of the epochs before it."""
    if rule == "stall":
        return stale >= patience
    if len(history) <= patience:
        return False
    best_before = (min if lower_is_better else max)(history[:-patience])
    return value > best_before if lower_is_better else value < best_before


def keeps_last(rule: str) -> bool:
    """Whether every epoch's weights replace the kept ones, so that the last are tested (enas_lm),
    rather than only an epoch with a new best validation score (stall)."""
    return rule == "enas_lm"
