"""The engine benchmarks still run end to end (small workloads; the figures are not looked at)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_engine_benchmark_prints_every_figure_it_promises():
    completed = subprocess.run(
        [sys.executable, "-m", "bench.engine", "--quick", "--json", "--runs", "2", "--no-startup"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=True,
    )
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    for key in ("ns_per_command", "commands_per_s", "rss_bytes_at_capacity", "reference_ratio"):
        assert result[key] > 0, key
    assert set(result["latency"]) >= {"gtc", "ioc", "cancel", "move", "all"}
    assert result["capacity"]["open_orders"] == result["capacity"]["orders"]
    workload = result["workload"]
    assert abs(workload["move_share"] - 0.82) < 0.02 and abs(workload["gtc_share"] - 0.09) < 0.02
    assert workload["rejected_share"] < 0.01


def test_service_benchmark_prints_a_figure_per_batch_size():
    completed = subprocess.run(
        [sys.executable, "-m", "bench.service", "--quick", "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=True,
    )
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert [row["batch"] for row in result["batches"]] == [1, 10, 64]
    for row in result["batches"]:
        assert row["service_us_per_batch"] > row["kernel_us_per_batch"] > 0
        assert len(row["service_us_per_batch_runs"]) == result["runs"] == 2


def test_fanout_floor_benchmark_times_a_round_of_sends():
    completed = subprocess.run(
        [sys.executable, "-m", "bench.fanout", "--json", "--connections", "10", "--rounds", "3"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=True,
    )
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert (result["connections"], result["rounds"]) == (10, 3)
    assert result["round_ms"] > 0 and result["send_us"] > 0


def test_wake_benchmark_times_each_work_after_each_pause():
    completed = subprocess.run(
        [sys.executable, "-m", "bench.wake", "--quick", "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=True,
    )
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert set(result["work"]) == {"sequencer", "protocol"}
    for rows in result["work"].values():
        assert list(rows) == ["back_to_back", "sleep_0.2ms", "sleep_1ms", "sleep_2ms", "sleep_5ms", "busy_5ms"]
        assert rows["back_to_back"]["ratio"] == 1.0
        for row in rows.values():
            assert row["p90_us"] >= row["p50_us"] > 0 and len(row["p50_us_runs"]) == result["runs"] == 1
