"""WebSocket subscribers for the pusher benchmark (bench/pusher.py drives them over pipes).

Two kinds, each in processes of their own:

- **drain** connections do what the least a client can do costs: a WebSocket handshake by hand, the
  subscribe requests (masked text frames, RFC 6455 section 5.3), then reading whatever arrives, counting
  bytes. No frame is parsed and no JSON decoded, so that a few processes can hold hundreds of
  connections on a 2-core machine. (The benchmark's pusher sends no pings, which a drain could not
  answer.) Equal byte counts across them show that every connection was served alike.
- **sample** connections (the ``websockets`` client) parse every message, stamp it on receipt
  (``time.time_ns()``), and for every trade record ``receipt - trade time`` (trade times are whole
  milliseconds); they also check that depth diffs chain (``U`` = previous ``u`` + 1) and trade ids have
  no gap or repeat.

Commands on the pipe: ``("start",)`` zeroes the counters, ``("stop",)`` answers with the counts (and,
for samples, the latencies in microseconds), ``("last",)`` (samples) answers when the last message
arrived, ``("close",)`` ends the process.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import selectors
import socket
import time
import traceback
from typing import Any

import numpy as np

HANDSHAKE_TIMEOUT_S = 30.0
READ_BYTES = 1 << 20
# Drain connections read their sockets at most this often. At 10,000 trades/s a connection gets about
# 0.6 MB a second, 60 KB a round, well within a socket's receive buffer, so the pusher's writes never wait
# for them; read every 20 ms, the 980 drain connections took 0.45 of a core from the exchange.
DRAIN_PAUSE_S = 0.1


def _masked_text(payload: bytes) -> bytes:
    """A client text frame (FIN, opcode 1), masked as clients must (RFC 6455 5.3); payload < 126 bytes."""
    if len(payload) >= 126:
        raise ValueError("subscribe requests are short")
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x81, 0x80 | len(payload)]) + mask + masked


def _open_raw(host: str, port: int, channels: list[str]) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=HANDSHAKE_TIMEOUT_S)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("the server closed the connection during the handshake")
        response += chunk
    head, _, rest = response.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(f"handshake refused: {head.splitlines()[0]!r}")
    for channel in channels:
        sock.sendall(_masked_text(json.dumps({"op": "subscribe", "channel": channel}).encode()))
    sock.setblocking(False)
    return sock


def drain_main(pipe: Any, options: dict) -> None:
    """Hold ``options["connections"]`` drain connections until told to close."""
    try:
        socks = [_open_raw(options["host"], options["port"], options["channels"])
                 for _ in range(options["connections"])]
        counts = [0] * len(socks)
        closed = [False] * len(socks)
        selector = selectors.DefaultSelector()
        for index, sock in enumerate(socks):
            selector.register(sock, selectors.EVENT_READ, index)
        selector.register(pipe.fileno(), selectors.EVENT_READ, -1)
        pipe.send(("ready",))
        cpu_start = time.process_time()
        while True:
            # A pause after each round lets the data of many messages gather in the sockets: one read
            # then takes them all, which keeps these processes' CPU from crowding out the exchange.
            time.sleep(DRAIN_PAUSE_S)
            for key, _ in selector.select():
                index = key.data
                if index == -1:
                    command = pipe.recv()
                    if command[0] == "start":
                        counts = [0] * len(socks)
                        cpu_start = time.process_time()
                        pipe.send(("started",))
                    elif command[0] == "stop":
                        pipe.send(("stats", {"bytes": counts, "closed": sum(closed),
                                             "cpu_s": time.process_time() - cpu_start}))
                    elif command[0] == "close":
                        for sock in socks:
                            sock.close()
                        return
                    continue
                try:
                    data = socks[index].recv(READ_BYTES)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    selector.unregister(socks[index])
                    closed[index] = True
                    continue
                counts[index] += len(data)
    except Exception:  # noqa: BLE001 - reported to the driver, which fails the run
        pipe.send(("error", traceback.format_exc()))


def sample_main(pipe: Any, options: dict) -> None:
    try:
        asyncio.run(_sample(pipe, options))
    except Exception:  # noqa: BLE001
        pipe.send(("error", traceback.format_exc()))


async def _sample(pipe: Any, options: dict) -> None:
    from websockets.asyncio.client import connect

    url = f"ws://{options['host']}:{options['port']}"
    connections = [await connect(url, compression=None, max_size=None, ping_interval=None)
                   for _ in range(options["connections"])]
    for connection in connections:
        for channel in options["channels"]:
            await connection.send(json.dumps({"op": "subscribe", "channel": channel}))
    state = {"measuring": False, "latencies_us": [], "messages": 0, "trades": 0, "bytes": 0,
             "depth_breaks": 0, "trade_breaks": 0, "last_ns": 0}

    async def read(connection) -> None:
        last_u = None
        last_id = None
        async for text in connection:
            received_ns = state["last_ns"] = time.time_ns()
            message = json.loads(text)
            if "event" in message:  # the answers to the subscribe requests
                continue
            channel = message.get("channel", "")
            if channel.startswith("depth."):
                data = message["data"]
                if message["type"] == "snapshot":
                    last_u = data["lastUpdateId"]
                else:
                    if last_u is not None and data["U"] != last_u + 1 and data["u"] > last_u:
                        state["depth_breaks"] += 1
                    last_u = data["u"]
            elif channel.startswith("trades."):
                trades = message["data"]["trades"]
                for trade in trades:
                    if last_id is not None and trade["id"] != last_id + 1:
                        state["trade_breaks"] += 1
                    last_id = trade["id"]
                if state["measuring"]:
                    state["trades"] += len(trades)
                    state["latencies_us"].extend((received_ns - t["time"] * 1_000_000) // 1_000 for t in trades)
            if state["measuring"]:
                state["messages"] += 1
                state["bytes"] += len(text)

    readers = [asyncio.create_task(read(connection)) for connection in connections]
    loop = asyncio.get_running_loop()
    commands: asyncio.Queue = asyncio.Queue()
    loop.add_reader(pipe.fileno(), lambda: commands.put_nowait(pipe.recv()))
    pipe.send(("ready",))
    cpu_start = time.process_time()
    while True:
        command = await commands.get()
        if command[0] == "start":
            state.update(measuring=True, latencies_us=[], messages=0, trades=0, bytes=0)
            cpu_start = time.process_time()
            pipe.send(("started",))
        elif command[0] == "last":  # when the last message arrived (the driver waits for quiet)
            pipe.send(("last", state["last_ns"]))
        elif command[0] == "last":  # when the last message arrived (the driver waits for quiet)
            pipe.send(("last", state["last_ns"]))
        elif command[0] == "stop":
            state["measuring"] = False
            pipe.send(("stats", {"latencies_us": np.array(state["latencies_us"], dtype=np.int64),
                                 "messages": state["messages"], "trades": state["trades"], "bytes": state["bytes"],
                                 "depth_breaks": state["depth_breaks"], "trade_breaks": state["trade_breaks"],
                                 "closed": sum(1 for r in readers if r.done()), "connections": len(connections),
                                 "cpu_s": time.process_time() - cpu_start}))
        elif command[0] == "close":
            loop.remove_reader(pipe.fileno())
            for connection in connections:
                await connection.close()
            for reader in readers:
                reader.cancel()
            return
