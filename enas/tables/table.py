"""A benchmark table: every architecture of a space with its measured figures, read from a CSV.

The CSV format (UTF-8, comma-separated, a header line, one row per architecture; the loss column
here is made up to show a lower-is-better metric):

    arch,cifar10_valid,cifar10_test,test_loss:min
    |nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|,82.834,88.22,0.41

- `arch`: the architecture's official string in its space, used exactly as written (no
  normalisation), unique and non-empty. The column may stand anywhere in the header.
- Every other column is a metric: a finite number in every row. A header `name:max` or a plain
  `name` is higher-is-better (accuracies); `name:min` is lower-is-better (losses, errors,
  perplexities). The suffix is not part of the metric's name: `test_loss:min` is the metric
  `test_loss`.
- Blank lines are ignored; a byte-order mark is allowed.

Ranks and percentiles (per metric, over all rows; "better" follows the column's direction):
- rank = 1 + the number of rows strictly better: 1 is the best, ties share the best rank of the
  tie (competition ranking: 1, 2, 2, 4).
- percentile = 100 * (rows - rank + 1) / rows: the percentage of rows at or below it, itself
  included. The best row (tied or not) has 100, a unique worst row 100 / rows.
- the top-`share` threshold is the value of the k-th best row, k = ceil(share * rows): a row is in
  the top share exactly when its value is at least as good, i.e. when its rank is at most k.
"""

from __future__ import annotations

import bisect
import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Iterator, Mapping, NoReturn, Sequence

from enas.errors import UserError
from enas.tables.figures import ColumnFigures, TableFigures

ARCH = "arch"
DIRECTIONS = {"max": False, "min": True}   # header suffix -> lower is better


@dataclass(frozen=True)
class BenchTable:
    """The rows of one table, by architecture; build it with `BenchTable.load`."""

    source: str                                    # the file it came from, for messages
    metrics: tuple[str, ...]                       # the metric columns, in header order
    lower: frozenset[str]                          # the metrics where lower is better
    rows: Mapping[str, tuple[float, ...]] = field(repr=False)   # arch -> values in `metrics` order
    # per metric, every row's value oriented so larger is better, sorted ascending: ranks by bisection
    _sorted: Mapping[str, list[float]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        columns = {m: sorted(self._oriented(m, values[i]) for values in self.rows.values())
                   for i, m in enumerate(self.metrics)}
        object.__setattr__(self, "_sorted", columns)

    @classmethod
    def load(cls, path: str | Path) -> BenchTable:
        """Read and check a table (format in the module docstring); a fault is a one-line UserError
        naming the file, the line and what to fix."""
        path = Path(path)
        records = _records(path, _read_text(path))
        first = next(records, None)
        if first is None:
            raise UserError(f"benchmark table {path} is empty; it needs a header line such as "
                            f"arch,cifar10_valid and a row per architecture")
        header_line, header = first
        arch_at, metrics, lower = _parse_header(path, header_line, [cell.strip() for cell in header])
        rows: dict[str, tuple[float, ...]] = {}
        first_line: dict[str, int] = {}
        for line, row in records:
            if len(row) != len(header):
                _fault(path, line, f"{len(row)} fields where the header has {len(header)}; "
                       "every row needs an arch and a value per metric")
            arch = row[arch_at]
            if not arch.strip():
                _fault(path, line, "the arch is empty; write the architecture's official string")
            if arch in rows:
                _fault(path, line, f"architecture {arch} repeats line {first_line[arch]}; "
                       "each architecture must appear once")
            cells = [cell for i, cell in enumerate(row) if i != arch_at]
            rows[arch] = tuple(_number(path, line, name, cell) for name, cell in zip(metrics, cells))
            first_line[arch] = line
        if not rows:
            raise UserError(f"benchmark table {path} has a header but no rows; add a row per architecture")
        return cls(str(path), metrics, lower, MappingProxyType(rows))

    def __len__(self) -> int:
        return len(self.rows)

    def __contains__(self, arch: object) -> bool:
        return arch in self.rows

    def lower_is_better(self, column: str) -> bool:
        self._index(column)
        return column in self.lower

    def value(self, arch: str, column: str) -> float:
        return self._row(arch)[self._index(column)]

    def lookup(self, arch: str) -> dict[str, float]:
        """Every metric of `arch`, by column."""
        return dict(zip(self.metrics, self._row(arch)))

    def rank(self, arch: str, column: str) -> int:
        """1 for the best row; tied rows share the best rank of their tie."""
        ordered = self._ordered(column)
        return len(ordered) - bisect.bisect_right(ordered, self._oriented(column, self.value(arch, column))) + 1

    def percentile(self, arch: str, column: str) -> float:
        """The percentage of rows at or below `arch` in `column`, itself included: 100 for the best."""
        return 100.0 * (len(self) - self.rank(arch, column) + 1) / len(self)

    def best(self, column: str) -> tuple[str, float]:
        """The best row's architecture and value (the first in file order among ties)."""
        index = self._index(column)
        arch = max(self.rows, key=lambda a: self._oriented(column, self.rows[a][index]))
        return arch, self.rows[arch][index]

    def top_share_threshold(self, column: str, share: float) -> float:
        """The value a row needs to be in the best `share` (0.01 = top 1%) of `column`: that of the
        k-th best row, k = ceil(share * rows)."""
        if not 0.0 < share <= 1.0:
            raise ValueError(f"share must be in (0, 1], got {share}")
        ordered = self._ordered(column)
        k = max(1, math.ceil(share * len(ordered) - 1e-9))   # 0.07 * 100 is 7.000000000000001
        return self._oriented(column, ordered[-k])            # orienting twice gives the value back

    def scores(self, archs: Sequence[str], column: str) -> list[float]:
        """The column's values of `archs`, negated where lower is better: larger is better, as
        enas/ranking.py expects."""
        return [self._oriented(column, self.value(arch, column)) for arch in archs]

    def figures(self, arch: str) -> TableFigures:
        """What the table says of `arch`: per metric its value, rank and percentile."""
        columns = tuple(ColumnFigures(m, self.value(arch, m), self.rank(arch, m), len(self),
                                      self.percentile(arch, m), m in self.lower) for m in self.metrics)
        return TableFigures(arch, self.source, columns)

    def _oriented(self, column: str, value: float) -> float:
        return -value if column in self.lower else value

    def _row(self, arch: str) -> tuple[float, ...]:
        try:
            return self.rows[arch]
        except KeyError:
            raise UserError(f"architecture {arch} is not in table {self.source}; "
                            "the table must cover the whole space") from None

    def _index(self, column: str) -> int:
        try:
            return self.metrics.index(column)
        except ValueError:
            raise UserError(f"table {self.source} has no metric column {column!r}; "
                            f"its metrics: {', '.join(self.metrics)}") from None

    def _ordered(self, column: str) -> list[float]:
        self._index(column)
        return self._sorted[column]


def _read_text(path: Path) -> str:
    """The file's text, or a one-line UserError for a missing, unreadable or non-UTF-8 file."""
    if not path.exists():
        raise UserError(f"benchmark table {path} does not exist; give the path of its CSV file")
    if path.is_dir():
        raise UserError(f"benchmark table {path} is a folder; give the path of the CSV file in it")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise UserError(f"cannot read benchmark table {path}: {error.strerror}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        _fault(path, data.count(b"\n", 0, error.start) + 1,
               f"byte {data[error.start]:#04x} is not UTF-8; save the table as UTF-8 CSV")


def _parse_header(path: Path, line: int, header: list[str]) -> tuple[int, tuple[str, ...], frozenset[str]]:
    """The arch column's position, the metric names and those where lower is better."""
    if header.count(ARCH) != 1:
        _fault(path, line, f"the header needs exactly one {ARCH} column (the architecture's official "
               f"string), found {header.count(ARCH)}; e.g. arch,cifar10_valid")
    metrics: list[str] = []
    lower: set[str] = set()
    for position, cell in enumerate(header, start=1):
        if cell == ARCH:
            continue
        if not cell:   # pandas writes its index so
            _fault(path, line, f"header column {position} has no name; name it, or drop it "
                   "(pandas: to_csv(..., index=False))")
        name, colon, direction = cell.partition(":")
        if not name or name == ARCH or (colon and direction not in DIRECTIONS):
            _fault(path, line, f"metric column {cell!r} is not NAME, NAME:max or NAME:min (NAME other than arch)")
        if name in metrics:
            _fault(path, line, f"metric {name!r} has two columns; give each metric one")
        metrics.append(name)
        if DIRECTIONS.get(direction, False):
            lower.add(name)
    if not metrics:
        _fault(path, line, "there is no metric column; add at least one, e.g. arch,cifar10_valid")
    return header.index(ARCH), tuple(metrics), frozenset(lower)


def _records(path: Path, text: str) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of each non-blank CSV record; a syntax error is a UserError with its line."""
    reader = csv.reader(io.StringIO(text), strict=True)   # a stray quote is an error, not a value
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            _fault(path, reader.line_num, f"not valid CSV ({error}); check the quotes")
        if row:
            yield reader.line_num, row   # the record's last line: its only one unless a quoted field spans lines


def _number(path: Path, line: int, column: str, cell: str) -> float:
    try:
        value = float(cell)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        _fault(path, line, f"{column} is {cell!r}; every metric value must be a finite number")
    return value


def _fault(path: Path, line: int, problem: str) -> NoReturn:
    raise UserError(f"benchmark table {path}, line {line}: {problem}")
