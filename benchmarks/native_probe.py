"""`python -m benchmarks.native_probe [--quick] [--isa native|avx2|all] [--workers N] [--kinds ...]`

Probes every convolution, pooling and normalisation shape the image search spaces can build for
native crashes (heap corruption, segmentation faults) in torch's CPU kernels, and prints the cases
that crash. On CPUs with AVX2 and no AVX-512, oneDNN's channels-last 1x1 stride-2 convolution
corrupts the heap at small widths (README, Known issues); `--isa avx2` sets ONEDNN_MAX_CPU_ISA=AVX2
and ATEN_CPU_CAPABILITY=avx2 for the probed processes, which reproduces such a CPU on a newer one.

A crash kills its process, so cases run outside this one. A server process per worker imports
torch once (with the chosen ISA environment) and forks a fresh process per batch of cases; each
case there runs `repeats` times (the corruption shows only after repeats), then frees its tensors
and has glibc check its heap (malloc_trim), so that a corruption mostly shows in the case that made
it. When a batch dies (a signal, a non-zero exit, or no output for STALL_S: hung), every case it ran
is rerun alone (a case can corrupt the heap, finish, and a later one die of it) and the cases it did
not get to are run as a new batch; a case that raised a Python error is rerun alone too (a corrupted
heap also shows as odd errors, and a process can survive its corruption). Whether a case crashes
depends on the memory layout, which every fork of a server shares and which differs between
interpreters; so after the batches, in up to 3 rounds each on new servers, the suspects (the cases
run alone so far, and every case of each group (kind, stride, layout, pass) in which some case
crashed, since a batch can exit cleanly over a crashing case) run alone again until each has run
alone 3 times or crashed. A case that crashes alone is a crashing case; a batch crash that no case
alone reproduces is listed apart; Python errors of processes that did not crash are listed too.
Each crashing case is then run once more with ONEDNN_VERBOSE to name the oneDNN kernels it took.
`--spawn` starts a fresh interpreter per batch instead of forking (slower: about 2 s to import
torch each time).

The exit status is 1 when some case crashed, 0 otherwise.

Kinds (the spaces' primitives, enas/spaces/conv_ops.py; NAS-RL's dense kernels of heights and
widths in {1, 3, 5, 7}), all without bias as the spaces build them:
  conv        dense k x k, k in {3, 5, 7}, padding k // 2, stride 1 and 2
  conv_rect   dense kh x kw, kh != kw in {1, 3, 5, 7}, padding (kh // 2, kw // 2), stride 1 and 2
  depthwise   k x k, k in {3, 5}, groups = c_in = c_out, padding k // 2, stride 1 and 2
  pointwise   1x1, stride 1 (separable convolutions' second half, width adapters, cell outputs)
  reduce      1x1, stride 2, no padding (the official factorized reduction's convolutions)
  factorized  the project's FactorizedReduction(c_in, c_out) as it is now, even c_out only
  avg_pool    3x3, padding 1, count_include_pad=False, stride 1 and 2
  max_pool    3x3, padding 1, stride 1 and 2
  batchnorm   BatchNorm2d(c)

Grid (batch 4, square images, torch.set_num_threads(1)); every case runs both layouts
(contiguous, channels-last) and both passes: forward (eval mode, no grad) and backward (training
mode, forward and backward through a ReLU of an input that requires grad, with a fixed random
output gradient):
  widths     C = 1..8, 16. Convolutions take (c_in, c_out) with c_in in C and c_out in
             {1, c_in, 2 c_in}; pointwise and reduce (cheap, and where the known bug is) take every
             c_in in C with every c_out in C + {32}; conv_rect takes c_in in {1, 2, 3, 4, 8, 16};
             pools and batch norm take c in C + {32} (widths a cell sees after a doubling).
  sizes      4, 5, 7, 8, 9, 16, 32 (odd sizes give odd strided outputs); conv_rect 4, 7, 8, 16.
  repeats    100 per case.
That is 18,932 cases (dense 1x1 convolutions are the pointwise and reduce kinds). --quick, 5,360:
C = 1, 2, 3, 4, 8, 16 (conv_rect 1, 2, 4, 16), sizes 4, 7, 8, 16, conv k in {3, 5}, conv_rect
kernels 1x3, 3x1, 1x7, 7x1, 3x5, 50 repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from itertools import product
from pathlib import Path
from queue import Queue
from typing import Any, Iterable, Iterator, Sequence

ROOT = Path(__file__).resolve().parents[1]
DESCRIPTION = ("Probe the convolution, pooling and normalisation shapes of the image search spaces for native "
               "crashes in torch's CPU kernels, each batch of cases in its own process.")
MODULE = "benchmarks.native_probe"
KINDS = ("conv", "conv_rect", "depthwise", "pointwise", "reduce", "factorized", "avg_pool", "max_pool",
         "batchnorm")
ISAS = {"native": {}, "avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}}
# Always set in the probed processes: one thread, and glibc's fatal messages on stderr, not a tty.
PROBE_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "LIBC_FATAL_STDERR_": "1"}
IMAGES = 4  # the batch size of every case
# A case takes under a second (the largest, 100 backward passes, ~0.6 s on a loaded 2-core machine);
# a corrupted heap can also hang a process (a lock in malloc), so one that says nothing new for
# STALL_S is killed and counts as crashed ("hung"); a spawned one has a timeout per batch.
STALL_S = 20.0
BATCH_TIMEOUT_S = 60.0  # spawned: per batch, plus CASE_TIMEOUT_S per case in it
CASE_TIMEOUT_S = 5.0
# Runs alone of a suspect before it counts as clean, each in a new interpreter's memory layout (a
# round after the batches): whether a case crashes depends on the layout, which a fork inherits and
# ASLR and hash randomisation vary between interpreters; about 1 layout in 8 runs reduce 2->32 at
# size 16 clean every time, so 3 layouts miss it about 1 time in 500.
SUSPECT_TRIES = 3


@dataclass(frozen=True)
class Grid:
    """The shapes to probe: widths, image sizes, kernels and repeats."""

    widths: tuple[int, ...]
    rect_widths: tuple[int, ...]
    sizes: tuple[int, ...]
    rect_sizes: tuple[int, ...]
    square_kernels: tuple[int, ...]
    rect_kernels: tuple[tuple[int, int], ...]
    repeats: int


ODD = (1, 3, 5, 7)
FULL = Grid(widths=(1, 2, 3, 4, 5, 6, 7, 8, 16), rect_widths=(1, 2, 3, 4, 8, 16), sizes=(4, 5, 7, 8, 9, 16, 32),
            rect_sizes=(4, 7, 8, 16), square_kernels=(3, 5, 7),
            rect_kernels=tuple((h, w) for h, w in product(ODD, ODD) if h != w), repeats=100)
QUICK = Grid(widths=(1, 2, 3, 4, 8, 16), rect_widths=(1, 2, 4, 16), sizes=(4, 7, 8, 16), rect_sizes=(4, 7, 8, 16),
             square_kernels=(3, 5), rect_kernels=((1, 3), (3, 1), (1, 7), (7, 1), (3, 5)), repeats=50)


@dataclass(frozen=True)
class Case:
    """One primitive at one shape, layout and pass."""

    kind: str
    c_in: int
    c_out: int
    kernel: tuple[int, int]
    stride: int
    size: int
    channels_last: bool
    backward: bool

    @property
    def row(self) -> tuple[str, ...]:
        """The case as table cells: kind, c_in, c_out, kernel, stride, size, layout, pass."""
        return (self.kind, str(self.c_in), str(self.c_out), f"{self.kernel[0]}x{self.kernel[1]}", str(self.stride),
                str(self.size), "channels_last" if self.channels_last else "contiguous",
                "backward" if self.backward else "forward")


# ---------------------------------------------------------------------------------------------
# The grid


def width_pairs(widths: Iterable[int]) -> list[tuple[int, int]]:
    """(c_in, c_out) with c_out in {1, c_in, 2 c_in}."""
    return sorted({(c, out) for c in widths for out in (1, c, 2 * c)})


def shapes(grid: Grid, kind: str) -> Iterator[tuple[int, int, tuple[int, int], int, int]]:
    """(c_in, c_out, kernel, stride, size) of one kind over the grid."""
    wide = (*grid.widths, 32)
    if kind == "conv":
        yield from ((i, o, (k, k), s, n) for (i, o), k, s, n in
                    product(width_pairs(grid.widths), grid.square_kernels, (1, 2), grid.sizes))
    elif kind == "conv_rect":
        yield from ((i, o, k, s, n) for (i, o), k, s, n in
                    product(width_pairs(grid.rect_widths), grid.rect_kernels, (1, 2), grid.rect_sizes))
    elif kind == "depthwise":
        yield from ((c, c, (k, k), s, n) for c, k, s, n in product(grid.widths, (3, 5), (1, 2), grid.sizes))
    elif kind in ("pointwise", "reduce"):
        stride = 1 if kind == "pointwise" else 2
        yield from ((i, o, (1, 1), stride, n) for i, o, n in product(grid.widths, wide, grid.sizes))
    elif kind == "factorized":
        pairs = sorted({(c, o) for c in grid.widths for o in (2, c, 2 * c) if o % 2 == 0})
        yield from ((i, o, (1, 1), 2, n) for (i, o), n in product(pairs, grid.sizes))
    elif kind in ("avg_pool", "max_pool"):
        yield from ((c, c, (3, 3), s, n) for c, s, n in product(wide, (1, 2), grid.sizes))
    elif kind == "batchnorm":
        yield from ((c, c, (1, 1), 1, n) for c, n in product(wide, grid.sizes))


def build_cases(grid: Grid, kinds: Sequence[str]) -> list[Case]:
    """Every case of the chosen kinds, both layouts and both passes."""
    return [Case(kind, i, o, k, s, n, last, back) for kind in kinds for i, o, k, s, n in shapes(grid, kind)
            for last in (False, True) for back in (False, True)]


# ---------------------------------------------------------------------------------------------
# Inside a probed process: running cases


def build_module(case: Case) -> Any:
    """The module a case probes, as the spaces build it."""
    from torch import nn

    from enas.spaces.conv_ops import FactorizedReduction, pool
    padding = (case.kernel[0] // 2, case.kernel[1] // 2)
    if case.kind in ("conv", "conv_rect", "pointwise", "reduce"):
        return nn.Conv2d(case.c_in, case.c_out, case.kernel, case.stride, padding, bias=False)
    if case.kind == "depthwise":
        return nn.Conv2d(case.c_in, case.c_in, case.kernel, case.stride, padding, groups=case.c_in, bias=False)
    if case.kind == "factorized":
        return FactorizedReduction(case.c_in, case.c_out)
    if case.kind in ("avg_pool", "max_pool"):
        return pool(case.kind[:3], case.stride)
    if case.kind == "batchnorm":
        return nn.BatchNorm2d(case.c_in)
    raise ValueError(f"unknown kind {case.kind!r}")


def run_case(case: Case, repeats: int) -> None:
    """Run one case `repeats` times: a forward in eval mode without grad, or a training forward
    and backward through a ReLU of an input that requires grad."""
    import torch
    torch.manual_seed(0)
    module = build_module(case)
    x = torch.randn(IMAGES, case.c_in, case.size, case.size)
    if case.channels_last:
        module, x = module.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    if not case.backward:
        module.eval()
        with torch.no_grad():
            for _ in range(repeats):
                module(torch.relu(x))
        return
    x.requires_grad_(True)
    grad = torch.randn_like(module(torch.relu(x)))  # keeps the output's layout
    for _ in range(repeats):
        module(torch.relu(x)).backward(grad)
        x.grad = None
        module.zero_grad(set_to_none=True)


def check_heap() -> None:
    """Free what the case left and have glibc walk its free lists, where a corruption shows."""
    import ctypes
    import gc
    gc.collect(0)  # a full collection costs ~100 ms with torch loaded; cases leave no cycles to speak of
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def unbuffer_c_stdout() -> None:
    """oneDNN's verbose lines go through C stdio: unbuffered, they survive a crash."""
    import ctypes
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.setvbuf(ctypes.c_void_p.in_dll(libc, "stdout"), None, 2, 0)  # _IONBF
    except (OSError, AttributeError, ValueError):
        pass


def say(line: str) -> None:
    """A progress line on fd 1, unbuffered, so it is there however the process ends."""
    os.write(1, (line.replace("\n", " ") + "\n").encode())


def run_batch(request: dict[str, Any]) -> None:
    """Run a batch request's cases in order, saying `start i`, then `ok i` or `error i message`."""
    if request.get("verbose"):
        os.environ["ONEDNN_VERBOSE"] = "profile_create"  # read when oneDNN first runs, in this process
        unbuffer_c_stdout()
    if request.get("info"):
        info_conv()
    for index, fields in request["cases"]:
        case = Case(**{**fields, "kernel": tuple(fields["kernel"])})
        say(f"probe start {index}")
        try:
            run_case(case, request["repeats"])
            check_heap()
        except Exception as error:  # a Python-level failure is a finding too, not a crash
            say(f"probe error {index} {type(error).__name__}: {error}")
            continue
        say(f"probe ok {index}")
    say("probe end")


def info_conv() -> None:
    """A channels-last 3x3 convolution (which oneDNN runs; a contiguous one at batch 1 it does not),
    wide enough to stay clear of the known bug: oneDNN prints its version and ISA."""
    import torch
    x = torch.randn(IMAGES, 16, 8, 8).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        torch.nn.Conv2d(16, 16, 3, padding=1, bias=False).to(memory_format=torch.channels_last)(x)


def setup_probe_process() -> dict[str, str]:
    """Import torch and the project in a probed process, and warm up autograd (its first backward
    with a given gradient imports half a second of modules); return what it runs on."""
    import torch

    import enas.spaces.conv_ops  # noqa: F401 -- imported once, before the forks
    torch.set_num_threads(1)
    x = torch.ones(2, requires_grad=True)
    torch.relu(x).backward(torch.ones(2))  # elementwise ATen only: no oneDNN before the forks
    return {"torch": torch.__version__, "capability": torch.backends.cpu.get_cpu_capability()}


def serve() -> None:
    """The fork server: after a ready line, for each JSON request on stdin, have the zygote fork
    a process that runs it, and answer one JSON line with its exit status, output and error output.

    The zygote is forked once, right after the imports, and does nothing but fork and wait: every
    probed process of a server starts from the heap of an interpreter that has just imported torch,
    not from one that this server's requests and answers have churned (whether a corruption
    crashes depends on the memory layout)."""
    info = setup_probe_process()
    folder = Path(tempfile.mkdtemp(prefix="native_probe_"))
    go_read, go_write = os.pipe()
    done_read, done_write = os.pipe()
    if os.fork() == 0:
        os.close(go_write)
        os.close(done_read)
        zygote(folder, go_read, done_write)
    os.close(go_read)
    os.close(done_write)
    reply(info)
    answers = os.fdopen(done_read)
    try:
        for number, line in enumerate(sys.stdin):
            request, paths = json.loads(line), batch_paths(folder, number)
            paths["request"].write_text(line)
            os.write(go_write, f"{number} {request['stall']}\n".encode())
            status = answers.readline().strip()
            reply({"status": None if status == "hung" else int(status),
                   "out": read_and_remove(paths["out"]), "err": read_and_remove(paths["err"])[-4000:]})
            paths["request"].unlink()
    finally:
        os.close(go_write)  # the zygote exits when it reads the end
        shutil.rmtree(folder, ignore_errors=True)


def zygote(folder: Path, go: int, done: int) -> None:
    """Fork a probed process per number read from `go`, wait for it, write its status to `done`."""
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    while message := os.read(go, 64).split():
        paths = batch_paths(folder, int(message[0]))
        pid = os.fork()
        if pid == 0:
            os.close(go)
            os.close(done)
            run_probed(paths)
        status = wait_for(pid, paths["out"], float(message[1]))
        os.write(done, f"{'hung' if status is None else status}\n".encode())
    os._exit(0)


def batch_paths(folder: Path, number: int) -> dict[str, Path]:
    return {name: folder / f"{number}.{name}" for name in ("request", "out", "err")}


def run_probed(paths: dict[str, Path]) -> None:
    """In a forked probed process: run the request, output in files; never returns."""
    code = 0
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core files of the crashes in the checkout
        redirect(paths["out"], 1)
        redirect(paths["err"], 2)
        run_batch(json.loads(paths["request"].read_text()))
    except BaseException:
        code = 3
    os._exit(code)


def read_and_remove(path: Path) -> str:
    if not path.exists():
        return ""
    text = path.read_text(errors="replace")
    path.unlink()
    return text


def reply(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def redirect(path: Path, fd: int) -> None:
    target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(target, fd)
    os.close(target)


def wait_for(pid: int, out: Path, stall_s: float) -> int | None:
    """The child's exit status (-signal if killed by one), or None if its output `out` stopped
    growing for `stall_s` (then it is killed)."""
    size, moved = -1, time.monotonic()
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        now_size = out.stat().st_size if out.exists() else 0
        if now_size != size:
            size, moved = now_size, time.monotonic()
        elif time.monotonic() - moved > stall_s:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return None
        time.sleep(0.005)


def run_spawned() -> None:
    """--run-batch: one request from stdin, in this fresh interpreter."""
    setup_probe_process()
    run_batch(json.loads(sys.stdin.read()))


# ---------------------------------------------------------------------------------------------
# In the parent: probed processes


@dataclass
class Outcome:
    """How a batch ended: its exit status (None: hung), the cases it started, their errors."""

    status: int | None
    started: list[int]
    errors: dict[int, str]
    out: str
    err: str
    ended: bool  # it said `probe end`

    @property
    def crashed(self) -> bool:
        return self.status != 0 or not self.ended

    def cause(self) -> str:
        """The signal or exit status, and glibc's or Python's last word."""
        if self.status is None:
            head = f"hung (no output for {STALL_S:.0f} s)"
        elif self.status < 0:
            head = f"{signal.Signals(-self.status).name} ({128 - self.status})"
        else:
            head = f"exit {self.status}"
        lines = [line.strip() for line in self.err.splitlines() if line.strip()]
        return f"{head}: {lines[-1][:80]}" if lines else head


def parse_outcome(status: int | None, out: str, err: str) -> Outcome:
    started, errors, ended = [], {}, False
    for line in out.splitlines():
        words = line.split(" ", 3)
        if words[0] != "probe" or len(words) < 2:
            continue
        if words[1] == "end":
            ended = True
        elif words[1] == "start":
            started.append(int(words[2]))
        elif words[1] == "error":
            errors[int(words[2])] = words[3] if len(words) > 3 else ""
    return Outcome(status, started, errors, out, err, ended)


def probe_env(isa: str) -> dict[str, str]:
    return {**os.environ, **ISAS[isa], **PROBE_ENV}


class ForkServer:
    """A `--serve` process with the ISA's environment; runs one request at a time."""

    def __init__(self, isa: str):
        self.isa = isa
        self.process = subprocess.Popen([sys.executable, "-m", MODULE, "--serve"], cwd=ROOT, env=probe_env(isa),
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self._info: dict[str, Any] | None = None

    @property
    def info(self) -> dict[str, Any]:
        """The server's ready line: torch's version and CPU capability (waits for its imports)."""
        if self._info is None:
            self._info = self._answer()
        return self._info

    def _answer(self) -> dict[str, Any]:
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the {self.isa} fork server died (exit {self.process.wait()})")
        return json.loads(line)

    def run(self, request: dict[str, Any]) -> Outcome:
        self.info  # noqa: B018 -- ready first
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        answer = self._answer()
        return parse_outcome(answer["status"], answer["out"], answer["err"])

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()


class Spawner:
    """A fresh interpreter per request (--spawn)."""

    def __init__(self, isa: str):
        self.isa = isa

    @property
    def info(self) -> dict[str, str]:
        code = "import torch; print(torch.__version__, torch.backends.cpu.get_cpu_capability())"
        done = subprocess.run([sys.executable, "-c", code], env=probe_env(self.isa), capture_output=True, text=True)
        version, _, capability = done.stdout.strip().partition(" ")
        return {"torch": version, "capability": capability}

    def run(self, request: dict[str, Any]) -> Outcome:
        try:
            done = subprocess.run([sys.executable, "-m", MODULE, "--run-batch"], cwd=ROOT, env=probe_env(self.isa),
                                  input=json.dumps(request), capture_output=True, text=True,
                                  timeout=request["timeout"])
        except subprocess.TimeoutExpired as expired:
            return parse_outcome(None, text_of(expired.stdout), text_of(expired.stderr))
        return parse_outcome(done.returncode, done.stdout, done.stderr[-4000:])

    def close(self) -> None:
        pass


def text_of(output: bytes | str | None) -> str:
    return output.decode(errors="replace") if isinstance(output, bytes) else output or ""


# ---------------------------------------------------------------------------------------------
# In the parent: scheduling, bisection


@dataclass(eq=False)
class Batch:
    """Case indices to run in one process."""

    cases: list[int]
    parent: Batch | None = None
    verbose: bool = False  # a describing rerun of a crashing case: its kernels, not a verdict
    crashed: bool = False
    explained: bool = False  # a crash was found alone among its cases
    crashed_below: bool = False  # a smaller batch taken from it crashed
    cause: str = ""

    def ancestors(self) -> Iterator[Batch]:
        batch = self.parent
        while batch is not None:
            yield batch
            batch = batch.parent


@dataclass
class Findings:
    """What a probe found under one ISA."""

    isa: str
    info: dict[str, Any]
    cases: list[Case]
    crashes: dict[int, str] = field(default_factory=dict)  # case index -> cause
    kernels: dict[int, str] = field(default_factory=dict)  # case index -> oneDNN kernels
    errors: dict[int, str] = field(default_factory=dict)  # case index -> Python exception
    unexplained: list[Batch] = field(default_factory=list)
    suspects: int = 0  # cases rerun alone in the rounds after the batches
    processes: int = 0
    timeouts: int = 0  # probed processes killed for saying nothing (hung)
    seconds: float = 0.0


class Prober:
    """Runs batches on a pool of probed processes and narrows crashes down to cases."""

    def __init__(self, cases: list[Case], isa: str, workers: int, repeats: int, spawn: bool):
        self.cases, self.isa, self.workers, self.repeats = cases, isa, workers, repeats
        self.runner = Spawner if spawn else ForkServer
        self.runners: Queue = Queue()
        self.findings = Findings(isa, {}, cases)
        self.batches: list[Batch] = []  # those that crashed
        self.alone: Counter = Counter()  # runs of a case alone, in a batch that did not crash
        self.suspects: set[int] = set()  # cases that a crashed batch ran, or that raised

    def request(self, batch: Batch, info: bool = False) -> dict[str, Any]:
        return {"cases": [(i, asdict(self.cases[i])) for i in batch.cases], "repeats": self.repeats,
                "verbose": batch.verbose or info, "info": info,
                "stall": STALL_S, "timeout": BATCH_TIMEOUT_S + CASE_TIMEOUT_S * len(batch.cases)}

    def execute(self, batch: Batch, info: bool = False) -> Outcome:
        runner = self.runners.get()
        try:
            return runner.run(self.request(batch, info))
        finally:
            self.runners.put(runner)

    def probe(self, batch_size: int) -> Findings:
        """Run every case in batches, then the suspects alone in rounds; return the findings."""
        start = time.monotonic()
        self.restart()
        self.findings.info = self.describe_setup()
        self.drain([Batch(list(range(k, min(k + batch_size, len(self.cases)))))
                    for k in range(0, len(self.cases), batch_size)], "batches", start)
        for round_ in range(SUSPECT_TRIES):
            rerun = self.to_rerun(round_ + 1)
            if rerun:
                self.restart()  # fresh interpreters: another memory layout (see SUSPECT_TRIES)
                self.drain([Batch([i]) for i in rerun], f"suspects alone, round {round_ + 1}", start)
        self.findings.unexplained = [b for b in self.batches if not b.explained and not b.crashed_below]
        self.findings.seconds = time.monotonic() - start
        self.close()
        return self.findings

    def to_rerun(self, runs: int) -> list[int]:
        """The suspects, and the cases of the groups (kind, stride, layout, pass) where some case
        crashed, that have not crashed and have run alone fewer than `runs` times: a case can
        corrupt the heap and its batch still exit cleanly, and a crashing case can run clean in
        one memory layout."""
        crashing = {group(self.cases[i]) for i in self.findings.crashes}
        chosen = [i for i, case in enumerate(self.cases) if i not in self.findings.crashes and self.alone[i] < runs
                  and (i in self.suspects or group(case) in crashing)]
        self.findings.suspects = len(set(chosen) | {i for i in self.alone if i not in self.findings.crashes})
        return chosen

    def drain(self, batches: list[Batch], what: str, start: float) -> None:
        """Run the batches and those they call for, `workers` at a time."""
        pending, total, done = deque(batches), len(batches), 0
        running: dict[Future, Batch] = {}
        with ThreadPoolExecutor(self.workers) as pool:
            while pending or running:
                while pending and len(running) < self.workers:
                    batch = pending.popleft()
                    running[pool.submit(self.execute, batch)] = batch
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    batch = running.pop(future)
                    pending.extendleft(reversed(self.settle(batch, future.result())))
                    if batch.parent is None and not batch.verbose:
                        done += 1
                        self.progress(done, total, what, start)

    def describe_setup(self) -> dict[str, Any]:
        """torch's version and CPU capability, and oneDNN's ISA, as the probed processes see them."""
        runner = self.runners.get()
        self.runners.put(runner)
        info = dict(runner.info)
        outcome = self.execute(Batch([]), info=True)
        self.findings.processes += 1
        for line in outcome.out.splitlines():
            if ",info,oneDNN v" in line:
                info["onednn"] = line.rsplit(",", 1)[-1].split(" (")[0]
            if ",info,cpu,isa:" in line:
                info["onednn_isa"] = line.split("isa:", 1)[1]
        return info

    def settle(self, batch: Batch, outcome: Outcome) -> list[Batch]:
        """Record a finished batch; return the batches it calls for next."""
        self.findings.processes += 1
        self.findings.timeouts += outcome.status is None
        if batch.verbose:
            self.findings.kernels[batch.cases[0]] = kernels_of(outcome.out)
            return []
        if not outcome.crashed:
            return self.passed(batch, outcome)
        batch.crashed, batch.cause = True, outcome.cause()
        self.batches.append(batch)
        for above in batch.ancestors():
            above.crashed_below = True
        if len(batch.cases) == 1:
            return self.found(batch, outcome)
        return self.split(batch, outcome)

    def passed(self, batch: Batch, outcome: Outcome) -> list[Batch]:
        """A batch that exited cleanly. A case of it that raised is a suspect, rerun alone: a
        corrupted heap shows as odd Python errors too, and a process can survive its corruption."""
        self.suspects.update(outcome.errors)
        if len(batch.cases) == 1:
            index = batch.cases[0]
            self.alone[index] += 1
            if index in outcome.errors:
                self.findings.errors.setdefault(index, outcome.errors[index])
            return []
        return [Batch([i], batch) for i in outcome.errors]

    def found(self, batch: Batch, outcome: Outcome) -> list[Batch]:
        """A case that crashes alone: record it and have its kernels named."""
        index = batch.cases[0]
        self.findings.crashes[index] = outcome.cause()
        batch.explained = True
        for above in batch.ancestors():
            above.explained = True
        return [Batch([index], verbose=True)]

    def split(self, batch: Batch, outcome: Outcome) -> list[Batch]:
        """The smaller batches that find which of a crashed batch's cases crash: each case it ran,
        the one it died in and those before it (a case can corrupt the heap, finish, and a later
        one die of it), alone, and the cases it did not get to as a new batch."""
        cases = batch.cases
        ran = [i for i in cases if i in outcome.started]
        if not ran:  # it died before its first case: halves
            half = len(cases) // 2
            return [Batch(cases[:half], batch), Batch(cases[half:], batch)]
        self.suspects.update(ran)
        rest = [i for i in cases if i not in outcome.started]
        return [Batch([i], batch) for i in ran] + ([Batch(rest, batch)] if rest else [])

    def progress(self, done: int, total: int, what: str, start: float) -> None:
        """A line on stderr at every tenth of a drain's first batches."""
        if done % max(1, total // 10) == 0 or done == total:
            print(f"[{self.isa}] {done}/{total} {what}, {len(self.findings.crashes)} crashing cases so far, "
                  f"{time.monotonic() - start:.0f} s", file=sys.stderr, flush=True)

    def restart(self) -> None:
        """New probed-process runners: new interpreters, started together."""
        self.close()
        for runner in [self.runner(self.isa) for _ in range(self.workers)]:
            self.runners.put(runner)

    def close(self) -> None:
        while not self.runners.empty():
            self.runners.get().close()


def kernels_of(verbose_output: str) -> str:
    """The oneDNN implementations a run created, by primitive and direction, reorders left out."""
    seen: list[str] = []
    for line in verbose_output.splitlines():
        fields = line.split(",")
        if len(fields) > 7 and fields[2] == "primitive" and fields[3].startswith("create"):
            primitive, implementation, direction = fields[5], fields[6], fields[7]
            if primitive != "reorder":
                short = direction.replace("forward_training", "fwd").replace("forward_inference", "fwd") \
                    .replace("backward_data", "bwd_d").replace("backward_weights", "bwd_w")
                entry = f"{short}={implementation}"
                if entry not in seen:
                    seen.append(entry)
    return " ".join(seen) or "-"


# ---------------------------------------------------------------------------------------------
# Report

COLUMNS = ("kind", "c_in", "c_out", "kernel", "stride", "size", "layout", "pass", "exit", "oneDNN kernels")


def order(case: Case) -> tuple:
    """Table order: kind as listed in KINDS, then the numbers, then layout and pass."""
    return (KINDS.index(case.kind), case.c_in, case.c_out, case.kernel, case.stride, case.size, case.channels_last,
            case.backward)


def table(rows: list[tuple[str, ...]], columns: Sequence[str] = COLUMNS) -> str:
    """Plain-text columns, left-aligned."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(columns, *rows)]
    lines = [[str(cell).ljust(width) for cell, width in zip(row, widths)] for row in (columns, *rows)]
    text = ["  ".join(line).rstrip() for line in lines]
    return "\n".join([text[0], "  ".join("-" * w for w in widths), *text[1:]])


def header(findings: Findings) -> str:
    """What the probed processes ran on: torch, its CPU capability, oneDNN's ISA, the ISA setting."""
    info = findings.info
    env = {**{k: os.environ[k] for k in ISAS["avx2"] if k in os.environ}, **ISAS[findings.isa]}
    setting = ", ".join(f"{k}={v}" for k, v in env.items()) or "neither ONEDNN_MAX_CPU_ISA nor ATEN_CPU_CAPABILITY set"
    return (f"torch {info.get('torch', '?')}, CPU capability {info.get('capability', '?')}, "
            f"{info.get('onednn', 'oneDNN ?')} ISA {info.get('onednn_isa', '?')}; --isa {findings.isa} ({setting})")


def group(case: Case) -> tuple[str, ...]:
    """Kind, stride, layout and pass: cases of a group run the same kernels at other sizes."""
    return case.kind, str(case.stride), case.row[6], case.row[7]


def summary(findings: Findings) -> str:
    """Crashing cases / cases, by kind, stride, layout and pass."""
    total = Counter(group(case) for case in findings.cases)
    crashed = Counter(group(findings.cases[i]) for i in findings.crashes)
    rows = [(*k, f"{crashed[k]}/{total[k]}") for k in sorted(crashed)]
    return table(rows, ("kind", "stride", "layout", "pass", "crashing/cases"))


def report(findings: Findings) -> str:
    kinds = Counter(case.kind for case in findings.cases)
    lines = [header(findings),
             f"{len(findings.cases)} cases ({', '.join(f'{kind} {n}' for kind, n in kinds.items())}) in "
             f"{findings.processes} probed processes ({findings.timeouts} killed as hung), {findings.seconds:.0f} s; "
             f"{findings.suspects} suspect cases run alone in up to {SUSPECT_TRIES} rounds after the batches"]
    if findings.crashes:
        rows = [(*findings.cases[i].row, findings.crashes[i], findings.kernels.get(i, "?"))
                for i in sorted(findings.crashes, key=lambda i: order(findings.cases[i]))]
        lines += [f"{len(rows)} crashing cases:", table(rows), "", "by kind, stride, layout and pass:",
                  summary(findings)]
    else:
        lines.append("no case crashes")
    for batch in findings.unexplained:
        shown = ", ".join(" ".join(findings.cases[i].row) for i in batch.cases[:3])
        lines.append(f"a batch of {len(batch.cases)} cases crashed ({batch.cause}) but none of them alone: "
                     f"{shown}{', ...' if len(batch.cases) > 3 else ''}")
    errors = [i for i in findings.errors if i not in findings.crashes]
    if errors:
        rows = [(*findings.cases[i].row, findings.errors[i][:100])
                for i in sorted(errors, key=lambda i: order(findings.cases[i]))]
        lines += [f"{len(rows)} cases raised Python errors:", table(rows, (*COLUMNS[:8], "error"))]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Command line


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=DESCRIPTION)
    parser.add_argument("--quick", action="store_true", help="a smaller grid (a few minutes on 2 cores)")
    parser.add_argument("--isa", default="native", choices=(*ISAS, "all"),
                        help="CPU ISA of the probed processes: native (inherit the environment), avx2, or all")
    parser.add_argument("--workers", type=int, default=2, help="probed processes at a time")
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated, of: {', '.join(KINDS)}")
    parser.add_argument("--batch", type=int, default=48, help="cases per probed process")
    parser.add_argument("--repeats", type=int, default=0, help="calls per case; 0: the grid's (100, 50 --quick)")
    parser.add_argument("--spawn", action="store_true", help="a fresh interpreter per batch instead of a fork")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--run-batch", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.kinds = [kind.strip() for kind in args.kinds.split(",") if kind.strip()]
    unknown = [kind for kind in args.kinds if kind not in KINDS]
    if unknown:
        parser.error(f"unknown kinds {', '.join(unknown)}; choose from {', '.join(KINDS)}")
    if args.workers < 1 or args.batch < 1:
        parser.error("--workers and --batch must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.serve:
        serve()
        return 0
    if args.run_batch:
        run_spawned()
        return 0
    grid = QUICK if args.quick else FULL
    cases = build_cases(grid, args.kinds)
    repeats = args.repeats or grid.repeats
    print(f"{len(cases)} cases ({'quick' if args.quick else 'full'} grid, {repeats} repeats each, {IMAGES} images a "
          f"batch; up to {args.batch} cases a {'spawned' if args.spawn else 'forked'} process, {args.workers} at a "
          "time)", flush=True)
    crashed = False
    for isa in ISAS if args.isa == "all" else (args.isa,):
        findings = Prober(cases, isa, args.workers, repeats, args.spawn).probe(args.batch)
        print(report(findings) + "\n", flush=True)
        crashed |= bool(findings.crashes or findings.unexplained)
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
