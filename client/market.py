"""A client of the pusher's WebSocket market data (docs/market-data.md), blocking, on ``websockets.sync``.

    with MarketStream("ws://127.0.0.1:7200") as stream:
        stream.subscribe("depth.BTC-USDT")
        book = DepthBook()
        while True:
            message = stream.recv()
            if message.get("channel") == "depth.BTC-USDT":
                book.apply(message)            # snapshot or diff, by the diff-depth rule
                print(book.best_bid(), book.best_ask())

``DepthBook`` keeps a book exactly in step with the exchange's: a ``snapshot`` replaces it, a diff applies
only if it follows on (``U`` <= lastUpdateId + 1 <= ``u`` for the first after a snapshot, then
``U`` == previous ``u`` + 1), and :class:`OutOfSync` says when it does not: subscribe again for a new
snapshot. Prices and quantities stay decimal strings.
"""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any

from websockets.sync.client import ClientConnection, connect

from common.protocol import secret_bytes, sign_stream_auth


class OutOfSync(Exception):
    """A diff that does not follow on from the book: take a new snapshot."""


class StreamError(Exception):
    """The server answered a request with an error."""


class DepthBook:
    def __init__(self) -> None:
        self.bids: dict[str, str] = {}
        self.asks: dict[str, str] = {}
        self.last_update_id: int | None = None
        self._first = True

    def apply(self, message: dict[str, Any]) -> bool:
        """Take one message of a depth channel; True if it changed the book."""
        data = message["data"]
        if message.get("type") == "snapshot":
            self.bids = {price: qty for price, qty in data["bids"]}
            self.asks = {price: qty for price, qty in data["asks"]}
            self.last_update_id = int(data["lastUpdateId"])
            self._first = True
            return True
        if self.last_update_id is None:
            return False  # no snapshot yet: a diff before it is dropped (the snapshot includes it)
        first, last = int(data["U"]), int(data["u"])
        if last <= self.last_update_id:
            return False
        if self._first:
            if not first <= self.last_update_id + 1 <= last:
                raise OutOfSync(f"first diff {first}..{last} does not cover {self.last_update_id + 1}")
        elif first != self.last_update_id + 1:
            raise OutOfSync(f"diff {first}..{last} after {self.last_update_id}")
        for side, levels in ((self.bids, data["bids"]), (self.asks, data["asks"])):
            for price, qty in levels:
                if Decimal(qty) == 0:
                    side.pop(price, None)
                else:
                    side[price] = qty
        self.last_update_id = last
        self._first = False
        return True

    def best_bid(self) -> tuple[str, str] | None:
        return max(self.bids.items(), key=lambda level: Decimal(level[0]), default=None)

    def best_ask(self) -> tuple[str, str] | None:
        return min(self.asks.items(), key=lambda level: Decimal(level[0]), default=None)


class MarketStream:
    """One WebSocket connection to the pusher. Requests wait for their answer; data messages that arrive
    meanwhile are kept for ``recv``."""

    def __init__(self, url: str, *, timeout: float = 10.0, open_timeout: float = 10.0):
        self.timeout = timeout
        deadline = time.monotonic() + open_timeout
        while True:  # the server may still be starting
            try:
                self.connection: ClientConnection = connect(url, open_timeout=open_timeout, compression=None,
                                                            max_size=None, legacy=True)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self._pending: list[dict[str, Any]] = []
        self._next_id = 0

    def __enter__(self) -> "MarketStream":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self.connection.close()

    def request(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send a request and return its answer (StreamError if it is an error)."""
        self._next_id += 1
        request_id = self._next_id
        self.connection.send(json.dumps({"op": op, "id": request_id, **fields}))
        deadline = time.monotonic() + self.timeout
        while True:
            message = self._receive(deadline)
            if message.get("id") == request_id and "event" in message:
                if message["event"] == "error":
                    raise StreamError(message.get("reason", "error"))
                return message
            self._pending.append(message)

    def subscribe(self, channel: str, **params: Any) -> dict[str, Any]:
        return self.request("subscribe", channel=channel, **params)

    def unsubscribe(self, channel: str) -> dict[str, Any]:
        return self.request("unsubscribe", channel=channel)

    def auth(self, key_id: str, secret: str) -> dict[str, Any]:
        """Authenticate as an account (its API key id and hex secret), for the private channels."""
        timestamp = time.time_ns() // 1_000_000
        return self.request("auth", key=key_id, ts=timestamp,
                            sig=sign_stream_auth(secret_bytes(secret), timestamp, key_id))

    def recv(self, timeout: float | None = None) -> dict[str, Any]:
        """The next message (TimeoutError if none comes in time)."""
        if self._pending:
            return self._pending.pop(0)
        return self._receive(time.monotonic() + (self.timeout if timeout is None else timeout))

    def _receive(self, deadline: float) -> dict[str, Any]:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no message in time")
        return json.loads(self.connection.recv(timeout=remaining))
