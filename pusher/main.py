"""The pusher process: ``python -m pusher.main`` (configuration from ``$EXCHANGE_CONFIG``).

An asyncio WebSocket server (the ``websockets`` library) at ``pusher.host:pusher.port`` around the pure
core (pusher/core.py). Sockets, every endpoint from the configuration:

    SUB     connects quotation.market   every public channel (common/market.py)
    DEALER  connects quotation.queries  depth snapshots and trades to fill gaps or replay from an id
    SUB     connects engine.reports     the account topics of authenticated subscribers (common/reports.py)
    DEALER  connects engine.queries     balances and open orders snapshots

Fan-out: a message for a channel is JSON-encoded once and framed once (compression is off, and a
server's frames are not masked, so the frame's bytes are the same for every client); each subscriber's
transport gets those bytes. A connection whose transport holds more than ``pusher.send_buffer_bytes``
unsent is too slow: it gets no more data and is closed with code 1008 and the reason. Pings every
``ping_interval_s`` close connections that stop answering.

A query that is not answered within ``QUERY_RETRY_S`` (its peer restarting, say) is sent again; answers
to a query the core no longer waits for are ignored.

SIGTERM or SIGINT: the server closes every connection (1001, going away) and the process exits 0.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import signal
import sys
import time
from http import HTTPStatus
from typing import Any

import msgpack
import zmq
import zmq.asyncio
from websockets.asyncio.server import ServerConnection, serve
from websockets.frames import Frame, Opcode
from websockets.protocol import State

from common.config import ExchangeConfig, load_config
from common.credentials import CredentialStore
from common.heap import HeapKeeper
from common.market import MarketError, decode_publications
from common.reports import ReportError, account_topic, decode_report
from pusher.core import AskEngine, AskQuotation, Broadcast, Listen, PusherCore, Send

log = logging.getLogger("pusher")

MAX_CLIENT_MESSAGE_BYTES = 16_384  # larger client frames close the connection (1009)
MESSAGES_PER_TURN = 1024  # ZeroMQ messages taken at once before yielding to the event loop
QUERY_RETRY_S = 2.0
STATS_INTERVAL_S = 10.0
SUB_RCVHWM = 1_000_000
TOO_SLOW = 1008  # policy violation
FAIRNESS_STRIDE = 7_919  # how far each fan-out's first connection moves on (a prime: it visits every place)


class PusherProcess:
    def __init__(self, config: ExchangeConfig):
        self.config = config
        self.credentials = CredentialStore.open(config)
        self.core = PusherCore(config, self.credentials, clock_ms=lambda: time.time_ns() // 1_000_000)
        self.sockets: dict[int, ServerConnection] = {}
        self._ids = itertools.count(1)
        self.limit = config.pusher.send_buffer_bytes
        self.in_flight: dict[int, tuple[zmq.asyncio.Socket, bytes, float]] = {}
        self.stats = {"connections": 0, "frames": 0, "writes": 0, "slow": 0, "publications": 0, "accounts": 0}
        self.stopping = asyncio.Event()
        self._rotation = 0

        self.context = zmq.asyncio.Context()
        self.quotes = self.context.socket(zmq.SUB)
        self.quotes.setsockopt(zmq.RCVHWM, SUB_RCVHWM)
        self.quotes.setsockopt(zmq.SUBSCRIBE, b"")
        self.quotes.connect(config.quotation.market)
        self.quote_queries = self.context.socket(zmq.DEALER)
        self.quote_queries.connect(config.quotation.queries)
        self.accounts = self.context.socket(zmq.SUB)
        self.accounts.setsockopt(zmq.RCVHWM, SUB_RCVHWM)
        self.accounts.connect(config.engine.reports)
        self.engine_queries = self.context.socket(zmq.DEALER)
        self.engine_queries.connect(config.engine.queries)
        for sock in (self.quotes, self.quote_queries, self.accounts, self.engine_queries):
            sock.setsockopt(zmq.LINGER, 0)

    # --- running -------------------------------------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stopping.set)
        cfg = self.config.pusher
        async with serve(self._serve, cfg.host, cfg.port, compression=None, max_size=MAX_CLIENT_MESSAGE_BYTES,
                         ping_interval=cfg.ping_interval_s, ping_timeout=cfg.ping_timeout_s,
                         process_request=self._admit) as server:
            log.info("pusher listening on ws://%s:%d; quotation %s, engine %s", cfg.host, cfg.port,
                     self.config.quotation.market, self.config.engine.reports)
            tasks = [asyncio.create_task(coroutine) for coroutine in (
                self._read_publications(), self._read_accounts(), self._read_replies(self.quote_queries),
                self._read_replies(self.engine_queries), self._retry_queries(), self._log_stats())]
            # What start-up built (modules, the configuration) is frozen out of the collector's walks.
            # Connections come and go, with reference cycles, so nothing later is frozen: the collector
            # keeps finding those.
            HeapKeeper().started()
            await self.stopping.wait()
            log.info("stopping: closing %d connections", len(self.sockets))
            server.close()
            await server.wait_closed()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        self.context.destroy(linger=0)
        self.credentials.close()
        log.info("pusher stopped")
        return 0

    def _admit(self, connection: ServerConnection, request):
        if len(self.sockets) >= self.config.pusher.max_connections:
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "too many connections\n")
        return None

    async def _serve(self, websocket: ServerConnection) -> None:
        conn = next(self._ids)
        self.sockets[conn] = websocket
        self.core.connect(conn)
        self.stats["connections"] += 1
        try:
            async for message in websocket:
                self._carry_out(self.core.on_client_text(conn, message))
        except Exception as exc:  # a broken connection ends here; the others go on
            log.debug("connection %d: %s", conn, exc)
        finally:
            self.sockets.pop(conn, None)
            self._carry_out(self.core.disconnect(conn))

    async def _read_publications(self) -> None:
        async for batch in self._batches(self.quotes):
            self.core.begin_turn()  # one message per channel for the whole batch
            actions = []
            for frames in batch:
                try:
                    publications = decode_publications(frames)
                except MarketError as exc:
                    log.error("dropped a malformed publication: %s", exc)
                    continue
                self.stats["publications"] += len(publications)
                for channel, n, epoch, body in publications:
                    actions += self.core.on_publication(channel, n, epoch, body)
            actions += self.core.end_turn()
            self._carry_out(actions)

    async def _read_accounts(self) -> None:
        async for batch in self._batches(self.accounts):
            actions = []
            for frames in batch:
                try:
                    message = decode_report(frames)
                except ReportError as exc:
                    log.error("dropped a malformed account message: %s", exc)
                    continue
                self.stats["accounts"] += 1
                actions += self.core.on_account(message)
            self._carry_out(actions)

    @staticmethod
    async def _batches(sock: zmq.asyncio.Socket):
        """The messages of ``sock`` in batches: awaits one, then takes up to MESSAGES_PER_TURN more that
        are already waiting, through a blocking shadow of the socket (an asyncio socket's non-blocking
        receive is a future, not an answer)."""
        drain = zmq.Socket.shadow(sock.underlying)
        while True:
            batch = [await sock.recv_multipart()]
            for _ in range(MESSAGES_PER_TURN):
                try:
                    batch.append(drain.recv_multipart(zmq.NOBLOCK))
                except zmq.Again:
                    break
            yield batch

    async def _read_replies(self, sock: zmq.asyncio.Socket) -> None:
        while True:
            frame = await sock.recv()
            try:
                reply = msgpack.unpackb(frame, raw=False)
            except Exception as exc:  # noqa: BLE001 - a peer's bad answer is logged, never fatal
                log.error("dropped a malformed reply: %s", exc)
                continue
            if not isinstance(reply, dict):
                continue
            self.in_flight.pop(reply.get("id"), None)
            self._carry_out(self.core.on_quotation_reply(reply))

    async def _retry_queries(self) -> None:
        while True:
            await asyncio.sleep(QUERY_RETRY_S / 2)
            now = time.monotonic()
            for query_id, (sock, frame, sent) in list(self.in_flight.items()):
                if now - sent >= QUERY_RETRY_S:
                    self.in_flight[query_id] = (sock, frame, now)
                    sock.send(frame)

    async def _log_stats(self) -> None:
        while True:
            await asyncio.sleep(STATS_INTERVAL_S)
            log.info("%d connections open; %s", len(self.sockets),
                     ", ".join(f"{name} {value}" for name, value in self.stats.items()))
            for name in self.stats:
                self.stats[name] = 0

    # --- actions -------------------------------------------------------------------------------------------

    def _carry_out(self, actions: list) -> None:
        writes = [(action.conns, action.text) if type(action) is Broadcast else ((action.conn,), action.text)
                  for action in actions if type(action) in (Broadcast, Send)]
        if writes:
            self._write(writes)
        for action in actions:
            kind = type(action)
            if kind is AskQuotation:
                self._ask(self.quote_queries, action.query)
            elif kind is AskEngine:
                self._ask(self.engine_queries, action.query)
            elif kind is Listen:
                option = zmq.SUBSCRIBE if action.on else zmq.UNSUBSCRIBE
                self.accounts.setsockopt(option, account_topic(action.account))

    def _ask(self, sock: zmq.asyncio.Socket, query: dict) -> None:
        frame = msgpack.packb(query, use_bin_type=True)
        self.in_flight[query["id"]] = (sock, frame, time.monotonic())
        sock.send(frame)

    def _fair(self, conns) -> list[int]:
        """The connections in the order to write to them: each fan-out starts at another place, so that
        no connection is always the last served (writing to a thousand takes milliseconds)."""
        order = list(conns)
        if len(order) > 1:
            self._rotation = (self._rotation + FAIRNESS_STRIDE) % len(order)
            order = order[self._rotation:] + order[:self._rotation]
        return order

    def _write(self, writes: list[tuple[Any, str]]) -> None:
        """Texts to sets of connections: each text is framed once (a server's frames are not masked, so
        the bytes are the same for every client), each connection gets the frames meant for it in one
        write (one system call instead of one per message), and connections that get the same frames
        share the joined bytes. A connection with more than ``limit`` bytes unsent is too slow: closed."""
        frames = [Frame(Opcode.TEXT, text.encode()).serialize(mask=False) for _, text in writes]
        self.stats["frames"] += len(frames)
        wanted: dict[int, list[int]] = {}
        for index, (conns, _) in enumerate(writes):
            for conn in conns:
                got = wanted.get(conn)
                if got is None:
                    wanted[conn] = [index]
                else:
                    got.append(index)
        joined: dict[tuple[int, ...], bytes] = {}
        slow = []
        limit, sockets = self.limit, self.sockets
        for conn in self._fair(wanted):
            indices = wanted[conn]
            websocket = sockets.get(conn)
            if websocket is None or websocket.protocol.state is not State.OPEN:
                continue
            transport = websocket.transport
            if transport.get_write_buffer_size() > limit:
                slow.append(conn)
                continue
            key = tuple(indices)
            data = joined.get(key)
            if data is None:
                data = joined[key] = b"".join(frames[i] for i in indices)
            transport.write(data)
            self.stats["writes"] += 1
        for conn in slow:
            self._close(conn, TOO_SLOW, f"too slow: more than {limit} bytes waiting to be sent")

    def _close(self, conn: int, code: int, reason: str) -> None:
        websocket = self.sockets.pop(conn, None)
        self._carry_out(self.core.disconnect(conn))
        if websocket is not None:
            self.stats["slow"] += code == TOO_SLOW
            log.info("closing connection %d: %s", conn, reason)
            asyncio.get_running_loop().create_task(websocket.close(code, reason))


def main() -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("websockets").setLevel(logging.WARNING)
    try:
        config = load_config()
    except Exception as exc:  # noqa: BLE001
        log.error("cannot start: %s", exc)
        return 2
    return asyncio.run(PusherProcess(config).run())


if __name__ == "__main__":
    sys.exit(main())
