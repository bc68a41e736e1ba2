"""The pusher benchmark still runs end to end against the real processes (a dozen subscribers, tiny
rates; the figures are not judged, only that every promised one is there, that every subscriber was
served alike and that the samples saw no break in the depth and trade chains)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_pusher_benchmark_prints_every_figure_it_promises():
    completed = subprocess.run([sys.executable, "-m", "bench.pusher", "--quick", "--json"],
                               cwd=ROOT, capture_output=True, text=True, timeout=600, check=True)
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    for key in ("p50_ms", "p99_ms", "messages_per_s", "pusher_cpu_pct"):
        assert result[key] is not None and result[key] > 0, key
    [row] = result["rates"]
    assert row["trades_per_s_achieved"] > 0 and row["latency_samples"] > 0
    assert row["closed_connections"] == 0 and row["depth_breaks"] == 0 and row["trade_breaks"] == 0
    assert row["drain_bytes_min"] > 0
    assert row["drain_bytes_max"] - row["drain_bytes_min"] <= row["drain_bytes_max"] * 0.05
