"""Engine -> everyone downstream: what the engine publishes (PUB), and its query socket (ROUTER).

Topics travel in the first frame; each topic has its own message counter ``n`` so that a subscriber
notices a gap (PUB drops at its high-water mark, and before a subscription reaches it). Every header
also carries ``epoch``, a random number each engine process draws when it starts: the counters start
again at 1 with every epoch, so a subscriber that sees a new epoch knows the engine restarted and asks
for what it missed of the new one:

- ``gateway_topic(g)`` = ``b"r00001."``: reports for gateway ``g``.
  ``[topic, header, events, items]``: ``header`` msgpack ``{"n": k, "epoch": e}``; a *heartbeat*
  (``"heartbeat": true`` in the header, no events, no items) repeats the topic's last ``n`` when the
  engine has been quiet for a while, so that a gateway which missed the last messages (or the first
  ones of a restarted engine) notices and asks for them; ``events`` EVENT_DTYPE records;
  ``items`` a msgpack list, one map per event record, saying whom it is for on that gateway:
  ``{"session": s, "account": a, "role": r, "clordid": c, "cum_quote": q, "resend": bool}``, where ``role``
  is ``"order"`` (an event about the order placed by that session, or a reject of its command),
  ``"taker"`` or ``"maker"`` (a TRADE seen from that side; a trade whose two sides belong to different
  gateways is sent to each), and ``cum_quote`` the order's filled quote amount so far (for AvgPx).
- ``market_topic(symbol)`` = ``b"m00000."``: ``[topic, header, events]``: every TRADE, and every order
  event that changes the symbol's book, for the quotation process.
- ``account_topic(a)`` = ``b"a000000001."``: ``[topic, header, events]``: every event of account ``a``
  (its orders, its fills as either side, its balances), for the pusher.

Queries: a DEALER sends one msgpack map per request, ``{"id": any, "q": kind, ...}``; the reply is one map
``{"id": same, "ok": bool, ...}``. Kinds: ``"order"`` (``account``, ``order_id`` or ``clordid``),
``"open_orders"`` (``account``, optional ``symbol``), ``"balances"`` (``account``), ``"resend"``
(``gateway``, ``from``: the report messages ``n >= from`` still kept), ``"head"`` (the last applied seq),
``"state"`` (the last applied seq and ``Engine.state_hash()`` there).
"""

from __future__ import annotations

from dataclasses import dataclass

import msgpack
import numpy as np

from common.records import EVENT_DTYPE

GATEWAY_PREFIX = b"r"
MARKET_PREFIX = b"m"
ACCOUNT_PREFIX = b"a"


def gateway_topic(gateway: int) -> bytes:
    return b"r%05d." % gateway


def market_topic(symbol: int) -> bytes:
    return b"m%05d." % symbol


def account_topic(account: int) -> bytes:
    return b"a%09d." % account


class ReportError(ValueError):
    """Frames that are not a report message."""


@dataclass
class ReportMessage:
    topic: bytes
    n: int  # this topic's message counter
    events: np.ndarray  # EVENT_DTYPE
    items: list[dict] | None = None  # gateway topics only
    epoch: int = 0  # the publishing engine process's start-up draw; counters start at 1 with each
    heartbeat: bool = False  # no events: ``n`` is the topic's last message so far


def encode_report(message: ReportMessage) -> list[bytes]:
    header = {"n": message.n, "epoch": message.epoch}
    if message.heartbeat:
        header["heartbeat"] = True
    frames = [message.topic, msgpack.packb(header),
              np.ascontiguousarray(message.events, dtype=EVENT_DTYPE).tobytes()]
    if message.items is not None:
        frames.append(msgpack.packb(message.items, use_bin_type=True))
    return frames


def decode_report(frames: list[bytes]) -> ReportMessage:
    try:
        header = msgpack.unpackb(frames[1])
        events = np.frombuffer(frames[2], dtype=EVENT_DTYPE)
        items = msgpack.unpackb(frames[3], raw=False) if len(frames) > 3 else None
    except Exception as exc:
        raise ReportError(f"malformed report message: {exc}") from None
    if items is not None and len(items) != len(events):
        raise ReportError("report items and events disagree")
    return ReportMessage(frames[0], int(header["n"]), events, items, int(header.get("epoch", 0)),
                         bool(header.get("heartbeat", False)))


def encode_query(query: dict) -> list[bytes]:
    return [msgpack.packb(query, use_bin_type=True)]


def decode_query(frames: list[bytes]) -> dict:
    try:
        query = msgpack.unpackb(frames[-1], raw=False)
    except Exception as exc:
        raise ReportError(f"malformed query: {exc}") from None
    if not isinstance(query, dict):
        raise ReportError("a query is a map")
    return query
