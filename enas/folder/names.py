"""The names of what a run folder holds (README, "The run folder"), in one place."""

from __future__ import annotations

import time
from pathlib import Path

CONFIG_FILE = "config.yaml"            # the fully resolved config of the run
METRICS_FILE = "metrics.jsonl"         # one line per logged step or epoch
ENVIRONMENT_FILE = "environment.json"  # search and retrain: torch's version, the device, the threads
CHECKPOINTS = "checkpoints"            # LAST and PREVIOUS
LAST, PREVIOUS = "last.pt", "previous.pt"
VOCAB_FILE = "vocab.txt"               # a text run's vocabulary, one word a line in id order (tasks/text.py)
TOKENS_FILE = "tokens.pt"              # a text run's corpus as ids, read once from the text folder (data/text.py)
CLASSES_FILE = "classes.txt"           # an image run's class names, one a line in label order (tasks/image.py)
ARCH_FILE = "arch.json"                # derive: the chosen architecture and its scores
CANDIDATES_FILE = "candidates.jsonl"   # derive: every scored candidate
TRIALS_FILE = "trials.jsonl"           # strategies that train children alone: every trained child
RESULT_FILE = "result.json"            # retrain: the test score
DIVERGED_FILE = "diverged.json"        # rank and compare: a panel architecture whose training diverged
MODEL_FILE = "model.pt"                # retrain: the kept weights alone
RANK_FILE, COMPARE_FILE = "rank.json", "compare.json"
SEEDS_FILE = "seeds.json"              # enas search --seeds: the mean and spread over the seeds
RETRAIN_DIR = "retrain"                # retrain's output inside a run folder
STANDALONE_DIR = "standalone"          # rank and compare: architectures trained alone (the default cache)
PLOTS_DIR = "plots"                    # every plot of a run (enas/report/run_plots.py)
REPORT_FILE = "report.html"            # enas report
EXPORT_DIR = "export"                  # enas export
RETRAIN_PHASE = "retrain"              # the phase of retrain's metrics lines (the strategies' are theirs)


def default_run_dir(preset: str) -> Path:
    return Path("runs") / f"{Path(preset).stem}-{time.strftime('%Y%m%d-%H%M%S')}"


def has_checkpoint(run_dir: Path) -> bool:
    return any((run_dir / CHECKPOINTS / name).exists() for name in (LAST, PREVIOUS))
