#!/usr/bin/env bash
# The recurrent and controller benchmarks at the reference and paper sizes and the micro benchmark
# at the paper's search width on one CUDA GPU, then the projected wall times of the whole paper
# PTB search (conf/ptb.yaml: 150 epochs x 400 shared steps of batch 64 x bptt 35, plus the
# controller's updates and rewards) and CIFAR-10 micro search (conf/cifar10_micro.yaml) at the
# measured speeds, after the GPU-only tests (which a failure does not keep the figures from);
# on a device of several GPUs, the NCCL scaling of a search (benchmarks/scaling.py).
# About 5 minutes (7 with several GPUs); the benchmarks stop at 6 (and 4). Extra arguments go to `python -m benchmarks`.
set -euo pipefail
cd "$(dirname "$0")/.."
# `make install`'s environment, or on a GPU machine whose python3 already has torch (then
# `pip install omegaconf typer rich` is all the set-up), that python3.
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
fi
# First the GPU-only tests: no host-device synchronisation inside a training step (sync debug mode).
tests=0
"$PYTHON" -m pytest -q -p no:cacheprovider tests/test_cuda_paths.py -k on_a_gpu || tests=$?
# The controller runs on the CPU in a search, as here; the search probe (peak RSS, controller
# share) is left out: it measures the default preset, which a GPU does not change much.
timeout 360 "$PYTHON" -m benchmarks --device cuda --sizes reference,paper --image-sizes paper \
    --only rnn,controller,micro "$@"
# NCCL: the scaling of a search over the device's GPUs, where it has more than one (a minute or two).
gpus=$(nvidia-smi -L 2>/dev/null | wc -l || echo 0)
if [ "$gpus" -gt 1 ]; then
    timeout 240 "$PYTHON" -m benchmarks.scaling --nproc "$gpus" device=cuda || true
fi
exit "$tests"
