"""Engine service benchmark: what applying one live batch costs the engine process, beside the kernel's share.

    python -m bench.service            # human-readable summary
    python -m bench.service --json     # one JSON object (the figures in docs/benchmarks.md)
    python -m bench.service --quick    # fewer commands and runs, for a smoke test

The engine process applies each batch the sequencer publishes through ``EngineService.apply``: the kernel
call, the order tracking around it, and the report messages (a gateway's, a market's), which the process
then encodes and sends. Live, a batch is often one command (at 1,000 orders/s nearly always), so what a
batch costs beside its commands is on every order's path. For batches of 1, 10 and 64 commands of the
exchange-core mix (bench/workloads.py, each command with a ClOrdID, nobody listening to account topics,
as in the pipeline benchmark), this times ``apply`` plus ``encode_report`` of its messages per batch, and
in the same run the kernel alone (``Engine.process``) on the same batches: the ratio of the two is
comparable across runs on a shared, noisy machine. Medians of ``--runs`` runs, a fresh service each.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

from bench import workloads
from bench.recovery import envelopes_for
from common.records import owned_copy
from common.reports import encode_report
from common.stream import SequencedBatch
from engine.core import Engine
from engine.service import EngineService

BATCH_SIZES = (1, 10, 64)


def stream(count: int) -> tuple[workloads.Workload, np.ndarray, np.ndarray]:
    """(the workload, its setup and its first ``count`` commands, numbered from seq 1 on)."""
    workload = workloads.load(workloads.EXCHANGE_CORE)
    commands = np.concatenate([workload.setup, workload.commands[:count]])
    commands["seq"] = np.arange(1, len(commands) + 1)
    setup = len(workload.setup)
    return workload, commands[:setup], commands[setup:]


def service_run(workload: workloads.Workload, setup: np.ndarray, commands: np.ndarray, batch: int) -> float:
    """Seconds per batch of ``apply`` and the encoding of its messages, on a fresh service."""
    service = EngineService(workload.config)
    service.account_listeners = set()  # nobody subscribes to account topics (the pipeline benchmark's case)
    service.apply(SequencedBatch(1, setup, envelopes_for(setup)), report=False)
    batches = [SequencedBatch(int(commands["seq"][start]), commands[start : start + batch],
                              envelopes_for(commands[start : start + batch]))
               for start in range(0, len(commands), batch)]
    started = time.perf_counter()
    for sequenced in batches:
        for message in service.apply(sequenced):
            encode_report(message)
    return (time.perf_counter() - started) / len(batches)


def kernel_run(workload: workloads.Workload, setup: np.ndarray, commands: np.ndarray, batch: int) -> float:
    """Seconds per batch of the kernel alone on the same batches (each copied, as the service copies it)."""
    engine = Engine(workload.config)
    for _ in engine.process(owned_copy(setup)):
        pass
    parts = [commands[start : start + batch] for start in range(0, len(commands), batch)]
    started = time.perf_counter()
    for part in parts:
        for _ in engine.process(owned_copy(part)):
            pass
    return (time.perf_counter() - started) / len(parts)


def run(commands_count: int, runs: int) -> dict:
    workload, setup, commands = stream(commands_count)
    EngineService(workload.config).warm_up()  # compiled (or loaded from the cache) before anything is timed
    results = []
    for batch in BATCH_SIZES:
        service_s, kernel_s = [], []
        for _ in range(runs):
            service_s.append(service_run(workload, setup, commands, batch))
            kernel_s.append(kernel_run(workload, setup, commands, batch))
        service_us, kernel_us = statistics.median(service_s) * 1e6, statistics.median(kernel_s) * 1e6
        results.append({
            "batch": batch,
            "service_us_per_batch": round(service_us, 2),
            "service_us_per_command": round(service_us / batch, 2),
            "kernel_us_per_batch": round(kernel_us, 2),
            "service_to_kernel": round(service_us / kernel_us, 1),
            "service_us_per_batch_runs": [round(s * 1e6, 2) for s in service_s],
        })
    return {"commands": int(len(commands)), "runs": runs, "batches": results}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.service", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quick", action="store_true", help="2,000 commands, 2 runs (smoke test)")
    parser.add_argument("--commands", type=int, default=20_000, help="commands per run (default 20,000)")
    parser.add_argument("--runs", type=int, default=5, help="runs per batch size (default 5)")
    args = parser.parse_args(argv)
    result = run(2_000 if args.quick else args.commands, 2 if args.quick else args.runs)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{result['commands']:,} commands of the exchange-core mix, medians of {result['runs']} runs")
    for row in result["batches"]:
        print(f"  batch of {row['batch']:>3}: service {row['service_us_per_batch']:8.1f} us a batch "
              f"({row['service_us_per_command']:.1f} us a command), kernel {row['kernel_us_per_batch']:.1f} us, "
              f"ratio {row['service_to_kernel']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
