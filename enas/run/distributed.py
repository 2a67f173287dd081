"""Runs over several processes, launched by `torchrun` (or `enas ... --nproc N`, which starts the
same launcher): the process group, who writes, and the few collectives the loops use.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK in each process's environment; `start` joins them
into one process group (NCCL on CUDA, gloo on CPU). Without torchrun there is one process and
every function here is a plain local operation, so one code path serves both. What is kept
identical on every rank, and what each rank does apart, is the strategies' business (README,
"Scaling out"); this module only moves values:
- `gather` collects one Python value from every rank, on every rank (rewards, trials, states);
- `agree_max` and `broadcast_buffers` agree a number or a module's buffers;
- `is_main` says whether this process writes the run folder (rank 0: the others write nothing).
A peer that dies turns the next collective into a `RankLost` error (one line), within
`TIMEOUT_S` at the latest.
"""

from __future__ import annotations

import datetime
import hashlib
import os
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from enas.errors import RankLost

T = TypeVar("T")
TIMEOUT_S = 120   # the longest a collective waits for a peer before the job ends


@dataclass(frozen=True)
class World:
    """This process's place among the job's: rank `rank` of `size`."""

    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


_world = World()


def world() -> World:
    return _world


def is_main() -> bool:
    """Whether this process writes the run folder: the only one, or rank 0 of a distributed job."""
    return _world.main


def start(device_type: str) -> World:
    """Join the job torchrun started (a no-op for a single process, and when already joined)."""
    global _world
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size > 1 and not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=TIMEOUT_S))
    if dist.is_initialized():
        _world = World(dist.get_rank(), dist.get_world_size())
    return _world


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def gather(value: T) -> list[T]:
    """`value` of every rank, in rank order, on every rank."""
    if _world.size == 1:
        return [value]
    values: list[Any] = [None] * _world.size
    _collective(dist.all_gather_object, values, value)
    return values


def agree_max(value: int) -> int:
    """The largest of the ranks' `value`s, on every rank (e.g. whether any rank was asked to stop)."""
    if _world.size == 1:
        return value
    tensor = torch.tensor([value], dtype=torch.int64, device=_device())
    _collective(dist.all_reduce, tensor, op=dist.ReduceOp.MAX)
    return int(tensor.item())


def broadcast_buffers(module: nn.Module) -> None:
    """Rank 0's buffers (batch-norm statistics) on every rank: each rank's training batches moved its
    own, and scores must not differ between ranks."""
    if _world.size == 1:
        return
    for buffer in module.buffers():
        _collective(dist.broadcast, buffer, 0)


def check_replicas(*modules: nn.Module) -> dict[str, int]:
    """Check that every rank holds bit-identical `modules` (their parameters and buffers), as a
    data-parallel run must; a figure for the metrics line that says how many replicas agreed
    (nothing in one process). Ranks that disagree are a bug: the run ends with an error."""
    if _world.size == 1:
        return {}
    digest = hashlib.sha1()
    for module in modules:
        for tensor in module.state_dict().values():
            digest.update(tensor.detach().reshape(-1).contiguous().view(torch.uint8).cpu().numpy().tobytes())
    digests = gather(digest.hexdigest())
    if len(set(digests)) > 1:
        raise RuntimeError(f"the ranks' copies of the model differ (digests {digests}): a bug in enas's data parallelism")
    return {"replicas": _world.size}


def data_parallel(module: nn.Module, unused_parameters: bool) -> nn.Module:
    """`module` under DistributedDataParallel on several ranks (its gradients averaged over them in
    backward); `module` itself in one process. `unused_parameters`: a step may leave some
    parameters out (a supernet runs one architecture): DDP then finds them each step, and their
    gradients stay None, as in one process."""
    if _world.size == 1:
        return module
    on_cuda = next(module.parameters()).is_cuda
    return nn.parallel.DistributedDataParallel(module, device_ids=[local_rank()] if on_cuda else None,
                                               find_unused_parameters=unused_parameters, forward_sync_buffers=False)


def _device() -> torch.device:
    return torch.device("cuda", local_rank()) if dist.get_backend() == "nccl" else torch.device("cpu")


def _collective(operation: Any, *args: Any, **kwargs: Any) -> None:
    try:
        operation(*args, **kwargs)
    except (RuntimeError, dist.DistBackendError) as error:
        raise RankLost(f"rank {_world.rank} lost contact with the job's other processes "
                       f"({str(error).splitlines()[0][:160]})") from None
