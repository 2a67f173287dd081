"""What a run ran on, written beside its config as environment.json (search and retrain alike):
torch's version, the device, the threads torch was given and the cores it could have had. The
report shows it; a folder from before this file existed simply has none."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import torch

from enas.folder.atomic import write_json
from enas.folder.names import ENVIRONMENT_FILE
from enas.run import distributed
from enas.run.threads import cores


def describe_device(device: torch.device) -> str:
    """"cpu", or the CUDA device with its name."""
    if device.type != "cuda":
        return device.type
    return f"{device} ({torch.cuda.get_device_name(device)})"


def environment(device: torch.device) -> dict[str, Any]:
    """The environment of this process's run on `device`, as environment.json holds it."""
    return {"torch": torch.__version__, "python": platform.python_version(), "device": describe_device(device),
            "threads": torch.get_num_threads(), "cores": cores(), "processes": distributed.world().size,
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "")}


def write_environment(folder: Path, device: torch.device) -> None:
    """Write (or, on a resume, replace with this session's) environment.json in `folder`."""
    write_json(folder / ENVIRONMENT_FILE, environment(device))
