"""Recovery benchmark: how fast the engine replays the journal, and how long a restart takes to be live.

    python -m bench.recovery --json      # 10,000,000 commands (the first run generates them: minutes)
    python -m bench.recovery --quick     # 200,000 commands: a smoke test

1. A journal of ``--commands`` commands (the exchange-core mix of bench/workloads.py, each with a ClOrdID)
   is written to LMDB in a temporary directory, as the sequencer writes it: in batches of
   ``--journal-batch`` commands (a batch is one LMDB entry; the sequencer's batches are what arrived
   during its previous commit, see ``journal_commands_per_batch`` in ``bench.pipeline``'s output).
2. In process, the engine's recovery path: the journal read in the sequencer's replay chunks, each chunk
   applied by ``EngineService.apply`` as the engine does at start-up: with its report messages built and
   encoded for the journal's last ``engine.catch_up_reports`` commands (``--catch-up-reports``), the
   state alone for those before (account messages only for accounts someone subscribes to: none, as
   when the engine starts; ``--every-account`` builds them for every account, as when a subscriber takes
   every account topic). ``replay_commands_per_s`` is its rate over the whole journal, read included;
   ``apply_reported_commands_per_s`` and ``apply_state_only_commands_per_s`` those of the two parts
   without the read. A snapshot is taken when ``--tail``
   commands are left (the most a restart replays with ``snapshot_every_commands`` = ``--tail``).
3. The real processes: the sequencer (``python -m sequencer.main``) is started on that journal and
   waited for (``sequencer_start_s``: it reads the whole journal to rebuild its ClOrdID memory), then the
   engine (``python -m engine.main``) is started and timed until it answers a ``head`` query with the
   journal's last seq: ``recover_s_from_snapshot`` with the snapshot store in place,
   ``recover_s_journal_only`` without it. ``engine_process_replay_commands_per_s`` is the rate the
   engine logs for that start from the journal alone: the replay as the processes run it, the sequencer
   reading and sending the next chunk while the engine applies one (the engine decodes each chunk).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgpack
import numpy as np
import zmq

from bench import workloads
from common.config import Durability, ExchangeConfig, default_config, load_config
from common.heap import HeapKeeper
from common.intake import Envelopes
from common.journal import Journal
from common.reports import encode_report
from common.snapshot_store import SnapshotStore
from engine.service import EngineService, catch_up_parts
from engine.snapshot import encode

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # tests/ is not an installed package: its TOML writer is found from the tree
    sys.path.insert(0, str(ROOT))
from tests.harness import to_toml  # noqa: E402

REPLAY_CHUNK = 65_536  # what the engine asks the sequencer for per replay request
JOURNAL_BATCH = 32  # commands per journal batch by default: about what the sequencer commits at 10,000 orders/s
PROCESS_TIMEOUT_S = 1800.0
POLL_S = 0.05


def journal_commands(spec: workloads.WorkloadSpec, count: int) -> tuple[ExchangeConfig, np.ndarray]:
    workload = workloads.load(spec)
    commands = np.concatenate([workload.setup, workload.commands])[:count].copy()
    commands["seq"] = np.arange(1, len(commands) + 1)
    return workload.config, commands


def envelopes_for(records: np.ndarray) -> Envelopes:
    """An envelope per record (session 1, ClOrdID "c<seq>"), as columns: the form decoded envelopes take."""
    seqs = records["seq"].tolist()
    return Envelopes([1] * len(seqs), [f"c{seq}" for seq in seqs])


def write_journal(path: Path, commands: np.ndarray, map_bytes: int, batch: int = JOURNAL_BATCH) -> float:
    envelopes = envelopes_for(commands)
    started = time.perf_counter()
    with Journal(path, map_bytes=map_bytes, durability=Durability.PROCESS) as journal:
        for start in range(0, len(commands), batch):
            journal.append(commands[start : start + batch], envelopes[start : start + batch])
    return time.perf_counter() - started


def replay_in_process(config: ExchangeConfig, journal_path: Path, snapshot_at: int, store_path: Path,
                      map_bytes: int, log, every_account: bool = False) -> dict:
    """The whole journal through the engine's start-up path; a snapshot at ``snapshot_at``."""
    service = EngineService(config)
    # engine/main.py starts with nobody listening to account topics and follows the subscriptions.
    service.account_listeners = None if every_account else set()
    service.warm_up()
    heap = HeapKeeper()  # the collector paced as the engine paces it while it replays
    heap.recovering()
    replay_s = snapshot_s = 0.0
    applied = {False: [0, 0.0], True: [0, 0.0]}  # reports built? -> [commands, seconds] (the read aside)
    with Journal(journal_path, map_bytes=map_bytes, durability=Durability.PROCESS, readonly=True) as journal:
        head = journal.last_seq()
        first = 1
        while first <= head:
            stop = snapshot_at if first <= snapshot_at else head  # chunks end at the snapshot's seq
            count = min(REPLAY_CHUNK, stop - first + 1)
            started = time.perf_counter()
            batch = journal.read(first, count)
            for part, report in catch_up_parts(batch, head, config.engine.catch_up_reports):
                part_started = time.perf_counter()
                for message in service.apply(part, resend=True, report=report):
                    encode_report(message)
                applied[report][0] += len(part.records)
                applied[report][1] += time.perf_counter() - part_started
            heap.recovered()
            replay_s += time.perf_counter() - started
            first = batch.last + 1
            if batch.last == snapshot_at:
                started = time.perf_counter()
                with SnapshotStore(store_path, map_bytes=config.engine.snapshot_map_bytes) as store:
                    store.write(snapshot_at, encode(service, time.time_ns()), keep=config.engine.snapshots_kept)
                snapshot_s = time.perf_counter() - started
                log(f"snapshot of seq {snapshot_at} written in {snapshot_s:.2f} s")

    def rate(report: bool) -> float:
        commands, seconds = applied[report]
        return commands / seconds if seconds else 0.0

    return {"replay_s": replay_s, "replay_commands_per_s": head / replay_s, "snapshot_write_s": snapshot_s,
            "apply_reported_commands_per_s": rate(True), "apply_state_only_commands_per_s": rate(False),
            "state_hash": service.engine.state_hash()}


class Processes:
    """The sequencer and the engine as the exchange runs them, on the benchmark's data directory."""

    def __init__(self, home: Path, config_path: Path):
        self.home = home
        self.config_path = config_path
        self.config = load_config(config_path)
        self.running: list[subprocess.Popen] = []

    def start(self, module: str) -> subprocess.Popen:
        log = open(self.home / f"{module}.log", "ab")
        process = subprocess.Popen([sys.executable, "-m", module], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                   env={**os.environ, "EXCHANGE_CONFIG": str(self.config_path)})
        log.close()
        self.running.append(process)
        return process

    def wait_for_head(self, endpoint: str, request: list[bytes], parse, head: int, process: subprocess.Popen) -> None:
        context = zmq.Context.instance()
        deadline = time.monotonic() + PROCESS_TIMEOUT_S
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{process.args} exited with {process.returncode}")
            sock = context.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(endpoint)
            try:
                sock.send_multipart(request)
                if sock.poll(int(POLL_S * 1000) * 4) and parse(sock.recv_multipart()) >= head:
                    return
            finally:
                sock.close()
            time.sleep(POLL_S)
        raise TimeoutError(f"not at seq {head} within {PROCESS_TIMEOUT_S} s")

    def stop(self, process: subprocess.Popen) -> None:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        self.running.remove(process)

    def stop_all(self) -> None:
        for process in list(self.running):
            self.stop(process)


def engine_head(frames: list[bytes]) -> int:
    reply = msgpack.unpackb(frames[-1], raw=False)
    return int(reply.get("head", -1)) if reply.get("ok") else -1


def sequencer_head(frames: list[bytes]) -> int:
    header = msgpack.unpackb(frames[1])
    return int(header.get("head", -1))


_CAUGHT_UP = re.compile(r"caught up at seq (\d+): (\d+) commands replayed in [\d.]+ s \((\d+)/s\)")


def timed_engine_start(processes: Processes, head: int) -> tuple[float, int, int]:
    """Seconds from the engine's start until it answers at ``head``; then, from its log, how many commands
    it replayed and at what rate (the replay as the engine process does it: the sequencer process reads
    the journal and sends it while the engine applies the chunk before)."""
    started = time.monotonic()
    engine = processes.start("engine.main")
    processes.wait_for_head(processes.config.engine.queries, [msgpack.packb({"id": 1, "q": "head"})],
                            engine_head, head, engine)
    elapsed = time.monotonic() - started
    processes.stop(engine)
    found = _CAUGHT_UP.findall((processes.home / "engine.main.log").read_text(errors="replace"))
    if not found or int(found[-1][0]) != head:
        raise RuntimeError(f"the engine's log does not say it caught up at seq {head}")
    return elapsed, int(found[-1][1]), int(found[-1][2])


def run(commands_count: int, tail: int, log, journal_batch: int = JOURNAL_BATCH,
        every_account: bool = False, catch_up_reports: int | None = None) -> dict:
    spec = dataclasses.replace(workloads.EXCHANGE_CORE, commands=max(1, commands_count))
    log(f"workload of {commands_count:,} commands (generated once, then cached in bench/.cache)")
    _, commands = journal_commands(spec, commands_count)
    count = len(commands)
    home = Path(tempfile.mkdtemp(prefix="recovery-"))
    try:
        config_path = home / "exchange.toml"
        document = _document(spec, home)
        if catch_up_reports is not None:
            document["engine"]["catch_up_reports"] = max(0, catch_up_reports)
        config_path.write_text(to_toml(document))
        config = load_config(config_path)
        map_bytes = 1 << 30
        write_s = write_journal(config.paths.journal_dir, commands, map_bytes, journal_batch)
        del commands
        log(f"journal of {count:,} commands written in batches of {journal_batch} in {write_s:.1f} s")
        snapshot_at = max(1, count - tail)
        store = config.paths.snapshot_dir
        in_process = replay_in_process(config, config.paths.journal_dir, snapshot_at, store, map_bytes, log,
                                       every_account)
        log(f"in-process replay: {in_process['replay_commands_per_s']:,.0f} commands/s (applied with reports "
            f"{in_process['apply_reported_commands_per_s']:,.0f}/s, state only "
            f"{in_process['apply_state_only_commands_per_s']:,.0f}/s)")

        processes = Processes(home, config_path)
        try:
            started = time.monotonic()
            sequencer = processes.start("sequencer.main")
            processes.wait_for_head(config.sequencer.replay, [b"R", msgpack.packb({"from": 1, "max": 1})],
                                    sequencer_head, count, sequencer)
            sequencer_start_s = time.monotonic() - started
            log(f"sequencer up in {sequencer_start_s:.1f} s")
            from_snapshot, _, _ = timed_engine_start(processes, count)
            log(f"engine live from the snapshot in {from_snapshot:.1f} s")
            shutil.move(str(store), str(home / "snapshots-aside"))
            journal_only, process_replayed, process_rate = timed_engine_start(processes, count)
            log(f"engine live from the journal alone in {journal_only:.1f} s (it replayed {process_replayed:,} "
                f"commands at {process_rate:,}/s)")
        finally:
            processes.stop_all()
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return {
        "commands": count,
        "replay_commands_per_s": round(in_process["replay_commands_per_s"]),
        "catch_up_reports": config.engine.catch_up_reports,
        "apply_reported_commands_per_s": round(in_process["apply_reported_commands_per_s"]),
        "apply_state_only_commands_per_s": round(in_process["apply_state_only_commands_per_s"]),
        "recover_s_journal_only": round(journal_only, 2),
        "engine_process_replay_commands_per_s": process_rate,
        "recover_s_from_snapshot": round(from_snapshot, 2),
        "replayed_after_snapshot": count - snapshot_at,
        "sequencer_start_s": round(sequencer_start_s, 2),
        "snapshot_write_s": round(in_process["snapshot_write_s"], 2),
        "journal_write_s": round(write_s, 2),
        "journal_commands_per_batch": journal_batch,
        "account_messages": "every account" if every_account else "subscribed accounts (none)",
        "targets": {"replay_commands_per_s": 2_000_000, "recover_s_from_snapshot": 10.0,
                    "met": in_process["replay_commands_per_s"] >= 2_000_000 and from_snapshot < 10.0},
    }


def _document(spec: workloads.WorkloadSpec, home: Path) -> dict:
    """The workload's configuration, with ipc endpoints, no automatic snapshots and the data in ``home``."""
    document = workloads.workload_document(spec)
    ipc = lambda name: f"ipc://{home}/{name}.sock"  # noqa: E731
    document["engine"].update(reports=ipc("reports"), queries=ipc("queries"),
                              snapshot_every_commands=1 << 40, snapshot_every_s=7 * 86_400)
    document["sequencer"].update(intake=ipc("intake"), stream=ipc("stream"), replay=ipc("replay"),
                                 journal_map_bytes=1 << 30)
    document["gateway"]["instances"] = [{"id": 1, "name": "gw-1", "fix": ipc("fix")}]
    document["paths"] = {"data_dir": str(home / "data"), "log_dir": str(home / "log")}
    return document


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.recovery", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quick", action="store_true", help="200,000 commands (smoke test)")
    parser.add_argument("--commands", type=int, help="journal length (default 10,000,000)")
    parser.add_argument("--tail", type=int, help="commands after the snapshot (default: the default "
                                                  "configuration's engine.snapshot_every_commands)")
    parser.add_argument("--journal-batch", type=int, default=JOURNAL_BATCH,
                        help=f"commands per journal batch (default {JOURNAL_BATCH})")
    parser.add_argument("--every-account", action="store_true",
                        help="build every account's messages during the replay (default: subscribed ones, none)")
    parser.add_argument("--catch-up-reports", type=int, default=None, metavar="N",
                        help="engine.catch_up_reports: report messages built again for the journal's last N "
                             "commands (default: the default configuration's; the journal length: all of them)")
    args = parser.parse_args(argv)
    count = args.commands or (200_000 if args.quick else 10_000_000)
    tail = args.tail or (50_000 if args.quick else default_config().engine.snapshot_every_commands)

    def log(text: str) -> None:
        print(text, file=sys.stderr if args.json else sys.stdout, flush=True)

    result = run(count, tail, log, max(1, args.journal_batch), args.every_account, args.catch_up_reports)
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
