"""The pusher benchmark still runs end to end against the real processes (a dozen subscribers, tiny
rates; the figures are not judged, only that every promised one is there, that every subscriber was
served alike and that the samples saw no break in the depth and trade chains)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.loadgen import BUY, SELL, order_plan

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
    assert row["lost_orders"] == 0
    floor = result["fanout_floor"]
    assert floor["connections"] == result["settings"]["subscribers"] and floor["round_ms"] > 0
    assert row["orders_per_s_offered"] == round(row["rate_trades_per_s"] * 10 / 9)  # the default mix
    groups = round(row["orders_per_s_offered"] * result["settings"]["duration_s"]) // 10  # a sell and 9 buys
    assert row["trades_seen_per_sample"] == 9 * groups  # every sample saw every trade


@pytest.mark.parametrize("takers", [1, 3, 9])
def test_every_order_of_the_mix_can_fill_and_none_meets_its_own_account(takers):
    connections, count = 8, 5 * (takers + 1)
    plans = [order_plan(i, connections, takers) for i in range(count)]
    buys = sum(lots for _, side, lots, _ in plans if side == BUY)
    sells = sum(lots for _, side, lots, _ in plans if side == SELL)
    assert buys == sells == count * takers // (takers + 1)
    assert all((connection % 2 == 0) == (side == BUY) for connection, side, _, _ in plans)
    assert {connection for connection, _, _, _ in plans} == set(range(connections))
    # answers: New per order, a Trade per order and lot filled against it
    assert sum(reports for *_, reports in plans) == count + 2 * buys
