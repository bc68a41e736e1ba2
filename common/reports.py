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
- ``market_topic(symbol)`` = ``b"m00000."``: ``[topic, header, trades, levels]``, for the quotation
  process: ``trades`` the batch's TRADE events of the symbol (EVENT_DTYPE), ``levels`` BOOK_LEVEL_DTYPE
  records, the total now resting at every (price, side) of the book that the batch changed (0: the level
  is gone), read after the batch. The header adds ``seq``, the last command seq that touched the symbol's
  book or traded in it, and ``prev``, the ``seq`` of the topic's previous message. ``prev`` is part of the
  engine's state (snapshots keep it), so it chains messages across engine restarts: a subscriber that has
  seen everything up to seq ``s`` has missed something exactly when a message's ``prev`` is above ``s``.
- ``account_topic(a)`` = ``b"a000000001."``: ``[topic, header, events, items]``: every event of account
  ``a`` (its orders, its fills as either side, its balances), for the pusher; ``items`` a msgpack list with
  one ``[clordid, maker_clordid]`` per event: the ClOrdID of the account's own order in it (for a TRADE:
  of its taker order, and of its maker order; "" where the side is not the account's). The header adds
  ``seq`` and ``prev`` as on market topics, per account. The engine builds an account's messages only
  while someone subscribes to its exact topic (or to every account topic, prefix ``b"a"`` or ``b""``):
  it follows the subscriptions on its XPUB socket.

Queries: a DEALER sends one msgpack map per request, ``{"id": any, "q": kind, ...}``; the reply is one map
``{"id": same, "ok": bool, ...}``. Kinds: ``"order"`` (``account``, ``order_id`` or ``clordid``),
``"open_orders"`` (``account``, optional ``symbol``), ``"balances"`` (``account``), ``"resend"``
(``gateway``, ``from``: the report messages ``n >= from`` still kept), ``"head"`` (the last applied seq),
``"state"`` (the last applied seq and ``Engine.state_hash()`` there), ``"market"`` (``symbol``, ``after``:
the market messages with ``seq > after`` still kept, oldest first, as ``[seq, prev, trades, levels]``;
``complete`` says whether they follow on from ``after`` without a dropped message), ``"depth"``
(``symbol``: every level of the book, ``bids`` and ``asks`` as ``[price, qty]`` best first), ``"history"``
(``account``, optional ``symbol`` and ``limit``: the account's newest orders, open and ended, each with
its ``fills`` as ``[seq, ts, price, qty, amount, fee, maker]``). Every reply
carries ``seq``, the last command the engine had applied when it answered (a snapshot's position, for the
Clone pattern: a subscriber takes a snapshot, then keeps the messages whose ``seq`` is above it).
"""

from __future__ import annotations

from dataclasses import dataclass

import msgpack
import numpy as np

from common.records import BOOK_LEVEL_DTYPE, EVENT_DTYPE

GATEWAY_PREFIX = b"r"
MARKET_PREFIX = b"m"
ACCOUNT_PREFIX = b"a"


def gateway_topic(gateway: int) -> bytes:
    return b"r%05d." % gateway


def market_topic(symbol: int) -> bytes:
    return b"m%05d." % symbol


def account_topic(account: int) -> bytes:
    return b"a%09d." % account


def account_of_topic(topic: bytes) -> int | None:
    """The account of an exact account topic (``b"a000000007."`` -> 7), else None."""
    if len(topic) == 11 and topic[:1] == ACCOUNT_PREFIX and topic[-1:] == b"." and topic[1:10].isdigit():
        return int(topic[1:10])
    return None


def covers_every_account(subscription: bytes) -> bool:
    """Whether a SUB subscription (a topic prefix) takes every account topic: ``b""`` or ``b"a"``."""
    return ACCOUNT_PREFIX.startswith(subscription)


class ReportError(ValueError):
    """Frames that are not a report message."""


@dataclass
class ReportMessage:
    topic: bytes
    n: int  # this topic's message counter
    events: np.ndarray  # EVENT_DTYPE
    items: list | None = None  # gateway topics: one map per event; account topics: [clordid, maker_clordid]
    epoch: int = 0  # the publishing engine process's start-up draw; counters start at 1 with each
    heartbeat: bool = False  # no events: ``n`` is the topic's last message so far
    seq: int = 0  # market and account topics: the last seq that concerned the topic
    prev: int = 0  # market and account topics: ``seq`` of the topic's previous message (0: none)
    levels: np.ndarray | None = None  # market topics: BOOK_LEVEL_DTYPE


def encode_report(message: ReportMessage) -> list[bytes]:
    header = {"n": message.n, "epoch": message.epoch}
    if message.heartbeat:
        header["heartbeat"] = True
    if message.topic[:1] != GATEWAY_PREFIX:
        header["seq"] = message.seq
        header["prev"] = message.prev
    frames = [message.topic, msgpack.packb(header),
              np.ascontiguousarray(message.events, dtype=EVENT_DTYPE).tobytes()]
    if message.levels is not None:
        frames.append(np.ascontiguousarray(message.levels, dtype=BOOK_LEVEL_DTYPE).tobytes())
    elif message.items is not None:
        frames.append(msgpack.packb(message.items, use_bin_type=True))
    return frames


def decode_report(frames: list[bytes]) -> ReportMessage:
    topic = frames[0] if frames else b""
    market = topic[:1] == MARKET_PREFIX
    try:
        header = msgpack.unpackb(frames[1])
        events = np.frombuffer(frames[2], dtype=EVENT_DTYPE)
        items = levels = None
        if len(frames) > 3:
            if market:
                levels = np.frombuffer(frames[3], dtype=BOOK_LEVEL_DTYPE)
            else:
                items = msgpack.unpackb(frames[3], raw=False)
        message = ReportMessage(topic, int(header["n"]), events, items, int(header.get("epoch", 0)),
                                bool(header.get("heartbeat", False)), int(header.get("seq", 0)),
                                int(header.get("prev", 0)), levels)
    except Exception as exc:
        raise ReportError(f"malformed report message: {exc}") from None
    if items is not None and len(items) != len(events):
        raise ReportError("report items and events disagree")
    return message


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
