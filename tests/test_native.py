"""Native crashes: the project's blocks at the shapes where torch's CPU kernels corrupt memory.

On CPUs with AVX2 and no AVX-512, oneDNN's channels-last 1x1 stride-2 convolution corrupts the
heap at small widths (README, Known issues). A heap corruption kills the process, so each case
runs in a subprocess: a crash fails its test with the signal and the output, and pytest goes on.
`ONEDNN_MAX_CPU_ISA=AVX2` makes oneDNN take its AVX2 kernels on any newer x86 CPU too, so these
tests reproduce an AVX2-only machine wherever they run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
AVX2 = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
REPEATS = 200  # the corruption shows only after many calls


def run_isolated(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run `code` in a fresh Python with the project importable; return the finished process."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=300, cwd=ROOT, env={**os.environ, **(env or {})})


def assert_clean_exit(result: subprocess.CompletedProcess) -> None:
    """A clear failure message for a process that did not exit 0, naming the signal that killed it."""
    if result.returncode == 0:
        return
    code = result.returncode
    cause = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
    if code in (134, 139):  # the shell's way of reporting SIGABRT, SIGSEGV
        cause += " (an abort or segmentation fault)"
    tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-8:])
    pytest.fail(f"native crash, {cause}:\n{tail}", pytrace=False)


SMALL_WIDTH_BLOCKS = f"""
    import torch
    from enas.spaces.conv_ops import FactorizedReduction, micro_op
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cases = [(FactorizedReduction(c_in, c_out), c_in, size) for c_in, c_out, size in
             [(2, 2, 8), (4, 2, 8), (6, 2, 8), (2, 4, 8), (1, 2, 5), (3, 2, 7), (8, 16, 4)]]
    cases += [(micro_op("identity", c, 2), c, 8) for c in (2, 4, 6)]  # a reduction cell's identity op
    for block, c_in, size in cases:
        block = block.to(memory_format=torch.channels_last)
        x = torch.randn(4, c_in, size, size).to(memory_format=torch.channels_last).requires_grad_()
        for _ in range({REPEATS}):
            block(torch.relu(x)).sum().backward()
    print("ok")
"""


def test_factorized_reductions_at_small_widths_run_clean_on_avx2_kernels():
    result = run_isolated(SMALL_WIDTH_BLOCKS, AVX2)
    assert_clean_exit(result)
    assert result.stdout.strip() == "ok"


SMALL_NETWORKS = f"""
    import torch
    from enas.spaces.macro import MacroConfig
    from enas.spaces.micro import MicroConfig
    from enas.strategies.controller import draw_architectures
    from enas.spaces.base import ImageShape
    from enas.spaces.macro import MacroSpace
    from enas.spaces.micro import MicroSpace
    torch.set_num_threads(1)
    torch.manual_seed(0)
    shape = ImageShape(3, 8, 8, 4)
    losses = []
    for space in (MicroSpace(MicroConfig(layers=1, filters=2, nodes=3), shape),
                  MacroSpace(MacroConfig(layers=3, filters=2), shape)):
        supernet = space.supernet().to(memory_format=torch.channels_last)
        optimizer = torch.optim.SGD(supernet.parameters(), lr=0.05)
        images = torch.randn(8, 3, 8, 8).to(memory_format=torch.channels_last)
        labels = torch.arange(8) % 4
        archs = draw_architectures(space, {REPEATS // 4})
        seen = []
        for arch in archs * 4:   # four passes over the same architectures
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(supernet(images, arch)[0], labels)
            loss.backward()
            optimizer.step()
            seen.append(loss.item())
        # the mean loss of the first pass against the last's, architecture for architecture
        losses.append((sum(seen[:len(archs)]) / len(archs), sum(seen[-len(archs):]) / len(archs)))
    print(losses)
"""


def test_small_micro_and_macro_supernets_train_clean_on_avx2_kernels():
    # The crash of issue 11 in the product: a micro search at micro.filters=2, channels-last.
    result = run_isolated(SMALL_NETWORKS, AVX2)
    assert_clean_exit(result)
    for first, last in eval(result.stdout.strip()):  # noqa: S307 -- our own subprocess's list of floats
        assert last < first  # the supernets learned the tiny batch
