"""`enas search|retrain|derive --nproc N`: the same command line, run as N processes of one job by
PyTorch's own launcher (torch.distributed.run, the engine behind `torchrun`).

A failed job ends with one line saying which rank failed and how, and the exit status of the
command where every rank agrees on one (a user error, a stop by a signal), else 1.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path

from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.run import get_args_parser, run

# the exit statuses a command gives on purpose (README, "Exit status"): passed on as they are
OWN_STATUSES = (2, 3, 75, 130, 143)


def launch(nproc: int, argv: list[str]) -> int:
    """Run `enas ARGV` as `nproc` processes on this machine; the job's exit status."""
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)   # its notes would bury ours
    os.environ.setdefault("OMP_NUM_THREADS", "1")   # each process sets its own threads (config: threads)
    args = get_args_parser().parse_args(["--standalone", "--nproc-per-node", str(nproc), "-m", "enas", *argv])
    try:
        run(args)
    except ChildFailedError as error:
        # The cause: a rank killed by a signal other than the SIGTERM the launcher sends the rest,
        # else the first rank to end (its peers then fail in their next collective).
        rank, failure = min(error.failures.items(), key=lambda item: (
            not (item[1].exitcode < 0 and item[1].exitcode != -signal.SIGTERM), item[1].timestamp))
        if failure.exitcode in OWN_STATUSES:
            return failure.exitcode   # a stop or an error every rank met, which rank 0 has told
        how = f"signal {failure.signal_name()}" if failure.exitcode < 0 else f"exit status {failure.exitcode}"
        print(f"error: rank {rank} of {nproc} ended with {how}, and the job with it; its last checkpoint "
              f"is kept: add --resume to continue", file=sys.stderr)
        return 1
    return 0


def relaunch(nproc: int, argv: list[str], out: Path | None) -> int:
    """The command line `argv` run again as `nproc` processes of one job, without its --nproc and
    naming its output folder `out` (-o) for all of them; the job's exit status."""
    kept, args = [], iter(argv)
    for arg in args:
        if arg == "--nproc":
            next(args, None)
        elif not arg.startswith("--nproc="):
            kept.append(arg)
    if out is not None and not {"-o", "--out"} & set(kept):
        kept += ["-o", str(out)]
    return launch(nproc, kept)
