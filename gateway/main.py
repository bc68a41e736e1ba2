"""The gateway process: ``python -m gateway.main --name gw-1`` (or ``--index 0``) [--config PATH].

The instance (its id, name and FIX endpoint) comes from ``config.gateway.instances``; an instance with
``http`` instead of ``fix`` is the REST API and web UI (gateway/http.py). A FIX gateway's sockets:

1. ``fix`` ROUTER, bound: one DEALER per client connection (docs/protocol.md). ROUTER_MANDATORY is on,
   so a send to a client that went away fails at once (EHOSTUNREACH) instead of vanishing: the session
   ends and what it was owed goes to the account's other sessions. A client that does not read (its
   queue full) is treated the same way. Frames far beyond ``gateway.max_message_bytes`` make ZeroMQ
   drop the connection (MAXMSGSIZE); the others over the limit are refused unread with a Reject.
2. ``sequencer.intake`` PUSH, connected: commands (common/intake.py). IMMEDIATE: with no sequencer
   connected a send fails at once and the client is told EXCHANGE_CLOSED, rather than queueing orders.
3. ``engine.reports`` SUB, connected, subscribed to this gateway's topic (common/reports.py).
4. ``engine.queries`` DEALER, connected: order status, open orders, balances, report resends.

One loop on a ``zmq.Poller`` with the core's timer (``GatewayCore.tick_interval_ns``): each ready socket
is drained without blocking (a bounded number of messages per turn), every message goes through the pure
core (gateway/core.py), and the core's actions are carried out in order.

SIGTERM / SIGINT: the loop finishes the messages in hand, every session gets a Logout, the sockets close
with a short linger, and the process exits 0.
"""

from __future__ import annotations

import argparse
import errno
import logging
import sys
import time

import zmq

from common.heap import HeapKeeper
from common.signals import StopSignals
from common.config import ConfigError, ExchangeConfig, GatewayInstance, load_config
from common.credentials import CredentialStore
from common.intake import encode_submissions
from common.pauses import PauseLog
from common.protocol import encode
from common.reports import ReportError, decode_query, decode_report, encode_query
from common.sockets import NOBLOCK, recv_frames, send_frames
from gateway.core import Action, GatewayCore, Query, Submit, ToClient

log = logging.getLogger("gateway")

MESSAGES_PER_TURN = 1024  # per socket and loop turn, so that no socket starves the others
CLIENT_SNDHWM = 10_000  # messages queued to one client; a client that far behind is disconnected
INTAKE_SNDHWM = 100_000  # commands queued to the sequencer during a burst before EXCHANGE_CLOSED
REPORTS_RCVHWM = 1_000_000  # report messages queued from the engine before the SUB drops (then: resend)
CLOSE_LINGER_MS = 200  # how long closing sockets may take to flush the last messages
HARD_SIZE_FACTOR = 4  # frames above this many times max_message_bytes drop the connection unread
STATS_INTERVAL_S = 10.0
# Commands taken from clients go to the sequencer together, one message per loop turn (common/intake.py):
# a send costs about 10 us of system calls and wake-ups on both sides, whatever it carries. A long turn
# sends every this many, so that the first command of a burst does not wait for the whole turn.
SUBMITS_PER_MESSAGE = 64


class GatewayProcess:
    """The sockets around a :class:`GatewayCore`. ``run()`` returns the exit status."""

    def __init__(self, config: ExchangeConfig, instance: GatewayInstance):
        self.config = config
        self.instance = instance
        self.credentials = CredentialStore.open(config)
        self.core = GatewayCore(config, instance, self.credentials, clock=time.time_ns)
        self.stopping = False
        self.heap = HeapKeeper()
        # Logged every STATS_INTERVAL_S: loop turns; client messages taken; commands submitted and the
        # submissions (messages to the sequencer) carrying them; report messages from the engine; reports
        # sent to clients and the sends (multipart messages) carrying them; failures of either.
        self.counters = {"turns": 0, "client": 0, "submitted": 0, "submissions": 0, "reports": 0, "sent": 0,
                         "sends": 0, "unreachable": 0, "submit_failed": 0}
        self._submits: list[Submit] = []  # taken this turn, not sent yet (_flush_submits)
        self.slow_turns = PauseLog(log, "a loop turn")

        self.context = zmq.Context()
        self.fix = self.context.socket(zmq.ROUTER)
        self.fix.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.fix.setsockopt(zmq.MAXMSGSIZE, HARD_SIZE_FACTOR * config.gateway.max_message_bytes)
        self.fix.setsockopt(zmq.SNDHWM, CLIENT_SNDHWM)
        self.intake = self.context.socket(zmq.PUSH)
        self.intake.setsockopt(zmq.IMMEDIATE, 1)
        self.intake.setsockopt(zmq.SNDHWM, INTAKE_SNDHWM)
        self.reports = self.context.socket(zmq.SUB)
        self.reports.setsockopt(zmq.RCVHWM, REPORTS_RCVHWM)
        self.reports.setsockopt(zmq.SUBSCRIBE, self.core.topic)
        self.queries = self.context.socket(zmq.DEALER)
        self.queries.setsockopt(zmq.IMMEDIATE, 1)
        for sock in (self.fix, self.intake, self.reports, self.queries):
            sock.setsockopt(zmq.LINGER, CLOSE_LINGER_MS)
        self.fix.bind(instance.fix)
        self.intake.connect(config.sequencer.intake)
        self.reports.connect(config.engine.reports)
        self.queries.connect(config.engine.queries)

        # Signals wake the poller through a pipe, so a stop never waits for a poll timeout.
        self.signals = StopSignals(self._on_signal)

        self.poller = zmq.Poller()
        self.poller.register(self.fix, zmq.POLLIN)
        self.poller.register(self.reports, zmq.POLLIN)
        self.poller.register(self.queries, zmq.POLLIN)
        self.poller.register(self.signals.fd, zmq.POLLIN)

    def _on_signal(self) -> None:
        self.stopping = True

    # --- the loop ------------------------------------------------------------------------------------

    def run(self) -> int:
        log.info("gateway %s (id %d, session epoch %08x) started: fix %s, intake %s, reports %s, queries %s",
                 self.instance.name, self.instance.id, self.core.epoch, self.instance.fix,
                 self.config.sequencer.intake, self.config.engine.reports, self.config.engine.queries)
        tick_s = self.core.tick_interval_ns / 1e9
        next_tick = time.monotonic() + tick_s
        next_stats = time.monotonic() + STATS_INTERVAL_S
        status = 0
        self.heap.started()
        try:
            while not self.stopping:
                timeout_ms = max(0.0, min(next_tick, next_stats) - time.monotonic()) * 1000
                ready = dict(self.poller.poll(timeout_ms))
                turn_started = time.monotonic()
                self.counters["turns"] += 1
                if self.signals.fd in ready:
                    self.signals.drain()
                if self.fix in ready:
                    self._from_clients()
                    self._flush_submits()  # before the reports: they can take a while
                if self.reports in ready:
                    self._from_engine_reports()
                if self.queries in ready:
                    self._from_engine_queries()
                now = time.monotonic()
                if now >= next_tick:
                    self._carry_out(self.core.on_tick())
                    next_tick = now + tick_s
                self._flush_submits()
                self.slow_turns.took(time.monotonic() - turn_started)
                if now >= next_stats:
                    self._log_stats()
                    next_stats = now + STATS_INTERVAL_S
                self.heap.tick(now, idle=not ready)
            self._flush_submits()
            self._logout_everyone()
        except Exception:
            log.exception("gateway %s failed", self.instance.name)
            status = 1
        finally:
            self._close()
        log.info("gateway %s stopped", self.instance.name)
        return status

    def _from_clients(self) -> None:
        for _ in range(MESSAGES_PER_TURN):
            try:
                frames = recv_frames(self.fix, NOBLOCK)
            except zmq.Again:
                return
            self.counters["client"] += 1
            # [identity, frame]: one frame per message (docs/protocol.md); others are refused.
            self._carry_out(self.core.on_client(frames[0], frames[-1], frame_count=len(frames) - 1))

    def _from_engine_reports(self) -> None:
        for _ in range(MESSAGES_PER_TURN):
            try:
                frames = recv_frames(self.reports, NOBLOCK)
            except zmq.Again:
                return
            try:
                message = decode_report(frames)
            except (ReportError, IndexError) as exc:
                log.error("dropped a malformed report message: %s", exc)
                continue
            self.counters["reports"] += 1
            self._carry_out(self.core.on_report(message))

    def _from_engine_queries(self) -> None:
        for _ in range(MESSAGES_PER_TURN):
            try:
                frames = self.queries.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                reply = decode_query(frames)
            except ReportError as exc:
                log.error("dropped a malformed query reply: %s", exc)
                continue
            self._carry_out(self.core.on_query_reply(reply))

    # --- actions -------------------------------------------------------------------------------------

    def _carry_out(self, actions: list[Action]) -> None:
        queue = list(actions)
        # A connection's messages of these actions leave as one multipart message, one map a frame, in
        # order (docs/protocol.md): a send costs about the same whatever it carries, and an order's
        # acknowledgement and its fill usually come from the same report message.
        outgoing: dict[bytes, list[dict]] = {}
        index = 0
        while True:
            while index < len(queue):
                action = queue[index]
                index += 1
                if type(action) is ToClient:
                    outgoing.setdefault(action.identity, []).append(action.message)
                elif type(action) is Submit:
                    self._submits.append(action)
                    if len(self._submits) >= SUBMITS_PER_MESSAGE:
                        queue.extend(self._send_submits())
                elif type(action) is Query:
                    try:
                        self.queries.send_multipart(encode_query(action.query), zmq.NOBLOCK)
                    except zmq.Again:
                        queue.extend(self.core.on_query_failed(action))
            if not outgoing:
                return
            sending, outgoing = outgoing, {}
            for identity, messages in sending.items():  # a failed send's reports go to other sessions
                queue.extend(self._to_client(identity, messages))

    def _flush_submits(self) -> None:
        if self._submits:
            self._carry_out(self._send_submits())

    def _send_submits(self) -> list[Action]:
        """Send the commands gathered so far as one submission; the actions of refusing them if the
        sequencer cannot take it."""
        submits, self._submits = self._submits, []
        try:
            send_frames(self.intake, encode_submissions([submit.record for submit in submits],
                                                        [submit.envelope for submit in submits]), NOBLOCK)
            self.counters["submitted"] += len(submits)
            self.counters["submissions"] += 1
            return []
        except zmq.Again:
            self.counters["submit_failed"] += len(submits)
            return [action for submit in submits for action in self.core.on_submit_failed(submit)]

    def _to_client(self, identity: bytes, messages: list[dict]) -> list[Action]:
        try:
            send_frames(self.fix, (identity, *[encode(message) for message in messages]), NOBLOCK)
            self.counters["sent"] += len(messages)
            self.counters["sends"] += 1
            return []
        except zmq.ZMQError as exc:
            if exc.errno not in (errno.EHOSTUNREACH, errno.EAGAIN):
                raise
            self.counters["unreachable"] += len(messages)
            return self.core.on_unreachable(identity, messages)

    def _logout_everyone(self) -> None:
        for action in self.core.shutdown():
            if type(action) is ToClient:
                self._to_client(action.identity, [action.message])

    def _log_stats(self) -> None:
        line = ", ".join(f"{name} {value}" for name, value in self.counters.items())
        log.info("%s; sessions %d, lost reports %d", line, len(self.core.sessions), self.core.lost_reports)
        for name in self.counters:
            self.counters[name] = 0

    def _close(self) -> None:
        for sock in (self.fix, self.intake, self.reports, self.queries):
            sock.close()
        self.context.term()
        self.credentials.close()
        self.signals.close()


def instance_of(config: ExchangeConfig, *, name: str | None, index: int | None) -> GatewayInstance:
    if name is not None:
        return config.gateway.instance(name)
    if index is not None:
        if not 0 <= index < len(config.gateway.instances):
            raise KeyError(f"no gateway at index {index}: the configuration lists {len(config.gateway.instances)}")
        return config.gateway.instances[index]
    raise KeyError("name the gateway with --name or --index")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The FIX-like gateway: client sessions in, commands out.")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--name", help="the gateway's name in config.gateway.instances")
    which.add_argument("--index", type=int, help="the gateway's position in config.gateway.instances")
    parser.add_argument("--config", help="exchange configuration file (default: $EXCHANGE_CONFIG or built-in)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        config = load_config(args.config)
        instance = instance_of(config, name=args.name, index=args.index)
    except (ConfigError, KeyError) as exc:
        log.error("cannot start: %s", exc)
        return 2
    if instance.is_http:  # the REST API and web UI (gateway/http.py)
        from gateway import http

        return http.run(config, instance)
    return GatewayProcess(config, instance).run()


if __name__ == "__main__":
    sys.exit(main())
