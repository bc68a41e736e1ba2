"""The floor under a market-data fan-out on this machine: one ``send`` of one message to each of N loopback
TCP connections, with nothing else at work.

    python -m bench.fanout --json                 # 1,000 connections, 600-byte messages
    python -m bench.fanout --connections 500

A WebSocket server hands every subscriber its own copy of a message to the kernel, one system call per
connection per message (or per coalesced batch of messages): no server written over the socket API can
deliver one message to N subscribers in less time than this round takes. The receiving ends are held in
the same process and emptied between rounds (not timed), so the figure is the sending side alone: the
loopback TCP stack, which on Linux also runs the receiver's half of it in the sender's system call.
``bench/pusher.py`` measures it in the same run as the pusher, as its floor.
"""

from __future__ import annotations

import argparse
import json
import resource
import socket
import statistics
import sys
import time

CONNECTIONS = 1000
MESSAGE_BYTES = 600  # about what a coalesced trades-and-depth message of the pusher benchmark weighs
ROUNDS = 21
RECEIVE_BYTES = 1 << 16


def _allow_descriptors(needed: int) -> None:
    """Raise this process's open-file limit towards ``needed`` (as far as the hard limit allows)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        allowed = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (allowed, hard))


def measure(connections: int = CONNECTIONS, message_bytes: int = MESSAGE_BYTES, rounds: int = ROUNDS) -> dict:
    """Median over ``rounds`` of the wall and CPU time of one round of sends (one to each connection)."""
    _allow_descriptors(2 * connections + 64)
    listener = socket.socket()
    senders: list[socket.socket] = []
    receivers: list[socket.socket] = []
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(connections)
        port = listener.getsockname()[1]
        for _ in range(connections):
            receivers.append(socket.create_connection(("127.0.0.1", port)))
            sender, _ = listener.accept()
            sender.setblocking(False)
            senders.append(sender)
        message = b"x" * message_bytes
        walls, cpus = [], []
        for _ in range(rounds):
            wall, cpu = time.perf_counter(), time.process_time()
            for sender in senders:
                sender.send(message)
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
            for receiver in receivers:
                receiver.recv(RECEIVE_BYTES)
    finally:
        for sock in (*senders, *receivers, listener):
            sock.close()
    round_s = statistics.median(walls)
    return {
        "connections": connections,
        "message_bytes": message_bytes,
        "rounds": rounds,
        "round_ms": round(round_s * 1000, 2),
        "round_cpu_ms": round(statistics.median(cpus) * 1000, 2),
        "send_us": round(round_s / connections * 1e6, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fanout", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--connections", type=int, default=CONNECTIONS)
    parser.add_argument("--message-bytes", type=int, default=MESSAGE_BYTES)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    args = parser.parse_args(argv)
    if args.connections < 1 or args.message_bytes < 1 or args.rounds < 1:
        parser.error("--connections, --message-bytes and --rounds must be at least 1")
    result = measure(args.connections, args.message_bytes, args.rounds)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"one round of {result['connections']:,} sends of {result['message_bytes']} bytes: "
              f"{result['round_ms']} ms ({result['send_us']} us a send, CPU {result['round_cpu_ms']} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
