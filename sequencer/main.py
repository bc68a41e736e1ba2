"""The sequencer process: ``python -m sequencer.main [--config PATH]``.

Sockets (all bound here, endpoints from ``config.sequencer``):

1. ``intake`` PULL: submissions from every gateway (``common.intake``);
2. ``stream`` PUB: sequenced batches, duplicate notices and idle heartbeats (``common.stream``);
3. ``replay`` ROUTER: ranges of the journal on request (``common.stream``), how a subscriber that joined
   late or missed a batch catches up.

One loop on a ``zmq.Poller``: drain the intake without blocking (up to ``max_batch``), seal one batch
(sequenced, then journaled in one LMDB transaction), publish it and the duplicate notices. Nothing is
published before its commit. Replay requests are answered from the journal. With nothing to publish
for ``heartbeat_ms``, a heartbeat carries the last ``seq``.

SIGTERM / SIGINT: the loop stops after the batch in hand, the sockets close with a short linger, the
journal closes, the process exits 0. A failure of the journal is logged and exits 1 (the supervisor
restarts the process, which recovers from the journal).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass, fields

import numpy as np
import zmq

from common.heap import HeapKeeper
from common.signals import StopSignals
from common.config import ConfigError, ExchangeConfig, load_config
from common.intake import IntakeError, decode_submissions
from common.pauses import PauseLog
from common.journal import Journal, JournalCompacted, JournalFull
from common.records import COMMAND_DTYPE
from common.sockets import NOBLOCK, recv_frames, send_frames
from common.stream import (
    SequencedBatch,
    StreamError,
    decode_replay_request,
    encode_batch,
    encode_duplicate,
    encode_heartbeat,
    encode_refused,
)
from sequencer.core import Sequencer

log = logging.getLogger("sequencer")

STATS_INTERVAL_S = 10.0  # one log line with the counters this often
STREAM_SNDHWM = 1_000_000  # messages the PUB queues per subscriber before it drops (a slow engine replays)
CLOSE_LINGER_MS = 200  # how long closing sockets may take to flush the last messages
REPLAY_REQUESTS_PER_TURN = 64  # replay requests answered before the intake gets its turn again


@dataclass
class Counters:
    """What the periodic log line reports (reset after each line)."""

    submissions: int = 0
    batches: int = 0
    sequenced: int = 0
    duplicates: int = 0
    refused: int = 0
    malformed: int = 0
    replays: int = 0
    bad_replays: int = 0
    heartbeats: int = 0

    def line(self) -> str:
        return ", ".join(f"{f.name} {getattr(self, f.name)}" for f in fields(self))


class SequencerProcess:
    """The sockets around a :class:`Sequencer`. ``run()`` returns the exit status."""

    def __init__(self, config: ExchangeConfig):
        self.config = config
        settings = config.sequencer
        self.heartbeat_s = settings.heartbeat_ms / 1000
        self.journal = Journal(
            config.paths.journal_dir, map_bytes=settings.journal_map_bytes, durability=settings.durability,
            max_bytes=settings.journal_max_bytes,
        )
        self.sequencer = Sequencer(self.journal, time.time_ns, max_batch=settings.max_batch)
        self.counters = Counters()
        self.stopping = False
        self.heap = HeapKeeper()
        self.slow_turns = PauseLog(log, "a loop turn")

        self.context = zmq.Context()
        self.intake = self.context.socket(zmq.PULL)
        self.stream = self.context.socket(zmq.PUB)
        self.replay = self.context.socket(zmq.ROUTER)
        self.stream.setsockopt(zmq.SNDHWM, STREAM_SNDHWM)
        for sock in (self.intake, self.stream, self.replay):
            sock.setsockopt(zmq.LINGER, CLOSE_LINGER_MS)
        self.intake.bind(settings.intake)
        self.stream.bind(settings.stream)
        self.replay.bind(settings.replay)

        # Signals wake the poller through a pipe, so a stop never waits for a poll timeout.
        self.signals = StopSignals(self._on_signal)

        self.poller = zmq.Poller()
        self.poller.register(self.intake, zmq.POLLIN)
        self.poller.register(self.replay, zmq.POLLIN)
        self.poller.register(self.signals.fd, zmq.POLLIN)

    def _on_signal(self) -> None:
        self.stopping = True

    # --- the loop ------------------------------------------------------------------------------------

    def run(self) -> int:
        settings = self.config.sequencer
        log.info(
            "sequencer started: intake %s, stream %s, replay %s, journal %s (%s), last seq %d",
            settings.intake, settings.stream, settings.replay, self.journal.path, settings.durability.value,
            self.sequencer.last_seq,
        )
        now = time.monotonic()
        next_heartbeat = now + self.heartbeat_s
        next_stats = now + STATS_INTERVAL_S
        status = 0
        self.heap.started()
        try:
            while not self.stopping:
                timeout_ms = max(0.0, min(next_heartbeat, next_stats) - time.monotonic()) * 1000
                ready = dict(self.poller.poll(timeout_ms))
                turn_started = time.monotonic()
                if self.signals.fd in ready:
                    self.signals.drain()
                if self.intake in ready and self._sequence_intake():
                    next_heartbeat = time.monotonic() + self.heartbeat_s
                if self.replay in ready:
                    self._answer_replays()
                now = time.monotonic()
                self.slow_turns.took(now - turn_started)
                if now >= next_heartbeat:
                    self.stream.send_multipart(encode_heartbeat(self.sequencer.last_seq))
                    self.counters.heartbeats += 1
                    next_heartbeat = now + self.heartbeat_s
                if now >= next_stats:
                    self._log_stats()
                    next_stats = now + STATS_INTERVAL_S
                self.heap.tick(now, idle=not ready)
        except Exception:
            log.exception("sequencer failed at last seq %d", self.sequencer.last_seq)
            status = 1
        finally:
            self._close()
        log.info("sequencer stopped at last seq %d", self.sequencer.last_seq)
        return status

    def _sequence_intake(self) -> bool:
        """Take what the intake holds (up to max_batch), journal it as a batch, publish. True if
        anything was published."""
        for _ in range(self.sequencer.max_batch):
            try:
                frames = recv_frames(self.intake, NOBLOCK)
            except zmq.Again:
                break
            try:
                records, envelopes = decode_submissions(frames)
            except IntakeError as exc:
                # The gateway sends only well-formed submissions: this is a bug or a stranger. Log the
                # first of each period; the count is in the periodic line.
                if self.counters.malformed == 0:
                    log.warning("dropped a malformed submission (%d frames): %s", len(frames), exc)
                self.counters.malformed += 1
                continue
            self.counters.submissions += len(envelopes)
            self.sequencer.submit_many(records, envelopes)
        published = False
        while self.sequencer.pending:
            try:
                batch, duplicates = self.sequencer.seal()  # journaled when it returns
            except JournalFull as exc:
                # Everything journaled stays; what could not be is refused, answered with a reject.
                refused, duplicates = self.sequencer.refuse_pending(str(exc))
                if self.counters.refused == 0:
                    log.error("refusing new commands: %s", exc)
                if refused is not None:
                    self.counters.refused += len(refused.records)
                    self.stream.send_multipart(encode_refused(refused))
                for duplicate in duplicates:
                    self.stream.send_multipart(encode_duplicate(duplicate))
                    self.counters.duplicates += 1
                return True
            if batch is not None:
                send_frames(self.stream, encode_batch(batch), copy=False)
                self.counters.batches += 1
                self.counters.sequenced += len(batch.records)
                published = True
            for duplicate in duplicates:
                self.stream.send_multipart(encode_duplicate(duplicate))
                self.counters.duplicates += 1
                published = True
        return published

    def _answer_replays(self) -> None:
        for _ in range(REPLAY_REQUESTS_PER_TURN):
            try:
                frames = self.replay.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            # [identity, request...] from a DEALER; a REQ adds an empty delimiter, echoed back.
            split = 2 if len(frames) > 1 and frames[1] == b"" else 1
            route, request = frames[:split], frames[split:]
            try:
                first, max_count = decode_replay_request(request)
                answer = encode_batch(self.sequencer.replay(first, max_count))
                self.counters.replays += 1
            except JournalCompacted as exc:
                # Only an engine without a snapshot after the compaction point asks for this: it
                # cannot recover from this journal alone (docs/operations.md, "Compaction").
                log.error("replay refused: %s", exc)
                self.counters.bad_replays += 1
                head = self.sequencer.last_seq
                answer = encode_batch(SequencedBatch(first, np.empty(0, dtype=COMMAND_DTYPE), [], head=head))
            except (StreamError, OverflowError) as exc:  # OverflowError: a seq msgpack cannot carry
                if self.counters.bad_replays == 0:
                    log.warning("malformed replay request: %s", exc)
                self.counters.bad_replays += 1
                head = self.sequencer.last_seq
                answer = encode_batch(SequencedBatch(head + 1, np.empty(0, dtype=COMMAND_DTYPE), [], head=head))
            self.replay.send_multipart(route + answer, copy=False)

    def _log_stats(self) -> None:
        log.info("last seq %d; in %.0fs: %s", self.sequencer.last_seq, STATS_INTERVAL_S, self.counters.line())
        self.counters = Counters()

    def _close(self) -> None:
        for sock in (self.intake, self.replay, self.stream):
            sock.close()
        self.context.term()
        self.journal.close()
        self.signals.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sequencer.main", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="configuration file (default: $EXCHANGE_CONFIG, else the packaged one)")
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    return SequencerProcess(config).run()


if __name__ == "__main__":
    sys.exit(main())
