"""Stop requests from SIGINT and SIGTERM, and a test-only hook that signals at a named point.

The handler only records the request: the loops look at it at their next step boundary, save the
whole state there and exit 130 or 143. Once a stop is requested, SIGINT gets its default action
back, so a second Ctrl-C ends the process at once, even inside a long native call; the
checkpoint on disk stays whole because it is only ever replaced by a rename.
"""

from __future__ import annotations

import os
import signal
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
FAULT_HOOK = "ENAS_TEST_SIGNAL_AT"


class StopFlag:
    """A context that catches SIGINT and SIGTERM while a run is inside it; `signum` is the first caught."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopFlag:
        for signum in STOP_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._request)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _request(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # the next Ctrl-C must not wait for a step to end


def fault_point(*where: object) -> None:
    """Test-only: with ENAS_TEST_SIGNAL_AT="POINT SIGNAME [RANK]" in the environment, this process
    (or, with RANK, only that rank of a torchrun job) sends itself SIGNAME when it reaches POINT (the
    parts of `where` joined by ':'), so that tests can kill or stop a run at an exact step or
    between the two halves of a checkpoint save."""
    wanted = os.environ.get(FAULT_HOOK, "").split()
    if wanted and wanted[0] == ":".join(map(str, where)) and wanted[2:] in ([], [os.environ.get("RANK", "0")]):
        os.kill(os.getpid(), signal.Signals[wanted[1]])
