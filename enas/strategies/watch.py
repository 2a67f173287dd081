"""Watching a controller's policy: what it samples, and a warning when it collapses too early or
has not learned at all.

Once an epoch the search draws a fixed number of architectures with a generator of its own (so
watching changes nothing the search draws) and logs the entropy of each decision, how often each
op is chosen and each input is read, and the share of the most frequent architecture. A controller whose entropy falls
low in the first half of the search, or that gives one op almost every choice of a decision,
has stopped exploring before the shared weights could rank what it left out. One whose entropy
is still within a few percent of uniform after half the search has not learned which
architectures are better, and what it derives is close to a random draw. Either is worth one
warning a run; derive and the report say the second again beside the derived cell.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import torch

from enas.console import warn
from enas.strategies.controller import Controller

WATCH_SAMPLES = 100    # architectures drawn to watch the policy once an epoch
LOW_ENTROPY = 0.25     # warn below this share of the maximum entropy ...
EARLY = 0.5            # ... within this share of the epochs
DOMINANT_OP = 0.9      # warn when one op takes more than this share of a decision
UNLEARNED = 0.97       # warn above this share of the maximum entropy from EARLY of the epochs on
UNLEARNED_REMEDY = "raise controller.steps or controller.lr, or lower controller.temperature, which divides the logits"


@dataclass(frozen=True)
class PolicyFigures:
    decision_entropy: dict[str, float]    # mean entropy of each decision by its name, nats
    entropy_share: float                  # the policy's mean entropy over its maximum (uniform): 0..1
    op_frequency: dict[str, float]        # share of op choices per op name, over every op decision
    input_frequency: dict[str, float]     # share of the inputs read, by position among a decision's
                                          # candidates ("0": the earliest), over every index and skip decision
    top_op_share: tuple[str, str, float]  # (decision, op, share): the most dominant op of any decision
    top_arch_share: float                 # share of the samples that are the most frequent architecture

    def as_metrics(self) -> dict:
        decision, op, share = self.top_op_share
        return {"decision_entropy": {k: round(v, 4) for k, v in self.decision_entropy.items()},
                "entropy_share": round(self.entropy_share, 4),
                "op_frequency": {k: round(v, 4) for k, v in self.op_frequency.items()},
                "input_frequency": {k: round(v, 4) for k, v in self.input_frequency.items()},
                "top_op": {"decision": decision, "op": op, "share": round(share, 4)},
                "top_arch_share": round(self.top_arch_share, 4)}


def watch_policy(controller: Controller, seed: int) -> PolicyFigures:
    """The figures of WATCH_SAMPLES architectures drawn from `controller` with generator `seed`."""
    controller.eval()
    with torch.no_grad():
        samples = controller(WATCH_SAMPLES, torch.Generator().manual_seed(seed))
    decisions = controller.decisions
    entropy = samples.decision_entropy.mean(0).tolist()
    uniform = controller.max_entropy
    ops: Counter[str] = Counter()
    inputs: Counter[int] = Counter()
    top: tuple[str, str, float] = ("", "", 0.0)
    for position, decision in enumerate(decisions):
        choices = [arch.choices[position] for arch in samples.architectures]
        if decision.kind == "index":
            inputs.update(choices)
        elif decision.kind == "skip":
            inputs.update(k for bits in choices for k, bit in enumerate(bits) if bit)
        else:   # an op
            chosen = Counter(decision.options[choice] for choice in choices)
            ops.update(chosen)
            op, count = chosen.most_common(1)[0]
            if len(decision.options) > 1 and count / WATCH_SAMPLES > top[2]:   # a one-option decision is fixed
                top = (decision.name, op, count / WATCH_SAMPLES)
    most_frequent = Counter(samples.architectures).most_common(1)[0][1]
    return PolicyFigures(dict(zip((d.name for d in decisions), entropy)), sum(entropy) / uniform if uniform else 0.0,
                         shares(ops), {str(k): v for k, v in shares(inputs).items()}, top,
                         most_frequent / WATCH_SAMPLES)


def shares(counts: Counter) -> dict:
    """Each key's share of the counts, in key order; empty when there are none."""
    total = sum(counts.values())
    return {key: counts[key] / total for key in sorted(counts)} if total else {}


def policy_warning(figures: PolicyFigures, epoch: int, epochs: int) -> str | None:
    """A one-line warning when the policy has collapsed too early or not learned, else None."""
    return collapse_warning(figures, epoch, epochs) or unlearned_warning(figures, epoch, epochs)


def unlearned_warning(figures: PolicyFigures, epoch: int, epochs: int) -> str | None:
    """A one-line warning when, half the search or more done, the policy is still about uniform."""
    if figures.entropy_share <= UNLEARNED or epoch + 1 < EARLY * epochs:
        return None
    # Lines that fit 80 columns (a warning is printed as it is), naming no total of epochs: a resume
    # that extends the search logs what an uninterrupted one does.
    return (f"warning: epoch {epoch + 1}: the controller has not yet learned (entropy {figures.entropy_share:.2%}"
            " of max);\n  left so, what it derives is close to a random draw: raise controller.steps\n"
            "  or controller.lr, or lower controller.temperature")


def unlearned_note(lines: list[dict], learns: bool) -> str | None:
    """What derive and the report say beside the derived cell when the search's last policy figures
    (`lines`: its metrics lines) are still about uniform; None for a random baseline (`learns` off)."""
    shares = [line["entropy_share"] for line in lines if "entropy_share" in line]
    if not learns or not shares or shares[-1] <= UNLEARNED:
        return None
    return (f"note: the controller had not learned: its policy ended at {shares[-1]:.2%} of the maximum entropy "
            f"(uniform), so this cell is close to a random draw; {UNLEARNED_REMEDY}")


def collapse_warning(figures: PolicyFigures, epoch: int, epochs: int) -> str | None:
    """A one-line warning when the policy has collapsed too early, else None."""
    decision, op, share = figures.top_op_share
    if share > DOMINANT_OP:
        return (f"warning: the controller gives op {op} {share:.0%} of decision {decision} in epoch {epoch + 1}; "
                "it may stop exploring before the shared weights can rank the rest (raise "
                "controller.entropy_weight or controller.temperature, or add search.warmup_epochs)")
    if figures.entropy_share < LOW_ENTROPY and epoch + 1 <= EARLY * epochs:
        return (f"warning: the controller's entropy fell to {figures.entropy_share:.0%} of its maximum in epoch "
                f"{epoch + 1} of {epochs}; it may have collapsed early (raise controller.entropy_weight or "
                "controller.temperature, or add search.warmup_epochs)")
    return None


def watch(controller: Controller, run_seed: int, epoch: int, epochs: int, warned: bool) -> tuple[dict, bool]:
    """The policy's figures after `epoch` as metrics, and whether a policy warning (a collapse, or
    no learning) has been given by now (one a run: `warned` says whether an earlier epoch gave it;
    a random baseline's uniform controller gets none). The draws' generator is seeded from the
    run's seed and the epoch, apart from every generator of the search."""
    figures = watch_policy(controller, run_seed + 1000 * (epoch + 1))
    metrics = figures.as_metrics()
    message = None if warned or controller.is_uniform else policy_warning(figures, epoch, epochs)
    if message:
        warn(message)
        metrics["warning"] = message
    return metrics, warned or message is not None
