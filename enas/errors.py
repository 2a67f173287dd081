"""Exceptions that end a run with a one-line message and a documented exit status."""


class UserError(Exception):
    """A mistake the user can fix (bad config, missing data, bad architecture); never a bug."""

    exit_code = 2


class NonFiniteError(Exception):
    """Losses or rewards stayed non-finite; the last good checkpoint is kept."""

    exit_code = 3


class DiskFullError(Exception):
    """The disk filled while saving; the last good checkpoint is kept."""

    exit_code = 75
