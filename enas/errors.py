"""Exceptions that end a run with a message and a documented exit status (README, "Reliability")."""

from __future__ import annotations

import errno

DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class UserError(Exception):
    """A mistake the user can fix (bad config, missing data, bad architecture); never a bug."""

    exit_code = 2


class NonFiniteError(Exception):
    """Losses, gradients or rewards stayed non-finite; the last good checkpoint is kept."""

    exit_code = 3


class DiskFullError(Exception):
    """The disk filled while writing; the last good checkpoint is kept."""

    exit_code = 75


class RankLost(RuntimeError):
    """A collective failed: another process of the job has died or stopped answering (enas/run/distributed.py)."""

    exit_code = 1


class Stopped(Exception):
    """SIGINT or SIGTERM stopped the run at a step boundary, after its state was saved."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM


def is_disk_full(error: BaseException | None) -> bool:
    """True when `error` or what led to it is a full disk (torch.save wraps the OSError it meets)."""
    while error is not None:
        if isinstance(error, OSError) and error.errno in DISK_FULL:
            return True
        error = error.__cause__ or error.__context__
    return False
