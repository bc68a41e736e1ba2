"""Quotation's LMDB store under ``config.paths.quotation_dir``: where each symbol stands, its book, its bars
and its recent trades. One write transaction per turn of the process, so that what is stored is always
one consistent moment: a restart resumes exactly from it (the engine's kept messages fill the rest).

Databases (keys big-endian, so that LMDB's order is numeric order):

- ``position``: symbol (2 bytes) -> msgpack ``[last_seq, depth_u, trade_id, last_price]``;
- ``levels``: symbol (2), side (1), price (8) -> lots (8); an empty level is deleted;
- ``bars``: symbol (2), interval index (1), open time ms (8) -> msgpack bar row (quotation/core.py Bar);
- ``trades``: symbol (2), trade id (8) -> msgpack trade row; the newest ``quotation.recent_trades`` kept.

Durability is the OS page cache's (no fsync): quotation is derived data, rebuilt from the engine after a
power loss within what the engine keeps.
"""

from __future__ import annotations

import os
from pathlib import Path

import lmdb
import msgpack

from common.market import INTERVALS
from quotation.core import Bar, Changes, SymbolSaved, Trade

_POSITION, _LEVELS, _BARS, _TRADES = b"position", b"levels", b"bars", b"trades"
_MINUTE = [name for name, _ in INTERVALS].index("1m")
_TICKER_MINUTES = 1_440


def _symbol_key(symbol: int) -> bytes:
    return symbol.to_bytes(2, "big")


def _level_key(symbol: int, side: int, price: int) -> bytes:
    return symbol.to_bytes(2, "big") + side.to_bytes(1, "big") + price.to_bytes(8, "big")


def _bar_key(symbol: int, interval: int, open_time: int) -> bytes:
    return symbol.to_bytes(2, "big") + interval.to_bytes(1, "big") + open_time.to_bytes(8, "big")


def _trade_key(symbol: int, trade_id: int) -> bytes:
    return symbol.to_bytes(2, "big") + trade_id.to_bytes(8, "big")


class QuotationStore:
    def __init__(self, path: str | os.PathLike[str], *, map_bytes: int, recent_trades: int,
                 second_bars_kept_ms: int):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.recent_trades = recent_trades
        self.second_bars_kept_ms = second_bars_kept_ms
        self._env = lmdb.open(str(self.path), map_size=map_bytes, max_dbs=4, sync=False, metasync=False)
        self._position = self._env.open_db(_POSITION)
        self._levels = self._env.open_db(_LEVELS)
        self._bars = self._env.open_db(_BARS)
        self._trades = self._env.open_db(_TRADES)

    def close(self) -> None:
        self._env.close()

    def __enter__(self) -> "QuotationStore":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- writing ---------------------------------------------------------------------------------------

    def commit(self, changes: Changes, positions: dict[int, tuple[int, int, int, int]], now_ms: int) -> None:
        """Write one turn's changes and the symbols' positions in one transaction; the map grows when full."""
        while True:
            try:
                with self._env.begin(write=True) as txn:
                    self._write(txn, changes, positions, now_ms)
                return
            except lmdb.MapFullError:
                self._env.set_mapsize(self._env.info()["map_size"] * 2)

    def _write(self, txn: lmdb.Transaction, changes: Changes, positions: dict, now_ms: int) -> None:
        for symbol, position in positions.items():
            txn.put(_symbol_key(symbol), msgpack.packb(list(position)), db=self._position)
        for (symbol, side, price), qty in changes.levels.items():
            key = _level_key(symbol, side, price)
            if qty > 0:
                txn.put(key, qty.to_bytes(8, "big"), db=self._levels)
            else:
                txn.delete(key, db=self._levels)
        pack = msgpack.Packer().pack  # packb would make a Packer per row
        # One call per table: the rows of a busy turn are many, and each put is a Python call otherwise.
        txn.cursor(db=self._bars).putmulti([(_bar_key(symbol, interval, open_time), pack(bar.row()))
                                            for (symbol, interval, open_time), bar in changes.bars.items()])
        txn.cursor(db=self._trades).putmulti([(_trade_key(symbol, trade.id), pack(trade.row()))
                                              for symbol, trade in changes.trades])
        newest: dict[int, int] = {}
        for symbol, trade in changes.trades:
            newest[symbol] = trade.id
        for symbol, last_id in newest.items():
            self._drop_range(txn, self._trades, _trade_key(symbol, 0), _trade_key(symbol, last_id - self.recent_trades + 1)
                             if last_id >= self.recent_trades else None)
        touched_seconds = {symbol for (symbol, interval, _) in changes.bars if interval == 0}
        for symbol in touched_seconds:
            oldest = now_ms - self.second_bars_kept_ms
            if oldest > 0:
                self._drop_range(txn, self._bars, _bar_key(symbol, 0, 0), _bar_key(symbol, 0, oldest))

    @staticmethod
    def _drop_range(txn: lmdb.Transaction, db, start: bytes, stop: bytes | None) -> None:
        """Delete the keys in ``[start, stop)`` (nothing when ``stop`` is None)."""
        if stop is None:
            return
        cursor = txn.cursor(db=db)
        if not cursor.set_range(start):
            return
        while cursor.key() < stop:
            if not cursor.delete():
                break

    # --- reading ---------------------------------------------------------------------------------------

    def load(self, symbols: int) -> dict[int, SymbolSaved]:
        """What was stored of each of the first ``symbols`` symbols."""
        saved: dict[int, SymbolSaved] = {}
        with self._env.begin() as txn:
            for symbol in range(symbols):
                raw = txn.get(_symbol_key(symbol), db=self._position)
                if raw is None:
                    continue
                state = SymbolSaved(*msgpack.unpackb(raw))
                cursor = txn.cursor(db=self._levels)
                prefix = _symbol_key(symbol)
                if cursor.set_range(prefix):
                    for key, value in cursor:
                        if key[:2] != prefix:
                            break
                        side, price = key[2], int.from_bytes(key[3:11], "big")
                        (state.bids if side == 1 else state.asks)[price] = int.from_bytes(value, "big")
                for interval in range(len(INTERVALS)):
                    latest = self._last_bar_before(txn, symbol, interval, 1 << 62)
                    state.bars[interval] = latest
                minute = state.bars[_MINUTE]
                if minute is not None:
                    start = minute.open_time - (_TICKER_MINUTES - 1) * 60_000
                    state.minute_bars = self._bars_between(txn, symbol, _MINUTE, start, minute.open_time)
                saved[symbol] = state
        return saved

    def _last_bar_before(self, txn: lmdb.Transaction, symbol: int, interval: int, before: int) -> Bar | None:
        """The last stored bar of the interval with open time < ``before``."""
        cursor = txn.cursor(db=self._bars)
        prefix = symbol.to_bytes(2, "big") + interval.to_bytes(1, "big")
        if cursor.set_range(_bar_key(symbol, interval, before)):
            if not cursor.prev():
                return None
        elif not cursor.last():
            return None
        if cursor.key()[:3] != prefix:
            return None
        return Bar.from_row(msgpack.unpackb(cursor.value()))

    def _bars_between(self, txn: lmdb.Transaction, symbol: int, interval: int, start: int, end: int,
                      limit: int | None = None) -> list[Bar]:
        """Stored bars with ``start <= open_time <= end``, oldest first."""
        out: list[Bar] = []
        cursor = txn.cursor(db=self._bars)
        stop = _bar_key(symbol, interval, end)
        if not cursor.set_range(_bar_key(symbol, interval, max(start, 0))):
            return out
        for key, value in cursor:
            if key > stop or (limit is not None and len(out) >= limit):
                break
            out.append(Bar.from_row(msgpack.unpackb(value)))
        return out

    def bars(self, symbol: int, interval: int, start: int, end: int, limit: int) -> tuple[list[Bar], Bar | None]:
        """(stored bars in ``[start, end]``, at most ``limit``; the last stored bar before ``start``)."""
        with self._env.begin() as txn:
            return (self._bars_between(txn, symbol, interval, start, end, limit),
                    self._last_bar_before(txn, symbol, interval, start))

    def last_bar(self, symbol: int, interval: int) -> Bar | None:
        with self._env.begin() as txn:
            return self._last_bar_before(txn, symbol, interval, 1 << 62)

    def trades(self, symbol: int, *, after_id: int | None, limit: int) -> list[Trade]:
        """The trades after ``after_id`` (the oldest ``limit`` of them), or the newest ``limit``; oldest first."""
        out: list[Trade] = []
        with self._env.begin() as txn:
            cursor = txn.cursor(db=self._trades)
            prefix = _symbol_key(symbol)
            if after_id is not None:
                if not cursor.set_range(_trade_key(symbol, after_id + 1)):
                    return out
                for key, value in cursor:
                    if key[:2] != prefix or len(out) >= limit:
                        break
                    out.append(Trade.from_row(msgpack.unpackb(value)))
                return out
            if cursor.set_range(_trade_key(symbol + 1, 0)) if symbol + 1 < 1 << 16 else False:
                moved = cursor.prev()
            else:
                moved = cursor.last()
            while moved and cursor.key()[:2] == prefix and len(out) < limit:
                out.append(Trade.from_row(msgpack.unpackb(cursor.value())))
                moved = cursor.prev()
        out.reverse()
        return out
