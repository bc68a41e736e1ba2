"""Engine benchmark: throughput, single-command latency, JIT start-up, memory at capacity, reference ratio.

    python -m bench.engine            # human-readable summary
    python -m bench.engine --json     # one JSON object (the figures in docs/benchmarks.md)
    python -m bench.engine --quick    # small workloads, for a smoke test

Throughput runs the exchange-core workload (bench/workloads.py) through a fresh engine per run, in
batches as the engine process will receive them, and reports the median of the runs; after each run a
"floor" (a jitted loop that only copies each command into an event record) runs on the same stream, so
the ratio of the two is comparable across runs on a shared, noisy machine. Latency times each
command alone inside a jitted loop with the CPU's cycle counter (timer overhead subtracted). Start-up and
memory are measured in fresh processes. The reference engine runs a prefix of the same stream in the same
run, so the ratio is of two figures taken side by side on this machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from numba import njit

from bench import workloads
from bench.cycles import rdtsc, timer_overhead, tsc_hz
from common.records import EVENT_DTYPE, CommandKind, TimeInForce
from engine.core import Engine
from engine.kernels import BATCH_DONE, apply_batch
from engine.reference import ReferenceEngine

ROOT = Path(__file__).resolve().parent.parent


def _warm(engine: Engine, commands: np.ndarray) -> None:
    for _ in engine.process(commands):
        pass


@njit(cache=True)
def _copy_floor(commands, start, stop, events):
    """The floor: per command, read its record and write one event record; no engine work at all."""
    n = 0
    for i in range(start, stop):
        c = commands[i]
        e = events[n]
        e.seq = c.seq
        e.ts = c.ts
        e.order_id = c.order_id
        e.price = c.price
        e.qty = c.qty
        e.account = c.account
        e.kind = c.kind
        n += 1
    return n


def _timed_stream(engine: Engine, stream: np.ndarray, batch: int) -> float:
    start = time.perf_counter_ns()
    for offset in range(0, len(stream), batch):
        for _chunk in engine.process(stream[offset:offset + batch]):
            pass
    return (time.perf_counter_ns() - start) / len(stream)


def _timed_floor(stream: np.ndarray, batch: int) -> float:
    events = np.zeros(batch, dtype=EVENT_DTYPE)
    start = time.perf_counter_ns()
    for offset in range(0, len(stream), batch):
        _copy_floor(stream, offset, min(offset + batch, len(stream)), events)
    return (time.perf_counter_ns() - start) / len(stream)


def throughput_runs(workload: workloads.Workload, *, batch: int, runs: int, limit: int | None = None,
                    floor: list[float] | None = None) -> list[float]:
    """ns per command of each run: a fresh engine, the setup applied, then the stream timed. With
    ``floor``, each run is followed by the copy floor on the same stream (appended to it), so that the
    two figures see the same machine."""
    stream = workload.commands if limit is None else workload.commands[:limit]
    results = []
    _copy_floor(stream, 0, 1, np.zeros(1, dtype=EVENT_DTYPE))
    for _ in range(runs):
        engine = Engine(workload.config)
        _warm(engine, workload.setup)
        results.append(_timed_stream(engine, stream, batch))
        if floor is not None:
            floor.append(_timed_floor(stream, batch))
    return results


@njit(cache=True)
def _time_each(commands, ev, ev_words, orders, levels, bits, sym, accts, bal, supply, index, params, cycles):
    """Apply commands one kernel call each, recording each call's cycles (-1: split or grew)."""
    for i in range(commands.shape[0]):
        t0 = rdtsc()
        _, _, status = apply_batch(commands, i, i + 1, ev, ev_words, orders, levels, bits, sym, accts, bal,
                                   supply, index, params)
        cycles[i] = rdtsc() - t0 if status == BATCH_DONE else -1


def command_latencies(workload: workloads.Workload) -> dict:
    """Percentiles (ns) of single-command latency per command kind, over the whole stream: each command
    is one call of the batch kernel from a jitted loop, timed with the cycle counter."""
    engine = Engine(workload.config)
    _warm(engine, workload.setup)
    capacity = 1 << 16
    events = np.zeros(capacity, dtype=engine._events.dtype)
    words = events.view(np.int64).reshape(capacity, -1)
    cycles = np.zeros(len(workload.commands), dtype=np.int64)
    small = workload.commands[:16]
    warm_engine = Engine(workload.config)  # compile the timing loop outside the measurement
    _time_each(small, events, words, *warm_engine.arrays.kernel_args(), np.zeros(16, dtype=np.int64))
    _time_each(workload.commands, events, words, *engine.arrays.kernel_args(), cycles)
    overhead = float(np.median(timer_overhead(100_000)))
    hz = tsc_hz()
    ns = (cycles - overhead) * 1e9 / hz
    kinds = workload.commands["kind"]
    tifs = workload.commands["tif"]
    groups = {
        "gtc": (kinds == CommandKind.NEW) & (tifs == TimeInForce.GTC),
        "ioc": (kinds == CommandKind.NEW) & (tifs == TimeInForce.IOC),
        "cancel": kinds == CommandKind.CANCEL,
        "move": kinds == CommandKind.CANCEL_REPLACE,
        "all": np.ones(len(kinds), dtype=bool),
    }
    out = {"timer_overhead_cycles": overhead, "tsc_ghz": hz / 1e9, "untimed": int(np.sum(cycles < 0))}
    for name, mask in groups.items():
        sample = ns[mask & (cycles >= 0)]
        if len(sample) == 0:
            continue
        p50, p90, p99, p999 = np.percentile(sample, [50, 90, 99, 99.9])
        out[name] = {"count": int(len(sample)), "p50_ns": round(float(p50), 1), "p90_ns": round(float(p90), 1),
                     "p99_ns": round(float(p99), 1), "p999_ns": round(float(p999), 1),
                     "max_ns": round(float(sample.max()), 1)}
    return out


def trading_share(workload: workloads.Workload) -> dict:
    """What the stream does on the engine: commands that trade, rejects, events per command."""
    from common.records import EventKind

    engine = Engine(workload.config)
    _warm(engine, workload.setup)
    trading = rejected = events = 0
    for offset in range(0, len(workload.commands), 65536):
        chunk = engine.apply(workload.commands[offset:offset + 65536])
        events += len(chunk)
        trading += len(np.unique(chunk["seq"][chunk["kind"] == EventKind.TRADE]))
        rejected += int(np.sum(chunk["kind"] == EventKind.REJECTED))
    n = len(workload.commands)
    return {"trading_share": trading / n, "rejected_share": rejected / n, "events_per_command": events / n}


def reference_ns(workload: workloads.Workload, prefix: int) -> float:
    engine = ReferenceEngine(workload.config)
    engine.apply(workload.setup)
    stream = workload.commands[:prefix]
    start = time.perf_counter_ns()
    engine.apply(stream)
    return (time.perf_counter_ns() - start) / len(stream)


def _run_json_module(module: str, *args: str, env: dict | None = None, timeout: float = 600) -> tuple[dict, float]:
    start = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-m", module, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
        check=True,
    )
    wall = time.perf_counter() - start
    return json.loads(completed.stdout.strip().splitlines()[-1]), wall


def startup_times() -> dict:
    """Wall time of a fresh process that builds the default engine and applies one command: with an
    empty JIT cache (everything compiles) and then with the cache that run left."""
    with tempfile.TemporaryDirectory(prefix="numba-cache-") as cache_dir:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache_dir}
        cold, cold_wall = _run_json_module("bench.startup", env=env)
        warm_walls, warm = [], None
        for _ in range(3):
            warm, wall = _run_json_module("bench.startup", env=env)
            warm_walls.append(wall)
    return {"compile_s": cold_wall, "cached_start_s": statistics.median(warm_walls), "cold": cold, "warm": warm}


def capacity_memory(orders: int, accounts: int) -> dict:
    result, wall = _run_json_module("bench.capacity", "--orders", str(orders), "--accounts", str(accounts),
                                    timeout=1800)
    result["wall_s"] = wall
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--batch", type=int, default=1024, help="commands per call into the engine")
    parser.add_argument("--quick", action="store_true", help="small workloads and capacity (a smoke test)")
    parser.add_argument("--reference-prefix", type=int, default=20_000)
    parser.add_argument("--no-startup", action="store_true",
                        help="skip the start-up measurement (it compiles every kernel from scratch)")
    args = parser.parse_args(argv)

    core_spec = workloads.EXCHANGE_CORE
    multi_spec = workloads.MULTI_SYMBOL
    capacity = (10_000_000, 1_000_000)
    if args.quick:
        core_spec = dataclasses.replace(core_spec, commands=20_000)
        multi_spec = dataclasses.replace(multi_spec, symbols=10, accounts=2_000, commands=20_000,
                                         resting_per_symbol=200, chunk=640)
        capacity = (20_000, 2_000)
        args.reference_prefix = min(args.reference_prefix, 2_000)

    def log(message: str) -> None:
        if not args.json:
            print(message, flush=True)

    log(f"workloads: {core_spec.name} ({core_spec.commands:,} commands), {multi_spec.name} ...")
    core = workloads.load(core_spec)
    multi = workloads.load(multi_spec)
    result: dict = {"batch": args.batch, "runs": args.runs}

    log("throughput ...")
    floor: list[float] = []
    runs = throughput_runs(core, batch=args.batch, runs=args.runs, floor=floor)
    median_ns = statistics.median(runs)
    result["ns_per_command"] = round(median_ns, 2)
    result["commands_per_s"] = round(1e9 / median_ns)
    result["ns_per_command_runs"] = [round(r, 2) for r in runs]
    result["floor_ns_per_command"] = round(statistics.median(floor), 2)
    result["floor_ratio"] = round(median_ns / statistics.median(floor), 2)
    result["batch_sweep_ns_per_command"] = {
        str(b): round(statistics.median(throughput_runs(core, batch=b, runs=3)), 2) for b in (1, 64, 8192)
    }
    result["workload"] = {**core.describe(), **trading_share(core)}

    multi_runs = throughput_runs(multi, batch=args.batch, runs=args.runs)
    result["multi_symbol"] = {
        "ns_per_command": round(statistics.median(multi_runs), 2),
        "commands_per_s": round(1e9 / statistics.median(multi_runs)),
        "ns_per_command_runs": [round(r, 2) for r in multi_runs],
        "workload": {**multi.describe(), **trading_share(multi)},
    }

    log("single-command latency ...")
    result["latency"] = command_latencies(core)
    if result["latency"]["untimed"]:
        raise RuntimeError("some commands did not fit the latency loop's event buffer")

    log("reference engine on a prefix ...")
    prefix = args.reference_prefix
    fast_prefix = statistics.median(throughput_runs(core, batch=args.batch, runs=args.runs, limit=prefix))
    slow_prefix = reference_ns(core, prefix)
    result["reference"] = {"prefix_commands": prefix, "reference_ns_per_command": round(slow_prefix, 1),
                           "fast_ns_per_command": round(fast_prefix, 2)}
    result["reference_ratio"] = round(slow_prefix / fast_prefix, 1)

    if not args.no_startup:
        log("start-up (fresh processes) ...")
        startup = startup_times()
        result["compile_s"] = round(startup["compile_s"], 3)
        result["cached_start_s"] = round(startup["cached_start_s"], 3)
        result["startup_detail"] = startup

    log(f"memory at capacity ({capacity[0]:,} orders, {capacity[1]:,} accounts x 10 assets) ...")
    memory = capacity_memory(*capacity)
    result["rss_bytes_at_capacity"] = memory["rss_bytes"]
    result["capacity"] = memory

    if args.json:
        print(json.dumps(result))
    else:
        print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
