"""Retrain: train a fixed architecture from scratch with the final recipe, report its test score.

The model with the best validation score is kept and scored on the test split. Writes
OUT_DIR/config.yaml, metrics.jsonl, checkpoints/, model.pt (weights only) and result.json.
"""

from __future__ import annotations

import copy
import json
import time
from functools import partial
from pathlib import Path

import torch

from enas.arch import Architecture
from enas.checkpoint import load_checkpoint, save_checkpoint
from enas.config import Config, to_dict
from enas.metrics import MetricsLog
from enas.progress import Reporter
from enas.runs import CHECKPOINTS, METRICS_FILE, write_config
from enas.tasks import build_task
from enas.training import (StepGuard, count_parameters, learning_rate, rng_state, set_learning_rate,
                           set_rng_state, setup_runtime, sgd, train_step)

RESULT_FILE = "result.json"
MODEL_FILE = "model.pt"


def run_retrain(config: Config, arch: Architecture, out_dir: Path, resume: bool, reporter: Reporter) -> dict:
    device = setup_runtime(config)
    cfg = config.retrain
    task = build_task(config, cfg).to(device)
    model = task.space.child(arch).to(device)
    optimizer = sgd(model, cfg)
    shuffler = torch.Generator().manual_seed(config.seed + 2)
    epoch, best, best_weights, keep_lines, elapsed = 0, None, None, None, 0.0
    if resume:
        saved = load_checkpoint(out_dir / CHECKPOINTS, warn=reporter.print)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        shuffler.set_state(saved["shuffler"])
        set_rng_state(saved["rng"])
        epoch, best, best_weights = saved["epoch"], saved["best"], saved["best_weights"]
        keep_lines, elapsed = saved["metrics_lines"], saved["elapsed"]
    else:
        write_config(out_dir, config)
        (out_dir / "arch.json").write_text(json.dumps(arch.to_json(), indent=2) + "\n")
    metrics = MetricsLog(out_dir / METRICS_FILE, keep_lines)
    started = time.time() - elapsed
    guard = StepGuard("retrain")
    steps = task.batches("train")
    try:
        for epoch in range(epoch, cfg.epochs):
            lr = learning_rate(cfg, epoch)
            set_learning_rate(optimizer, lr)
            task.start_epoch(shuffler)
            model.train()
            total = torch.zeros((), device=device)
            with reporter.phase(f"retrain epoch {epoch + 1}/{cfg.epochs}", steps) as update:
                for step in range(steps):
                    loss = train_step(partial(task.train_loss, model, step), model.parameters(),
                                      optimizer, cfg.grad_clip, guard, step)
                    total += loss if loss is not None else 0.0
                    if step % 10 == 9 or step == steps - 1:
                        update(advance=10 if step % 10 == 9 else steps % 10, loss=total.item() / (step + 1))
            model.eval()
            value = task.evaluate(model, "valid")
            if best is None or (value < best if task.lower_is_better else value > best):
                best, best_weights = value, copy.deepcopy(model.state_dict())
            metrics.write("retrain", epoch, (epoch + 1) * steps, loss=total.item() / steps, lr=lr,
                          **{f"valid_{task.metric}": value})
            reporter.print(f"retrain epoch {epoch + 1}: valid {task.metric} {value:.4g} (best {best:.4g})")
            save_checkpoint(out_dir / CHECKPOINTS, {
                "config": to_dict(config), "epoch": epoch + 1, "model": model.state_dict(),
                "optimizer": optimizer.state_dict(), "shuffler": shuffler.get_state(), "rng": rng_state(),
                "best": best, "best_weights": best_weights, "metrics_lines": metrics.lines,
                "elapsed": time.time() - started})
    finally:
        metrics.close()
    model.load_state_dict(best_weights)
    model.eval()
    result = {"metric": f"test_{task.metric}", "value": task.evaluate(model, "test"),
              f"valid_{task.metric}": best, "params": count_parameters(model),
              "time_s": round(time.time() - started, 1), "arch": arch.to_official(), **task.describe()}
    torch.save(model.state_dict(), out_dir / MODEL_FILE)
    (out_dir / RESULT_FILE).write_text(json.dumps(result, indent=2) + "\n")
    return result
