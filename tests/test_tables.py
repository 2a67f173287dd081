"""Benchmark tables (enas/tables): lookups, ranks, percentiles, thresholds and tau on a small
hand-written table; every malformed table a one-line UserError; the NAS-Bench-201 table's known
figures when ../shared/data is there."""

from __future__ import annotations

import math
import re
import time
from pathlib import Path

import pytest

from enas.errors import UserError
from enas.tables import BenchConfig, BenchTable, bench_errors, load_bench
from enas.tables.scores import reward, table_tau

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
NB201 = DATA / "nas-bench-201" / "nb201-cifar10-12epochs.csv"
ALL_SKIP = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"

# acc: higher is better, b and c tie; loss: lower is better, b and e tie; arch in the middle
SMALL = """\
acc,arch,loss:min
90,a,0.5
80,b,0.7
80,c,0.2

70,d,0.9
60,e,0.7
"""


@pytest.fixture
def small(tmp_path) -> BenchTable:
    path = tmp_path / "small.csv"
    path.write_text(SMALL)
    return BenchTable.load(path)


def one_line_error(path: Path) -> str:
    with pytest.raises(UserError) as caught:
        BenchTable.load(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message
    return message


# --------------------------------------------------------------------------- a small table by hand

def test_columns_directions_and_lookups(small):
    assert len(small) == 5 and "c" in small and "z" not in small
    assert small.metrics == ("acc", "loss")                     # the :min suffix is not in the name
    assert not small.lower_is_better("acc") and small.lower_is_better("loss")
    assert small.value("c", "loss") == 0.2
    assert small.lookup("b") == {"acc": 80.0, "loss": 0.7}


def test_ranks_share_the_best_rank_of_a_tie(small):
    assert [small.rank(a, "acc") for a in "abcde"] == [1, 2, 2, 4, 5]
    assert [small.rank(a, "loss") for a in "abcde"] == [2, 3, 1, 5, 3]     # lower is better


def test_percentile_is_the_share_at_or_below_and_100_for_the_best(small):
    assert [small.percentile(a, "acc") for a in "abcde"] == [100.0, 80.0, 80.0, 40.0, 20.0]
    assert [small.percentile(a, "loss") for a in "abcde"] == [80.0, 60.0, 100.0, 20.0, 60.0]


def test_best_and_top_share_thresholds(small):
    assert small.best("acc") == ("a", 90.0) and small.best("loss") == ("c", 0.2)
    # k = ceil(share * 5) best rows: 0.2 -> 1, 0.4 -> 2, 0.5 -> 3, 1.0 -> all
    assert [small.top_share_threshold("acc", s) for s in (0.2, 0.4, 0.5, 1.0)] == [90.0, 80.0, 80.0, 60.0]
    assert [small.top_share_threshold("loss", s) for s in (0.2, 0.4, 0.6, 1.0)] == [0.2, 0.5, 0.7, 0.9]
    with pytest.raises(ValueError):
        small.top_share_threshold("acc", 0.0)


def test_figures_print_and_serialise(small):
    figures = small.figures("b")
    assert figures.to_json() == {"table": small.source, "arch": "b", "metrics": {
        "acc": {"value": 80.0, "rank": 2, "rows": 5, "percentile": 80.0, "lower_is_better": False},
        "loss": {"value": 0.7, "rank": 3, "rows": 5, "percentile": 60.0, "lower_is_better": True}}}
    lines = figures.lines()
    assert lines[0] == "acc 80: rank 2 of 5, percentile 80.00"
    assert lines[1] == "loss 0.7: rank 3 of 5, percentile 60.00, lower is better"
    assert small.source in lines[-1]


def test_table_tau_against_known_numbers(small):
    archs, rewards = list("abcde"), [5.0, 4.0, 3.0, 2.0, 1.0]
    # acc ties b and c: 9 concordant pairs, 0 discordant, 1 tied in the table only -> 9 / sqrt(10 * 9)
    assert table_tau(archs, rewards, small, "acc") == pytest.approx(9 / math.sqrt(90))
    perplexities = [1.0, 2.0, 3.0, 4.0, 5.0]                    # the same order, lower is better
    assert table_tau(archs, perplexities, small, "acc", lower_is_better_scores=True) == pytest.approx(9 / math.sqrt(90))
    # loss (lower is better): 6 concordant, 3 discordant, b-e tied -> 3 / sqrt(90)
    assert table_tau(archs, rewards, small, "loss") == pytest.approx(3 / math.sqrt(90))


def test_absent_architecture_and_unknown_column_are_one_line_errors(small):
    with pytest.raises(UserError, match=r"^architecture zz is not in table .*small\.csv; the table must cover "
                                        r"the whole space$"):
        small.lookup("zz")
    with pytest.raises(UserError, match=r"no metric column 'top1'; its metrics: acc, loss$"):
        small.rank("a", "top1")
    with pytest.raises(UserError, match="not in table"):
        table_tau(["a", "zz"], [1.0, 2.0], small, "acc")


# --------------------------------------------------------------------------- malformed tables

@pytest.mark.parametrize("content, message", [
    (b"", r"is empty; it needs a header line"),
    (b"arch,acc\n", r"has a header but no rows"),
    (b"name,acc\na,1\n", r"line 1: the header needs exactly one arch column .* found 0"),
    (b"arch,acc,arch\na,1,a\n", r"line 1: the header needs exactly one arch column .* found 2"),
    (b"arch\na\n", r"line 1: there is no metric column"),
    (b",arch,acc\n0,a,1\n", r"line 1: header column 1 has no name; .*index=False"),
    (b"arch,acc:mean\na,1\n", r"line 1: metric column 'acc:mean' is not NAME, NAME:max or NAME:min"),
    (b"arch,acc,acc:max\na,1,1\n", r"line 1: metric 'acc' has two columns"),
    (b"arch,acc\na,1\nb,x\n", r"line 3: acc is 'x'; every metric value must be a finite number"),
    (b"arch,acc\na,1\nb,\n", r"line 3: acc is ''; every metric value must be a finite number"),
    (b"arch,acc\na,nan\n", r"line 2: acc is 'nan'; every metric value must be a finite number"),
    (b"arch,acc\na,inf\n", r"line 2: acc is 'inf'; every metric value must be a finite number"),
    (b"arch,acc\na,1\nb,2\na,3\n", r"line 4: architecture a repeats line 2; each architecture must appear once"),
    (b"arch,acc\n,1\n", r"line 2: the arch is empty"),
    (b"arch,acc\na,1,2\n", r"line 2: 3 fields where the header has 2"),
    (b"arch,acc\na,1\n\xff\xfe,2\n", r"line 3: byte 0xff is not UTF-8; save the table as UTF-8 CSV"),
    (b'arch,acc\n"a,1\n', r"line 2: not valid CSV \(unexpected end of data\); check the quotes"),
    (b'arch,acc\n"a"b,1\n', r"line 2: not valid CSV"),
])
def test_malformed_table_is_a_one_line_error_naming_file_and_line(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    assert re.search(message, one_line_error(path))


def test_missing_file_and_folder_are_one_line_errors(tmp_path):
    assert "does not exist" in one_line_error(tmp_path / "absent.csv")
    assert "is a folder" in one_line_error(tmp_path)


def test_bom_blank_lines_and_spaced_header_are_accepted(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufeffarch, acc ,err:min\n\na,1.5,2\n\n".encode())
    table = BenchTable.load(path)
    assert table.metrics == ("acc", "err") and table.lookup("a") == {"acc": 1.5, "err": 2.0}


# --------------------------------------------------------------------------- config and reward

def test_bench_config_picks_the_metric(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text(SMALL)
    assert load_bench(BenchConfig()) is None and bench_errors(BenchConfig()) == []
    table, metric = load_bench(BenchConfig(table=str(path)))
    assert metric == "acc" and len(table) == 5                   # "" is the first metric column
    assert load_bench(BenchConfig(table=str(path), metric="loss"))[1] == "loss"
    with pytest.raises(UserError, match=r"^bench.metric=loss:min is not a metric column of .*t\.csv; "
                                        r"choose one of acc, loss$"):
        load_bench(BenchConfig(table=str(path), metric="loss:min"))
    assert bench_errors(BenchConfig(metric="acc")) == [
        "bench.metric=acc needs bench.table=FILE.csv, the table it is a column of"]


def test_reward_reads_a_percentage_as_a_fraction():
    assert reward(84.0, "identity") == pytest.approx(0.84)
    assert reward(84.0, "cube") == pytest.approx(0.84 ** 3)
    assert reward(0.0, "cube") == 0.0 and reward(100.0, "cube") == 1.0
    with pytest.raises(UserError, match=r"accuracy in % \(0\.\.100\), got 120"):
        reward(120.0, "identity")
    with pytest.raises(ValueError, match="unknown reward mapping"):
        reward(50.0, "square")


# --------------------------------------------------------------------------- NAS-Bench-201

@pytest.mark.skipif(not NB201.is_file(), reason=f"needs the NAS-Bench-201 table at {NB201} (../shared/data)")
def test_nas_bench_201_table_known_figures():
    started = time.perf_counter()
    table = BenchTable.load(NB201)
    seconds = time.perf_counter() - started
    assert seconds < 3.0, f"15,625 rows took {seconds:.2f} s"     # about 0.07 s alone; the cores are shared
    assert len(table) == 15_625 and table.metrics == ("cifar10_valid", "cifar10_test")
    valid = sorted(values[0] for values in table.rows.values())
    assert (valid[0], valid[-1]) == pytest.approx((9.71, 84.89), abs=0.005)
    assert valid[len(valid) // 2] == pytest.approx(72.28, abs=0.005)                  # 15,625 rows: one middle
    assert table.value(ALL_SKIP, "cifar10_valid") == pytest.approx(33.94, abs=0.005)
    best, value = table.best("cifar10_valid")
    assert value == valid[-1] and table.rank(best, "cifar10_valid") == 1
    assert table.percentile(best, "cifar10_valid") == 100.0
    assert best == "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_1x1~1|nor_conv_3x3~2|"
    # the top-1% and top-0.5% thresholds: the 157th and 79th best rows (k = ceil(share * 15,625))
    top1, top05 = table.top_share_threshold("cifar10_valid", 0.01), table.top_share_threshold("cifar10_valid", 0.005)
    print(f"cifar10_valid: top 1% >= {top1}, top 0.5% >= {top05}, best {value}, load {seconds:.3f} s")
    assert round(top1, 2) == 83.57 and round(top05, 2) == 83.83
