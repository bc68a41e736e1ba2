"""Pusher benchmark: trade-to-client latency for 1,000 WebSocket subscribers while real orders trade.

    python -m bench.pusher --json     # one JSON object (docs/benchmarks.md, "Market data")
    python -m bench.pusher            # the same as a table
    python -m bench.pusher --quick    # a few subscribers, tiny rates: a smoke test (CI runs it)

What runs, all on this machine:

1. **The exchange** as operators start it (``tests/harness.Exchange``: supervisord with the sequencer,
   the engine, a gateway, quotation and the pusher), ipc endpoints, ``process`` durability. The pusher
   sends no pings during the run (``ping_interval_s`` = 3600), which the drain subscribers could not
   answer.
2. **Subscribers** (bench/wsclients.py) on ``trades.BTC-USDT`` and ``depth.BTC-USDT``: ``--subscribers``
   in all, of which ``--samples`` parse and timestamp every message; the others only drain their socket
   (counting bytes), in ``--drain-processes`` processes, so that the clients do not take the machine
   from the exchange. Trade-to-client latency is the receipt time minus the trade's time (its
   command's timestamp from the sequencer, in whole milliseconds, so figures carry up to 1 ms of
   rounding down of the trade time: they are at most 1 ms too high).
3. **The load** (bench/loadgen.py, as bench/pipeline.py uses it): open-loop NewOrderSingles on 32
   logged-on FIX sessions, in groups of a resting sell of ``--takers-per-maker`` lots (default 9) and
   that many one-lot buys that fill it, one trade each: ``rate`` trades a second take ``rate x 10 / 9``
   orders a second. With ``--takers-per-maker 1``, buys and sells cross in pairs (two orders a trade).

For each rate (trades/s): the counters start, the load runs ``--duration`` seconds, and the counters
stop once the samples have received nothing for a second (all of the step's market data has arrived,
so no step counts the tail of the one before). Then the baseline, in the same run: the lowest rate once more with only the
samples connected (``baseline_samples_alone``; ``fan_out_ratio_p50`` is the full run's p50 over it). Reported per rate: trades achieved, latency percentiles (HdrHistogram), messages
a second delivered over all subscribers, the bytes each drain connection received (min/max: all served
alike), connections closed, breaks in the depth and trade chains seen by the samples (must be 0), and
the CPU of every process (``pusher_cpu_pct`` = the pusher's CPU seconds per second x 100).

First of all, on the still quiet machine, the floor (bench/fanout.py, ``fanout_floor``): how long one
``send`` to each of as many loopback TCP connections as there are subscribers takes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench import fanout
from bench.pipeline import (
    Bench,
    Generators,
    ProcessCpu,
    Settings as LoadSettings,
    exchange_pids,
    histogram_of,
)
from bench.wsclients import drain_main, sample_main
from common.config import Durability, default_document, load_config

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from tests.harness import Exchange  # noqa: E402

CHANNELS = ["trades.BTC-USDT", "depth.BTC-USDT"]
CLIENT_TIMEOUT_S = 120.0
QUIET_S = 1.0  # after the load, the counters stop once the samples got nothing for this long
QUIET_TIMEOUT_S = 120.0
TARGET_P99_MS = 10.0
# A resting sell filled by this many one-lot buys: a trade takes 10 / 9 orders, where pairs of a buy and
# a sell take 2 (the order path, not the market data, then bounds the trade rate this machine reaches).
TAKERS_PER_MAKER = 9


@dataclass
class Settings:
    rates: list[int]  # trades/s
    duration_s: float
    subscribers: int
    samples: int
    drain_processes: int
    connections: int  # FIX sessions of the load generator
    takers_per_maker: int  # the order mix (bench/loadgen.py): a trade takes (k + 1) / k orders

    @classmethod
    def parse(cls, argv: list[str] | None) -> tuple["Settings", argparse.Namespace]:
        parser = argparse.ArgumentParser(prog="python -m bench.pusher", description=__doc__.splitlines()[0])
        parser.add_argument("--json", action="store_true", help="print one JSON object")
        parser.add_argument("--quick", action="store_true", help="a smoke test: few subscribers, tiny rates")
        parser.add_argument("--rates", help="comma-separated trades/s (default 1000,2500,5000,10000)")
        parser.add_argument("--duration", type=float, help="seconds of load per rate (default 10)")
        parser.add_argument("--subscribers", type=int, help="WebSocket subscribers in all (default 1000)")
        parser.add_argument("--samples", type=int, help="of which parse and timestamp every message (default 20)")
        parser.add_argument("--drain-processes", type=int, help="processes holding the others (default 2)")
        parser.add_argument("--takers-per-maker", type=int, default=TAKERS_PER_MAKER,
                            help=f"one-lot buys filling each resting sell (default {TAKERS_PER_MAKER}; "
                                 "1: buys and sells in pairs)")
        args = parser.parse_args(argv)
        quick = args.quick
        settings = cls(
            rates=[int(r) for r in args.rates.split(",")] if args.rates else ([100] if quick else
                                                                            [1000, 2500, 5000, 10_000]),
            duration_s=args.duration or (1.0 if quick else 10.0),
            subscribers=args.subscribers or (12 if quick else 1000),
            samples=args.samples or (2 if quick else 20),
            drain_processes=args.drain_processes or (1 if quick else 2),
            connections=8 if quick else 32,
            takers_per_maker=args.takers_per_maker,
        )
        if not 1 <= settings.samples <= settings.subscribers:
            parser.error("--samples must be between 1 and --subscribers")
        if settings.takers_per_maker < 1:
            parser.error("--takers-per-maker must be at least 1")
        return settings, args


class Subscribers:
    """The subscriber processes, spawned, driven over pipes."""

    def __init__(self, settings: Settings, port: int):
        context = multiprocessing.get_context("spawn")
        self.processes: list[tuple[str, Any, Any]] = []
        drains = settings.subscribers - settings.samples
        per = [drains // settings.drain_processes + (1 if k < drains % settings.drain_processes else 0)
               for k in range(settings.drain_processes)]
        # The samples connect last: the pusher writes to its connections in the order they came, so the
        # samples are served after every drain connection, the worst place in the fan-out.
        plans = [("drain", drain_main, n) for n in per if n] + [("sample", sample_main, settings.samples)]
        for kind, target, count in plans:
            parent, child = context.Pipe()
            options = {"host": "127.0.0.1", "port": port, "channels": CHANNELS, "connections": count}
            process = context.Process(target=target, args=(child, options), name=f"ws-{kind}")
            process.start()
            child.close()
            self.processes.append((kind, process, parent))
            self._expect(parent, "ready")

    @staticmethod
    def _expect(pipe, name: str):
        if not pipe.poll(CLIENT_TIMEOUT_S):
            raise TimeoutError(f"a subscriber process did not answer {name!r}")
        reply = pipe.recv()
        if reply[0] == "error":
            raise RuntimeError(f"subscriber process failed:\n{reply[1]}")
        if reply[0] != name:
            raise RuntimeError(f"subscriber process answered {reply[0]!r}, expected {name!r}")
        return reply[1] if len(reply) > 1 else None

    def pids(self) -> dict[str, int]:
        return {f"ws-{kind}-{k}": process.pid for k, (kind, process, _) in enumerate(self.processes)}

    def start(self) -> None:
        for _, _, pipe in self.processes:
            pipe.send(("start",))
        for _, _, pipe in self.processes:
            self._expect(pipe, "started")

    def wait_quiet(self, quiet_s: float, timeout_s: float) -> None:
        """Until the samples have received nothing for ``quiet_s``: the market data of the orders
        answered so far has all arrived (an exchange past its capacity delivers it seconds late)."""
        pipe = next(pipe for kind, _, pipe in self.processes if kind == "sample")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            pipe.send(("last",))
            last_ns = self._expect(pipe, "last")
            if time.time_ns() - last_ns >= quiet_s * 1e9:
                return
            time.sleep(quiet_s / 4)

    def stop(self) -> tuple[dict, list[dict]]:
        for _, _, pipe in self.processes:
            pipe.send(("stop",))
        stats = [(kind, self._expect(pipe, "stats")) for kind, _, pipe in self.processes]
        sample = next(s for kind, s in stats if kind == "sample")
        return sample, [s for kind, s in stats if kind == "drain"]

    def close(self) -> None:
        for _, process, pipe in self.processes:
            try:
                pipe.send(("close",))
            except (BrokenPipeError, OSError):
                pass
        for _, process, pipe in self.processes:
            process.join(10)
            if process.is_alive():
                process.terminate()
                process.join(10)


def load_settings(settings: Settings) -> LoadSettings:
    """What bench/pipeline.py's generators need (no search, no floor)."""
    return LoadSettings(rates=[], duration_s=settings.duration_s, probe_duration_s=settings.duration_s,
                        connections=settings.connections, generators=1, p99_bound_ms=1e9, keep_up=0.0,
                        precision=1.0, max_probes=0, quiet_s=1.0, max_drain_s=120.0, generator_capacity=False,
                        plot=None, warmup_s=1.0, floor_bytes=0)


def measure(rate: int, settings: Settings, generators: Generators, subscribers: Subscribers,
            exchange: Exchange, step_id: int, log) -> dict[str, Any]:
    pids = {**exchange_pids(exchange), **generators.pids(), **subscribers.pids()}
    cpu = ProcessCpu(pids)
    subscribers.start()
    before = cpu.sample()
    started = time.monotonic()
    orders_per_trade = (settings.takers_per_maker + 1) / settings.takers_per_maker
    step = generators.step("pipeline", round(rate * orders_per_trade), settings.duration_s, step_id, ProcessCpu({}))
    subscribers.wait_quiet(QUIET_S, QUIET_TIMEOUT_S)
    window_s = time.monotonic() - started - QUIET_S
    after = cpu.sample()
    sample, drains = subscribers.stop()
    latencies_us = sample["latencies_us"]
    histogram = histogram_of(latencies_us) if len(latencies_us) else None
    per_sample_messages = sample["messages"] / max(1, sample["connections"])
    per_sample_bytes = sample["bytes"] / max(1, sample["connections"])
    drain_bytes = [b for d in drains for b in d["bytes"]]
    cpu_pct = {name: round((after[name] - before[name]) / window_s * 100, 1) for name in after if name in before}
    trades_seen = sample["trades"] / max(1, sample["connections"])

    def pct(p: float) -> float | None:
        return round(histogram.get_value_at_percentile(p) / 1000, 2) if histogram else None

    out = {
        "rate_trades_per_s": rate,
        "orders_per_s_offered": round(rate * orders_per_trade),
        "orders_per_s_achieved": round(step.achieved_per_s),
        # the order path's rate over the time until the last order was answered (an exchange past its
        # capacity takes longer than the planned duration to trade them all), in trades
        "trades_per_s_achieved": round(step.achieved_per_s / orders_per_trade),
        "trades_seen_per_sample": round(trades_seen),
        "latency_samples": int(len(latencies_us)),
        "p50_ms": pct(50), "p90_ms": pct(90), "p99_ms": pct(99), "p999_ms": pct(99.9),
        "max_ms": round(histogram.get_max_value() / 1000, 2) if histogram else None,
        "messages_per_s": round(per_sample_messages * settings.subscribers / window_s),
        "messages_per_s_per_subscriber": round(per_sample_messages / window_s, 1),
        "sample_bytes_per_connection": round(per_sample_bytes),
        "drain_bytes_min": min(drain_bytes) if drain_bytes else None,
        "drain_bytes_max": max(drain_bytes) if drain_bytes else None,
        "closed_connections": sample["closed"] + sum(d["closed"] for d in drains),
        "depth_breaks": sample["depth_breaks"], "trade_breaks": sample["trade_breaks"],
        "pusher_cpu_pct": cpu_pct.get("pusher"),
        "cpu_pct": cpu_pct,
        "order_p99_ms": round(step.percentile(99) / 1000, 1) if step.answered else None,
        "lost_orders": step.lost,
        "window_s": round(window_s, 2),
    }
    log(f"{rate:>7,d} trades/s offered: achieved {out['trades_per_s_achieved']:>7,d}/s  "
        f"p50 {out['p50_ms']} ms  p99 {out['p99_ms']} ms  p99.9 {out['p999_ms']} ms  "
        f"messages {out['messages_per_s']:,}/s  pusher cpu {out['pusher_cpu_pct']}%  "
        f"closed {out['closed_connections']}  breaks {out['depth_breaks'] + out['trade_breaks']}")
    return out


def run(settings: Settings, log) -> dict[str, Any]:
    started = time.monotonic()
    # The floor, before anything else runs: one round of sends to as many loopback TCP connections.
    floor = fanout.measure(settings.subscribers)
    log(f"fan-out floor: one send to each of {floor['connections']:,} connections takes {floor['round_ms']} ms")

    def configure(document: dict) -> None:
        document["sequencer"]["journal_map_bytes"] = default_document()["sequencer"]["journal_map_bytes"]
        document["sequencer"]["durability"] = Durability.PROCESS.value
        document["pusher"].update(ping_interval_s=3600, ping_timeout_s=3600,
                                  max_connections=settings.subscribers + 100)

    rows: list[dict[str, Any]] = []
    with Exchange(configure=configure) as exchange:
        subscribers = generators = None
        try:
            log(f"exchange up in {exchange.home}; {settings.connections} accounts, "
                f"{settings.subscribers} subscribers")
            bench = Bench(load_settings(settings), exchange, None, log)
            bench.create_accounts()
            max_bytes = load_config(exchange.config_path).gateway.max_message_bytes
            generators = Generators(bench.settings, bench.specs, {"pipeline": exchange.fix_endpoint()}, max_bytes,
                                    takers_per_maker=settings.takers_per_maker)
            subscribers = Subscribers(settings, exchange.document["pusher"]["port"])
            measure(min(settings.rates), settings, generators, subscribers, exchange, 1, log)  # warm-up
            for step_id, rate in enumerate(settings.rates, start=2):
                rows.append(measure(rate, settings, generators, subscribers, exchange, step_id, log))
            # The baseline, in the same run: the lowest rate again with the samples alone connected.
            subscribers.close()
            alone = dataclasses.replace(settings, subscribers=settings.samples)
            subscribers = Subscribers(alone, exchange.document["pusher"]["port"])
            log(f"baseline: {alone.subscribers} subscribers")
            baseline = measure(min(settings.rates), alone, generators, subscribers, exchange,
                               len(settings.rates) + 2, log)
        finally:
            if subscribers is not None:
                subscribers.close()
            if generators is not None:
                generators.close()
            exchange.stop()
    headline = max(rows, key=lambda r: r["rate_trades_per_s"])
    at_baseline_rate = next(r for r in rows if r["rate_trades_per_s"] == baseline["rate_trades_per_s"])
    return {
        "p50_ms": headline["p50_ms"], "p99_ms": headline["p99_ms"],
        "messages_per_s": headline["messages_per_s"], "pusher_cpu_pct": headline["pusher_cpu_pct"],
        "headline_rate_trades_per_s": headline["rate_trades_per_s"],
        "headline_trades_per_s_achieved": headline["trades_per_s_achieved"],
        "target": {"p99_ms": TARGET_P99_MS, "met": headline["p99_ms"] is not None
                   and headline["p99_ms"] <= TARGET_P99_MS and headline["trades_per_s_achieved"]
                   >= 0.97 * headline["rate_trades_per_s"]},
        "rates": rows,
        "baseline_samples_alone": baseline,
        "fan_out_ratio_p50": round(at_baseline_rate["p50_ms"] / baseline["p50_ms"], 1)
        if at_baseline_rate["p50_ms"] and baseline["p50_ms"] else None,
        "fanout_floor": floor,
        "settings": {"subscribers": settings.subscribers, "samples": settings.samples,
                     "drain_processes": settings.drain_processes, "duration_s": settings.duration_s,
                     "channels": CHANNELS, "fix_sessions": settings.connections,
                     "orders": orders_description(settings.takers_per_maker)},
        "elapsed_s": round(time.monotonic() - started, 1),
    }


def orders_description(takers_per_maker: int) -> str:
    if takers_per_maker == 1:
        return "GTC limit BTC-USDT, buys and sells crossing in pairs (2 orders a trade)"
    return (f"GTC limit BTC-USDT, a sell of {takers_per_maker} lots filled by {takers_per_maker} one-lot buys "
            f"({takers_per_maker + 1} orders for {takers_per_maker} trades)")


def main(argv: list[str] | None = None) -> int:
    settings, args = Settings.parse(argv)

    def log(text: str) -> None:
        print(text, file=sys.stderr if args.json else sys.stdout, flush=True)

    result = run(settings, log)
    if args.json:
        print(json.dumps(result))
    else:
        print(json.dumps({k: v for k, v in result.items() if k != "rates"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())


