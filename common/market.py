"""Market data on the wire: quotation -> pusher (PUB/SUB) and quotation's query socket (ROUTER).

Channels (docs/market-data.md) are named as clients name them: ``trades.BTC-USDT``, ``depth.BTC-USDT``,
``kline.1m.BTC-USDT``, ``ticker.BTC-USDT``. Quotation publishes what one turn of its loop produced as
one ZeroMQ message, a *bundle* (a message costs the sender and the receiver several microseconds of
CPU whatever its size, and a turn updates about ten channels):
``[b"Q", header, index, body_1, ..., body_k]``, ``header`` msgpack ``{"epoch": e}`` (quotation's random
draw at start, so that a restart is told), ``index`` a msgpack array of ``[channel, n]``, one per body in
order (``n`` counts the channel's messages from 1 in each quotation process), each ``body`` a msgpack
map, the ``data`` a WebSocket client receives. Prices and quantities in bodies are decimal strings;
times are milliseconds since the Unix epoch (UTC).

- ``trades.S``: ``{"trades": [trade, ...]}``; a trade is ``{"id", "seq", "time", "price", "qty",
  "quote_qty", "side"}``: ``id`` numbers the symbol's trades 1, 2, 3, ... without a gap, ``seq`` is the
  command that made it, ``side`` the taker's ("buy" or "sell").
- ``depth.S``: ``{"U", "u", "bids", "asks"}``: the levels that changed, ``[price, qty]`` (qty "0": the
  level is gone), in the update-id range ``U..u`` (update ids are the exchange's sequence numbers;
  ``U`` is always the previous diff's ``u`` + 1). A snapshot (query ``depth``) has ``lastUpdateId``.
- ``kline.I.S``: a bar, ``{"interval", "open_time", "close_time", "open", "high", "low", "close",
  "volume", "quote_volume", "trades", "closed"}``; intervals ``INTERVALS``.
- ``ticker.S``: the rolling 24 hours, ``{"open_time", "close_time", "open", "high", "low", "last",
  "volume", "quote_volume", "trades", "change", "change_pct", "best_bid", "best_bid_qty", "best_ask",
  "best_ask_qty"}``.

Queries: one msgpack map ``{"id": any, "q": kind, ...}``, one reply ``{"id": same, "ok": bool, ...}``
(``"error"`` when not ok). Kinds: ``"bars"`` (``symbol``, ``interval``, optional ``start``, ``end`` (ms,
inclusive) and ``limit``: ``{"bars": [bar, ...]}``, oldest first, intervals without a trade filled with
flat bars at the previous close), ``"trades"`` (``symbol``, optional ``after_id`` and ``limit``: the
newest trades, or those after ``after_id``, oldest first), ``"depth"`` (``symbol``, optional ``limit``:
``{"lastUpdateId", "bids", "asks"}``), ``"ticker"`` (``symbol``: the ticker map).
"""

from __future__ import annotations

from typing import Any

import msgpack

TRADES = "trades"
DEPTH = "depth"
KLINE = "kline"
TICKER = "ticker"

# (name, length in ms). UTC boundaries: Unix time has no leap seconds, so a bar of every interval
# starts at a multiple of its length since the epoch (days at 00:00 UTC, 4h bars at 00, 04, 08... UTC).
INTERVALS: tuple[tuple[str, int], ...] = (
    ("1s", 1_000),
    ("1m", 60_000),
    ("5m", 300_000),
    ("15m", 900_000),
    ("1h", 3_600_000),
    ("4h", 14_400_000),
    ("1d", 86_400_000),
)
INTERVAL_MS = dict(INTERVALS)
TICKER_WINDOW_MS = 86_400_000
MAX_BARS = 1_000  # bars in one reply at most
MAX_TRADES = 1_000  # trades in one reply at most

SIDE_NAMES = {1: "buy", 2: "sell"}


class MarketError(ValueError):
    """Frames that are not a market data message, or a channel name that names nothing."""


def trades_channel(symbol: str) -> str:
    return f"{TRADES}.{symbol}"


def depth_channel(symbol: str) -> str:
    return f"{DEPTH}.{symbol}"


def kline_channel(interval: str, symbol: str) -> str:
    return f"{KLINE}.{interval}.{symbol}"


def ticker_channel(symbol: str) -> str:
    return f"{TICKER}.{symbol}"


def parse_channel(channel: str) -> tuple[str, str, str | None]:
    """(kind, symbol, interval or None) of a public channel name; MarketError if it is not one. The
    symbol is not checked against the configuration here."""
    parts = channel.split(".") if isinstance(channel, str) else []
    if len(parts) == 2 and parts[0] in (TRADES, DEPTH, TICKER) and parts[1]:
        return parts[0], parts[1], None
    if len(parts) == 3 and parts[0] == KLINE and parts[1] in INTERVAL_MS and parts[2]:
        return KLINE, parts[2], parts[1]
    raise MarketError(f"no public channel {channel!r}: trades.S, depth.S, kline.I.S or ticker.S, with I one of "
                      + ", ".join(INTERVAL_MS))


BUNDLE_TOPIC = b"Q"


def encode_publications(epoch: int, publications: list[tuple[str, int, dict[str, Any]]]) -> list[bytes]:
    """One bundle of (channel, n, body) publications (module docstring)."""
    pack = msgpack.Packer(use_bin_type=True).pack
    return [BUNDLE_TOPIC, pack({"epoch": epoch}), pack([[channel, n] for channel, n, _ in publications]),
            *[pack(body) for _, _, body in publications]]


def decode_publications(frames: list[bytes]) -> list[tuple[str, int, int, bytes]]:
    """(channel, n, epoch, the body still encoded) of each publication of a bundle: a reader that may not
    need a body decodes it later with ``decode_publication_body``."""
    try:
        if frames[0] != BUNDLE_TOPIC:
            raise ValueError(f"topic {bytes(frames[0][:16])!r}, not {BUNDLE_TOPIC!r}")
        epoch = int(msgpack.unpackb(frames[1])["epoch"])
        index = msgpack.unpackb(frames[2], raw=False)
        bodies = frames[3:]
        if not isinstance(index, list) or len(index) != len(bodies):
            raise ValueError(f"an index of {len(index) if isinstance(index, list) else 'no'} entries for "
                             f"{len(bodies)} bodies")
        return [(str(channel), int(n), epoch, bytes(body)) for (channel, n), body in zip(index, bodies)]
    except Exception as exc:
        raise MarketError(f"malformed market data message: {exc}") from None


def decode_publication_body(raw: bytes) -> dict[str, Any]:
    try:
        body = msgpack.unpackb(raw, raw=False)
    except Exception as exc:
        raise MarketError(f"malformed market data message: {exc}") from None
    if not isinstance(body, dict):
        raise MarketError("malformed market data message: the body is not a map")
    return body


def decode_query(frame: bytes) -> dict[str, Any]:
    try:
        query = msgpack.unpackb(frame, raw=False)
    except Exception as exc:
        raise MarketError(f"malformed query: {exc}") from None
    if not isinstance(query, dict):
        raise MarketError("a query is a map")
    return query


def bar_close_time(open_time: int, interval: str) -> int:
    return open_time + INTERVAL_MS[interval] - 1


def signed_text(value: int, step) -> str:
    """A signed count of ``step`` as decimal text (Step.format takes non-negative counts)."""
    return ("-" + step.format(-value)) if value < 0 else step.format(value)


def percent_text(change: int, base: int) -> str:
    """``change / base`` in percent with two decimals, rounded half away from zero; "0.00" if base is 0."""
    if base <= 0:
        return "0.00"
    hundredths, remainder = divmod(abs(change) * 10_000, base)
    if 2 * remainder >= base:
        hundredths += 1
    text = f"{hundredths // 100}.{hundredths % 100:02d}"
    return "-" + text if change < 0 and hundredths else text
