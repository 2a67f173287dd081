"""`python -m benchmarks.text_load PTB_FOLDER [--tokens N] [--unit word|char]`: the time and peak
memory of reading a large text folder, from the text and then from its id cache.

Builds a folder whose train split repeats PTB_FOLDER's until it holds at least N tokens (valid and
test are PTB's own), in a temporary folder, then reads it twice, each time in a fresh process:
once from the text (the streaming pass, which writes the run folder's tokens.pt) and once from
tokens.pt. Prints the tokens, seconds and peak resident memory of each read.
"""

from __future__ import annotations

import argparse
import math
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from enas.data.text import load_text_folder

READ = """
import resource, sys, time
from pathlib import Path
from enas.data.text import load_text_folder
start = time.perf_counter()
corpus = load_text_folder(sys.argv[1], unit=sys.argv[2], cache=Path(sys.argv[3]))
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20   # KiB -> GiB
print(f"{len(corpus.train):,} train tokens, {corpus.vocab_size:,} symbols: {seconds:.1f} s, peak {peak:.2f} GiB")
"""


def build_folder(source: Path, folder: Path, tokens: int, unit: str) -> int:
    """The train split of `source` repeated until `tokens`; returns the repetitions."""
    once = len(load_text_folder(source, unit=unit).train)
    copies = math.ceil(tokens / once)
    names = ("ptb.train.txt", "ptb.valid.txt", "ptb.test.txt")
    if not all((source / name).is_file() for name in names):
        names = ("train.txt", "valid.txt", "test.txt")
    with open(folder / names[0], "wb") as out:
        for _ in range(copies):
            with open(source / names[0], "rb") as part:
                shutil.copyfileobj(part, out)
    for name in names[1:]:
        shutil.copy(source / name, folder / name)
    return copies


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.text_load", description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a PTB-format text folder to repeat")
    parser.add_argument("--tokens", type=int, default=100_000_000, help="at least this many train tokens")
    parser.add_argument("--unit", default="word", choices=("word", "char"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        data, cache = Path(scratch) / "data", Path(scratch) / "run" / "tokens.pt"
        data.mkdir()
        copies = build_folder(args.folder, data, args.tokens, args.unit)
        size = sum(path.stat().st_size for path in data.iterdir()) / 1e6
        print(f"{args.folder}'s train split {copies} times over: {size:,.0f} MB")
        for source in ("text", "cache"):
            result = subprocess.run([sys.executable, "-c", READ, str(data), args.unit, str(cache)],
                                    capture_output=True, text=True, check=True)
            print(f"from the {source}: {result.stdout.strip()}")
        print(f"tokens.pt: {cache.stat().st_size / 1e6:,.0f} MB")


if __name__ == "__main__":
    main()
