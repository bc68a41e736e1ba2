"""The pusher process keeping connections honest, with raw sockets speaking WebSocket by hand (RFC 6455)
against the real exchange: a client that does not read is disconnected with a reason while the others
go on; a client that does not answer pings is closed; connections beyond the limit are refused."""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import time

import pytest

from client.market import MarketStream
from client.sync import Client
from tests.harness import Exchange, poll

TIMEOUT = 20.0
SEND_BUFFER = 4096
MAX_CONNECTIONS = 6


@pytest.fixture(scope="module")
def exchange():
    def configure(document: dict) -> None:
        document["pusher"].update(send_buffer_bytes=SEND_BUFFER, ping_interval_s=1, ping_timeout_s=1,
                                  max_connections=MAX_CONNECTIONS)

    with Exchange(configure=configure) as running:
        yield running


class RawClient:
    """A WebSocket client by hand: it reads only when told to, and never answers a ping."""

    def __init__(self, url: str, *, receive_buffer: int | None = None):
        host, port = url.removeprefix("ws://").split(":")
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer is not None:  # a small window: the server's side fills up sooner
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.settimeout(TIMEOUT)
        self.sock.connect((host, int(port)))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
                          .encode())
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(4096)
            assert chunk, "closed during the handshake"
            self.buffer += chunk
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        self.status = head.split(b"\r\n")[0].decode()

    def send_text(self, text: str) -> None:
        payload = text.encode()
        mask = os.urandom(4)
        header = bytes([0x81]) + (bytes([0x80 | len(payload)]) if len(payload) < 126
                                  else bytes([0x80 | 126]) + struct.pack("!H", len(payload)))
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def frames(self, deadline: float):
        """(opcode, payload) of every frame until the server closes the connection or the deadline."""
        while time.monotonic() < deadline:
            while len(self.buffer) >= 2:
                opcode, length = self.buffer[0] & 0x0F, self.buffer[1] & 0x7F
                offset = {126: 4, 127: 10}.get(length, 2)  # the header, with its extended length
                if len(self.buffer) < offset:
                    break  # the rest of the header is still on its way
                if length == 126:
                    length = struct.unpack("!H", self.buffer[2:4])[0]
                elif length == 127:
                    length = struct.unpack("!Q", self.buffer[2:10])[0]
                if len(self.buffer) < offset + length:
                    break
                yield opcode, self.buffer[offset:offset + length]
                self.buffer = self.buffer[offset + length:]
            try:
                chunk = self.sock.recv(1 << 16)
            except (ConnectionResetError, socket.timeout):
                return
            if not chunk:
                return
            self.buffer += chunk

    def close_frame(self) -> tuple[int, str] | None:
        for opcode, payload in self.frames(time.monotonic() + TIMEOUT):
            if opcode == 0x8:
                return struct.unpack("!H", payload[:2])[0], payload[2:].decode()
        return None

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def deep_book(exchange):
    """Resting buys at 300 prices of BTC-USDT: a depth snapshot of some 10 KB."""
    account = exchange.open_account({"USDT": "100000000"})
    with Client(exchange.fix_endpoint(), account.key_id, account.secret, timeout=TIMEOUT) as trader:
        trader.logon()
        clordids = [trader.buy("BTC-USDT", "0.001", f"{20000 + 10 * i}") for i in range(300)]
        trader.first_report(clordids[-1])
    with MarketStream(exchange.pusher_url, open_timeout=60) as stream:
        stream.subscribe("depth.BTC-USDT")
        poll(lambda: len(stream.recv()["data"].get("bids", ())) == 300, timeout=TIMEOUT, what="the book")



def test_a_client_that_does_not_read_is_disconnected_with_a_reason_and_the_others_go_on(exchange, deep_book):
    watcher = MarketStream(exchange.pusher_url, open_timeout=60)
    slow = RawClient(exchange.pusher_url, receive_buffer=4096)
    try:
        watcher.subscribe("ticker.BTC-USDT")
        # Every subscribe to a depth channel is answered with the whole book (10 KB): requests the server
        # must answer, from a client that reads none of it.
        for i in range(4_000):
            try:
                slow.send_text(json.dumps({"op": "subscribe" if i % 2 == 0 else "unsubscribe",
                                           "channel": "depth.BTC-USDT"}))
            except OSError:
                break  # the server has closed it
            if i % 500 == 0 and "too slow" in exchange.log("pusher"):
                break
        poll(lambda: "too slow" in exchange.log("pusher"), timeout=TIMEOUT, what="the slow client closed")
        code, reason = slow.close_frame()
        assert code == 1008 and reason.startswith("too slow: more than 4096 bytes")
        assert watcher.request("ping")["event"] == "pong"  # the other connection was never held up
    finally:
        slow.close()
        watcher.close()


def test_a_client_that_does_not_answer_pings_is_closed(exchange):
    silent = RawClient(exchange.pusher_url)
    try:
        started = time.monotonic()
        opcodes = [opcode for opcode, _ in silent.frames(time.monotonic() + TIMEOUT)]
        assert 0x9 in opcodes, "the server pinged"
        assert 0x8 in opcodes and time.monotonic() - started < TIMEOUT, "the server closed the connection"
    finally:
        silent.close()


def test_connections_beyond_the_limit_are_refused(exchange):
    held = []
    try:
        for _ in range(MAX_CONNECTIONS + 5):  # (others may still be closing)
            client = RawClient(exchange.pusher_url)
            held.append(client)
            if client.status.startswith("HTTP/1.1 503"):
                break
        assert held[-1].status.startswith("HTTP/1.1 503"), [c.status for c in held]
    finally:
        for client in held:
            client.close()
