"""benchmarks/cpu_accounting.py: CPU per request by kind of process, from /proc."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import cpu_accounting  # noqa: E402


def test_per_request_divides_each_kinds_time_by_the_requests():
    before = {
        "processes": {"10": ("app", 1.0), "11": ("nginx", 0.5), "12": ("redis", 2.0)},
        "machine": {"busy": 10.0, "idle": 5.0},
    }
    after = {
        # 13 started meanwhile: all of its time counts; 12 ended: none of it does.
        "processes": {"10": ("app", 1.5), "11": ("nginx", 0.6), "13": ("postgres", 0.2)},
        "machine": {"busy": 11.0, "idle": 5.5},
    }
    cpu = cpu_accounting.per_request(before, after, 1000, wrk_seconds=0.05)
    assert cpu["app"] == pytest.approx(500.0)
    assert cpu["nginx"] == pytest.approx(100.0)
    assert cpu["postgres"] == pytest.approx(200.0)
    assert cpu["wrk"] == pytest.approx(50.0)
    assert cpu["redis"] == cpu["worker"] == cpu["other"] == 0.0
    assert cpu["busy"] == pytest.approx(1000.0)
    assert cpu["idle_share"] == pytest.approx(0.5 / 1.5)


def test_a_snapshot_sees_this_machines_processes_by_kind():
    # A process whose command line names gunicorn is the app's; this one is "other".
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "gunicorn"])
    try:
        first = cpu_accounting.snapshot()
        sum(range(5_000_000))  # CPU time of our own between the snapshots: several clock ticks
        second = cpu_accounting.snapshot()
    finally:
        child.kill()
        child.wait()
    assert first["processes"][str(child.pid)][0] == "app"
    own = str(os.getpid())
    assert second["processes"][own][0] == "other"
    assert second["processes"][own][1] >= first["processes"][own][1]
    assert second["machine"]["busy"] > first["machine"]["busy"]
