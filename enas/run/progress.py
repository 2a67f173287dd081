"""Where a loop stands (`Progress`) and the running figures of its phase, kept on the device and
read on the host a report later (`FiguresInFlight`), with the check for a streak of skipped steps."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch

from enas.errors import NonFiniteError


@dataclass
class Progress:
    """Where a loop stands and the running figures of its current phase; all of it is checkpointed,
    so that a phase resumed half-way sums on exactly as if it had never stopped.

    A training phase keeps its figures as tensors on the device and updates them there (`record`),
    so that no step waits for the device; a controller phase, whose rewards are read on the host
    anyway, keeps plain numbers."""

    epoch: int = 0
    phase: str = ""
    step: int = 0                             # steps of `phase` done in `epoch`
    loss_sum: float | torch.Tensor = 0.0
    counted: int | torch.Tensor = 0           # steps whose loss is in loss_sum
    skipped: int | torch.Tensor = 0           # non-finite steps skipped in this phase
    bad_losses: int | torch.Tensor = 0        # of those, the ones whose loss was not finite
    longest_run: int | torch.Tensor = 0       # the most training steps skipped in a row in this phase
    # per phase, the steps skipped since its last good one, across epochs: the controller phase's
    # failures must add up even though the shared phase's steps come in between
    in_a_row: dict[str, int | torch.Tensor] = field(default_factory=dict)

    def begin(self, phase: str) -> None:
        self.phase, self.step = phase, 0
        self.loss_sum, self.counted, self.skipped, self.bad_losses, self.longest_run = 0.0, 0, 0, 0, 0

    def next_epoch(self, phase: str) -> None:
        self.epoch += 1
        self.begin(phase)

    def add(self) -> None:
        """A controller step that went through."""
        self.in_a_row[self.phase] = 0

    def record(self, loss: torch.Tensor, skipped: torch.Tensor) -> None:
        """A training step, skipped or not, counted on the device without waiting for it."""
        self.loss_sum = self.loss_sum + torch.where(skipped, 0.0, loss)
        self.counted = self.counted + ~skipped
        self.skipped = self.skipped + skipped
        self.bad_losses = self.bad_losses + ~torch.isfinite(loss)
        run = (self.in_a_row.get(self.phase, 0) + 1) * skipped
        self.in_a_row[self.phase] = run
        self.longest_run = run.clamp(min=self.longest_run)

    def state_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_state(cls, state: dict[str, Any], device: torch.device) -> Progress:
        def placed(value: Any) -> Any:   # a training phase's figures go back to the device
            return value.to(device) if isinstance(value, torch.Tensor) else value

        return cls(**{name: placed(value) for name, value in state.items() if name != "in_a_row"},
                   in_a_row={phase: placed(run) for phase, run in state["in_a_row"].items()})

    def __str__(self) -> str:
        return f"epoch {self.epoch + 1}, {self.phase} step {self.step}"


@dataclass(frozen=True)
class Figures:
    """A phase's running figures as read on the host, `step` steps into it."""

    step: int
    mean_loss: float
    skipped: int
    bad_losses: int
    longest_run: int


class FiguresInFlight:
    """A progress's figures on their way to the host: the copy is queued behind the steps so far,
    and `read()` waits for that copy alone, never for work queued after it."""

    def __init__(self, progress: Progress):
        self.step = progress.step
        values = (progress.loss_sum, progress.counted, progress.skipped, progress.bad_losses, progress.longest_run)
        device = next((value.device for value in values if isinstance(value, torch.Tensor)), torch.device("cpu"))
        stacked = torch.stack([value.double() if isinstance(value, torch.Tensor) else
                               torch.full((), value, dtype=torch.float64, device=device) for value in values])
        self._host = stacked.to("cpu", non_blocking=True)  # into pinned memory, from a GPU
        self._copied = torch.cuda.Event() if device.type == "cuda" else None
        if self._copied is not None:
            self._copied.record()

    def read(self) -> Figures:
        if self._copied is not None:
            self._copied.synchronize()
        loss_sum, counted, skipped, bad_losses, longest_run = self._host.tolist()
        return Figures(self.step, loss_sum / max(counted, 1), int(skipped), int(bad_losses), int(longest_run))


MAX_NONFINITE_IN_A_ROW = 5


def check_streak(figures: Figures, progress: Progress) -> None:
    """Raise NonFiniteError once MAX_NONFINITE_IN_A_ROW training steps in a row were skipped."""
    if figures.longest_run >= MAX_NONFINITE_IN_A_ROW:
        raise NonFiniteError(f"non-finite {nonfinite_what(figures.skipped, figures.bad_losses)} in "
                             f"{figures.longest_run} steps in a row by epoch {progress.epoch + 1}, "
                             f"{progress.phase} step {figures.step}")


def nonfinite_what(skipped: int, bad_losses: int) -> str:
    """What was not finite in `skipped` steps, `bad_losses` of them by their loss."""
    return "loss" if bad_losses == skipped else "gradient norm" if bad_losses == 0 else "loss or gradient norm"
