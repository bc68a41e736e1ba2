"""The engine process: ``python -m engine.main`` (configuration from ``$EXCHANGE_CONFIG``).

Sockets, every endpoint from the configuration:

    SUB     connects sequencer.stream   sequenced batches, heartbeats, duplicate notices (common/stream.py)
    DEALER  connects sequencer.replay   journal ranges on request
    XPUB    binds engine.reports        report messages (common/reports.py); the subscriptions it
                                        receives say which account topics anyone listens to
    ROUTER  binds engine.queries        order status, open orders, balances, resends, head

1. Start-up is recovery: compile the kernels, connect the SUB first (what arrives meanwhile is kept),
   then replay the journal from the first sequence number not applied until the replay says it is at
   the head. What is replayed at start-up is published like live traffic, its gateway items marked as
   possible resends (PossResend): the engine cannot know what it published before it stopped, and a
   command journaled while no engine ran must still get its answer.
2. Live: a batch already applied is skipped; one that starts after the next seq, a heartbeat or a
   duplicate notice naming a later seq, makes the engine fill the gap by replay first. A duplicate
   notice is answered with the original outcome. Consecutive batches waiting in the stream are applied
   as one (their reports then come as one message per topic). Between stream messages, at most
   ``QUERIES_PER_TURN`` queries are answered, so matching never waits long behind them.
3. Anything malformed or inconsistent (a replay that does not answer in ``REPLAY_TIMEOUT_S`` or does not
   start where asked, a stream message that does not decode) is logged and the process exits with
   status 1; supervisord restarts it and start-up recovers the state from the journal.
4. SIGTERM or SIGINT: the batch being applied is finished, the sockets close, the exit status is 0.
"""

from __future__ import annotations

import gc
import logging
import math
import os
import secrets
import signal
import sys
import time
from collections import deque

import msgpack
import numpy as np
import zmq

from common.heap import HeapKeeper
from common.intake import Envelopes
from common.pauses import PauseLog
from common.signals import StopSignals
from common.config import ExchangeConfig, load_config
from common.records import COMMAND_DTYPE
from common.sockets import NOBLOCK, recv_frames, send_frames
from common.reports import (
    ReportError,
    ReportMessage,
    account_of_topic,
    covers_every_account,
    decode_query,
    encode_report,
)
from common.snapshot_store import SnapshotStore
from common.stream import (
    Duplicate,
    Heartbeat,
    Refused,
    SequencedBatch,
    StreamError,
    decode,
    encode_replay_request,
)
from engine import snapshot
from engine.pacing import MarketPacer
from engine.service import EngineService, StreamInconsistency, catch_up_parts
from engine.snapshot import load_newest

log = logging.getLogger("engine")

REPLAY_TIMEOUT_S = 10.0  # a replay request unanswered this long: the sequencer is gone, exit
REPLAY_CHUNK = 65_536  # commands asked for per replay request
STATUS_INTERVAL_S = 10.0  # one log line this often
SUBSCRIPTIONS_PER_TURN = 1024  # subscription messages read from the XPUB per loop turn at most
QUERIES_PER_TURN = 64  # queries answered between two rounds of stream messages at most
STREAM_PER_TURN = 256  # stream messages taken between two rounds of queries at most
MERGED_BATCH_MAX = 8192  # commands of consecutive stream batches applied as one at most
PENDING_MAX = 100_000  # stream messages kept while a replay runs; older ones are dropped (a gap, refilled)
SUB_RCVHWM = 100_000
PUB_SNDHWM = 1_000_000
LINGER_MS = 200
REPORT_HEARTBEAT_S = 1.0  # a quiet engine repeats each gateway topic's last n this often
SNAPSHOT_WATCH_S = 0.05  # while a snapshot is written, the loop looks this often whether it is done
SNAPSHOT_REAP_POLL_S = 0.01  # how often a stopping engine looks whether its snapshot writer is done
SNAPSHOT_STOP_WAIT_S = 5.0  # a stopping engine waits this long for a snapshot being written
# The writer compresses the whole state (about 2 s of a core at capacity): at the lowest priority it takes
# the CPU the exchange leaves instead of stalling matching on a busy machine (at 7,500 orders/s on two
# cores a writer at the default priority held the engine's batches up 50 - 100 ms for two seconds).
SNAPSHOT_WRITER_NICE = 19


class Fatal(Exception):
    """The stream or the replay is not what it must be: exit non-zero and recover on restart."""


class Stopping(Exception):
    """SIGTERM arrived while waiting for a replay."""


class SnapshotWriter:
    """Takes a snapshot every ``snapshot_every_commands`` commands, or every ``snapshot_every_s`` seconds
    when anything was applied, in a forked child: the child has the state as it was at the fork (the
    kernel copies pages only as the parent changes them) and writes it at leisure, while the parent
    matches on. The parent pauses only for the fork itself. One snapshot at a time."""

    def __init__(self, config: ExchangeConfig):
        self.config = config
        self.every_commands = config.engine.snapshot_every_commands
        self.every_s = config.engine.snapshot_every_s
        self.pid: int | None = None
        self.seq = 0  # the seq of the snapshot being written
        self.since = 0  # commands applied since the last snapshot began
        self.last_at = time.monotonic()
        self.written = self.failed = 0

    def applied(self, count: int) -> None:
        self.since += count

    def wake_at(self, now: float) -> float:
        """When the loop must look again: soon while a writer runs, at the snapshot's time otherwise."""
        if self.pid is not None:
            return now + SNAPSHOT_WATCH_S
        if self.since > 0:
            return self.last_at + self.every_s
        return math.inf

    def due(self, now: float) -> bool:
        return self.pid is None and self.since > 0 and (
            self.since >= self.every_commands or now - self.last_at >= self.every_s)

    def start(self, service: EngineService) -> None:
        began = time.perf_counter()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            _write_snapshot_and_exit(self.config, service)
        self.pid, self.seq = pid, service.last_seq
        self.since, self.last_at = 0, time.monotonic()
        log.info("snapshot of seq %d: writer %d forked in %.1f ms", self.seq, pid,
                 (time.perf_counter() - began) * 1000)

    def reap(self, *, wait_s: float = 0.0) -> None:
        """Collect the writer if it has finished (waiting up to ``wait_s``)."""
        deadline = time.monotonic() + wait_s
        while self.pid is not None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                code = os.waitstatus_to_exitcode(status)
                if code == 0:
                    self.written += 1
                    log.info("snapshot of seq %d written", self.seq)
                else:
                    self.failed += 1
                    log.error("snapshot writer of seq %d failed (exit status %d)", self.seq, code)
                self.pid = None
                return
            if time.monotonic() >= deadline:
                return
            time.sleep(SNAPSHOT_REAP_POLL_S)


def _write_snapshot_and_exit(config: ExchangeConfig, service: EngineService) -> None:
    """The forked writer: drop what belongs to the parent (its sockets, its signal handlers), write the
    snapshot in its own LMDB environment, and exit without running any of the parent's clean-up."""
    status = 1
    try:
        gc.disable()  # collecting would touch (and so copy) pages of the parent's heap for nothing
        os.nice(SNAPSHOT_WRITER_NICE)
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        for fd in os.listdir("/proc/self/fd") if os.path.isdir("/proc/self/fd") else ():
            if int(fd) > 2:  # the parent's sockets: a restarted engine must be able to bind them
                try:
                    os.close(int(fd))
                except OSError:
                    pass
        payload = snapshot.encode(service, time.time_ns())
        with SnapshotStore(config.paths.snapshot_dir, map_bytes=config.engine.snapshot_map_bytes) as store:
            store.write(service.last_seq, payload, keep=config.engine.snapshots_kept)
        status = 0
    except BaseException:  # noqa: BLE001 - the child must never return into the parent's loop
        log.exception("snapshot writer failed")
    finally:
        os._exit(status)


class EngineProcess:
    def __init__(self, config: ExchangeConfig):
        self.config = config
        self.service = EngineService(config)
        self.snapshots = SnapshotWriter(config)
        self.stopping = False
        self.heap = HeapKeeper()
        self.slow_batches = PauseLog(log, "applying a batch")
        self.pending: deque[list[bytes]] = deque(maxlen=PENDING_MAX)
        self.context = zmq.Context()
        self.sub = self.replay_socket = self.pub = self.router = None
        # counters for the status line
        self.batches = self.commands = self.skipped = self.replays = self.duplicates = self.queries = 0
        self.refused = 0  # commands the sequencer could not journal, answered with a reject
        self.overflowed = 0  # stream messages dropped from a full ``pending`` (each a gap, refilled)
        self._status_at = time.monotonic()
        self._status_commands = 0
        self._heartbeat_at = math.inf
        self._listened_accounts: set[int] = set()  # exact account topics subscribed to
        self._every_account = 0  # subscriptions that cover every account topic
        # Live, market messages leave at most once per interval (engine/pacing.py); the catch-up's go at once.
        self.market_pacer = MarketPacer(config.engine.market_interval_us * 1000)
        self._pacing = False

    # --- sockets ------------------------------------------------------------------------------------

    def open(self) -> None:
        cfg = self.config
        self.sub = self.context.socket(zmq.SUB)
        self.sub.setsockopt(zmq.RCVHWM, SUB_RCVHWM)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"")
        self.sub.connect(cfg.sequencer.stream)
        self.replay_socket = self.context.socket(zmq.DEALER)
        self.replay_socket.connect(cfg.sequencer.replay)
        self.pub = self.context.socket(zmq.XPUB)
        self.pub.setsockopt(zmq.SNDHWM, PUB_SNDHWM)
        self.pub.bind(cfg.engine.reports)
        self.router = self.context.socket(zmq.ROUTER)
        self.router.bind(cfg.engine.queries)
        for sock in (self.sub, self.replay_socket, self.pub, self.router):
            sock.setsockopt(zmq.LINGER, LINGER_MS)

        self.live_poller = zmq.Poller()
        self.live_poller.register(self.sub, zmq.POLLIN)
        self.live_poller.register(self.pub, zmq.POLLIN)
        self.live_poller.register(self.router, zmq.POLLIN)
        self.live_poller.register(self.signals.fd, zmq.POLLIN)
        self.replay_poller = zmq.Poller()
        self.replay_poller.register(self.replay_socket, zmq.POLLIN)
        self.replay_poller.register(self.sub, zmq.POLLIN)
        self.replay_poller.register(self.signals.fd, zmq.POLLIN)

    def close(self) -> None:
        for sock in (self.sub, self.replay_socket, self.pub, self.router):
            if sock is not None:
                sock.close(linger=LINGER_MS)
        self.context.term()
        self.signals.close()

    def install_signal_handlers(self) -> None:
        self.signals = StopSignals(self._on_signal)

    def _on_signal(self) -> None:
        self.stopping = True

    # --- running ------------------------------------------------------------------------------------

    def run(self) -> int:
        started = time.monotonic()
        log.info("engine starting (config %s)", self.config.source)
        self.restore()
        self.service.warm_up()
        log.info("kernels ready in %.1f s", time.monotonic() - started)
        self.open()
        self.service.account_listeners = self._listened_accounts  # nobody, until subscriptions arrive
        try:
            self.catch_up()
            if not self.stopping:
                if self.config.engine.pretouch:
                    touched = time.monotonic()
                    self.service.pretouch()
                    log.info("arrays mapped in %.2f s", time.monotonic() - touched)
                log.info("live at seq %d", self.service.last_seq)
                self.heap.started()
                self._status_at = time.monotonic()
                self.live()
        except Stopping:
            pass
        except Fatal as exc:
            log.error("%s; exiting for a restart", exc)
            return 1
        finally:
            self.snapshots.reap(wait_s=SNAPSHOT_STOP_WAIT_S)
        log.info("stopped at seq %d", self.service.last_seq)
        return 0

    def restore(self) -> None:
        """Start from the newest snapshot that verifies (or from nothing: the whole journal is replayed)."""
        started = time.monotonic()
        with SnapshotStore(self.config.paths.snapshot_dir, map_bytes=self.config.engine.snapshot_map_bytes) as store:
            self.service, seq = load_newest(self.config, store)
        self.service.epoch = secrets.randbits(62)  # report counters start again: common/reports.py
        if seq:
            log.info("restored the snapshot of seq %d in %.2f s", seq, time.monotonic() - started)
        else:
            log.info("no snapshot to restore: replaying the journal from seq 1")

    def catch_up(self) -> None:
        started = last_log = time.monotonic()
        applied = 0
        self.heap.recovering()
        first = self.service.last_seq + 1
        self._ask_replay(first, REPLAY_CHUNK)
        while True:
            if self.stopping:
                return
            self._follow_subscriptions()
            batch = self._await_replay(first, REPLAY_CHUNK)
            if batch.head is None:
                raise Fatal("a replay answer without the journal head")
            if len(batch.records) == 0:
                if batch.head >= first:
                    raise Fatal(f"replay from seq {first} returned nothing while the head is {batch.head}")
                break
            if batch.last < batch.head:  # the sequencer reads the next chunk while this one is applied
                first = batch.last + 1
                self._ask_replay(first, REPLAY_CHUNK)
            for part, report in catch_up_parts(batch, batch.head, self.config.engine.catch_up_reports):
                self._apply(part, resend=True, report=report)
            self.heap.recovered()
            applied += len(batch.records)
            now = time.monotonic()
            if now - last_log >= STATUS_INTERVAL_S:
                last_log = now
                log.info("catching up: seq %d of %d, %.0f commands/s", self.service.last_seq, batch.head,
                         applied / (now - started))
            if self.service.last_seq >= batch.head:
                break
        elapsed = time.monotonic() - started
        log.info("caught up at seq %d: %d commands replayed in %.1f s (%.0f/s)", self.service.last_seq, applied,
                 elapsed, applied / elapsed if elapsed > 0 else 0.0)

    def live(self) -> None:
        self._publish(self.service.heartbeats())
        self._heartbeat_at = time.monotonic() + REPORT_HEARTBEAT_S
        self._pacing = True
        try:
            self._live_loop()
        finally:
            self._pacing = False
            self._send(self.market_pacer.drain(time.monotonic_ns()))

    def _live_loop(self) -> None:
        while not self.stopping:
            now = time.monotonic()
            wake_at = min(self._status_at + STATUS_INTERVAL_S, self._heartbeat_at, self.snapshots.wake_at(now))
            market_due_ns = self.market_pacer.due_ns()
            if market_due_ns is not None:
                wake_at = min(wake_at, market_due_ns / 1e9)
            timeout_ms = 0 if self.pending else max(0, int((wake_at - now) * 1000)) + 1
            ready = dict(self.live_poller.poll(timeout_ms))
            if self.signals.fd in ready:
                self.signals.drain()
            if self.pub in ready:
                self._follow_subscriptions()
            if self.sub in ready:
                self._receive_stream()
            self._handle_pending()
            self._send(self.market_pacer.release(time.monotonic_ns()))
            if self.router in ready:
                self._answer_queries()
            self._maybe_log_status()
            now = time.monotonic()
            self.snapshots.reap()
            if self.snapshots.due(now):
                self.snapshots.start(self.service)
            if now >= self._heartbeat_at:
                self._publish(self.service.heartbeats())
                self._heartbeat_at = now + REPORT_HEARTBEAT_S
            self.heap.tick(now, idle=not ready)

    def _follow_subscriptions(self) -> None:
        """Read the subscription messages of the XPUB: ``\\x01`` + prefix on the first subscription to a
        prefix, ``\\x00`` + prefix when its last subscriber leaves (or disconnects). Only the account
        topics listened to get messages built (EngineService.account_listeners)."""
        for _ in range(SUBSCRIPTIONS_PER_TURN):
            try:
                frame = self.pub.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            if not frame or frame[0] not in (0, 1):
                continue
            subscribed, prefix = frame[0] == 1, frame[1:]
            if covers_every_account(prefix):
                self._every_account += 1 if subscribed else -1
                continue
            account = account_of_topic(prefix)
            if account is None:
                continue
            if subscribed:
                self._listened_accounts.add(account)
            else:
                self._listened_accounts.discard(account)
        self.service.account_listeners = None if self._every_account > 0 else self._listened_accounts

    def _receive_stream(self) -> None:
        for _ in range(STREAM_PER_TURN):
            try:
                frames = recv_frames(self.sub, NOBLOCK)
            except zmq.Again:
                break
            if len(self.pending) == PENDING_MAX:
                self.overflowed += 1
            self.pending.append(frames)

    def _handle_pending(self) -> None:
        """Up to STREAM_PER_TURN pending stream messages, in stream order. Consecutive batches that
        continue each other are applied as one (up to MERGED_BATCH_MAX commands): under load the cost
        of a kernel call and of the report messages is shared by all of them."""
        run: list[SequencedBatch] = []
        run_commands = 0
        for _ in range(STREAM_PER_TURN):
            if not self.pending or self.stopping:
                break
            message = self._decode(self.pending.popleft())
            if isinstance(message, SequencedBatch):
                if run and (message.first != run[-1].last + 1 or run_commands + len(message.records) > MERGED_BATCH_MAX):
                    self.handle(_merged(run))
                    run, run_commands = [], 0
                run.append(message)
                run_commands += len(message.records)
                continue
            if run:
                self.handle(_merged(run))
                run, run_commands = [], 0
            self.handle(message)
        if run:
            self.handle(_merged(run))

    @staticmethod
    def _decode(frames: list[bytes]) -> SequencedBatch | Heartbeat | Duplicate | Refused:
        try:
            return decode(frames)
        except StreamError as exc:
            raise Fatal(f"stream: {exc}") from None

    def handle(self, message: SequencedBatch | Heartbeat | Duplicate | Refused) -> None:
        """One stream message, in stream order."""
        if isinstance(message, SequencedBatch):
            if message.last <= self.service.last_seq:
                self.skipped += 1
                return
            if message.first > self.service.last_seq + 1:
                self.fill_gap(message.first - 1)
            last = self.service.last_seq
            if message.first <= last:  # the replay ended inside this batch: apply its rest
                cut = last + 1 - message.first
                message = SequencedBatch(last + 1, message.records[cut:], message.envelopes[cut:])
            self._apply(message)
        elif isinstance(message, Heartbeat):
            if message.last > self.service.last_seq:
                self.fill_gap(message.last)
        elif isinstance(message, Duplicate):
            if message.last > self.service.last_seq:
                self.fill_gap(message.last)
            self.duplicates += 1
            self._publish(self.service.duplicate(message))
        elif isinstance(message, Refused):
            if message.last > self.service.last_seq:
                self.fill_gap(message.last)
            self.refused += len(message.records)
            self._publish(self.service.refused(message))

    def fill_gap(self, target: int) -> None:
        """Replay until ``target`` is applied."""
        while self.service.last_seq < target:
            first = self.service.last_seq + 1
            batch = self.replay(first, min(target - first + 1, REPLAY_CHUNK))
            if len(batch.records) == 0:
                raise Fatal(f"the stream announced seq {target}, the replay has nothing from seq {first}")
            self._apply(batch)
        self.replays += 1

    def replay(self, first: int, count: int) -> SequencedBatch:
        """Ask the sequencer for ``count`` commands from ``first``; keep the stream meanwhile."""
        self._ask_replay(first, count)
        return self._await_replay(first, count)

    def _ask_replay(self, first: int, count: int) -> None:
        send_frames(self.replay_socket, encode_replay_request(first, count))

    def _await_replay(self, first: int, count: int) -> SequencedBatch:
        """The answer to the request of ``count`` commands from ``first`` (the one asked last)."""
        deadline = time.monotonic() + REPLAY_TIMEOUT_S
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Fatal(f"the replay did not answer a request from seq {first} within {REPLAY_TIMEOUT_S} s")
            ready = dict(self.replay_poller.poll(int(remaining * 1000) + 1))
            if self.signals.fd in ready:
                self.signals.drain()
                if self.stopping:
                    raise Stopping()
            if self.sub in ready:
                self._receive_stream()
            if self.replay_socket in ready:
                frames = self.replay_socket.recv_multipart()
                try:
                    answer = decode(frames)
                except StreamError as exc:
                    raise Fatal(f"replay: {exc}") from None
                if not isinstance(answer, SequencedBatch):
                    raise Fatal(f"replay answered with a {type(answer).__name__}, not a batch")
                if len(answer.records) and answer.first != first:
                    raise Fatal(f"replay asked from seq {first} answered from seq {answer.first}")
                if len(answer.records) > count:
                    raise Fatal(f"replay asked for {count} commands answered {len(answer.records)}")
                return answer

    def _apply(self, batch: SequencedBatch, *, resend: bool = False, report: bool = True) -> None:
        started = time.perf_counter()
        try:
            messages = self.service.apply(batch, resend=resend, report=report)
        except StreamInconsistency as exc:
            raise Fatal(str(exc)) from None
        if not resend:
            self.slow_batches.took(time.perf_counter() - started,
                                   f"{batch.first}..{batch.last}, {len(batch.records)} commands")
        self.batches += 1
        self.commands += len(batch.records)
        self.snapshots.applied(len(batch.records))
        self._publish(messages)

    def _publish(self, messages: list[ReportMessage]) -> None:
        if self._pacing:
            messages = self.market_pacer.take(messages, time.monotonic_ns())
        self._send(messages)

    def _send(self, messages: list[ReportMessage]) -> None:
        for message in messages:
            send_frames(self.pub, encode_report(message))
        if messages:
            self._heartbeat_at = time.monotonic() + REPORT_HEARTBEAT_S

    def _answer_queries(self) -> None:
        for _ in range(QUERIES_PER_TURN):
            try:
                frames = self.router.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self.queries += 1
            if len(frames) < 2:
                log.warning("a query of %d frame(s) from %r: not answered", len(frames), frames[:1])
                continue
            try:
                reply = self.service.query(decode_query(frames[1:]))
            except ReportError as exc:
                reply = {"id": None, "ok": False, "error": str(exc)}
            self.router.send_multipart([*frames[:-1], msgpack.packb(reply, use_bin_type=True)])

    def _maybe_log_status(self) -> None:
        now = time.monotonic()
        if now - self._status_at < STATUS_INTERVAL_S:
            return
        rate = (self.commands - self._status_commands) / (now - self._status_at)
        log.info("seq %d: %d batches, %d commands (%.0f/s), %d skipped, %d gaps refilled, %d duplicates, "
                 "%d queries, %d stream messages overflowed", self.service.last_seq, self.batches, self.commands,
                 rate, self.skipped, self.replays, self.duplicates, self.queries, self.overflowed)
        self._status_at, self._status_commands = now, self.commands


def _merged(batches: list[SequencedBatch]) -> SequencedBatch:
    """Consecutive batches as one (the records' bytes joined: np.concatenate is slow on record arrays)."""
    if len(batches) == 1:
        return batches[0]
    records = np.frombuffer(b"".join(b.records.tobytes() for b in batches), dtype=COMMAND_DTYPE)
    return SequencedBatch(batches[0].first, records, Envelopes.join(b.envelopes for b in batches))


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        stream=sys.stderr)
    process = EngineProcess(load_config())
    process.install_signal_handlers()
    try:
        return process.run()
    finally:
        process.close()


if __name__ == "__main__":
    sys.exit(main())
