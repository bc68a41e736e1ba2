"""The pipeline benchmark still runs end to end against the real processes (tiny rates; the figures are
not looked at, only that every promised figure is there and nothing acknowledged went missing)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_pipeline_benchmark_prints_every_figure_it_promises(tmp_path):
    plot = tmp_path / "latency.png"
    completed = subprocess.run(
        [sys.executable, "-m", "bench.pipeline", "--quick", "--json", "--no-generator-capacity",
         "--plot", str(plot)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=True,
    )
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert [row["rate"] for row in result["rates"]][:2] == [200, 1000]
    for row in result["rates"]:
        for key in ("p50_us", "p99_us", "p999_us", "floor_p50_us", "floor_p99_us"):
            assert row[key] > 0, (row["rate"], key)
    assert result["max_sustained_per_s"] > 0 and result["floor_max_sustained_per_s"] > 0
    assert result["lost"] == 0
    assert result["acknowledged"] > 0
    assert result["journaled_once"] == result["acknowledged"]
    assert result["journal"]["journaled_twice_or_more"] == 0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
