"""What adding a search strategy takes: a throwaway strategy plugged into a copy of the project.

The copy gets one new module under enas/strategies/, one entry in the registry and one preset, and
nothing else; search, derive, retrain, `enas runs`, `enas report` and `enas plot` then run it
through the command line. If a new strategy ever needs another file touched, this test is where it
shows (tests/test_new_space.py does the same for a space).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from test_new_space import changed_files, copy_project, enas

TOY_STRATEGY = '''
"""A throwaway strategy: shared weights trained on uniform architectures; its derive keeps the best
of `pick.samples` uniform draws, scored through those weights."""

from __future__ import annotations

from dataclasses import dataclass

from enas.fields import option
from enas.strategies.base import EVAL, SUPERNET, Derived, Phase


@dataclass
class PickConfig:
    samples: int = option(4, "uniform architectures that derive scores", min=1)


class Pick:
    name = "pick"
    summary = "uniform architectures, the best of a few"
    section, config = "pick", PickConfig
    budget, unit = "search.epochs", "epoch"
    phases = (Phase(SUPERNET, ("loss", "lr")), Phase(EVAL, ("valid_<metric>",)))
    done_phase, reward_phase = EVAL, ""
    rewards: dict = {}
    scored_by = "shared weights"
    epoch_shape = ("search.batch_size", "search.steps_per_epoch")
    learns = False

    def search(self, config, run_dir, resume, reporter):
        from enas.strategies.supernet_search import run_search

        return run_search(config, run_dir, resume, reporter, self)

    def derive(self, config, run_dir, reporter):
        from enas.spaces import official

        shared = self.scorer(config, run_dir, reporter)
        metric = shared.task.metric
        scores = {arch: shared.score(arch) for arch in shared.sample(config.pick.samples, config.seed)}
        lines = [{"arch": official(arch), "choices": list(arch.choices), f"valid_{metric}": score}
                 for arch, score in scores.items()]
        return Derived(scores, metric, shared.task.lower_is_better, len(scores), lines)

    def scorer(self, config, run_dir, reporter):
        from enas.strategies.shared_weights import SharedWeights

        return SharedWeights(config, run_dir, reporter)
'''

TOY_PRESET = """
strategy: pick
threads: 1
data: {vocab_size: 16, train_tokens: 6000, valid_tokens: 1000, test_tokens: 1000}
recurrent: {nodes: 3, hidden: 24}
search: {epochs: 3, batch_size: 8, lr: 10}
pick: {samples: 3}
retrain: {epochs: 3, batch_size: 8, lr: 10}
"""


def add_toy_strategy(copy: Path) -> list[str]:
    """Make the three changes that add a strategy; return the paths changed, relative to the copy."""
    (copy / "enas" / "strategies" / "pick.py").write_text(textwrap.dedent(TOY_STRATEGY).lstrip())
    registry = copy / "enas" / "strategies" / "__init__.py"
    text = registry.read_text()
    text = text.replace("from enas.strategies.nas_rl import NasRL, Random\n",
                        "from enas.strategies.nas_rl import NasRL, Random\nfrom enas.strategies.pick import Pick\n")
    text = text.replace("\n)}\n", "\n    Pick(),\n)}\n")
    registry.write_text(text)
    (copy / "conf" / "pick.yaml").write_text(TOY_PRESET.lstrip())
    return ["conf/pick.yaml", "enas/strategies/__init__.py", "enas/strategies/pick.py"]


def show(copy: Path, *args: str) -> str:
    """The output of a command that reads a run and has no progress bars (runs, report, plot)."""
    result = subprocess.run([sys.executable, "-c", "import cli; cli.main()", *args], cwd=copy, capture_output=True,
                            text=True, timeout=300, env={"PYTHONPATH": str(copy), "PATH": "", "COLUMNS": "160"})
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_a_new_strategy_is_one_module_one_registry_entry_and_a_preset(tmp_path):
    copy = copy_project(tmp_path)
    touched = add_toy_strategy(copy)
    assert changed_files(copy) == sorted(touched)

    runs = copy / "runs"
    run = runs / "pick"
    enas(copy, "search", "-c", "pick", "-o", str(run))
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [m["loss"] for m in metrics if m["phase"] == "supernet"]
    assert losses[-1] < losses[0]                                  # the shared weights learned
    assert not [m for m in metrics if m["phase"] == "controller"]  # a uniform policy is never updated
    assert "pick:\n  samples: 3" in (run / "config.yaml").read_text()   # the strategy's own config section
    assert "searched" in show(copy, "runs", str(runs))         # its budget read through the strategy

    enas(copy, "derive", str(run))
    candidates = (run / "candidates.jsonl").read_text().splitlines()
    assert len(candidates) == 3 and json.loads((run / "arch.json").read_text())["sampled"] == 3
    enas(copy, "retrain", str(run))
    result = json.loads((run / "retrain" / "result.json").read_text())
    assert result["metric"] == "test_ppl" and result["value"] < 16     # better than uniform over 16 words

    listing = show(copy, "runs", str(runs))
    assert "pick" in listing and "retrained" in listing
    show(copy, "report", str(run))
    page = (run / "report.html").read_text()
    assert "strategy" in page and "pick" in page and "3 of 3" in page    # the budget read through the strategy
    drawn = show(copy, "plot", str(run))
    assert "search_loss.png" in drawn and "search_reward.png" not in drawn   # no rewards: no reward plot
