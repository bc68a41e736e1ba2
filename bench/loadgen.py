"""The open-loop load generator of the pipeline benchmark (bench/pipeline.py drives it).

Open loop: every order's send time is planned before the step starts (``t0 + i / rate``), orders are
sent when their time comes whatever the answers so far, and an order's latency runs from its *planned*
send time to the moment the client receives the first ExecutionReport for it. A generator that falls
behind its schedule, or an exchange that stalls, therefore shows in the latency instead of silently
slowing the offered load (no coordinated omission).

One :class:`Worker` per generator process owns a share of the client connections (DEALER sockets, one
logged-on session each, with the credentials of an account the admin protocol created and funded) and
the orders planned on them. Order ``i`` of a step goes out on the connection ``order_plan`` gives it
(``i % connections`` in the default mix); connection ``c`` belongs to worker ``c % workers``. The hot
path is plain pyzmq on pre-encoded frames:

- before a step, every frame is encoded (msgpack, as ``client.session`` builds a NewOrderSingle) with its
  MsgSeqNum, and the worker answers ``prepared``; the step starts at a ``t0`` the driver sends after that;
- the loop sends what is due, then blocks in ``select`` on the sockets' ZeroMQ file descriptors until the
  next planned send (microsecond timeouts, timer slack of 1 us): it never spins, so it leaves the CPU to
  the exchange. Every frame received is kept with its receipt time (CLOCK_MONOTONIC) and counted, nothing
  more: decoding happens after the step;
- after the step the frames are decoded: the first ExecutionReport (or, for the floor and the echo,
  the first frame echoed) of each order gives its latency; New, Trade (filled) and Rejected are counted.

The order mix keeps the book bounded: every order is a GTC limit order at one price; even connections
(accounts) buy and odd ones sell, and no account ever meets its own order (no self-trade prevention).

- By default (``takers_per_maker`` 1) every order is for the minimum lot and consecutive orders are a buy
  and a sell that cross: each order gets exactly two ExecutionReports (New, then Trade filled), the book
  never holds more than the orders in flight, and a trade takes two orders.
- With ``takers_per_maker`` k > 1, orders come in groups of k + 1: a sell of k lots (the maker), then k
  buys of one lot that fill it. The maker gets New and k Trades, each buy New and Trade; a group trades
  k times, so a trade takes (k + 1) / k orders (the market-data benchmark, which needs trades, uses it).
"""

from __future__ import annotations

import ctypes
import gc
import select
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import msgpack
import numpy as np
import zmq
from zmq.backend import Socket as _zmq_backend

from client.session import ClientSession
from common.protocol import MSG_TYPES, encode

M = MSG_TYPES
TARGETS = ("pipeline", "floor", "echo")
LOGON_TIMEOUT_S = 30.0
IDLE_WAIT_S = 0.05  # longest single wait while draining (so the deadline is seen)
PR_SET_TIMERSLACK = 29

# Flags per order in a step's result.
ANSWERED = 1  # a first answer arrived (an ExecutionReport, or the echo)
ACKNOWLEDGED = 2  # ExecutionReport New: the exchange accepted the order
FILLED = 4  # ExecutionReport Trade with OrdStatus filled
REJECTED = 8  # ExecutionReport Rejected (by the gateway or the engine)

_ER_PREFIX = b"\xa7MsgType\xa18"  # how an encoded ExecutionReport's first key and value look


def _fine_timer_slack() -> None:
    """Ask Linux to wake this process within 1 us of a timeout instead of the default 50 us."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_TIMERSLACK, 1000, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: coarser waits, nothing else changes
        pass


@dataclass
class OrderTerms:
    """What the orders of the mix look like (decimal strings of the protocol; ``qty`` is one lot)."""

    symbol: str
    price: str
    qty: str
    takers_per_maker: int = 1  # the mix (module docstring)


BUY, SELL = "1", "2"


def order_plan(i: int, connections: int, takers_per_maker: int) -> tuple[int, str, int, int]:
    """Order ``i`` of a step: its connection, its Side, its quantity in lots, and how many
    ExecutionReports it gets (module docstring). ``connections`` is even."""
    if takers_per_maker == 1:
        connection = i % connections
        return connection, BUY if connection % 2 == 0 else SELL, 1, 2
    group, place = divmod(i, takers_per_maker + 1)
    half = connections // 2
    if place == 0:  # the maker, on an odd connection
        return 2 * (group % half) + 1, SELL, takers_per_maker, 1 + takers_per_maker
    return 2 * ((group * takers_per_maker + place - 1) % half), BUY, 1, 2


def group_size(terms: OrderTerms) -> int:
    """A step's order count is a multiple of this, so that every order can fill."""
    return terms.takers_per_maker + 1


@dataclass
class ConnectionSpec:
    """One client connection: its account and credentials (pipeline), and the endpoints of each target."""

    index: int
    account: int
    key_id: str
    secret: str


@dataclass
class StepResult:
    """What one worker saw in one step; arrays are over the worker's own orders of the step."""

    orders: np.ndarray  # int64 global order indices
    first_ns: np.ndarray  # int64 receipt time of the first answer (0: none)
    sent_ns: np.ndarray  # int64 actual send time
    flags: np.ndarray  # uint8 ANSWERED | ACKNOWLEDGED | FILLED | REJECTED
    frames: int = 0  # frames received in the step
    other: dict[str, int] = field(default_factory=dict)  # frames that were not about the step's orders
    sent_bytes: int = 0  # bytes of the frames sent
    answer_bytes: int = 0  # bytes of the frames that answered an order (ExecutionReports, echoes)
    answer_frames: int = 0
    cpu_s: float = 0.0  # CPU of the worker process (all its threads) from t0 to the end of the drain
    loop_s: float = 0.0  # wall time of the same
    relogons: int = 0


class Worker:
    """A generator process's connections and its send/receive loop (see the module docstring)."""

    def __init__(self, *, worker: int, workers: int, connections: list[ConnectionSpec],
                 endpoints: dict[str, str], terms: OrderTerms, max_message_bytes: int):
        self.worker = worker
        self.workers = workers
        self.specs = connections
        self.endpoints = endpoints
        self.terms = terms
        self.max_message_bytes = max_message_bytes
        self.context = zmq.Context()
        self.sockets: dict[str, list[zmq.Socket]] = {}
        self.sessions: list[ClientSession] = []
        self.next_seq: list[int] = []
        self.relogons = 0
        _fine_timer_slack()
        for target, endpoint in endpoints.items():
            self.sockets[target] = [self._connect(endpoint) for _ in connections]
        if "pipeline" in endpoints:
            for position in range(len(connections)):
                self._logon(position)
        self._prepared: tuple | None = None

    # --- connections ----------------------------------------------------------------------------------

    def _connect(self, endpoint: str) -> zmq.Socket:
        sock = self.context.socket(zmq.DEALER)
        # Open loop: a send never blocks or fails for a full queue, and answers are never dropped or
        # refused for a slow reader. The queues are ZeroMQ's, in this process's memory.
        sock.setsockopt(zmq.SNDHWM, 0)
        sock.setsockopt(zmq.RCVHWM, 0)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(endpoint)
        return sock

    def _logon(self, position: int) -> None:
        spec = self.specs[position]
        session = ClientSession(spec.key_id, spec.secret)
        sock = self.sockets["pipeline"][position]
        sock.send(encode(session.logon()))
        deadline = time.monotonic() + LOGON_TIMEOUT_S
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not sock.poll(remaining * 1000):
                raise RuntimeError(f"connection {spec.index}: no Logon answer within {LOGON_TIMEOUT_S} s")
            reply = msgpack.unpackb(sock.recv(), raw=False)
            if reply.get("MsgType") == M.LOGON:
                break
            if reply.get("MsgType") in (M.REJECT, M.LOGOUT):
                raise RuntimeError(f"connection {spec.index}: Logon refused: {reply.get('Text')}")
        if position < len(self.sessions):
            self.sessions[position] = session
            self.next_seq[position] = session.last_seq_num + 1
        else:
            self.sessions.append(session)
            self.next_seq.append(session.last_seq_num + 1)

    def _relogon(self, position: int) -> None:
        """A session the gateway ended: a fresh connection and Logon, so the next step has it again."""
        old = self.sockets["pipeline"][position]
        old.close(0)
        self.sockets["pipeline"][position] = self._connect(self.endpoints["pipeline"])
        self._logon(position)
        self.relogons += 1

    def _stamp(self, position: int) -> int:
        seq = self.next_seq[position]
        self.next_seq[position] = seq + 1
        return seq

    # --- a step ---------------------------------------------------------------------------------------

    def prepare(self, *, target: str, step: int, rate: float, count: int, connections: int,
                wall_t0_ns: int, pad_to: int = 0) -> int:
        """Encode this worker's orders of the step (``count`` orders in all, at ``rate`` per second on
        ``connections`` connections); returns how many are this worker's. ``pad_to`` (floor and echo
        only) pads each frame with a Text field to about that many bytes."""
        if target not in self.sockets:
            raise ValueError(f"no connections to {target!r}")
        period_ns = 1e9 / rate
        mine = {spec.index: position for position, spec in enumerate(self.specs)}
        socks = self.sockets[target]
        orders, offsets, order_socks, frames = [], [], [], []
        terms = self.terms
        lot = Decimal(terms.qty)
        expected = 0  # answers (ExecutionReports, or echoes) to wait for
        for i in range(count):
            connection, side, lots, reports = order_plan(i, connections, terms.takers_per_maker)
            position = mine.get(connection)
            if position is None:
                continue
            expected += reports if target == "pipeline" else 1
            offset = int(i * period_ns)
            # The fields and their order of client.session.ClientSession.new_order.
            message = {"MsgType": M.NEW_ORDER_SINGLE, "MsgSeqNum": self._stamp(position) if target == "pipeline"
                       else i + 1, "SendingTime": wall_t0_ns + offset, "ClOrdID": f"{step}.{i}",
                       "Symbol": terms.symbol, "Side": side, "OrdType": "2", "TimeInForce": "1",
                       "Price": terms.price, "OrderQty": terms.qty if lots == 1 else str(lot * lots)}
            frame = encode(message)
            if pad_to > len(frame) + 8 and target != "pipeline":
                message["Text"] = "x" * (pad_to - len(frame) - 8)
                frame = encode(message)
            orders.append(i)
            offsets.append(offset)
            order_socks.append(socks[position])
            frames.append(frame)
        self._prepared = (target, step, orders, offsets, order_socks, frames, expected)
        return len(orders)

    def keepalive(self) -> None:
        """A Heartbeat on every pipeline session, so none goes silent for long between its steps."""
        for position, sock in enumerate(self.sockets.get("pipeline", ())):
            sock.send(encode({"MsgType": M.HEARTBEAT, "MsgSeqNum": self._stamp(position),
                              "SendingTime": time.time_ns()}))

    def run(self, *, t0_ns: int, quiet_s: float, max_drain_s: float) -> StepResult:
        """Send the prepared orders on schedule from ``t0_ns`` (CLOCK_MONOTONIC) and take every answer,
        until each order has all of its answers (``order_plan``; one echo each for the floor and the
        echo), or nothing arrived for ``quiet_s`` after the last planned send, or ``max_drain_s`` passed
        since it."""
        assert self._prepared is not None, "prepare() first"
        target, step, orders, offsets, order_socks, frames, expected = self._prepared
        self._prepared = None
        socks = self.sockets[target]
        planned = [t0_ns + offset for offset in offsets]
        last_planned = planned[-1] if planned else t0_ns
        limits = (int(quiet_s * 1e9), last_planned + int(max_drain_s * 1e9))
        echo = target != "pipeline"
        gc.disable()  # the loop makes no cycles; a collection would only add pauses to the measure
        try:
            received, times, sent = self._loop(socks, planned, order_socks, frames, limits, expected, echo)
        finally:
            gc.enable()
        result = self._parse(target, step, orders, received, times)
        result.sent_ns = np.asarray(sent, dtype=np.int64)
        result.sent_bytes = sum(map(len, frames))
        result.relogons = self.relogons
        return result

    def _loop(self, socks, planned, order_socks, frames, limits, expected, echo):
        """The hot path: send on schedule, receive and timestamp everything, until done (see run)."""
        mono = time.monotonic_ns
        # pyzmq's Cython methods, called directly: the Python layer above them (enum results, keyword
        # handling) costs more than the call itself.
        send_frame, recv_frame, get_option = _zmq_backend.send, _zmq_backend.recv, _zmq_backend.get
        noblock, events_opt, pollin, again = int(zmq.NOBLOCK), int(zmq.EVENTS), int(zmq.POLLIN), zmq.Again
        wait = select.select
        quiet_ns, deadline = limits
        fds = [sock.getsockopt(zmq.FD) for sock in socks]
        by_fd = {fd: sock for fd, sock in zip(fds, socks)}
        received: list[bytes] = []
        times: list[int] = []
        keep, stamp = received.append, times.append
        sent = [0] * len(planned)
        count = len(planned)
        answers = 0  # frames that count towards ``expected``
        prefix = _ER_PREFIX
        i = 0
        cpu0, wall0 = time.process_time(), time.monotonic()

        def drain(sock) -> int:
            got = 0
            try:
                while True:
                    frame = recv_frame(sock, noblock)
                    stamp(mono())
                    keep(frame)
                    if echo or prefix in frame[:16]:
                        got += 1
            except again:
                pass
            return got

        while True:
            now = mono()
            if i < count and planned[i] <= now:
                touched = set()
                while i < count and planned[i] <= now:
                    sock = order_socks[i]
                    send_frame(sock, frames[i], noblock)
                    sent[i] = now
                    touched.add(sock)
                    i += 1
                # A send may have taken in the notice of an arrival (ZeroMQ's descriptors are
                # edge-triggered): look at those sockets before waiting on their descriptors again.
                for sock in touched:
                    if get_option(sock, events_opt) & pollin:
                        answers += drain(sock)
                continue
            if i < count:
                timeout = (planned[i] - now) / 1e9
            else:
                if answers >= expected or now >= deadline:
                    break
                last = times[-1] if times else planned[-1] if planned else now
                if now - max(last, planned[-1] if planned else now) >= quiet_ns:
                    break
                timeout = IDLE_WAIT_S
                for sock in socks:  # a cheap safety net while only answers are awaited
                    if get_option(sock, events_opt) & pollin:
                        answers += drain(sock)
            ready = wait(fds, (), (), timeout)[0]
            for fd in ready:
                answers += drain(by_fd[fd])
        self._cpu_s = time.process_time() - cpu0
        self._loop_s = time.monotonic() - wall0
        return received, times, sent

    def _parse(self, target: str, step: int, orders: list[int], received: list[bytes],
               times: list[int]) -> StepResult:
        count = len(orders)
        position_of = {order: position for position, order in enumerate(orders)}
        first = np.zeros(count, dtype=np.int64)
        flags = np.zeros(count, dtype=np.uint8)
        other: dict[str, int] = {}
        prefix = f"{step}."
        unpack = msgpack.unpackb
        session_ended = False
        answer_frames = answer_bytes = 0
        for frame, at in zip(received, times):
            try:
                message = unpack(frame, raw=False)
                msg_type = message.get("MsgType")
                clordid = message.get("ClOrdID", "")
            except Exception:
                other["undecodable"] = other.get("undecodable", 0) + 1
                continue
            position = None
            if isinstance(clordid, str) and clordid.startswith(prefix):
                position = position_of.get(int(clordid[len(prefix):]))
            if position is None or msg_type not in (M.EXECUTION_REPORT, M.NEW_ORDER_SINGLE):
                name = str(msg_type)
                other[name] = other.get(name, 0) + 1
                if msg_type == M.LOGOUT or (msg_type == M.REJECT and message.get("SessionRejectReason") == 9):
                    session_ended = True
                continue
            answer_frames += 1
            answer_bytes += len(frame)
            if not flags[position] & ANSWERED:
                flags[position] |= ANSWERED
                first[position] = at
            if msg_type == M.EXECUTION_REPORT:
                exec_type = message.get("ExecType")
                if exec_type == "0":
                    flags[position] |= ACKNOWLEDGED
                elif exec_type == "F" and message.get("OrdStatus") == "2":
                    flags[position] |= FILLED
                elif exec_type == "8":
                    flags[position] |= REJECTED
        if session_ended and target == "pipeline":
            self._check_sessions()
        return StepResult(orders=np.asarray(orders, dtype=np.int64), first_ns=first, sent_ns=np.zeros(0),
                          flags=flags, frames=len(received), other=other, answer_bytes=answer_bytes,
                          answer_frames=answer_frames, cpu_s=self._cpu_s,
                          loop_s=self._loop_s)

    def _check_sessions(self) -> None:
        """After a Logout or a "not logged on" Reject: log on again every session that does not answer a
        TestRequest."""
        for position, sock in enumerate(self.sockets["pipeline"]):
            test_id = f"alive-{time.monotonic_ns()}"
            sock.send(encode({"MsgType": M.TEST_REQUEST, "MsgSeqNum": self._stamp(position),
                              "SendingTime": time.time_ns(), "TestReqID": test_id}))
            deadline = time.monotonic() + 5.0
            alive = False
            while not alive and time.monotonic() < deadline:
                if not sock.poll(100):
                    continue
                reply = msgpack.unpackb(sock.recv(), raw=False)
                if reply.get("MsgType") == M.HEARTBEAT and reply.get("TestReqID") == test_id:
                    alive = True
                elif reply.get("MsgType") in (M.LOGOUT, M.REJECT):
                    break
            if not alive:
                self._relogon(position)

    def close(self) -> None:
        for socks in self.sockets.values():
            for sock in socks:
                sock.close(0)
        self.context.term()


def worker_main(pipe: Any, options: dict) -> None:
    """A generator process (multiprocessing, spawned): commands come over ``pipe`` as tuples.

    ``("prepare", kwargs)`` -> ``("prepared", n)``; ``("run", kwargs)`` -> ``("result", StepResult)``;
    ``("keepalive",)`` -> ``("ok",)``; ``("stop",)`` closes the sockets and returns. Any exception is
    sent back as ``("error", text)``.
    """
    import traceback

    try:
        worker = Worker(**options)
    except Exception:
        pipe.send(("error", traceback.format_exc()))
        return
    pipe.send(("ready", len(worker.specs)))
    try:
        while True:
            command = pipe.recv()
            name = command[0]
            try:
                if name == "stop":
                    break
                if name == "prepare":
                    pipe.send(("prepared", worker.prepare(**command[1])))
                elif name == "run":
                    pipe.send(("result", worker.run(**command[1])))
                elif name == "keepalive":
                    worker.keepalive()
                    pipe.send(("ok",))
                else:
                    pipe.send(("error", f"unknown command {name!r}"))
            except Exception:
                pipe.send(("error", traceback.format_exc()))
    finally:
        worker.close()
