"""The recovery benchmark still runs end to end with the real sequencer and engine processes (a small
journal; the figures are not looked at, only that every promised one is there)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_recovery_benchmark_prints_every_figure_it_promises():
    completed = subprocess.run([sys.executable, "-m", "bench.recovery", "--quick", "--json"],
                               cwd=ROOT, capture_output=True, text=True, timeout=900, check=True)
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    for key in ("replay_commands_per_s", "recover_s_journal_only", "recover_s_from_snapshot", "sequencer_start_s",
                "engine_process_replay_commands_per_s"):
        assert result[key] > 0, key
    assert result["commands"] == 200_000 and result["replayed_after_snapshot"] == 50_000
    assert result["journal_commands_per_batch"] == 32
