"""The threads torch gets (config `threads`, 0 picking the free cores), the passive OpenMP wait
that enas sets before torch loads, and the one warning of a run that gets little of the CPU."""

import os
import subprocess
import sys
import time

import pytest

from benchmarks import loaded
from enas.run import threads
from enas.run.threads import CpuShare, thread_count


def test_a_set_thread_count_is_kept():
    assert thread_count(3) == 3


@pytest.mark.parametrize("free, expected", [(0.0, 1), (0.4, 1), (1.6, 2), (2.0, 2), (5.0, 2), (None, 2)])
def test_threads_0_takes_the_free_cores(free, expected, monkeypatch):
    monkeypatch.setattr(threads, "free_cores", lambda: free)
    monkeypatch.setattr(threads, "cores", lambda: 2)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert thread_count(0) == expected


def test_a_torchrun_job_shares_the_cores_among_its_processes(monkeypatch):
    monkeypatch.setattr(threads, "cores", lambda: 8)
    monkeypatch.setattr(threads, "free_cores", lambda: pytest.fail("the job's own processes would read as load"))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "3")
    assert thread_count(0) == 2


def test_free_cores_are_read_from_proc_stat():
    free = threads.free_cores(0.05)
    if free is None:
        pytest.skip("no /proc/stat")
    assert 0.0 <= free <= os.cpu_count()


@pytest.mark.parametrize("preset, expected", [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_openmp_threads_wait_passively_unless_the_user_says_otherwise(preset, expected):
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if preset:
        env["OMP_WAIT_POLICY"] = preset
    code = "import enas, os, torch; print(os.environ['OMP_WAIT_POLICY'])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert result.stdout.strip() == expected


def clock(*readings: tuple[float, float]):
    """A stand-in for `threads.clocks`: (wall, CPU) seconds, one reading per call."""
    return iter(readings).__next__


def test_a_run_that_gets_little_of_the_cpu_is_told_once_what_to_try():
    share = CpuShare(threads=2, on_cpu=True, clock=clock((0.0, 0.0), (10.0, 3.0)))   # 0.3 of a core
    warning = share.after_epoch()
    assert warning.startswith("warning: this run got 0.30 of a CPU core over its first epoch on 2 threads")
    assert "about 3 times slower" in warning and "try threads=1" in warning and "\n" not in warning
    assert share.after_epoch() is None   # once


def test_one_thread_is_told_the_machine_is_busy_and_a_busy_run_or_a_gpu_run_nothing():
    assert "less busy" in CpuShare(threads=1, on_cpu=True, clock=clock((0.0, 0.0), (10.0, 1.0))).after_epoch()
    assert CpuShare(threads=2, on_cpu=True, clock=clock((0.0, 0.0), (10.0, 9.0))).after_epoch() is None
    assert CpuShare(threads=2, on_cpu=False, clock=clock((0.0, 0.0), (10.0, 0.1))).after_epoch() is None


def test_the_clocks_count_this_process_cpu_time():
    wall, cpu = threads.clocks()
    end = time.process_time() + 0.05
    while time.process_time() < end:
        pass
    later_wall, later_cpu = threads.clocks()
    assert later_cpu - cpu >= 0.04 and later_wall - wall >= later_cpu - cpu - 0.01


def test_the_loaded_benchmark_bounds_its_busy_processes_and_compares_medians():
    with loaded.busy(2, seconds=60) as spinners:
        assert [spinner.poll() for spinner in spinners] == [None, None]   # spinning
    assert all(spinner.poll() is not None for spinner in spinners)       # killed on leaving, before their 60 s
    runs = [loaded.Timed("0", True, seconds, seconds, 1, 9.0) for seconds in (10.0, 30.0, 12.0)]
    runs += [loaded.Timed("2", True, 20.0, 20.0, 2, 9.0), loaded.Timed("1", False, None, 600.0, None, 2.0)]
    assert loaded.ratios(runs) == ["loaded (medians): 0 12.0 s = 1.00x, 2 20.0 s = 1.67x"]
