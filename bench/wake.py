"""What the same work costs right after the process slept: the price of waking up on this machine.

    python -m bench.wake            # a table
    python -m bench.wake --json     # one JSON object (the figures in docs/benchmarks.md)
    python -m bench.wake --quick    # few samples: a smoke test

Every process of the exchange blocks on its sockets between messages (DEVELOPERS.md: never spin), so
at low and moderate rates each message is handled by a process that has just woken up. This times two
pieces of the exchange's own per-message work, in this process, without sockets:

- ``sequencer``: the sequencer core takes one NewOrderSingle's command, journals it as a batch (one
  LMDB write transaction, ``process`` durability) and encodes the batch for the engine;
- ``protocol``: a client's NewOrderSingle decoded from msgpack and an ExecutionReport encoded
  (common/protocol.py), what the gateway does at each end of an order;

each measured back to back (warm), after a blocking sleep of 0.2, 1, 2 and 5 ms (the thread blocks, and
an idle CPU halts: what a process waiting in ``zmq.Poller.poll`` does), and after 5 ms of busy waiting
(for comparison only: the same time passes, the CPU never idles). Each figure is the median over
``--runs`` runs of the median of ``--samples`` timings; ``ratio`` is against back to back in the same run.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from common.config import Durability, load_config
from common.intake import Envelope
from common.journal import Journal
from common.protocol import decode, encode
from common.records import CommandKind, command
from common.stream import encode_batch
from sequencer.core import Sequencer

JOURNAL_MAP_BYTES = 1 << 28
WARM_UP = 2_000
# (name, seconds, how): the pauses between two timed pieces of work
PAUSES = (("back_to_back", 0.0, "none"), ("sleep_0.2ms", 0.0002, "sleep"), ("sleep_1ms", 0.001, "sleep"),
          ("sleep_2ms", 0.002, "sleep"), ("sleep_5ms", 0.005, "sleep"), ("busy_5ms", 0.005, "busy"))

NEW_ORDER = {"MsgType": "D", "MsgSeqNum": 12, "SendingTime": "20261127-02:00:00.000", "ClOrdID": "c-000001",
             "Symbol": "BTC-USDT", "Side": "1", "OrdType": "2", "Price": "30000.5", "OrderQty": "0.001",
             "TimeInForce": "1"}
EXECUTION_REPORT = {"MsgType": "8", "MsgSeqNum": 13, "SendingTime": "20261127-02:00:00.001", "OrderID": "42",
                    "ClOrdID": "c-000001", "ExecID": "42-1", "ExecType": "0", "OrdStatus": "0",
                    "Symbol": "BTC-USDT", "Side": "1", "Price": "30000.5", "OrderQty": "0.001",
                    "LeavesQty": "0.001", "CumQty": "0", "AvgPx": "0", "TransactTime": "20261127-02:00:00.001"}


def sequencer_work(directory: Path) -> tuple[Callable[[], None], Journal]:
    journal = Journal(directory / "journal", map_bytes=JOURNAL_MAP_BYTES, durability=Durability.PROCESS)
    core = Sequencer(journal, time.time_ns, max_batch=64)
    record = command(CommandKind.NEW, account=3, client_order_id=1, symbol=0, price=100, qty=1)
    counter = itertools.count()

    def work() -> None:
        core.submit(record, Envelope(1, f"c{next(counter)}"))
        batch, _ = core.seal()
        encode_batch(batch)

    return work, journal


def protocol_work_for(max_message_bytes: int) -> Callable[[], None]:
    def work() -> None:
        decode(encode(NEW_ORDER), max_bytes=max_message_bytes)
        encode(EXECUTION_REPORT)

    return work


def pause(seconds: float, how: str) -> None:
    if how == "sleep":
        time.sleep(seconds)
    elif how == "busy":
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass


def timings_us(work: Callable[[], None], seconds: float, how: str, samples: int) -> np.ndarray:
    out = np.empty(samples)
    clock = time.perf_counter_ns
    for i in range(samples):
        pause(seconds, how)
        started = clock()
        work()
        out[i] = (clock() - started) / 1000
    return out


def run(samples: int, runs: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-wake-") as directory:
        seal, journal = sequencer_work(Path(directory))
        try:
            protocol = protocol_work_for(load_config().gateway.max_message_bytes)
            works = {"sequencer": seal, "protocol": protocol}
            per_run: dict[str, dict[str, list[tuple[float, float]]]] = {
                name: {pause_name: [] for pause_name, _, _ in PAUSES} for name in works}
            for _ in range(runs):
                for name, work in works.items():
                    for _ in range(WARM_UP):
                        work()
                    for pause_name, seconds, how in PAUSES:
                        taken = timings_us(work, seconds, how, samples)
                        per_run[name][pause_name].append((float(np.median(taken)), float(np.percentile(taken, 90))))
        finally:
            journal.close()
    result: dict = {"samples": samples, "runs": runs, "work": {}}
    for name, pauses in per_run.items():
        warm = statistics.median(p50 for p50, _ in pauses["back_to_back"])
        rows = {}
        for pause_name, figures in pauses.items():
            p50 = statistics.median(p50 for p50, _ in figures)
            rows[pause_name] = {"p50_us": round(p50, 2), "p90_us": round(statistics.median(p90 for _, p90 in figures), 2),
                                "ratio": round(p50 / warm, 2), "p50_us_runs": [round(p50, 2) for p50, _ in figures]}
        result["work"][name] = rows
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.wake", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quick", action="store_true", help="few samples (smoke test)")
    parser.add_argument("--samples", type=int, help="timings per pause and run (default 600)")
    parser.add_argument("--runs", type=int, help="runs (default 3)")
    args = parser.parse_args(argv)
    samples = args.samples or (20 if args.quick else 600)
    runs = args.runs or (1 if args.quick else 3)
    result = run(samples, runs)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"medians of {runs} runs of {samples} timings each (us); ratio: against back to back")
    for name, rows in result["work"].items():
        for pause_name, row in rows.items():
            print(f"  {name:10s} {pause_name:13s} p50 {row['p50_us']:8.2f}  p90 {row['p90_us']:8.2f}  "
                  f"ratio {row['ratio']:5.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
