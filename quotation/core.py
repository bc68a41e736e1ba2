"""Quotation's pure core: the engine's market messages in; trades, depth diffs, K-line bars and tickers out.

    core = QuotationCore(config)
    core.restore(store.load())                 # where the last run stopped (quotation/store.py)
    gap = core.on_market(message)              # a market message of the engine (common/reports.py)
    core.on_tick(now_ms)                       # bars whose interval ended; the ticker's window slides
    publications, changes = core.take_output() # what to publish (common/market.py), what to store

No sockets, no clock: quotation/main.py does the I/O and passes the time in.

**Position and idempotence.** Per symbol the core remembers ``last_seq``, the last command seq it has
taken into account. A message whose ``seq`` is not above it was counted already and is ignored; its
trades with ``seq`` above it are the only ones counted (a replayed message may span both). A message
whose ``prev`` is above ``last_seq`` means one was missed: ``on_market`` returns a :class:`Gap` and the
caller fills it (``catch_up``) from the engine's kept messages or, if those no longer reach back, from a
depth snapshot of the engine (``resync``).

**Depth.** The core holds the symbol's L2 book (price -> lots per side) from the levels each message
carries: absolute totals read from the engine after the batch, so applying a level twice changes
nothing. A diff covers the update ids ``U..u``: ``U`` is the previous diff's ``u`` + 1 and ``u`` the
``seq`` of the last message in it; a client that holds a snapshot with ``lastUpdateId`` applies the diffs
by the rule Binance documents for its diff-depth stream (docs/market-data.md).

**Bars.** A trade at time ``t`` (ms, the command's timestamp) falls in the bar of each interval that
starts at ``t - t % length``. A bar is open, high, low, close (ticks), volume (lots), quote volume
(quote units) and trade count. Bars exist only where trades were; when an interval passes without a
trade, the stream shows a flat bar at the previous close (0 trades) and history queries fill such
intervals the same way (:func:`fill_flat`), as candle charts expect.

**Ticker.** The rolling 24 hours, at one-minute granularity: the 1,440 one-minute bars ending with the
current one (``open_time`` is where the window starts).
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from common.config import ExchangeConfig, SymbolConfig
from common.market import (
    INTERVALS,
    SIDE_NAMES,
    TICKER_WINDOW_MS,
    bar_close_time,
    depth_channel,
    kline_channel,
    percent_text,
    signed_text,
    ticker_channel,
    trades_channel,
)
from common.records import BOOK_LEVEL_DTYPE, EVENT_DTYPE, EventKind, Side
from common.reports import MARKET_PREFIX, ReportMessage

log = logging.getLogger("quotation.core")

_TRADE = int(EventKind.TRADE)
_BUY, _SELL = int(Side.BUY), int(Side.SELL)
_NS_PER_MS = 1_000_000
_MINUTE_MS = 60_000
_MINUTE = [name for name, _ in INTERVALS].index("1m")


@dataclass(slots=True)
class Bar:
    """One K-line bar, integers: prices in ticks, volume in lots, quote volume in quote units."""

    open_time: int  # ms
    open: int
    high: int
    low: int
    close: int
    volume: int = 0
    quote_volume: int = 0
    trades: int = 0

    @classmethod
    def flat(cls, open_time: int, price: int) -> "Bar":
        return cls(open_time, price, price, price, price)

    def add_run(self, first: int, high: int, low: int, last: int, qty: int, amount: int, count: int) -> None:
        """Trades in a row, summed up: the same as adding each (first price, highest, lowest, last price,
        total lots, total quote units, how many)."""
        if self.trades == 0:  # a flat bar takes its first trade's price as its open
            self.open, self.high, self.low = first, high, low
        else:
            self.high = max(self.high, high)
            self.low = min(self.low, low)
        self.close = last
        self.volume += qty
        self.quote_volume += amount
        self.trades += count

    def row(self) -> list[int]:
        return [self.open_time, self.open, self.high, self.low, self.close, self.volume, self.quote_volume,
                self.trades]

    @classmethod
    def from_row(cls, row: Iterable[int]) -> "Bar":
        return cls(*(int(value) for value in row))


@dataclass(slots=True)
class Trade:
    id: int  # the symbol's trade number: 1, 2, 3, ...
    seq: int  # the command that made it
    time: int  # ms
    price: int  # ticks
    qty: int  # lots
    amount: int  # quote units
    side: int  # the taker's Side

    def row(self) -> list[int]:
        return [self.id, self.seq, self.time, self.price, self.qty, self.amount, self.side]

    @classmethod
    def from_row(cls, row: Iterable[int]) -> "Trade":
        return cls(*(int(value) for value in row))


@dataclass(frozen=True, slots=True)
class Gap:
    """Market messages of ``symbol`` after seq ``after`` are missing."""

    symbol: int
    after: int


@dataclass
class SymbolSaved:
    """What the store keeps of one symbol (quotation/store.py)."""

    last_seq: int = 0
    depth_u: int = 0
    trade_id: int = 0
    last_price: int = 0
    bids: dict[int, int] = field(default_factory=dict)
    asks: dict[int, int] = field(default_factory=dict)
    bars: list[Bar | None] = field(default_factory=lambda: [None] * len(INTERVALS))  # the latest per interval
    minute_bars: list[Bar] = field(default_factory=list)  # the ticker window's, oldest first


@dataclass
class Changes:
    """What one turn changed, for the store to write in one transaction."""

    symbols: set[int] = field(default_factory=set)  # whose position (seq, update id, trade id) moved
    levels: dict[tuple[int, int, int], int] = field(default_factory=dict)  # (symbol, side, price) -> lots
    bars: dict[tuple[int, int, int], Bar] = field(default_factory=dict)  # (symbol, interval, open_time)
    trades: list[tuple[int, Trade]] = field(default_factory=list)  # (symbol, trade), in order

    def __bool__(self) -> bool:
        return bool(self.symbols or self.levels or self.bars or self.trades)


class _Symbol:
    """One symbol's state and what the current turn has produced for it."""

    def __init__(self, config: SymbolConfig):
        self.config = config
        self.last_seq = 0
        self.depth_u = 0
        self.trade_id = 0
        self.last_price = 0  # of the last trade; 0 before any
        self.book: dict[int, dict[int, int]] = {_BUY: {}, _SELL: {}}
        self.best = {_BUY: 0, _SELL: 0}  # 0: no level on that side
        self.bars: list[Bar | None] = [None] * len(INTERVALS)
        self.closed_through = [-1] * len(INTERVALS)  # open_time of the last bar published as closed
        self.window: deque[Bar] = deque()  # finished one-minute bars inside the ticker's window
        self.window_end = 0  # ms: the latest time the ticker has seen (trades and ticks)
        # this turn's output
        self.new_trades: list[Trade] = []
        self.diff_first = 0  # U of the diff being gathered, 0 when none
        self.diff: dict[tuple[int, int], int] = {}  # (side, price) -> lots
        self.bar_updates: dict[int, Bar] = {}  # interval -> its current bar, changed this turn
        self.closed_bars: list[tuple[int, Bar]] = []  # (interval, bar) that ended, to publish as closed
        self.ticker_changed = False


class QuotationCore:
    def __init__(self, config: ExchangeConfig):
        self.config = config
        self.symbols = [_Symbol(symbol) for symbol in config.symbols]
        self.changes = Changes()
        self.lost_trades_ranges = 0  # catch-ups that could not recover every trade (logged)

    # --- start-up --------------------------------------------------------------------------------------

    def restore(self, saved: dict[int, SymbolSaved]) -> None:
        for symbol_id, state in saved.items():
            if not 0 <= symbol_id < len(self.symbols):
                continue
            s = self.symbols[symbol_id]
            s.last_seq, s.depth_u, s.trade_id, s.last_price = (state.last_seq, state.depth_u, state.trade_id,
                                                               state.last_price)
            s.book = {_BUY: dict(state.bids), _SELL: dict(state.asks)}
            s.best = {_BUY: max(s.book[_BUY], default=0), _SELL: min(s.book[_SELL], default=0)}
            s.bars = list(state.bars)
            # A bar restored may have been published as closed already: the next tick says so again.
            s.closed_through = [bar.open_time - 1 if bar is not None else -1 for bar in s.bars]
            current = s.bars[_MINUTE]
            if current is not None:
                s.window_end = current.open_time
            for bar in state.minute_bars:
                if current is None or bar.open_time < current.open_time:
                    self._window_push(s, bar)

    def position(self, symbol: int) -> int:
        return self.symbols[symbol].last_seq

    # --- the engine's market messages -------------------------------------------------------------------

    def symbol_of_topic(self, topic: bytes) -> int | None:
        if topic[:1] != MARKET_PREFIX:
            return None
        try:
            symbol = int(topic[1:].rstrip(b"."))
        except ValueError:
            return None
        return symbol if 0 <= symbol < len(self.symbols) else None

    def on_market(self, message: ReportMessage) -> Gap | None:
        """Take one market message; a Gap (nothing applied) when one before it is missing."""
        symbol = self.symbol_of_topic(message.topic)
        if symbol is None or message.heartbeat:
            return None
        levels = message.levels if message.levels is not None else np.zeros(0, dtype=BOOK_LEVEL_DTYPE)
        return self.apply(symbol, message.seq, message.prev, message.events, levels)

    def apply(self, symbol: int, seq: int, prev: int, trades: np.ndarray, levels: np.ndarray) -> Gap | None:
        s = self.symbols[symbol]
        if seq <= s.last_seq:
            return None  # counted already
        if prev > s.last_seq:
            return Gap(symbol, s.last_seq)
        self._take_trades(symbol, s, trades, after=s.last_seq)
        self._take_levels(symbol, s, levels, seq)
        s.last_seq = seq
        self.changes.symbols.add(symbol)
        return None

    def catch_up(self, symbol: int, messages: list[list], *, complete: bool,
                 depth: tuple[list, list, int] | None = None) -> None:
        """Fill a gap with the engine's kept messages (``[seq, prev, trades, levels]``, oldest first, from
        the ``market`` query). If they do not reach back to where the gap starts (``complete`` False),
        ``depth`` is the engine's book (bids, asks, seq) read after them: the book is set from it, the
        trades of the kept messages are still counted, and the trades in between are lost (logged)."""
        s = self.symbols[symbol]
        decoded = [(int(seq), int(prev), np.frombuffer(trades, dtype=EVENT_DTYPE),
                    np.frombuffer(levels, dtype=BOOK_LEVEL_DTYPE)) for seq, prev, trades, levels in messages]
        if complete:
            for seq, prev, trades, levels in decoded:
                gap = self.apply(symbol, seq, prev, trades, levels)
                if gap is not None:  # pragma: no cover - the engine's reply is a chain
                    raise ValueError(f"the kept market messages of symbol {symbol} are not a chain at seq {seq}")
            return
        if depth is None:
            raise ValueError("an incomplete catch-up needs the engine's depth")
        bids, asks, depth_seq = depth
        first_kept = decoded[0][1] if decoded else depth_seq
        if first_kept > s.last_seq:
            self.lost_trades_ranges += 1
            log.error("symbol %s: the engine no longer keeps its market messages after seq %d; trades of seqs "
                      "%d..%d are not counted; the book is resynchronised at seq %d", s.config.name, s.last_seq,
                      s.last_seq + 1, first_kept, depth_seq)
        after = s.last_seq
        for seq, _, trades, _ in decoded:
            if seq <= depth_seq:
                self._take_trades(symbol, s, trades, after=after)
                after = max(after, seq)
        self._resync_book(symbol, s, bids, asks, depth_seq)
        s.last_seq = max(s.last_seq, depth_seq)
        self.changes.symbols.add(symbol)
        for seq, prev, trades, levels in decoded:
            if seq > depth_seq:
                self.apply(symbol, seq, prev, trades, levels)

    def _take_trades(self, symbol: int, s: _Symbol, trades: np.ndarray, *, after: int) -> None:
        if len(trades) == 0:
            return
        kinds = trades["kind"].tolist()
        seqs, tss = trades["seq"].tolist(), trades["ts"].tolist()
        prices, qtys, amounts = trades["price"].tolist(), trades["qty"].tolist(), trades["amount"].tolist()
        sides = trades["side"].tolist()
        run: list[Trade] = []  # trades of the same millisecond: they fall in the same bar of every interval
        for i, kind in enumerate(kinds):
            if kind != _TRADE or seqs[i] <= after:
                continue
            s.trade_id += 1
            trade = Trade(s.trade_id, seqs[i], tss[i] // _NS_PER_MS, prices[i], qtys[i], amounts[i], sides[i])
            s.new_trades.append(trade)
            self.changes.trades.append((symbol, trade))
            s.last_price = trade.price
            if run and run[0].time != trade.time:
                self._add_to_bars(symbol, s, run)
                run = []
            run.append(trade)
        if run:
            self._add_to_bars(symbol, s, run)
        s.ticker_changed = True

    def _add_to_bars(self, symbol: int, s: _Symbol, run: list[Trade]) -> None:
        """Trades of one millisecond into the bar of each interval, summed up once (a batch's trades
        share the sequencer's timestamp: most messages are one run)."""
        time, first, last = run[0].time, run[0].price, run[-1].price
        if len(run) == 1:
            high = low = first
            qty, amount = run[0].qty, run[0].amount
        else:
            prices = [trade.price for trade in run]
            high, low = max(prices), min(prices)
            qty, amount = sum(trade.qty for trade in run), sum(trade.amount for trade in run)
        for index, (_, length) in enumerate(INTERVALS):
            open_time = time - time % length
            bar = s.bars[index]
            if bar is None or bar.open_time < open_time:
                if bar is not None:
                    self._end_bar(symbol, s, index, bar)
                bar = s.bars[index] = Bar.flat(open_time, first)
            # (A run stamped before the bar goes into it too: the sequencer's clock stepped back.)
            bar.add_run(first, high, low, last, qty, amount, len(run))
            s.bar_updates[index] = bar
            self.changes.bars[(symbol, index, bar.open_time)] = bar
        s.window_end = max(s.window_end, time)

    def _end_bar(self, symbol: int, s: _Symbol, index: int, bar: Bar) -> None:
        """``bar`` is over: publish it as closed (once); a one-minute bar joins the ticker's window."""
        if bar.open_time > s.closed_through[index]:
            s.closed_through[index] = bar.open_time
            s.closed_bars.append((index, bar))
            s.bar_updates.pop(index, None)
        if index == _MINUTE and bar.trades:
            self._window_push(s, bar)

    def _take_levels(self, symbol: int, s: _Symbol, levels: np.ndarray, seq: int) -> None:
        if len(levels) == 0:
            return
        for price, qty, side in zip(levels["price"].tolist(), levels["qty"].tolist(), levels["side"].tolist()):
            self._set_level(symbol, s, side, price, qty)
        if not s.diff_first:
            s.diff_first = s.depth_u + 1
        s.depth_u = seq

    def _set_level(self, symbol: int, s: _Symbol, side: int, price: int, qty: int) -> None:
        book = s.book.get(side)
        if book is None:
            return
        if qty > 0:
            book[price] = qty
        else:  # (a level that was not there, such as an order's that filled at once, is reported all the same)
            book.pop(price, None)
        s.diff[(side, price)] = qty
        self.changes.levels[(symbol, side, price)] = qty
        best = s.best[side]
        if qty > 0:
            if not best or (price > best if side == _BUY else price < best):
                s.best[side] = price
                s.ticker_changed = True
        elif price == best:
            s.best[side] = (max(book, default=0) if side == _BUY else min(book, default=0))
            s.ticker_changed = True

    def _resync_book(self, symbol: int, s: _Symbol, bids: list, asks: list, seq: int) -> None:
        """Make the book the engine's (levels ``[price, lots]``), as one diff up to ``seq``."""
        fresh = {_BUY: {int(p): int(q) for p, q in bids}, _SELL: {int(p): int(q) for p, q in asks}}
        for side in (_BUY, _SELL):
            for price in list(s.book[side]):
                if price not in fresh[side]:
                    self._set_level(symbol, s, side, price, 0)
            for price, qty in fresh[side].items():
                if s.book[side].get(price) != qty:
                    self._set_level(symbol, s, side, price, qty)
        if not s.diff_first:
            s.diff_first = s.depth_u + 1
        s.depth_u = max(s.depth_u, seq)

    # --- time ------------------------------------------------------------------------------------------

    def on_tick(self, now_ms: int) -> None:
        """Bars whose interval has ended are published as closed, followed by a flat bar for the interval
        now running; the ticker's window moves on."""
        for symbol, s in enumerate(self.symbols):
            for index, (_, length) in enumerate(INTERVALS):
                bar = s.bars[index]
                if bar is None or bar.open_time + length > now_ms:
                    continue
                self._end_bar(symbol, s, index, bar)
                flat = s.bars[index] = Bar.flat(now_ms - now_ms % length, bar.close)
                s.bar_updates[index] = flat
            if s.last_price and now_ms > s.window_end:
                s.window_end = now_ms
                if self._window_expire(s):
                    s.ticker_changed = True

    # --- the ticker's window ---------------------------------------------------------------------------

    @staticmethod
    def _window_start(s: _Symbol) -> int:
        end = s.window_end
        return end - end % _MINUTE_MS - TICKER_WINDOW_MS + _MINUTE_MS

    def _window_push(self, s: _Symbol, bar: Bar) -> None:
        if s.window and s.window[-1].open_time >= bar.open_time:
            return
        s.window.append(Bar.from_row(bar.row()))
        self._window_expire(s)

    def _window_expire(self, s: _Symbol) -> bool:
        start = self._window_start(s)
        expired = False
        while s.window and s.window[0].open_time < start:
            s.window.popleft()
            expired = True
        return expired

    def ticker(self, symbol: int) -> dict[str, Any] | None:
        """The symbol's rolling 24 hours (None before its first trade)."""
        s = self.symbols[symbol]
        if not s.last_price:
            return None
        self._window_expire(s)
        start = self._window_start(s)
        bars = list(s.window)
        current = s.bars[_MINUTE]
        if current is not None and current.trades and current.open_time >= start and (
                not bars or current.open_time > bars[-1].open_time):
            bars.append(current)
        cfg = s.config
        if bars:
            open_price, high, low = bars[0].open, max(b.high for b in bars), min(b.low for b in bars)
            volume = sum(b.volume for b in bars)
            quote_volume = sum(b.quote_volume for b in bars)
            count = sum(b.trades for b in bars)
        else:
            open_price = high = low = s.last_price
            volume = quote_volume = count = 0
        change = s.last_price - open_price
        bid, ask = s.best[_BUY], s.best[_SELL]
        return {
            "symbol": cfg.name,
            "open_time": start,
            "close_time": s.window_end,
            "open": cfg.tick.format(open_price),
            "high": cfg.tick.format(high),
            "low": cfg.tick.format(low),
            "last": cfg.tick.format(s.last_price),
            "volume": cfg.lot.format(volume),
            "quote_volume": cfg.quote.unit.format(quote_volume),
            "trades": count,
            "change": signed_text(change, cfg.tick),
            "change_pct": percent_text(change, open_price),
            "best_bid": cfg.tick.format(bid) if bid else None,
            "best_bid_qty": cfg.lot.format(s.book[_BUY][bid]) if bid else None,
            "best_ask": cfg.tick.format(ask) if ask else None,
            "best_ask_qty": cfg.lot.format(s.book[_SELL][ask]) if ask else None,
        }

    # --- output ----------------------------------------------------------------------------------------

    def take_output(self) -> tuple[list[tuple[str, dict]], Changes]:
        """What this turn produced: (channel, body) publications in order, and the store's changes."""
        publications: list[tuple[str, dict]] = []
        for symbol, s in enumerate(self.symbols):
            name = s.config.name
            if s.new_trades:
                publications.append((trades_channel(name), {"trades": [trade_view(s.config, t)
                                                                       for t in s.new_trades]}))
                s.new_trades = []
            if s.diff:
                bids = [[price, qty] for (side, price), qty in sorted(s.diff.items()) if side == _BUY]
                asks = [[price, qty] for (side, price), qty in sorted(s.diff.items()) if side == _SELL]
                bids.reverse()  # best first
                publications.append((depth_channel(name), {
                    "U": s.diff_first, "u": s.depth_u, "bids": levels_view(s.config, bids),
                    "asks": levels_view(s.config, asks)}))
                s.diff = {}
                s.diff_first = 0
            for index, bar in s.closed_bars:
                publications.append((kline_channel(INTERVALS[index][0], name),
                                     bar_view(s.config, INTERVALS[index][0], bar, closed=True)))
            s.closed_bars = []
            for index in sorted(s.bar_updates):
                bar = s.bar_updates[index]
                publications.append((kline_channel(INTERVALS[index][0], name),
                                     bar_view(s.config, INTERVALS[index][0], bar, closed=False)))
            s.bar_updates = {}
            if s.ticker_changed:
                s.ticker_changed = False
                ticker = self.ticker(symbol)
                if ticker is not None:
                    publications.append((ticker_channel(name), ticker))
        changes, self.changes = self.changes, Changes()
        return publications, changes

    def saved(self, symbol: int) -> tuple[int, int, int, int]:
        """(last_seq, depth_u, trade_id, last_price): the symbol's position, for the store."""
        s = self.symbols[symbol]
        return s.last_seq, s.depth_u, s.trade_id, s.last_price

    def depth(self, symbol: int, limit: int | None = None) -> dict[str, Any]:
        """A depth snapshot: ``lastUpdateId`` and up to ``limit`` levels a side, best first."""
        s = self.symbols[symbol]
        bids = sorted(s.book[_BUY].items(), reverse=True)[:limit]
        asks = sorted(s.book[_SELL].items())[:limit]
        return {"symbol": s.config.name, "lastUpdateId": s.depth_u,
                "bids": levels_view(s.config, bids), "asks": levels_view(s.config, asks)}


# --- views: integers -> the public format (common/market.py) -------------------------------------------


def trade_view(symbol: SymbolConfig, trade: Trade) -> dict[str, Any]:
    return {"id": trade.id, "seq": trade.seq, "time": trade.time, "price": symbol.tick.format(trade.price),
            "qty": symbol.lot.format(trade.qty), "quote_qty": symbol.quote.unit.format(trade.amount),
            "side": SIDE_NAMES.get(trade.side, "")}


def levels_view(symbol: SymbolConfig, levels: Iterable) -> list[list[str]]:
    tick, lot = symbol.tick, symbol.lot
    return [[tick.format(price), lot.format(qty)] for price, qty in levels]


def bar_view(symbol: SymbolConfig, interval: str, bar: Bar, *, closed: bool) -> dict[str, Any]:
    tick = symbol.tick
    return {"interval": interval, "open_time": bar.open_time, "close_time": bar_close_time(bar.open_time, interval),
            "open": tick.format(bar.open), "high": tick.format(bar.high), "low": tick.format(bar.low),
            "close": tick.format(bar.close), "volume": symbol.lot.format(bar.volume),
            "quote_volume": symbol.quote.unit.format(bar.quote_volume), "trades": bar.trades, "closed": closed}


def fill_flat(bars: list[Bar], length: int, *, start: int, end: int, before: Bar | None) -> list[Bar]:
    """The bars of ``[start, end]`` (open times), with every interval that had no trade as a flat bar at
    the previous close. ``bars`` are the stored ones in that range, oldest first; ``before`` the last
    stored bar before ``start`` (None: nothing is filled before the first stored bar)."""
    out: list[Bar] = []
    previous = before
    at = start - start % length
    if at < start:
        at += length
    by_time = {bar.open_time: bar for bar in bars}
    if previous is None and bars:
        at = bars[0].open_time
    while at <= end:
        bar = by_time.get(at)
        if bar is not None:
            out.append(bar)
            previous = bar
        elif previous is not None:
            out.append(Bar.flat(at, previous.close))
        at += length
    return out
