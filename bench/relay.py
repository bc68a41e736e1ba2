"""The floor of the pipeline benchmark: the exchange's ZeroMQ hops with no work at all.

    python -m bench.relay --role gateway   [--config PATH]   # ROUTER in, PUSH out; SUB in, ROUTER out
    python -m bench.relay --role sequencer [--config PATH]   # PULL in, PUB out
    python -m bench.relay --role engine    [--config PATH]   # SUB in, PUB out
    python -m bench.relay --role echo      [--config PATH]   # ROUTER that sends every message back (C loop)

The first three run as three processes, like the gateway, the sequencer and the engine, on the same
endpoints of the configuration and with the same socket types, so a client message crosses the same hops
as an order does:

    client DEALER -> gateway ROUTER -> PUSH -> sequencer PULL -> PUB -> engine SUB -> PUB
                  -> gateway SUB -> ROUTER -> client DEALER

Each relay only moves frames: the gateway relay sends ``[topic, identity, frame]`` on (its report topic
first, as a PUB/SUB message needs), the sequencer and engine relays send on exactly what they received,
and the gateway relay hands ``frame`` back to ``identity``. One message in, one message out, per hop: no
batching, no decoding. ``echo`` is the generator's own yardstick: a ZeroMQ proxy from a ROUTER to itself,
entirely in C, so a load generator measured against it is the only Python in the loop.

Every relay blocks on a ``zmq.Poller`` (never spins), drains each ready socket without blocking (a bounded
number of messages per turn) and exits 0 on SIGTERM or SIGINT, closing its sockets with a short linger.
"""

from __future__ import annotations

import argparse
import logging
import sys

import zmq

from common.heap import HeapKeeper
from common.signals import StopSignals
from common.config import ConfigError, ExchangeConfig, load_config
from common.reports import gateway_topic

log = logging.getLogger("bench.relay")

ROLES = ("gateway", "sequencer", "engine", "echo")
MESSAGES_PER_TURN = 1024  # per socket and turn, as in the gateway
# High-water marks as the real processes set them, so a burst queues (not drops) at the same places.
CLIENT_SNDHWM = 10_000
INTAKE_SNDHWM = 100_000
STREAM_SNDHWM = 1_000_000
SUB_RCVHWM = 1_000_000
CLOSE_LINGER_MS = 200


class Stop(Exception):
    """SIGTERM or SIGINT during the echo's proxy."""


class Relay:
    """One relay process's sockets and loop. ``run()`` returns the exit status."""

    def __init__(self, config: ExchangeConfig, role: str):
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        self.config = config
        self.role = role
        self.stopping = False
        self.context = zmq.Context()
        self.sockets: list[zmq.Socket] = []
        self.forwarded = 0
        gateway = config.gateway.instances[0]
        if role == "gateway":
            self.topic = gateway_topic(gateway.id)
            self.fix = self._socket(zmq.ROUTER, SNDHWM=CLIENT_SNDHWM)
            self.intake = self._socket(zmq.PUSH, SNDHWM=INTAKE_SNDHWM)
            self.reports = self._socket(zmq.SUB, RCVHWM=SUB_RCVHWM)
            self.reports.setsockopt(zmq.SUBSCRIBE, self.topic)
            self.fix.bind(gateway.fix)
            self.intake.connect(config.sequencer.intake)
            self.reports.connect(config.engine.reports)
        elif role == "sequencer":
            self.intake = self._socket(zmq.PULL)
            self.stream = self._socket(zmq.PUB, SNDHWM=STREAM_SNDHWM)
            self.intake.bind(config.sequencer.intake)
            self.stream.bind(config.sequencer.stream)
        elif role == "engine":
            self.stream = self._socket(zmq.SUB, RCVHWM=SUB_RCVHWM)
            self.stream.setsockopt(zmq.SUBSCRIBE, b"")
            self.reports = self._socket(zmq.PUB, SNDHWM=STREAM_SNDHWM)
            self.stream.connect(config.sequencer.stream)
            self.reports.bind(config.engine.reports)
        else:
            self.fix = self._socket(zmq.ROUTER, SNDHWM=0, RCVHWM=0)
            self.fix.bind(gateway.fix)

        # Signals wake the poller through a pipe, so a stop never waits for a poll timeout.
        self.signals = StopSignals(self._on_signal)

    def _socket(self, kind: int, **options: int) -> zmq.Socket:
        sock = self.context.socket(kind)
        sock.setsockopt(zmq.LINGER, CLOSE_LINGER_MS)
        for name, value in options.items():
            sock.setsockopt(getattr(zmq, name), value)
        self.sockets.append(sock)
        return sock

    def _on_signal(self) -> None:
        self.stopping = True
        if self.role == "echo":
            raise Stop()  # interrupts zmq.proxy, which otherwise never returns

    def run(self) -> int:
        log.info("relay %s started", self.role)
        HeapKeeper().started()  # as the exchange's processes do: the relay allocates nothing that lives
        try:
            if self.role == "echo":
                try:
                    zmq.proxy(self.fix, self.fix)
                except Stop:
                    pass
            else:
                self._loop()
        finally:
            self._close()
        log.info("relay %s stopped after %d messages", self.role, self.forwarded)
        return 0

    def _loop(self) -> None:
        poller = zmq.Poller()
        poller.register(self.signals.fd, zmq.POLLIN)
        if self.role == "gateway":
            routes = [(self.fix, self._gateway_in), (self.reports, self._gateway_out)]
        elif self.role == "sequencer":
            routes = [(self.intake, self._forwarder(self.intake, self.stream))]
        else:
            routes = [(self.stream, self._forwarder(self.stream, self.reports))]
        for sock, _ in routes:
            poller.register(sock, zmq.POLLIN)
        while not self.stopping:
            ready = dict(poller.poll())
            if self.signals.fd in ready:
                self.signals.drain()
            for sock, move in routes:
                if sock in ready:
                    move()

    def _forwarder(self, source: zmq.Socket, sink: zmq.Socket):
        def move() -> None:
            recv, send, noblock = source.recv_multipart, sink.send_multipart, zmq.NOBLOCK
            count = 0
            try:
                for count in range(MESSAGES_PER_TURN):
                    send(recv(noblock))
                count = MESSAGES_PER_TURN
            except zmq.Again:
                pass
            self.forwarded += count
        return move

    def _gateway_in(self) -> None:
        recv, send, topic, noblock = self.fix.recv_multipart, self.intake.send_multipart, self.topic, zmq.NOBLOCK
        count = 0
        try:
            for count in range(MESSAGES_PER_TURN):
                identity, frame = recv(noblock)
                send([topic, identity, frame])
            count = MESSAGES_PER_TURN
        except zmq.Again:
            pass
        self.forwarded += count

    def _gateway_out(self) -> None:
        recv, send, noblock = self.reports.recv_multipart, self.fix.send_multipart, zmq.NOBLOCK
        count = 0
        try:
            for count in range(MESSAGES_PER_TURN):
                _, identity, frame = recv(noblock)
                send([identity, frame], noblock)
            count = MESSAGES_PER_TURN
        except zmq.Again:
            pass
        self.forwarded += count

    def _close(self) -> None:
        for sock in self.sockets:
            sock.close()
        self.context.term()
        self.signals.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.relay", description=__doc__.splitlines()[0])
    parser.add_argument("--role", required=True, choices=ROLES)
    parser.add_argument("--config", help="configuration file (default: $EXCHANGE_CONFIG, else the packaged one)")
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    return Relay(config, args.role).run()


if __name__ == "__main__":
    sys.exit(main())
