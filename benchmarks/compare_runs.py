"""`python -m benchmarks.compare_runs RUN_A RUN_B`: do two runs write the same metrics.jsonl numbers?

For refactors that must not change behaviour: run the same preset with the same seed before and
after the change, then compare. Wall-clock times (WALL_CLOCK) are left out, and the supernet phase's old name
("shared", before the seams were redrawn) counts as its new one. Exit status 0 when they agree.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

RENAMED_PHASES = {"shared": "supernet"}
WALL_CLOCK = ("time", "search_s", "seconds")   # figures of the machine's speed, not of the run


def numbers(run: Path) -> list[dict[str, Any]]:
    records = []
    for line in (run / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        for clock in WALL_CLOCK:
            record.pop(clock, None)
        record["phase"] = RENAMED_PHASES.get(record["phase"], record["phase"])
        records.append(record)
    return records


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.splitlines()[0], file=sys.stderr)
        return 2
    a, b = (numbers(Path(run)) for run in argv)
    for line, (x, y) in enumerate(zip(a, b), start=1):
        if x != y:
            print(f"line {line} differs:\n  {x}\n  {y}")
            return 1
    if len(a) != len(b):
        print(f"{len(a)} lines against {len(b)}")
        return 1
    print(f"the same {len(a)} lines")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
