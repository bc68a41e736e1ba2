"""Quotation's answers to history queries (common/market.py lists them): bars, recent trades, a depth
snapshot, the ticker. Pure: the core and the store are passed in, and the time."""

from __future__ import annotations

from typing import Any, Callable

from common.config import ExchangeConfig
from common.market import INTERVAL_MS, INTERVALS, MAX_BARS, MAX_TRADES
from quotation.core import QuotationCore, bar_view, fill_flat, trade_view
from quotation.store import QuotationStore

DEFAULT_BARS = 500
DEFAULT_TRADES = 100
_INTERVAL_INDEX = {name: index for index, (name, _) in enumerate(INTERVALS)}


class BadQuery(ValueError):
    pass


def answer(core: QuotationCore, store: QuotationStore, query: Any, now_ms: int) -> dict[str, Any]:
    """The reply to one query map: ``{"id", "ok": True, ...}`` or ``{"id", "ok": False, "error"}``."""
    if not isinstance(query, dict):
        return {"id": None, "ok": False, "error": "a query is a map"}
    reply: dict[str, Any] = {"id": query.get("id")}
    try:
        kind = query.get("q")
        handler = _HANDLERS.get(kind) if isinstance(kind, str) else None
        if handler is None:
            raise BadQuery(f"unknown query kind {kind!r}: one of {', '.join(_HANDLERS)}")
        reply.update(handler(core, store, query, now_ms))
        reply["ok"] = True
    except BadQuery as exc:
        reply.update(ok=False, error=str(exc))
    return reply


def _symbol(config: ExchangeConfig, query: dict) -> int:
    name = query.get("symbol")
    if not isinstance(name, str):
        raise BadQuery("symbol is required (a name such as BTC-USDT)")
    for symbol in config.symbols:
        if symbol.name == name:
            return symbol.id
    raise BadQuery(f"unknown symbol {name!r}")


def _integer(query: dict, key: str, *, default: int | None = None, minimum: int = 0,
             maximum: int | None = None) -> int | None:
    value = query.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadQuery(f"{key} must be an integer")
    if value < minimum or (maximum is not None and value > maximum):
        raise BadQuery(f"{key} must be between {minimum} and {maximum}" if maximum is not None
                       else f"{key} must be at least {minimum}")
    return value


def _bars(core: QuotationCore, store: QuotationStore, query: dict, now_ms: int) -> dict:
    symbol = _symbol(core.config, query)
    interval = query.get("interval")
    if interval not in INTERVAL_MS:
        raise BadQuery(f"interval must be one of {', '.join(INTERVAL_MS)}")
    length = INTERVAL_MS[interval]
    limit = _integer(query, "limit", default=DEFAULT_BARS, minimum=1, maximum=MAX_BARS)
    end = min(_integer(query, "end", default=now_ms), now_ms)
    start = _integer(query, "start")
    if start is None:
        start = end - end % length - (limit - 1) * length
    elif start > end:
        raise BadQuery("start is after end")
    start = max(0, start - start % length)  # the bar that contains it (none before the Unix epoch)
    end = min(end, start - start % length + limit * length - 1)
    stored, before = store.bars(symbol, _INTERVAL_INDEX[interval], start, end, limit)
    bars = fill_flat(stored, length, start=start, end=end, before=before)[:limit]
    config = core.config.symbols[symbol]
    return {"symbol": config.name, "interval": interval,
            "bars": [bar_view(config, interval, bar, closed=bar.open_time + length <= now_ms) for bar in bars]}


def _trades(core: QuotationCore, store: QuotationStore, query: dict, now_ms: int) -> dict:
    symbol = _symbol(core.config, query)
    after_id = _integer(query, "after_id")
    limit = _integer(query, "limit", default=DEFAULT_TRADES, minimum=1, maximum=MAX_TRADES)
    config = core.config.symbols[symbol]
    trades = store.trades(symbol, after_id=after_id, limit=limit)
    return {"symbol": config.name, "trades": [trade_view(config, trade) for trade in trades],
            "last_id": core.symbols[symbol].trade_id}


def _depth(core: QuotationCore, store: QuotationStore, query: dict, now_ms: int) -> dict:
    symbol = _symbol(core.config, query)
    limit = _integer(query, "limit", minimum=1)
    return core.depth(symbol, limit)


def _ticker(core: QuotationCore, store: QuotationStore, query: dict, now_ms: int) -> dict:
    symbol = _symbol(core.config, query)
    return {"ticker": core.ticker(symbol)}


_HANDLERS: dict[str, Callable[[QuotationCore, QuotationStore, dict, int], dict]] = {
    "bars": _bars,
    "trades": _trades,
    "depth": _depth,
    "ticker": _ticker,
}
