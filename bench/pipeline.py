"""Pipeline benchmark: order latency and throughput end to end, against a bare ZeroMQ relay (the floor).

    python -m bench.pipeline            # human-readable summary (about 5 minutes)
    python -m bench.pipeline --json     # one JSON object with every figure (docs/benchmarks.md, "Pipeline")
    python -m bench.pipeline --quick    # tiny rates and durations: a smoke test

What runs, all on this machine and all in one run:

1. **The exchange**, as operators start it (``tests/harness.Exchange``: ``python -m common.launch``, i.e.
   supervisord running the sequencer, the engine, one gateway and the bootstrap), in a temporary
   directory, with ipc endpoints and ``process`` durability (the default). The admin key the bootstrap
   writes creates ``--connections`` accounts through the admin protocol (AdminRequest) and funds them.
2. **The floor** (bench/relay.py): three relay processes on the same hops, socket types and high-water
   marks as the gateway, the sequencer and the engine, forwarding every message and doing nothing else.
3. **The load generator** (bench/loadgen.py): ``--generators`` processes holding ``--connections``
   DEALER connections to each target (logged-on sessions for the exchange). Open loop: send times are
   planned at the rate before a step starts, and an order's latency runs from its planned send time to
   the receipt of its first ExecutionReport (the floor: of its echo). Latencies go into HdrHistograms.

Each order is one NewOrderSingle, a GTC limit order of the minimum size at one price; even accounts buy
and odd ones sell, so orders cross in pairs, the book stays bounded, and every order gets two
ExecutionReports (New, then Trade filled). A step of the exchange is followed by one of the floor at the
same rate. After the fixed rates (``--rates``), the maximum sustained rate of each is found by doubling
and then bisecting: the highest rate at which every order is answered, none is rejected, the answers keep
up with the schedule (achieved rate >= ``--keep-up`` x the rate) and p99 stays under ``--p99-bound-ms``.
At the exchange's maximum both run once more (the ``max_sustained`` row), and the generator's own
maximum is found against a ZeroMQ echo written in C (``bench.relay --role echo``).

At the end the exchange is stopped (SIGTERM to supervisord, by pid) and its journal is read
(``common.journal.Journal``): every acknowledged order, by (account, ClOrdID), must be in it exactly once.
A PNG plots latency by percentile, exchange against floor, per rate (``--plot``).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import zmq
from hdrh.histogram import HdrHistogram

from bench.loadgen import (
    ACKNOWLEDGED,
    ANSWERED,
    FILLED,
    REJECTED,
    ConnectionSpec,
    OrderTerms,
    group_size,
    worker_main,
)
from common.config import Durability, default_document, load_config
from common.journal import Journal
from common.records import CommandKind

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # tests/ is not an installed package: the harness is found from the source tree
    sys.path.insert(0, str(ROOT))
from tests.harness import Exchange, to_toml  # noqa: E402

DEFAULT_PLOT = ROOT / "docs" / "pipeline-latency.png"
SYMBOL = "BTC-USDT"
PRICE = "50000"  # x the minimum lot (0.0001) = 5 USDT, the symbol's minimum notional
QTY = "0.0001"
FUNDS = {"USDT": "1000000000", "BTC": "100000"}  # per account: far more than any run spends
HIGHEST_US = 3_600_000_000  # the histograms' range: 1 us .. 1 hour
SIGNIFICANT_FIGURES = 3
PLOT_PERCENTILES = (0, 10, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 99.95, 99.99, 99.995, 99.999)
RELAY_START_TIMEOUT_S = 30.0
WORKER_TIMEOUT_S = 600.0
SETTLE_S = 0.2  # pause between steps, so one step's tail does not overlap the next one's start
START_LEAD_S = 0.2  # t0 is this far after every generator is prepared


# --- settings and results -------------------------------------------------------------------------------


@dataclass
class Settings:
    rates: list[int]
    duration_s: float
    probe_duration_s: float
    connections: int
    generators: int
    p99_bound_ms: float
    keep_up: float
    precision: float
    max_probes: int
    quiet_s: float
    max_drain_s: float
    generator_capacity: bool
    plot: Path | None
    warmup_s: float
    profile_dir: Path | None = None
    floor_bytes: int | None = None

    @classmethod
    def parse(cls, argv: list[str] | None) -> tuple["Settings", argparse.Namespace]:
        parser = argparse.ArgumentParser(prog="python -m bench.pipeline", description=__doc__.splitlines()[0])
        parser.add_argument("--json", action="store_true", help="print one JSON object")
        parser.add_argument("--quick", action="store_true", help="tiny rates and durations (smoke test)")
        parser.add_argument("--rates", help="comma-separated orders/s (default 1000,10000,50000)")
        parser.add_argument("--duration", type=float, help="seconds per fixed-rate step (default 5)")
        parser.add_argument("--probe-duration", type=float, help="seconds per search step (default: --duration)")
        parser.add_argument("--connections", type=int, help="client connections per target (default 32)")
        parser.add_argument("--generators", type=int, help="load generator processes (default 1)")
        parser.add_argument("--p99-bound-ms", type=float, default=100.0,
                            help="p99 above this fails a step of the search (default 100)")
        parser.add_argument("--keep-up", type=float, default=0.97,
                            help="achieved/offered rate below this fails a step of the search (default 0.97)")
        parser.add_argument("--floor-bytes", type=int, default=None,
                            help="pad the floor's (and echo's) frames to this size (default: the mean "
                                 "ExecutionReport size of the warm-up; 0: the order frame as it is)")
        parser.add_argument("--precision", type=float, help="stop bisecting at hi/lo <= 1 + this (default 0.05)")
        parser.add_argument("--max-probes", type=int, help="search steps per maximum at most (default 10)")
        parser.add_argument("--no-generator-capacity", action="store_true",
                            help="skip the generator's own maximum (against the C echo)")
        parser.add_argument("--plot", default=str(DEFAULT_PLOT), help="PNG path ('' for none)")
        parser.add_argument("--profile", metavar="DIR",
                            help="also run py-spy on every process during one extra step at the maximum")
        args = parser.parse_args(argv)
        quick = args.quick
        rates = [int(r) for r in args.rates.split(",")] if args.rates else ([200, 1000] if quick else
                                                                            [1000, 10_000, 50_000])
        duration = args.duration or (1.0 if quick else 5.0)
        settings = cls(
            rates=rates,
            duration_s=duration,
            probe_duration_s=args.probe_duration or (1.0 if quick else duration),
            connections=args.connections or (8 if quick else 32),
            generators=args.generators or 1,
            p99_bound_ms=args.p99_bound_ms,
            keep_up=args.keep_up,
            precision=args.precision or (0.5 if quick else 0.05),
            max_probes=args.max_probes or (2 if quick else 10),
            quiet_s=1.0 if quick else 2.0,
            max_drain_s=60.0 if quick else 120.0,
            generator_capacity=not args.no_generator_capacity,
            plot=Path(args.plot) if args.plot else None,
            warmup_s=0.5 if quick else 2.0,
            profile_dir=Path(args.profile) if args.profile else None,
            floor_bytes=args.floor_bytes,
        )
        if settings.connections < 2 or settings.connections % 2:
            parser.error("--connections must be even (buyers and sellers) and at least 2")
        if not 1 <= settings.generators <= settings.connections:
            parser.error("--generators must be between 1 and --connections")
        return settings, args


@dataclass
class Step:
    """One step: ``count`` orders offered at ``rate`` to one target, and what came back."""

    target: str
    rate: int
    duration_s: float
    count: int
    step_id: int
    latencies_us: np.ndarray  # per answered order
    answered: int
    acknowledged: int
    filled: int
    rejected: int
    lost: int
    achieved_per_s: float
    send_lag_p99_us: float
    generator_cpu_us_per_order: float
    cpu: dict[str, float]  # share of one core per process over the step
    request_bytes: float  # mean size of an order's frame
    answer_bytes: float  # mean size of an answering frame (ExecutionReport, echo)
    other_frames: dict[str, int]
    histogram: HdrHistogram = field(repr=False)
    acknowledged_orders: np.ndarray = field(repr=False)  # global order indices
    planned_offsets_us: np.ndarray = field(repr=False, default=None)  # per answered order, from t0

    def percentile(self, p: float) -> float:
        return float(self.histogram.get_value_at_percentile(p)) if self.answered else math.nan

    def passed(self, settings: Settings) -> bool:
        return (self.lost == 0 and self.rejected == 0 and self.answered == self.count
                and self.achieved_per_s >= settings.keep_up * self.rate
                and self.percentile(99) <= settings.p99_bound_ms * 1000)

    def summary(self) -> dict[str, Any]:
        return {
            "target": self.target, "rate": self.rate, "orders": self.count, "duration_s": self.duration_s,
            "achieved_per_s": round(self.achieved_per_s), "p50_us": self.percentile(50),
            "p90_us": self.percentile(90), "p99_us": self.percentile(99), "p999_us": self.percentile(99.9),
            "max_us": float(self.histogram.get_max_value()) if self.answered else math.nan,
            "answered": self.answered, "acknowledged": self.acknowledged, "filled": self.filled,
            "rejected": self.rejected, "lost": self.lost, "send_lag_p99_us": round(self.send_lag_p99_us, 1),
            "generator_cpu_us_per_order": round(self.generator_cpu_us_per_order, 2),
            "cpu": {name: round(share, 2) for name, share in self.cpu.items()},
            "request_bytes": round(self.request_bytes), "answer_bytes": round(self.answer_bytes),
            "other_frames": self.other_frames,
        }


def histogram_of(latencies_us: np.ndarray) -> HdrHistogram:
    histogram = HdrHistogram(1, HIGHEST_US, SIGNIFICANT_FIGURES)
    values, counts = np.unique(np.clip(latencies_us, 1, HIGHEST_US), return_counts=True)
    for value, count in zip(values.tolist(), counts.tolist()):
        histogram.record_value(value, count)
    return histogram


# --- processes ------------------------------------------------------------------------------------------


class ProcessCpu:
    """CPU seconds (all threads, user + system) of named processes, sampled around a step."""

    def __init__(self, pids: dict[str, int]):
        self.processes = {}
        for name, pid in pids.items():
            try:
                self.processes[name] = psutil.Process(pid)
            except psutil.NoSuchProcess:
                pass

    def sample(self) -> dict[str, float]:
        out = {}
        for name, process in self.processes.items():
            try:
                times = process.cpu_times()
                out[name] = times.user + times.system
            except psutil.NoSuchProcess:
                pass
        return out


def exchange_pids(exchange: Exchange) -> dict[str, int]:
    """The pids of the exchange's programs, found under supervisord (restarts give new pids)."""
    pids = {}
    for child in psutil.Process(exchange.process.pid).children(recursive=True):
        try:
            command = " ".join(child.cmdline())
        except psutil.NoSuchProcess:
            continue
        for program in ("gateway", "sequencer", "engine", "quotation", "pusher"):
            if f"-m {program}.main" in command:
                # gateways by their index: the FIX one is gateway (index 0), others gateway-<index>
                index = command.split("--index ")[1].split()[0] if "--index " in command else "0"
                pids[program if index == "0" else f"{program}-{index}"] = child.pid
    return pids


class Floor:
    """The three relays (and the echo) in a temporary directory, each its own process."""

    def __init__(self):
        self.home = Path(tempfile.mkdtemp(prefix="floor-"))
        ipc = lambda name: f"ipc://{self.home}/{name}.sock"  # noqa: E731
        self.config_path = self._write_config("floor.toml", ipc("fix"), ipc)
        self.echo_config_path = self._write_config("echo.toml", ipc("echo"), ipc)
        self.fix = ipc("fix")
        self.echo = ipc("echo")
        self.processes: dict[str, subprocess.Popen] = {}
        self._logs: list[Any] = []

    def _write_config(self, name: str, fix: str, ipc) -> Path:
        document = default_document()
        document["engine"].update(reports=ipc("reports"), queries=ipc("queries"))
        document["sequencer"].update(intake=ipc("intake"), stream=ipc("stream"), replay=ipc("replay"))
        document["gateway"]["instances"] = [{"id": 1, "name": "gw-1", "fix": fix}]
        document["paths"] = {"data_dir": str(self.home / "data"), "log_dir": str(self.home / "log")}
        path = self.home / name
        path.write_text(to_toml(document))
        load_config(path)  # fail early
        return path

    def start(self) -> None:
        for role in ("sequencer", "engine", "gateway", "echo"):
            config = self.echo_config_path if role == "echo" else self.config_path
            log = open(self.home / f"relay-{role}.log", "wb")
            self._logs.append(log)
            self.processes[role] = subprocess.Popen(
                [sys.executable, "-m", "bench.relay", "--role", role, "--config", str(config)],
                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        for endpoint in (self.fix, self.echo):
            self._wait_for_echo(endpoint)

    def _wait_for_echo(self, endpoint: str) -> None:
        """Send a probe until it comes back: every hop is connected and subscribed (PUB/SUB joins late)."""
        context = zmq.Context.instance()
        sock = context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(endpoint)
        deadline = time.monotonic() + RELAY_START_TIMEOUT_S
        try:
            while time.monotonic() < deadline:
                for role, process in self.processes.items():
                    if process.poll() is not None:
                        raise RuntimeError(f"relay {role} exited with {process.returncode}: {self.output()}")
                sock.send(b"probe")
                if sock.poll(100):
                    sock.recv()
                    while sock.poll(200):  # the probes sent before the path was complete
                        sock.recv()
                    return
            raise TimeoutError(f"the floor at {endpoint} did not echo within {RELAY_START_TIMEOUT_S} s")
        finally:
            sock.close()

    def pids(self, *roles: str) -> dict[str, int]:
        return {f"relay-{role}": self.processes[role].pid for role in roles if role in self.processes}

    def output(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}" for p in self.home.glob("*.log"))

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        for log in self._logs:
            log.close()
        shutil.rmtree(self.home, ignore_errors=True)


class Generators:
    """The load generator processes (bench/loadgen.py), spawned, driven over pipes."""

    def __init__(self, settings: Settings, specs: list[ConnectionSpec], endpoints: dict[str, str],
                 max_message_bytes: int, *, takers_per_maker: int = 1):
        self.settings = settings
        self.context = multiprocessing.get_context("spawn")
        self.workers: list[tuple[Any, Any]] = []
        count = settings.generators
        terms = self.terms = OrderTerms(symbol=SYMBOL, price=PRICE, qty=QTY, takers_per_maker=takers_per_maker)
        for k in range(count):
            parent, child = self.context.Pipe()
            options = dict(worker=k, workers=count, connections=[s for s in specs if s.index % count == k],
                           endpoints=endpoints, terms=terms, max_message_bytes=max_message_bytes)
            process = self.context.Process(target=worker_main, args=(child, options), name=f"loadgen-{k}")
            process.start()
            child.close()
            self.workers.append((process, parent))
        for process, pipe in self.workers:
            self._expect(pipe, "ready")

    def _expect(self, pipe, name: str, timeout: float = WORKER_TIMEOUT_S):
        if not pipe.poll(timeout):
            raise TimeoutError(f"a load generator did not answer {name!r} within {timeout} s")
        reply = pipe.recv()
        if reply[0] == "error":
            raise RuntimeError(f"load generator failed:\n{reply[1]}")
        if reply[0] != name:
            raise RuntimeError(f"load generator answered {reply[0]!r}, expected {name!r}")
        return reply[1] if len(reply) > 1 else None

    def pids(self) -> dict[str, int]:
        return {f"loadgen-{k}": process.pid for k, (process, _) in enumerate(self.workers)}

    def keepalive(self) -> None:
        for _, pipe in self.workers:
            pipe.send(("keepalive",))
        for _, pipe in self.workers:
            self._expect(pipe, "ok")

    def step(self, target: str, rate: int, duration_s: float, step_id: int, cpu: ProcessCpu) -> Step:
        settings = self.settings
        group = group_size(self.terms)  # whole groups: every buy meets its sell
        count = max(group, int(round(rate * duration_s)) // group * group)
        self.keepalive()
        wall_t0 = time.time_ns() + int(1e9)  # SendingTime only: roughly when each order is planned
        for _, pipe in self.workers:
            pipe.send(("prepare", dict(target=target, step=step_id, rate=rate, count=count,
                                       connections=settings.connections, wall_t0_ns=wall_t0,
                                       pad_to=settings.floor_bytes or 0)))
        for _, pipe in self.workers:
            self._expect(pipe, "prepared")
        t0 = time.monotonic_ns() + int(START_LEAD_S * 1e9)
        before = cpu.sample()
        for _, pipe in self.workers:
            pipe.send(("run", dict(t0_ns=t0, quiet_s=settings.quiet_s, max_drain_s=settings.max_drain_s)))
        results = [self._expect(pipe, "result") for _, pipe in self.workers]
        after = cpu.sample()
        period_ns = 1e9 / rate
        orders = np.concatenate([r.orders for r in results])
        first = np.concatenate([r.first_ns for r in results])
        sent = np.concatenate([r.sent_ns for r in results])
        flags = np.concatenate([r.flags for r in results])
        planned = t0 + (orders * period_ns).astype(np.int64)
        answered_mask = (flags & ANSWERED) != 0
        latencies_us = (first[answered_mask] - planned[answered_mask]) // 1000
        answered = int(answered_mask.sum())
        end_ns = int(first[answered_mask].max()) if answered else t0
        wall_s = max(1e-9, (end_ns - t0) / 1e9)
        loop_s = max(r.loop_s for r in results)
        other: Counter = Counter()
        for r in results:
            other.update(r.other)
        return Step(
            target=target, rate=rate, duration_s=duration_s, count=count, step_id=step_id,
            latencies_us=latencies_us, answered=answered,
            acknowledged=int(((flags & ACKNOWLEDGED) != 0).sum()), filled=int(((flags & FILLED) != 0).sum()),
            rejected=int(((flags & REJECTED) != 0).sum()), lost=count - answered,
            achieved_per_s=answered / wall_s if answered else 0.0,
            send_lag_p99_us=float(np.percentile(sent - planned, 99)) / 1000 if len(sent) else 0.0,
            generator_cpu_us_per_order=sum(r.cpu_s for r in results) / count * 1e6,
            cpu={**{name: (after[name] - before[name]) / loop_s for name in after if name in before},
                 "loadgen": sum(r.cpu_s for r in results) / loop_s},
            other_frames=dict(other), histogram=histogram_of(latencies_us),
            request_bytes=sum(r.sent_bytes for r in results) / count,
            answer_bytes=sum(r.answer_bytes for r in results) / max(1, sum(r.answer_frames for r in results)),
            acknowledged_orders=orders[(flags & ACKNOWLEDGED) != 0],
            planned_offsets_us=(planned[answered_mask] - t0) // 1000,
        )

    def close(self) -> None:
        for process, pipe in self.workers:
            try:
                pipe.send(("stop",))
            except (BrokenPipeError, OSError):
                pass
        for process, pipe in self.workers:
            process.join(10)
            if process.is_alive():
                process.terminate()
                process.join(10)
            pipe.close()


# --- the run --------------------------------------------------------------------------------------------


class Bench:
    def __init__(self, settings: Settings, exchange: Exchange, floor: Floor, log):
        self.settings = settings
        self.exchange = exchange
        self.floor = floor
        self.log = log
        self.step_ids = 0
        self.steps: list[Step] = []
        self.specs: list[ConnectionSpec] = []
        self.generators: Generators | None = None

    # setup

    def create_accounts(self) -> None:
        from client.sync import Client

        admin = self.exchange.admin_credentials()
        with Client(self.exchange.fix_endpoint(), admin["key_id"], admin["secret"], timeout=30) as client:
            client.logon()
            for index in range(self.settings.connections):
                created = client.admin_create_account(request_id=f"bench-account-{index}")
                for currency, amount in FUNDS.items():
                    client.admin_deposit(created.account, currency, amount,
                                         request_id=f"bench-account-{index}-{currency}")
                self.specs.append(ConnectionSpec(index=index, account=created.account, key_id=created.key_id,
                                                 secret=created.secret))

    def start_generators(self) -> None:
        endpoints = {"pipeline": self.exchange.fix_endpoint(), "floor": self.floor.fix, "echo": self.floor.echo}
        max_bytes = load_config(self.exchange.config_path).gateway.max_message_bytes
        self.generators = Generators(self.settings, self.specs, endpoints, max_bytes)

    def cpu_meter(self, target: str) -> ProcessCpu:
        pids: dict[str, int] = {}
        if target == "pipeline":
            pids.update(exchange_pids(self.exchange))
        elif target == "floor":
            pids.update(self.floor.pids("gateway", "sequencer", "engine"))
        else:
            pids.update(self.floor.pids("echo"))
        return ProcessCpu(pids)

    # steps

    def step(self, target: str, rate: int, duration_s: float, *, record: bool = True) -> Step:
        self.step_ids += 1
        time.sleep(SETTLE_S)
        step = self.generators.step(target, rate, duration_s, self.step_ids, self.cpu_meter(target))
        if record:
            self.steps.append(step)
        s = step.summary()
        self.log(f"{target:8s} {rate:>8,d}/s x {duration_s:g} s: achieved {s['achieved_per_s']:>8,d}/s  "
                 f"p50 {s['p50_us']:>9,.0f} us  p99 {s['p99_us']:>9,.0f} us  p99.9 {s['p999_us']:>9,.0f} us  "
                 f"lost {step.lost}  rejected {step.rejected}  "
                 f"{'ok' if step.passed(self.settings) else 'FAILS'}  cpu {s['cpu']}")
        return step

    def find_max(self, target: str, known: dict[int, bool]) -> tuple[int, list[dict]]:
        """The highest passing rate: double from the highest known pass until a failure, then bisect
        (geometrically) until hi/lo <= 1 + precision. ``known`` maps rates already run to pass/fail."""
        settings = self.settings
        probes: list[dict] = []

        def probe(rate: int) -> bool:
            step = self.step(target, rate, settings.probe_duration_s)
            ok = step.passed(settings)
            known[rate] = ok
            probes.append({"rate": rate, "passed": ok, "achieved_per_s": round(step.achieved_per_s),
                           "p99_us": step.percentile(99), "lost": step.lost, "rejected": step.rejected})
            return ok

        def bounds() -> tuple[int | None, int | None]:
            passing = [r for r, ok in known.items() if ok]
            lo = max(passing) if passing else None
            failing = [r for r, ok in known.items() if not ok and (lo is None or r > lo)]
            return lo, (min(failing) if failing else None)

        lo, hi = bounds()
        while len(probes) < settings.max_probes:
            if lo is None:
                rate = max(100, (hi or settings.rates[0]) // 2)
            elif hi is None:
                rate = lo * 2
            elif hi / lo > 1 + settings.precision:
                rate = round_rate(math.sqrt(lo * hi))
                if rate in (lo, hi):
                    break
            else:
                break
            probe(rate)
            lo, hi = bounds()
        return (lo or 0), probes

    def generator_capacity(self) -> dict[str, Any]:
        """The generator's maximum against the C echo (one answer per order, as the floor gives)."""
        known: dict[int, bool] = {}
        for rate in self.settings.rates:
            known[rate] = self.step("echo", rate, self.settings.probe_duration_s).passed(self.settings)
        best, probes = self.find_max("echo", known)
        return {"max_sustained_per_s": best, "probes": probes}

    def profile(self, rate: int, directory: Path) -> dict[str, str]:
        """py-spy on the exchange's processes during one step at ``rate`` (raw collapsed stacks)."""
        directory.mkdir(parents=True, exist_ok=True)
        py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        duration = max(2, int(self.settings.probe_duration_s))
        recorders, files = [], {}
        for name, pid in {**exchange_pids(self.exchange), **self.generators.pids()}.items():
            path = directory / f"{name}.txt"
            files[name] = str(path)
            recorders.append(subprocess.Popen(
                [py_spy, "record", "--pid", str(pid), "--duration", str(duration + 2), "--rate", "200",
                 "--format", "raw", "--output", str(path), "--nonblocking"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(1.0)  # py-spy attaches
        self.step("pipeline", rate, duration, record=False)
        for recorder in recorders:
            try:
                recorder.wait(30)
            except subprocess.TimeoutExpired:
                recorder.kill()
                recorder.wait(10)
        return files


def round_rate(rate: float) -> int:
    """A rate rounded to two significant digits (and at least 100/s)."""
    if rate < 100:
        return 100
    magnitude = 10 ** (int(math.log10(rate)) - 1)
    return int(round(rate / magnitude) * magnitude)


def journal_check(exchange: Exchange, steps: list[Step], specs: list[ConnectionSpec]) -> dict[str, int]:
    """Every acknowledged order, by (account, ClOrdID), found in the journal exactly once."""
    connections = len(specs)
    accounts = [spec.account for spec in specs]
    acknowledged = set()
    for step in steps:
        if step.target == "pipeline":
            for order in step.acknowledged_orders.tolist():
                acknowledged.add((accounts[order % connections], f"{step.step_id}.{order}"))
    config = load_config(exchange.config_path)
    seen: Counter = Counter()
    new = int(CommandKind.NEW)
    journal = Journal(config.paths.journal_dir, map_bytes=config.sequencer.journal_map_bytes,
                      durability=Durability.PROCESS, readonly=True)
    try:
        for batch in journal.iterate(chunk=65_536):
            kinds = batch.records["kind"].tolist()
            record_accounts = batch.records["account"].tolist()
            for kind, account, envelope in zip(kinds, record_accounts, batch.envelopes):
                if kind == new:
                    seen[(account, envelope.clordid)] += 1
        batches = journal.batch_count()
        commands = journal.last_seq() - journal.first_seq() + 1 if journal.last_seq() else 0
    finally:
        journal.close()
    once = sum(1 for key in acknowledged if seen.get(key) == 1)
    return {"acknowledged": len(acknowledged), "journaled_once": once,
            "journaled_twice_or_more": sum(1 for key in acknowledged if seen.get(key, 0) > 1),
            "acknowledged_not_journaled": sum(1 for key in acknowledged if key not in seen),
            "journal_new_orders": sum(seen.values()),
            "journal_commands_per_batch": round(commands / batches, 1) if batches else 0.0}


def plot(path: Path, rows: list[tuple[str, Step, Step | None]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(10, 6))
    x = [-math.log10(1 - p / 100) if p < 100 else 6 for p in PLOT_PERCENTILES]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, (label, pipeline, floor) in enumerate(rows):
        color = colors[index % len(colors)]
        for step, style, name in ((pipeline, "-", "exchange"), (floor, "--", "floor")):
            if step is None or not step.answered:
                continue
            y = [max(1, step.percentile(p)) for p in PLOT_PERCENTILES]
            axes.plot(x, y, style, color=color, marker="o", markersize=3, label=f"{name} {label}")
    ticks = [0, 1, 2, 3, 4, 5]
    axes.set_xticks(ticks)
    axes.set_xticklabels(["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"])
    axes.set_yscale("log")
    axes.set_xlabel("percentile")
    axes.set_ylabel("latency, planned send to first ExecutionReport (us)")
    axes.set_title("Order latency by percentile: exchange (solid) vs bare ZeroMQ relay floor (dashed)")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8, ncol=2)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def row(label: str, rate: int, pipeline: Step, floor: Step | None) -> dict[str, Any]:
    out = {"rate": rate, "label": label,
           "p50_us": pipeline.percentile(50), "p99_us": pipeline.percentile(99),
           "p999_us": pipeline.percentile(99.9), "achieved_per_s": round(pipeline.achieved_per_s),
           "lost": pipeline.lost, "rejected": pipeline.rejected}
    if floor is not None:
        out.update(floor_p50_us=floor.percentile(50), floor_p99_us=floor.percentile(99),
                   floor_p999_us=floor.percentile(99.9), floor_achieved_per_s=round(floor.achieved_per_s),
                   floor_lost=floor.lost)
        out["p50_ratio"] = round(out["p50_us"] / out["floor_p50_us"], 2) if out["floor_p50_us"] else None
        out["p99_ratio"] = round(out["p99_us"] / out["floor_p99_us"], 2) if out["floor_p99_us"] else None
    return out


def run(settings: Settings, log) -> dict[str, Any]:
    started = time.monotonic()

    def configure(document: dict) -> None:
        document["sequencer"]["journal_map_bytes"] = default_document()["sequencer"]["journal_map_bytes"]
        document["sequencer"]["durability"] = Durability.PROCESS.value

    result: dict[str, Any] = {}
    floor = Floor()
    bench = None
    with Exchange(configure=configure) as exchange:
        try:
            log(f"exchange up in {exchange.home}; creating {settings.connections} accounts")
            bench = Bench(settings, exchange, floor, log)
            bench.create_accounts()
            floor.start()
            bench.start_generators()
            warmup = bench.step("pipeline", settings.rates[0], settings.warmup_s, record=False)
            if settings.floor_bytes is None:  # the floor's frames as large as an ExecutionReport
                settings.floor_bytes = round(warmup.answer_bytes)
            bench.step("floor", settings.rates[0], settings.warmup_s, record=False)

            pairs: list[tuple[int, Step, Step]] = []
            known: dict[str, dict[int, bool]] = {"pipeline": {}, "floor": {}}
            for rate in settings.rates:
                pipeline = bench.step("pipeline", rate, settings.duration_s)
                floor_step = bench.step("floor", rate, settings.duration_s)
                known["pipeline"][rate] = pipeline.passed(settings)
                known["floor"][rate] = floor_step.passed(settings)
                pairs.append((rate, pipeline, floor_step))
            best, pipeline_probes = bench.find_max("pipeline", known["pipeline"])
            floor_best, floor_probes = bench.find_max("floor", known["floor"])
            rows = [row(f"{rate:,}/s", rate, p, f) for rate, p, f in pairs]
            plot_rows = [(f"{rate:,}/s", p, f) for rate, p, f in pairs]
            if best:
                at_max = bench.step("pipeline", best, settings.duration_s)
                floor_at_max = bench.step("floor", best, settings.duration_s)
                rows.append(row("max sustained", best, at_max, floor_at_max))
                plot_rows.append((f"{best:,}/s (max)", at_max, floor_at_max))
            generator = bench.generator_capacity() if settings.generator_capacity else None
            profile = bench.profile(best or settings.rates[0], settings.profile_dir) if settings.profile_dir else None
        finally:
            if bench is not None and bench.generators is not None:
                bench.generators.close()
            floor.stop()
            exchange.stop()
        journal = journal_check(exchange, bench.steps, bench.specs)

    pipeline_steps = [s for s in bench.steps if s.target == "pipeline"]
    lost = sum(s.lost for s in pipeline_steps)
    ten_k = next((r for r in rows if r["rate"] == 10_000 and r["label"] != "max sustained"), None)
    targets = {
        "p50_vs_floor_at_10k": ten_k["p50_ratio"] if ten_k else None, "p50_limit": 1.5,
        "p99_vs_floor_at_10k": ten_k["p99_ratio"] if ten_k else None, "p99_limit": 2.0,
        "max_vs_floor_max": round(best / floor_best, 3) if floor_best else None, "max_limit": 0.5,
    }
    targets["met"] = bool(
        ten_k and targets["p50_vs_floor_at_10k"] is not None and targets["p50_vs_floor_at_10k"] <= 1.5
        and targets["p99_vs_floor_at_10k"] is not None and targets["p99_vs_floor_at_10k"] <= 2.0
        and targets["max_vs_floor_max"] is not None and targets["max_vs_floor_max"] >= 0.5 and lost == 0)
    if settings.plot is not None:
        plot(settings.plot, plot_rows)
    cpu_per_order = [s.generator_cpu_us_per_order for s in pipeline_steps if s.count >= 1000]
    result.update(
        rates=rows,
        max_sustained_per_s=best,
        floor_max_sustained_per_s=floor_best,
        acknowledged=journal["acknowledged"],
        journaled_once=journal["journaled_once"],
        lost=lost,
        rejected=sum(s.rejected for s in pipeline_steps),
        orders_sent=sum(s.count for s in pipeline_steps),
        journal=journal,
        targets=targets,
        generator={
            "processes": settings.generators,
            "max_sustained_per_s_against_c_echo": generator["max_sustained_per_s"] if generator else None,
            "cpu_us_per_order_median": round(float(np.median(cpu_per_order)), 2) if cpu_per_order else None,
            "probes": generator["probes"] if generator else None,
        },
        search={"pipeline": pipeline_probes, "floor": floor_probes,
                "rule": f"every order answered, none rejected, achieved >= {settings.keep_up} x rate, "
                        f"p99 <= {settings.p99_bound_ms:g} ms"},
        steps=[s.summary() for s in bench.steps],
        settings={"rates": settings.rates, "duration_s": settings.duration_s,
                  "probe_duration_s": settings.probe_duration_s, "connections": settings.connections,
                  "generators": settings.generators, "durability": Durability.PROCESS.value,
                  "floor_frame_bytes": settings.floor_bytes, "p99_bound_ms": settings.p99_bound_ms,
                  "keep_up": settings.keep_up, "precision": settings.precision,
                  "order": f"GTC limit {SYMBOL} {QTY} @ {PRICE}, buys and sells crossing in pairs"},
        plot=str(settings.plot) if settings.plot else None,
        profile=profile,
        elapsed_s=round(time.monotonic() - started, 1),
    )
    return result


def main(argv: list[str] | None = None) -> int:
    settings, args = Settings.parse(argv)
    quiet = args.json

    def log(text: str) -> None:
        print(text, file=sys.stderr if quiet else sys.stdout, flush=True)

    result = run(settings, log)
    if args.json:
        print(json.dumps(result, default=_json_default))
    else:
        print_summary(result)
    return 0


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    raise TypeError(f"not JSON: {value!r}")


def print_summary(result: dict[str, Any]) -> None:
    print()
    print(f"{'rate':>16} {'p50 us':>9} {'p99 us':>9} {'p99.9 us':>9} {'floor p50':>10} {'floor p99':>10} "
          f"{'achieved/s':>11} {'floor ach/s':>11}")
    for r in result["rates"]:
        print(f"{r['label']:>16} {r['p50_us']:>9,.0f} {r['p99_us']:>9,.0f} {r['p999_us']:>9,.0f} "
              f"{r.get('floor_p50_us', math.nan):>10,.0f} {r.get('floor_p99_us', math.nan):>10,.0f} "
              f"{r['achieved_per_s']:>11,d} {r.get('floor_achieved_per_s', 0):>11,d}")
    print(f"max sustained: {result['max_sustained_per_s']:,}/s; floor: {result['floor_max_sustained_per_s']:,}/s")
    print(f"acknowledged {result['acknowledged']:,}, journaled once {result['journaled_once']:,}, "
          f"lost {result['lost']}, rejected {result['rejected']}")
    print(f"generator: {result['generator']}")
    print(f"targets: {result['targets']}")
    if result["plot"]:
        print(f"plot: {result['plot']}")


if __name__ == "__main__":
    sys.exit(main())
