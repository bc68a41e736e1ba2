"""The order ledger: what the engine process knows of each order beyond the matching engine's own record,
in arrays that one kernel call per chunk of events updates (engine/ledger_kernels.py).

    ledger = Ledger()
    ledger.track(events, first, commands, sessions, text, offsets, routes, history, per_order)
    ledger.end_command(history)        # the command being read is over
    ledger.sweep()                     # retired ClOrdIDs leave the OrigClOrdID map
    ledger.resolve(account, "abc")     # -> order id, or 0

Per order: its account, symbol, side, type, time in force, limit, quantity, filled quantity, filled quote
amount (``cum_quote``, for AvgPx), last event time, the gateway and session that last placed or replaced
it, its last ClOrdIDs, its fills, and its status; for every open order and the last ``history`` ended ones
(engine/service.py says what each is for). The arrays grow when they fill, between kernel calls; nothing
is dropped for want of room.
"""

from __future__ import annotations

from itertools import accumulate
from typing import Any

import numpy as np

from common.records import COMMAND_DTYPE, EVENT_DTYPE
from engine import ledger_kernels as lk
from engine.jit import entry_point
from engine.layout import pretouch
from engine.ledger_kernels import (
    CLORDID_BYTES,
    CLORDID_NONE,
    CLORDIDS_MAX,
    FILL_DTYPE,
    POOL_DTYPE,
    ROUTE_DTYPE,
    STATUS_OPEN,
    TRACK_DTYPE,
)

INITIAL_ROWS = 1024  # rows of each structure at first, unless told; each doubles when it fills
_FILL_COLUMNS = ("seq", "ts", "price", "qty", "amount", "fee", "maker")
# The arrays of the ledger's state, in the kernels' argument order after the inputs (see ``_state``).
_ARRAY_NAMES = ("slots", "slot_free", "oids", "table", "pool", "pool_bytes", "pool_free", "fills",
                "fill_free", "closed", "retired", "meta")


class StreamOutsideBatch(ValueError):
    """An event of a seq outside the batch being applied."""


def _free_stack(capacity: int) -> np.ndarray:
    """Every row free, the lowest taken first (a stack pops from its end)."""
    return np.arange(capacity - 1, -1, -1, dtype=np.int64)


def _grown(array: np.ndarray, rows: int) -> np.ndarray:
    bigger = np.zeros((rows, *array.shape[1:]), dtype=array.dtype)
    bigger[: len(array)] = array
    return bigger


def clordid_text(clordids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The ClOrdIDs of a batch as the kernels read them: their UTF-8 bytes one after the other (read-only),
    and the offset of each (``offsets[k]:offsets[k + 1]``)."""
    if len(clordids) == 1:  # most live batches
        text = clordids[0].encode()
        return np.frombuffer(text or b"\0", dtype=np.uint8), np.array([0, len(text)], dtype=np.int64)
    joined = "".join(clordids)
    text = joined.encode()
    # One pass in C either way: a numpy cumsum costs more than the whole of a one-command batch's text.
    lengths = map(len, clordids) if len(text) == len(joined) else (len(clordid.encode()) for clordid in clordids)
    offsets = np.fromiter(accumulate(lengths, initial=0), dtype=np.int64, count=len(clordids) + 1)
    return np.frombuffer(text or b"\0", dtype=np.uint8), offsets


# Compiled entry points of the kernels called per chunk, made for the types of their first call (see
# engine.jit.entry_point: a dispatcher call works out the type of each of track's 24 arguments first, on
# the path of every one-command batch). The callers pass the same types always (Ledger.track's docstring).
_ENTRIES: dict[Any, Any] = {}


def _entry(dispatcher, args: tuple):
    entry = _ENTRIES.get(dispatcher)
    if entry is None:
        entry = _ENTRIES[dispatcher] = entry_point(dispatcher, args)
    return entry


class Ledger:
    def __init__(self, rows: int | None = None) -> None:
        """``rows``: of each structure at first, a power of two (the hash tables hold four times as many)."""
        rows = INITIAL_ROWS if rows is None else rows
        if rows < 1 or rows & (rows - 1):
            raise ValueError(f"a ledger starts with a power of two of rows, not {rows}")
        self.slots = np.zeros(rows, dtype=TRACK_DTYPE)
        self.slot_free = _free_stack(rows)
        self.oids = np.zeros((4 * rows, 2), dtype=np.int64)  # [order id, row]
        self.table = np.zeros((4 * rows, 2), dtype=np.int64)  # [pool entry + 1, hash]
        self.pool = np.zeros(rows, dtype=POOL_DTYPE)
        self.pool_bytes = np.zeros((rows, CLORDID_BYTES), dtype=np.uint8)
        self.pool_free = _free_stack(rows)
        self.fills = np.zeros(rows, dtype=FILL_DTYPE)
        self.fill_free = _free_stack(rows)
        self.closed = np.zeros(rows, dtype=np.int64)
        self.retired = np.zeros(rows, dtype=np.int64)
        self.meta = np.zeros(lk.META_SIZE, dtype=np.int64)
        self.meta[lk.M_SLOTS_FREE] = self.meta[lk.M_POOL_FREE] = self.meta[lk.M_FILLS_FREE] = rows

    def _state(self) -> tuple:
        return (self.slots, self.slot_free, self.oids, self.table, self.pool, self.pool_bytes,
                self.pool_free, self.fills, self.fill_free, self.closed, self.retired, self.meta)

    @staticmethod
    def warm_up() -> None:
        """Compile every kernel a ledger calls in traffic, or load it from the cache, on a scratch ledger
        (one probe event of no known kind: nothing is tracked)."""
        ledger = Ledger()
        ledger.track(np.zeros(1, dtype=EVENT_DTYPE), 0, np.zeros(1, dtype=COMMAND_DTYPE), np.zeros(1, dtype=np.uint64),
                     *clordid_text([""]), new_routes(1), 1, 1)
        ledger.end_command(1)
        ledger.add_orphan(0, "warm-up", 1)
        ledger.sweep()
        ledger.resolve(0, "warm-up")
        ledger.slot(1)
        lk.rehash_oids(ledger.oids, np.zeros_like(ledger.oids), ledger.meta.copy())
        lk.rehash_clordids(ledger.table, np.zeros_like(ledger.table), ledger.pool)
        lk.topic_seqs(np.zeros(1, dtype=EVENT_DTYPE), np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64))

    def pretouch(self) -> None:
        """Map every page of the ledger's arrays now (engine.layout.pretouch), the ledger unchanged."""
        for array in self._state():
            pretouch(array)

    # --- room ---------------------------------------------------------------------------------------------

    def _reserve(self) -> None:
        """Grow every structure that has less room left than one event may need (ledger_kernels NEED_*)."""
        meta = self.meta
        while meta[lk.M_SLOTS_FREE] < lk.NEED_SLOTS:
            self.slots, self.slot_free = self._grow_rows(self.slots, self.slot_free, lk.M_SLOTS_FREE)
        while meta[lk.M_POOL_FREE] < lk.NEED_POOL:
            self.pool, self.pool_free = self._grow_rows(self.pool, self.pool_free, lk.M_POOL_FREE)
            self.pool_bytes = _grown(self.pool_bytes, len(self.pool))
        while meta[lk.M_FILLS_FREE] < lk.NEED_FILLS:
            self.fills, self.fill_free = self._grow_rows(self.fills, self.fill_free, lk.M_FILLS_FREE)
        if len(self.retired) - meta[lk.M_RETIRED] < lk.NEED_RETIRED:
            self.retired = _grown(self.retired, 2 * len(self.retired) + lk.NEED_RETIRED)
        while len(self.closed) - meta[lk.M_CLOSED_COUNT] < lk.NEED_CLOSED:
            ring = np.zeros(2 * len(self.closed), dtype=np.int64)
            ring[: int(meta[lk.M_CLOSED_COUNT])] = self.closed_slots()
            self.closed = ring
            meta[lk.M_CLOSED_HEAD] = 0
        while 2 * (meta[lk.M_OIDS] + 1) > len(self.oids):
            oids = np.zeros((2 * len(self.oids), 2), dtype=np.int64)
            lk.rehash_oids(self.oids, oids, meta)
            self.oids = oids
        while 2 * (meta[lk.M_CLORDIDS] + 1) > len(self.table):
            table = np.zeros((2 * len(self.table), 2), dtype=np.int64)
            lk.rehash_clordids(self.table, table, self.pool)
            self.table = table

    def _grow_rows(self, rows: np.ndarray, free: np.ndarray, free_count: int) -> tuple[np.ndarray, np.ndarray]:
        old = len(rows)
        top = int(self.meta[free_count])
        stack = np.zeros(2 * old, dtype=np.int64)
        stack[:top] = free[:top]
        stack[top : top + old] = np.arange(2 * old - 1, old - 1, -1)  # the new rows, the lowest taken first
        self.meta[free_count] = top + old
        return _grown(rows, 2 * old), stack

    # --- following events ---------------------------------------------------------------------------------

    def track(self, events: np.ndarray, first: int, commands: np.ndarray, sessions: np.ndarray, text: np.ndarray,
              offsets: np.ndarray, routes: np.ndarray, history: int, per_order: int) -> None:
        """Follow a chunk of the events of ``commands`` (a part of a batch whose first seq is ``first``, their
        OrigClOrdIDs resolved; the k-th command's session is ``sessions[k]`` (uint64), its ClOrdID
        ``text[offsets[k]:offsets[k + 1]]``); ``routes[i]`` says where ``events[i]`` goes. Every array
        C-contiguous, ``text`` read-only, the others writable: the kernel is called without type checks."""
        if per_order > CLORDIDS_MAX:
            raise ValueError(f"an order lists at most {CLORDIDS_MAX} ClOrdIDs")
        if not (events.flags.c_contiguous and commands.flags.c_contiguous):
            raise ValueError("the ledger reads C-contiguous events and commands")
        start = 0
        while True:
            args = (events, start, first, commands, sessions, text, offsets, *self._state(), routes, history,
                    per_order)
            start = _entry(lk.track, args)(*args)
            if start == lk.DONE:
                return
            if start == lk.OUTSIDE_BATCH:
                raise StreamOutsideBatch("the engine reported an event of a seq outside the batch")
            self._reserve()  # then on from the event that did not fit

    def end_command(self, history: int) -> None:
        """The last command of a part of a batch is over."""
        while True:
            args = (self.slots, self.slot_free, self.oids, self.fills, self.fill_free, self.closed, self.retired,
                    self.meta, history)
            if _entry(lk.end_command, args)(*args):
                return
            self._reserve()

    def sweep(self) -> None:
        lk.sweep(self.table, self.pool, self.pool_free, self.retired, self.meta)

    # --- reading ------------------------------------------------------------------------------------------

    def slot(self, order_id: int) -> int:
        """The row of a tracked order (open, or ended and in the history), or -1."""
        return int(lk.find_slot(self.oids, order_id))

    def is_open(self, slot: int) -> bool:
        return slot >= 0 and int(self.slots[slot]["status"]) == STATUS_OPEN

    def resolve(self, account: int, clordid: str) -> int:
        """The order id (account, ClOrdID) names in the OrigClOrdID map, or 0."""
        text = clordid.encode()
        if not text or len(text) > CLORDID_BYTES:
            return 0
        return int(lk.resolve_clordid(self.table, self.pool, self.pool_bytes, account, np.frombuffer(text, np.uint8)))

    def clordid(self, entry: int) -> str:
        """The ClOrdID of a pool entry (CLORDID_NONE: "")."""
        if entry == CLORDID_NONE:
            return ""
        # The field's column, then the entry: a record of the structured array costs twice as much to make.
        return self.pool_bytes[entry, : int(self.pool["length"][entry])].tobytes().decode()

    def clordids(self, slot: int) -> list[str]:
        row = self.slots[slot]
        return [self.clordid(int(entry)) for entry in row["clordids"][: int(row["n_clordids"])]]

    def order(self, slot: int) -> dict[str, Any]:
        """A row's fields as Python ints, its current ClOrdID as ``clordid``."""
        row = self.slots[slot]
        n = int(row["n_clordids"])
        return {
            "order_id": int(row["order_id"]), "account": int(row["account"]), "symbol": int(row["symbol"]),
            "side": int(row["side"]), "order_type": int(row["order_type"]), "tif": int(row["tif"]),
            "price": int(row["price"]), "qty": int(row["qty"]), "filled": int(row["filled"]),
            "cum_quote": int(row["cum_quote"]), "ts": int(row["ts"]), "gateway": int(row["gateway"]),
            "session": int(row["session"]), "status": int(row["status"]),
            "clordid": self.clordid(int(row["clordids"][n - 1])) if n else "",
        }

    def fills_of(self, slot: int) -> list[list[int]]:
        """[seq, ts, price, qty, amount, fee, maker (0/1)] per fill, oldest first."""
        out = []
        f = int(self.slots[slot]["fill_first"])
        while f >= 0:
            fill = self.fills[f]
            out.append([int(fill[name]) for name in _FILL_COLUMNS])
            f = int(fill["next"])
        return out

    def closed_slots(self) -> np.ndarray:
        """The rows of the ended orders in the history, oldest first."""
        count, head = int(self.meta[lk.M_CLOSED_COUNT]), int(self.meta[lk.M_CLOSED_HEAD])
        return self.closed[(head + np.arange(count)) % len(self.closed)]

    def open_count(self) -> int:
        used = len(self.slots) - int(self.meta[lk.M_SLOTS_FREE])
        return used - int(self.meta[lk.M_CLOSED_COUNT])

    def mapped_clordids(self) -> list[list]:
        """The OrigClOrdID map as [account, ClOrdID, order id] entries, in table order."""
        entries = self.table[self.table[:, 0] > 0, 0] - 1
        return [[int(self.pool[entry]["account"]), self.clordid(int(entry)), int(self.pool[entry]["order_id"])]
                for entry in entries.tolist()]

    def retired_clordids(self) -> list[list]:
        """[account, ClOrdID, order id] of the entries that leave the map at the next sweep, oldest first."""
        entries = self.retired[: int(self.meta[lk.M_RETIRED])].tolist()
        return [[int(self.pool[entry]["account"]), self.clordid(entry), int(self.pool[entry]["order_id"])]
                for entry in entries]

    # --- snapshots ----------------------------------------------------------------------------------------

    def export(self) -> dict[str, bytes]:
        """Every array as bytes: with ``restore``, the same ledger, down to which rows are free."""
        return {name: getattr(self, name).tobytes() for name in _ARRAY_NAMES}

    def restore(self, exported: dict[str, bytes]) -> None:
        for name in _ARRAY_NAMES:
            current = getattr(self, name)
            array = np.frombuffer(exported[name], dtype=current.dtype).copy()
            if current.ndim == 2:
                array = array.reshape(-1, current.shape[1])
            setattr(self, name, array)
        if len(self.meta) != lk.META_SIZE:
            raise ValueError("a ledger's meta has the wrong size")

    # --- building from order records (snapshots of the format before the ledger) -------------------------

    def add_order(self, fields: dict[str, Any], clordids: list[str], fills: list[list[int]], status: int,
                  per_order: int) -> None:
        """A row for an order as the older snapshots list it. Its ClOrdIDs are mapped in order; those before
        its last ``per_order`` leave at the next sweep."""
        self._reserve()
        meta = self.meta
        meta[lk.M_SLOTS_FREE] -= 1
        slot = int(self.slot_free[meta[lk.M_SLOTS_FREE]])
        row = self.slots[slot]
        for name in ("order_id", "account", "symbol", "side", "order_type", "tif", "price", "qty", "filled",
                     "cum_quote", "ts", "gateway", "session"):
            row[name] = fields[name]
        row["status"] = status
        row["fill_first"] = row["fill_last"] = -1
        row["fill_count"] = row["n_clordids"] = 0
        lk.insert_order_id(self.oids, meta, int(fields["order_id"]), slot)
        kept = min(per_order, CLORDIDS_MAX)
        for k, clordid in enumerate(clordids):
            entry = self._map(int(fields["account"]), clordid, int(fields["order_id"]))
            if entry < 0:
                continue
            if k < len(clordids) - kept:
                self.retire(entry)
            else:
                row = self.slots[slot]
                row["clordids"][int(row["n_clordids"])] = entry
                row["n_clordids"] += 1
        for fill in fills:
            self._reserve()
            lk.add_fill(self.slots, self.fills, self.fill_free, meta, slot, *[int(value) for value in fill])
        if status != STATUS_OPEN:
            self._reserve()
            count, head = int(meta[lk.M_CLOSED_COUNT]), int(meta[lk.M_CLOSED_HEAD])
            self.closed[(head + count) % len(self.closed)] = slot
            meta[lk.M_CLOSED_COUNT] += 1

    def add_orphan(self, account: int, clordid: str, order_id: int) -> None:
        """A ClOrdID still mapped to ``order_id`` but listed by no tracked order: it leaves at the next sweep."""
        entry = self._map(account, clordid, order_id)
        if entry >= 0:
            self.retire(entry)

    def retire(self, entry: int) -> None:
        self._reserve()
        self.retired[self.meta[lk.M_RETIRED]] = entry
        self.meta[lk.M_RETIRED] += 1

    def remap(self, account: int, clordid: str, order_id: int) -> None:
        """Make (account, ClOrdID) name the entry of ``order_id`` that holds it, if there is one."""
        text = np.frombuffer(clordid.encode(), dtype=np.uint8)
        slot = self.slot(order_id)
        if slot < 0 or not len(text):
            return
        row = self.slots[slot]
        for entry in row["clordids"][: int(row["n_clordids"])]:
            if self.clordid(int(entry)) == clordid:
                lk.point_clordid(self.table, self.pool, self.pool_bytes, self.meta, int(entry))

    def _map(self, account: int, clordid: str, order_id: int) -> int:
        """A new pool entry for (account, ClOrdID) owned by ``order_id``, mapped; -1 if it cannot be mapped."""
        text = clordid.encode()
        if not text or len(text) > CLORDID_BYTES:
            return -1
        self._reserve()
        return int(lk.map_clordid(self.table, self.pool, self.pool_bytes, self.pool_free, self.meta, order_id,
                                  account, np.frombuffer(text, dtype=np.uint8), 0, len(text)))


def new_routes(capacity: int) -> np.ndarray:
    return np.zeros(capacity, dtype=ROUTE_DTYPE)
