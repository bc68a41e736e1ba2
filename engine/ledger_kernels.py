"""Kernels of the order ledger (engine/ledger.py): what the engine process knows of each order beyond the
matching engine's own record, kept in preallocated arrays and updated from the engine's events in one
call per chunk.

Structures (every one an array the ``Ledger`` owns and grows between calls):

- ``slots`` (``TRACK_DTYPE``): one row per tracked order, open or ended and still in the history. Free
  rows are on the ``slot_free`` stack.
- the order-id table (``oids``): open addressing with linear probing, a row [order id (0: empty), its
  row in ``slots``], for the open orders and the ended ones in the history.
- the ClOrdID pool: ``pool`` (``POOL_DTYPE``: owner order id, hash, account, length) and ``pool_bytes``
  (the ClOrdID's bytes, ``CLORDID_BYTES`` wide), free entries on ``pool_free``. A row of ``slots`` lists
  its order's last ClOrdIDs (oldest first) by pool entry.
- the ClOrdID table (``table``): open addressing keyed by (account, ClOrdID bytes), a row [pool entry + 1
  (0: empty), the key's hash], the OrigClOrdID map.
- ``fills`` (``FILL_DTYPE``): each order's fills as a linked list (``fill_first`` .. ``fill_last``), free
  rows on ``fill_free``.
- ``closed``: the ring of ended orders' rows, oldest first (the history of ended orders).
- ``retired``: pool entries that leave the ClOrdID table at the next sweep (pushed out of an order's last
  ones, or of an order evicted from the history).
- ``meta``: the scalars (``M_*``), including the command being read across chunks.

Deletion in both tables shifts later entries of the probe run back (no tombstones), so a table's load
depends only on what it holds. A kernel that would run out of room stops before the event that needs
it and says so (``NEED_ROOM``); the ``Ledger`` grows the arrays and calls it again from that event.
"""

from __future__ import annotations

import numpy as np

from common.records import CancelReason, CommandKind, EventKind, OrderType, TimeInForce
from engine.jit import kernel
from engine.unchecked import prefetch, prefetch2

CLORDID_BYTES = 64  # the protocol's longest ClOrdID (docs/protocol.md); a longer one is not mapped
CLORDIDS_MAX = 16  # ClOrdIDs a row can list; the service keeps its last CLORDIDS_PER_ORDER (<= this)

TRACK_DTYPE = np.dtype(
    [
        ("order_id", "<i8"),
        ("price", "<i8"),
        ("qty", "<i8"),
        ("filled", "<i8"),
        ("cum_quote", "<i8"),
        ("ts", "<i8"),
        ("session", "<u8"),
        ("fill_first", "<i8"),  # -1: none
        ("fill_last", "<i8"),
        ("fill_count", "<i8"),
        ("clordids", "<i8", (CLORDIDS_MAX,)),  # pool entries, oldest first
        ("account", "<i4"),
        ("symbol", "<i4"),
        ("gateway", "<i4"),
        ("n_clordids", "<i4"),
        ("side", "u1"),
        ("order_type", "u1"),
        ("tif", "u1"),
        ("status", "u1"),  # STATUS_*
        ("reserved", "u1", (4,)),
    ]
)
POOL_DTYPE = np.dtype([("order_id", "<i8"), ("hash", "<i8"), ("account", "<i4"), ("length", "<i4")])
FILL_DTYPE = np.dtype(
    [
        ("seq", "<i8"),
        ("ts", "<i8"),
        ("price", "<i8"),
        ("qty", "<i8"),
        ("amount", "<i8"),
        ("fee", "<i8"),
        ("maker", "<i8"),  # 1: the order was the maker
        ("next", "<i8"),  # the order's next fill, -1: the last
    ]
)
# What the events of a chunk are routed to (engine/service.py builds the gateway items from it): the
# order's side (``role``: ROLE_*) and, for a trade, the maker's (``maker_role``).
ROUTE_DTYPE = np.dtype(
    [
        ("session", "<u8"),
        ("clordid", "<i8"),  # CLORDID_OF_COMMAND, CLORDID_NONE or a pool entry
        ("cum_quote", "<i8"),
        ("maker_session", "<u8"),
        ("maker_clordid", "<i8"),
        ("maker_cum_quote", "<i8"),
        ("old_price", "<i8"),  # REPLACED: the order's limit before (the event's own if it is not tracked)
        ("gateway", "<i4"),
        ("account", "<i4"),
        ("maker_gateway", "<i4"),
        ("maker_account", "<i4"),
        ("role", "u1"),
        ("maker_role", "u1"),
        ("unknown", "u1"),  # 1: a trade's taker is not tracked, 2: its maker, 3: both
        ("reserved", "u1", (5,)),
    ]
)

STATUS_FREE = 0
STATUS_OPEN = 1
STATUS_FILLED = 2
STATUS_CANCELED = 3
STATUS_EXPIRED = 4

ROLE_NONE = 0
ROLE_ORDER = 1
ROLE_TAKER = 2
ROLE_MAKER = 3

CLORDID_OF_COMMAND = -1  # the ClOrdID of the command being read (the service has it as text)
CLORDID_NONE = -2  # no ClOrdID: ""

# meta
M_SLOTS_FREE = 0  # entries on slot_free
M_POOL_FREE = 1
M_FILLS_FREE = 2
M_RETIRED = 3  # entries in retired
M_CLOSED_HEAD = 4  # position in ``closed`` of the oldest ended order
M_CLOSED_COUNT = 5
M_OIDS = 6  # entries in the order-id table
M_CLORDIDS = 7  # entries in the ClOrdID table
M_SEQ = 8  # the command being read: its seq (0: none yet in this batch)
M_TRANSIENT = 9  # an IOC, FOK or market order of that command, to end with it (0: none)
M_KIND = 10  # that command's CommandKind
M_TARGET = 11  # the order it is about: a NEW's own id, a replace's target, else 0
M_AT = 12  # its position in the batch
M_UNKNOWN = 13  # trades of an order the ledger does not track, since the service last looked
META_SIZE = 16

# kernel answers
DONE = -1
OUTSIDE_BATCH = -2  # an event of a seq outside the batch: the service refuses the stream
# Room one event may need at most: the command before it may end (a transient order), a trade can end two
# orders, each ending can evict one from the history (CLORDIDS_MAX entries retired each), and a replace
# retires one. ``end_command`` needs no more than an event.
NEED_SLOTS = 2
NEED_POOL = 2
NEED_FILLS = 3
NEED_CLOSED = 3
NEED_RETIRED = 3 * CLORDIDS_MAX + 2
# How many events (sweep: entries) ahead of the one being read the kernels ask for the cache lines it will
# need from the big tables: its order-id table line this far ahead, its row and ClOrdID table line half as
# far (the row is found through the line asked for before). Far enough for a line to arrive from memory
# meanwhile, near enough that it is still cached when its event comes.
PREFETCH_AHEAD = 16

_ACCEPTED = int(EventKind.ACCEPTED)
_REJECTED = int(EventKind.REJECTED)
_TRADE = int(EventKind.TRADE)
_CANCELLED = int(EventKind.CANCELLED)
_REPLACED = int(EventKind.REPLACED)
_BALANCE = int(EventKind.BALANCE)
_NEW = int(CommandKind.NEW)
_CANCEL = int(CommandKind.CANCEL)
_CANCEL_REPLACE = int(CommandKind.CANCEL_REPLACE)
_CANCEL_ALL = int(CommandKind.CANCEL_ALL)
_DEPOSIT = int(CommandKind.DEPOSIT)
_WITHDRAW = int(CommandKind.WITHDRAW)
_MARKET = int(OrderType.MARKET)
_LIMIT = int(OrderType.LIMIT)
_IOC = int(TimeInForce.IOC)
_FOK = int(TimeInForce.FOK)
# The cancel reasons that end an order the client did not ask to cancel: it expired.
_IOC_REMAINDER = int(CancelReason.IOC_REMAINDER)
_FOK_KILLED = int(CancelReason.FOK)
_MARKET_REMAINDER = int(CancelReason.MARKET_REMAINDER)

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


@kernel(inline=True)
def _mix(x):
    x = (x ^ (x >> np.uint64(30))) * _MIX1
    x = (x ^ (x >> np.uint64(27))) * _MIX2
    return x ^ (x >> np.uint64(31))


@kernel(inline=True)
def _oid_hash(order_id):
    return _mix(np.uint64(order_id) * _GOLDEN)


@kernel
def clordid_hash(account, text, start, length):
    """Of (account, text[start:start + length]), as an int64."""
    h = _FNV_OFFSET
    for k in range(length):
        h = (h ^ np.uint64(text[start + k])) * _FNV_PRIME
    return np.int64(_mix(h ^ (np.uint64(account) * _GOLDEN)))


# --- the order-id table -------------------------------------------------------------------------------


@kernel(inline=True)
def _oid_find(oids, order_id):
    """The table position holding ``order_id``, or -1."""
    mask = oids.shape[0] - 1
    i = np.int64(_oid_hash(order_id) & np.uint64(mask))
    while True:
        key = oids[i, 0]
        if key == order_id:
            return i
        if key == 0:
            return -1
        i = (i + 1) & mask


@kernel(inline=True)
def _oid_home(oids, order_id):
    return np.int64(_oid_hash(order_id) & np.uint64(oids.shape[0] - 1))


@kernel(inline=True)
def _prefetch_row(slots, oids, order_id):
    """The row of ``order_id`` if its table line (asked for earlier) holds it at its home."""
    home = _oid_home(oids, order_id)
    if oids[home, 0] == order_id:
        prefetch(slots, oids[home, 1])


@kernel
def find_slot(oids, order_id):
    """The row of a tracked order, or -1."""
    if order_id <= 0:
        return -1
    at = _oid_find(oids, order_id)
    return oids[at, 1] if at >= 0 else -1


@kernel(inline=True)
def _oid_insert(oids, meta, order_id, slot):
    mask = oids.shape[0] - 1
    i = np.int64(_oid_hash(order_id) & np.uint64(mask))
    while oids[i, 0] != 0 and oids[i, 0] != order_id:
        i = (i + 1) & mask
    if oids[i, 0] == 0:
        meta[M_OIDS] += 1
    oids[i, 0] = order_id
    oids[i, 1] = slot


@kernel(inline=True)
def _close_hole(table, hole, hashed):
    """Empty row ``hole`` of an open-addressing table of [key (0: empty), value] rows, moving back the rows
    after it in its probe run that would no longer be found. A row's home is the hash in its value column
    (``hashed``), else that of its key (the order-id table)."""
    mask = table.shape[0] - 1
    j = hole
    while True:
        j = (j + 1) & mask
        key = table[j, 0]
        if key == 0:
            break
        home = table[j, 1] & mask if hashed else np.int64(_oid_hash(key) & np.uint64(mask))
        # Move the row back into the hole unless its home lies cyclically in (hole, j].
        if (j > hole and (home <= hole or home > j)) or (j < hole and home <= hole and home > j):
            table[hole, 0] = key
            table[hole, 1] = table[j, 1]
            hole = j
    table[hole, 0] = 0
    table[hole, 1] = 0


@kernel
def _oid_remove(oids, meta, order_id):
    hole = _oid_find(oids, order_id)
    if hole >= 0:
        _close_hole(oids, hole, False)
        meta[M_OIDS] -= 1


@kernel
def rehash_oids(old, new, meta):
    meta[M_OIDS] = 0
    for i in range(old.shape[0]):
        if old[i, 0] != 0:
            _oid_insert(new, meta, old[i, 0], old[i, 1])


# --- the ClOrdID table --------------------------------------------------------------------------------


@kernel(inline=True)
def _same_clordid(pool, pool_bytes, entry, account, text, start, length):
    if pool[entry].account != account or pool[entry].length != length:
        return False
    for k in range(length):
        if pool_bytes[entry, k] != text[start + k]:
            return False
    return True


@kernel
def clordid_find(table, pool, pool_bytes, account, text, start, length):
    """The table position of (account, ClOrdID), or -1. A table row is [pool entry + 1 (0: empty), hash]:
    a probe reads the pool only where the hash matches."""
    if length <= 0 or length > CLORDID_BYTES:
        return -1
    h = clordid_hash(account, text, start, length)
    mask = table.shape[0] - 1
    i = h & mask
    while True:
        entry = table[i, 0] - 1
        if entry < 0:
            return -1
        if table[i, 1] == h and _same_clordid(pool, pool_bytes, entry, account, text, start, length):
            return i
        i = (i + 1) & mask


@kernel
def resolve_clordid(table, pool, pool_bytes, account, text):
    """The order id (account, ClOrdID ``text``) names, or 0."""
    at = clordid_find(table, pool, pool_bytes, account, text, 0, text.shape[0])
    return pool[table[at, 0] - 1].order_id if at >= 0 else 0


@kernel(inline=True)
def _table_place(table, pool, entry):
    """Put pool ``entry`` into the table (its key is not there)."""
    mask = table.shape[0] - 1
    h = pool[entry].hash
    i = h & mask
    while table[i, 0] != 0:
        i = (i + 1) & mask
    table[i, 0] = entry + 1
    table[i, 1] = h


@kernel
def _table_remove(table, meta, hole):
    _close_hole(table, hole, True)
    meta[M_CLORDIDS] -= 1


@kernel
def rehash_clordids(old_table, new_table, pool):
    for i in range(old_table.shape[0]):
        if old_table[i, 0] != 0:
            _table_place(new_table, pool, old_table[i, 0] - 1)


@kernel(inline=True)
def _map_clordid(table, pool, pool_bytes, pool_free, meta, order_id, account, text, start, length):
    """A new pool entry for (account, ClOrdID) owned by ``order_id``, mapped in the table (replacing what
    the key mapped to). Returns the entry."""
    meta[M_POOL_FREE] -= 1
    entry = pool_free[meta[M_POOL_FREE]]
    h = clordid_hash(account, text, start, length)
    pool[entry].order_id = order_id
    pool[entry].hash = h
    pool[entry].account = account
    pool[entry].length = length
    for k in range(length):
        pool_bytes[entry, k] = text[start + k]
    at = clordid_find(table, pool, pool_bytes, account, text, start, length)
    if at >= 0:
        table[at, 0] = entry + 1
    else:
        _table_place(table, pool, entry)
        meta[M_CLORDIDS] += 1
    return entry


@kernel
def sweep(table, pool, pool_free, retired, meta):
    """Retired entries leave the table (where they are still what their key maps to) and the pool.

    A row that holds the entry can only be the one its key maps to, and it lies in the probe run from the
    key's home: the entry's stored hash finds it without hashing or comparing the ClOrdID's bytes, which
    are a cache miss of their own per entry."""
    mask = table.shape[0] - 1
    count = meta[M_RETIRED]
    for r in range(count):
        if r + PREFETCH_AHEAD < count:
            prefetch(pool, retired[r + PREFETCH_AHEAD])
        if r + PREFETCH_AHEAD // 2 < count:
            prefetch2(table, pool[retired[r + PREFETCH_AHEAD // 2]].hash & mask, 0)
        entry = retired[r]
        i = pool[entry].hash & mask
        while table[i, 0] != 0:
            if table[i, 0] - 1 == entry:
                _table_remove(table, meta, i)
                break
            i = (i + 1) & mask
        pool_free[meta[M_POOL_FREE]] = entry
        meta[M_POOL_FREE] += 1
    meta[M_RETIRED] = 0


# --- orders -------------------------------------------------------------------------------------------


@kernel(inline=True)
def _add_fill(slots, fills, fill_free, meta, slot, seq, ts, price, qty, amount, fee, maker):
    meta[M_FILLS_FREE] -= 1
    f = fill_free[meta[M_FILLS_FREE]]
    fills[f].seq = seq
    fills[f].ts = ts
    fills[f].price = price
    fills[f].qty = qty
    fills[f].amount = amount
    fills[f].fee = fee
    fills[f].maker = maker
    fills[f].next = -1
    if slots[slot].fill_last >= 0:
        fills[slots[slot].fill_last].next = f
    else:
        slots[slot].fill_first = f
    slots[slot].fill_last = f
    slots[slot].fill_count += 1


@kernel
def _evict(slots, slot_free, oids, fills, fill_free, retired, meta, slot):
    """An ended order leaves the history: its row and fills are freed now, its ClOrdIDs at the next sweep."""
    _oid_remove(oids, meta, slots[slot].order_id)
    for k in range(slots[slot].n_clordids):
        retired[meta[M_RETIRED]] = slots[slot].clordids[k]
        meta[M_RETIRED] += 1
    f = slots[slot].fill_first
    while f >= 0:
        fill_free[meta[M_FILLS_FREE]] = f
        meta[M_FILLS_FREE] += 1
        f = fills[f].next
    slots[slot].status = STATUS_FREE
    slot_free[meta[M_SLOTS_FREE]] = slot
    meta[M_SLOTS_FREE] += 1


@kernel
def _close(slots, slot_free, oids, fills, fill_free, closed, retired, meta, slot, status, history):
    """The order has ended: its last state joins the history, whose oldest leaves beyond ``history``."""
    slots[slot].status = status
    size = closed.shape[0]
    closed[(meta[M_CLOSED_HEAD] + meta[M_CLOSED_COUNT]) % size] = slot
    meta[M_CLOSED_COUNT] += 1
    while meta[M_CLOSED_COUNT] > history:
        oldest = closed[meta[M_CLOSED_HEAD]]
        meta[M_CLOSED_HEAD] = (meta[M_CLOSED_HEAD] + 1) % size
        meta[M_CLOSED_COUNT] -= 1
        _evict(slots, slot_free, oids, fills, fill_free, retired, meta, oldest)


@kernel
def _end_transient(slots, slot_free, oids, fills, fill_free, closed, retired, meta, history):
    """An IOC, FOK or market order whose command is over and that no event ended (it filled)."""
    order_id = meta[M_TRANSIENT]
    meta[M_TRANSIENT] = 0
    slot = find_slot(oids, order_id)
    if slot >= 0 and slots[slot].status == STATUS_OPEN:
        done = slots[slot].filled > 0 if slots[slot].qty > 0 else slots[slot].cum_quote > 0
        _close(slots, slot_free, oids, fills, fill_free, closed, retired, meta, slot,
               STATUS_FILLED if done else STATUS_EXPIRED, history)


@kernel
def end_command(slots, slot_free, oids, fills, fill_free, closed, retired, meta, history):
    """The end of a part of a batch (its last command is over): end that command's IOC, FOK or market order
    if no event did, and forget the cursor (it depends on where batches begin: not state). Returns False,
    doing nothing, if the history might not have room for the order."""
    if meta[M_TRANSIENT] != 0:
        if closed.shape[0] - meta[M_CLOSED_COUNT] < 1 or retired.shape[0] - meta[M_RETIRED] < CLORDIDS_MAX:
            return False
        _end_transient(slots, slot_free, oids, fills, fill_free, closed, retired, meta, history)
    for k in range(M_SEQ, M_AT + 1):
        meta[k] = 0
    return True


@kernel(inline=True)
def _open_slot(slots, oids, order_id):
    slot = find_slot(oids, order_id)
    if slot >= 0 and slots[slot].status != STATUS_OPEN:
        return -1
    return slot


@kernel(inline=True)
def _current_clordid(slots, slot):
    n = slots[slot].n_clordids
    return slots[slot].clordids[n - 1] if n > 0 else CLORDID_NONE


@kernel(inline=True)
def _route(routes, i, gateway, session, account, role, clordid, cum_quote):
    routes[i].gateway = gateway
    routes[i].session = session
    routes[i].account = account
    routes[i].role = role
    routes[i].clordid = clordid
    routes[i].cum_quote = cum_quote


@kernel
def track(events, start, first, commands, sessions, text, offsets,
          slots, slot_free, oids, table, pool, pool_bytes, pool_free, fills, fill_free, closed,
          retired, meta, routes, history, per_order):
    """Follow ``events[start:]`` (a chunk of the events of ``commands``, whose first seq is ``first``, their
    OrigClOrdIDs resolved; the k-th command's session is ``sessions[k]``, its ClOrdID
    ``text[offsets[k]:offsets[k + 1]]``) and route each.

    Returns DONE, OUTSIDE_BATCH, or the position of the first event not read for want of room."""
    n_commands = commands.shape[0]
    n_events = events.shape[0]
    for i in range(start, n_events):
        if (meta[M_SLOTS_FREE] < NEED_SLOTS or meta[M_POOL_FREE] < NEED_POOL or meta[M_FILLS_FREE] < NEED_FILLS
                or retired.shape[0] - meta[M_RETIRED] < NEED_RETIRED or 2 * (meta[M_OIDS] + 1) > oids.shape[0]
                or 2 * (meta[M_CLORDIDS] + 1) > table.shape[0]
                or closed.shape[0] - meta[M_CLOSED_COUNT] < NEED_CLOSED):
            return i
        ahead = i + PREFETCH_AHEAD
        if ahead < n_events:
            prefetch2(oids, _oid_home(oids, events[ahead].order_id), 0)
            if events[ahead].kind == _TRADE:
                prefetch2(oids, _oid_home(oids, events[ahead].maker_order_id), 0)
        near = i + PREFETCH_AHEAD // 2
        if near < n_events:
            upcoming = events[near]
            _prefetch_row(slots, oids, upcoming.order_id)
            if upcoming.kind == _TRADE:
                _prefetch_row(slots, oids, upcoming.maker_order_id)
            elif upcoming.kind == _ACCEPTED or upcoming.kind == _REPLACED:  # a ClOrdID to map
                # Its hash is computed again when it is mapped: a few bytes, cheaper than the miss it hides.
                k = upcoming.seq - first
                if 0 <= k < n_commands and 0 < offsets[k + 1] - offsets[k] <= CLORDID_BYTES:
                    hashed = clordid_hash(upcoming.account, text, offsets[k], offsets[k + 1] - offsets[k])
                    prefetch2(table, hashed & (table.shape[0] - 1), 0)
        event = events[i]
        seq = event.seq
        routes[i].role = ROLE_NONE
        routes[i].maker_role = ROLE_NONE
        routes[i].unknown = 0
        if seq != meta[M_SEQ]:
            if meta[M_TRANSIENT] != 0:
                _end_transient(slots, slot_free, oids, fills, fill_free, closed, retired, meta,
                               history)
            at = seq - first
            if at < 0 or at >= n_commands:
                return OUTSIDE_BATCH
            meta[M_SEQ] = seq
            meta[M_AT] = at
            kind = np.int64(commands[at].kind)
            meta[M_KIND] = kind
            if kind == _NEW:
                meta[M_TARGET] = seq
            elif kind == _CANCEL_REPLACE:
                meta[M_TARGET] = commands[at].order_id
            else:
                meta[M_TARGET] = 0
        at = meta[M_AT]
        command_kind = meta[M_KIND]
        gateway = commands[at].origin
        session = sessions[at]
        kind = event.kind
        oid = event.order_id
        account = event.account
        if kind == _BALANCE:
            if command_kind == _DEPOSIT or command_kind == _WITHDRAW:
                _route(routes, i, gateway, session, account, ROLE_ORDER, CLORDID_OF_COMMAND, 0)
        elif kind == _TRADE:
            amount = event.amount
            taker = _open_slot(slots, oids, oid)
            if taker < 0:
                routes[i].unknown = 1
                meta[M_UNKNOWN] += 1
                _route(routes, i, gateway, session, account, ROLE_TAKER, CLORDID_OF_COMMAND, amount)
            else:
                slots[taker].filled = event.filled
                slots[taker].cum_quote += amount
                slots[taker].ts = event.ts
                _add_fill(slots, fills, fill_free, meta, taker, seq, event.ts, event.price, event.qty, amount,
                          event.taker_fee, 0)
                _route(routes, i, slots[taker].gateway, slots[taker].session, slots[taker].account, ROLE_TAKER,
                       _current_clordid(slots, taker), slots[taker].cum_quote)
                if event.leaves == 0 and slots[taker].qty > 0:
                    _close(slots, slot_free, oids, fills, fill_free, closed, retired, meta, taker,
                           STATUS_FILLED, history)
            maker = _open_slot(slots, oids, event.maker_order_id)
            if maker < 0:
                routes[i].unknown += 2
                meta[M_UNKNOWN] += 1
            else:
                slots[maker].filled = event.maker_filled
                slots[maker].cum_quote += amount
                slots[maker].ts = event.ts
                _add_fill(slots, fills, fill_free, meta, maker, seq, event.ts, event.price, event.qty, amount,
                          event.maker_fee, 1)
                routes[i].maker_gateway = slots[maker].gateway
                routes[i].maker_session = slots[maker].session
                routes[i].maker_account = slots[maker].account
                routes[i].maker_role = ROLE_MAKER
                routes[i].maker_clordid = _current_clordid(slots, maker)
                routes[i].maker_cum_quote = slots[maker].cum_quote
                if event.maker_leaves == 0:
                    _close(slots, slot_free, oids, fills, fill_free, closed, retired, meta, maker,
                           STATUS_FILLED, history)
        elif kind == _ACCEPTED:
            meta[M_SLOTS_FREE] -= 1
            slot = slot_free[meta[M_SLOTS_FREE]]
            slots[slot].order_id = oid
            slots[slot].account = account
            slots[slot].symbol = event.symbol
            slots[slot].side = event.side
            slots[slot].order_type = event.order_type
            slots[slot].tif = event.tif
            slots[slot].price = event.price
            slots[slot].qty = event.qty
            slots[slot].filled = 0
            slots[slot].cum_quote = 0
            slots[slot].ts = event.ts
            slots[slot].gateway = gateway
            slots[slot].session = session
            slots[slot].status = STATUS_OPEN
            slots[slot].fill_first = -1
            slots[slot].fill_last = -1
            slots[slot].fill_count = 0
            slots[slot].n_clordids = 0
            _oid_insert(oids, meta, oid, slot)
            length = offsets[at + 1] - offsets[at]
            if 0 < length <= CLORDID_BYTES:
                slots[slot].clordids[0] = _map_clordid(table, pool, pool_bytes, pool_free, meta, oid, account, text,
                                                       offsets[at], length)
                slots[slot].n_clordids = 1
            if event.order_type == _MARKET or event.tif == _IOC or event.tif == _FOK:
                meta[M_TRANSIENT] = oid  # never rests: it ends with its command
            _route(routes, i, gateway, session, account, ROLE_ORDER, CLORDID_OF_COMMAND, 0)
        elif kind == _CANCELLED:
            slot = _open_slot(slots, oids, oid)
            own = command_kind == _CANCEL or command_kind == _CANCEL_ALL or oid == meta[M_TARGET]
            if slot >= 0 and not own:  # a resting order cancelled by self-trade prevention
                _route(routes, i, slots[slot].gateway, slots[slot].session, slots[slot].account, ROLE_ORDER,
                       _current_clordid(slots, slot), slots[slot].cum_quote)
            else:
                _route(routes, i, gateway, session, account, ROLE_ORDER, CLORDID_OF_COMMAND,
                       slots[slot].cum_quote if slot >= 0 else 0)
            if slot >= 0:
                slots[slot].filled = event.filled
                slots[slot].ts = event.ts
                reason = event.reason
                expired = reason == _IOC_REMAINDER or reason == _FOK_KILLED or reason == _MARKET_REMAINDER
                _close(slots, slot_free, oids, fills, fill_free, closed, retired, meta, slot,
                       STATUS_EXPIRED if expired else STATUS_CANCELED, history)
        elif kind == _REPLACED:
            slot = _open_slot(slots, oids, oid)
            cum_quote = 0
            routes[i].old_price = slots[slot].price if slot >= 0 else event.price
            if slot >= 0:
                slots[slot].price = event.price
                slots[slot].qty = event.qty
                slots[slot].filled = event.filled
                slots[slot].ts = event.ts
                slots[slot].gateway = gateway
                slots[slot].session = session
                length = offsets[at + 1] - offsets[at]
                if 0 < length <= CLORDID_BYTES:
                    entry = _map_clordid(table, pool, pool_bytes, pool_free, meta, oid, slots[slot].account, text,
                                         offsets[at], length)
                    n = slots[slot].n_clordids
                    if n >= per_order:  # the oldest leaves at the next sweep
                        retired[meta[M_RETIRED]] = slots[slot].clordids[0]
                        meta[M_RETIRED] += 1
                        for k in range(n - 1):
                            slots[slot].clordids[k] = slots[slot].clordids[k + 1]
                        n -= 1
                    slots[slot].clordids[n] = entry
                    slots[slot].n_clordids = n + 1
                cum_quote = slots[slot].cum_quote
            _route(routes, i, gateway, session, account, ROLE_ORDER, CLORDID_OF_COMMAND, cum_quote)
        elif kind == _REJECTED:
            cum_quote = 0
            if command_kind == _CANCEL or command_kind == _CANCEL_REPLACE:
                slot = _open_slot(slots, oids, oid)
                if slot >= 0 and slots[slot].account == account:
                    cum_quote = slots[slot].cum_quote
            _route(routes, i, gateway, session, account, ROLE_ORDER, CLORDID_OF_COMMAND, cum_quote)
        else:  # ACCOUNT_CREATED, MASS_CANCELLED
            _route(routes, i, gateway, session, account, ROLE_ORDER, CLORDID_OF_COMMAND, 0)
    return DONE


# --- building a ledger from older snapshots (engine/ledger.py), one call per item -----------------------


@kernel
def insert_order_id(oids, meta, order_id, slot):
    _oid_insert(oids, meta, order_id, slot)


@kernel
def add_fill(slots, fills, fill_free, meta, slot, seq, ts, price, qty, amount, fee, maker):
    _add_fill(slots, fills, fill_free, meta, slot, seq, ts, price, qty, amount, fee, maker)


@kernel
def map_clordid(table, pool, pool_bytes, pool_free, meta, order_id, account, text, start, length):
    return _map_clordid(table, pool, pool_bytes, pool_free, meta, order_id, account, text, start, length)


@kernel
def point_clordid(table, pool, pool_bytes, meta, entry):
    """Make the key of pool ``entry`` map to it."""
    at = clordid_find(table, pool, pool_bytes, pool[entry].account, pool_bytes[entry], 0, pool[entry].length)
    if at >= 0:
        table[at, 0] = entry + 1
    else:
        _table_place(table, pool, entry)
        meta[M_CLORDIDS] += 1


# --- the last seq of each market and account topic (state: it chains the topics' messages) -------------


@kernel
def topic_seqs(events, market_last, account_last):
    """What the report routing records of a chunk when no message is built: the last seq of each symbol's
    market topic (a trade, or a book level changed by a limit order that can rest) and of each account's
    topic (its events, and the trades where it is the maker)."""
    symbols = market_last.shape[0]
    accounts = account_last.shape[0]
    for i in range(events.shape[0]):
        kind = events[i].kind
        seq = events[i].seq
        symbol = events[i].symbol
        if kind == _TRADE or ((kind == _ACCEPTED or kind == _CANCELLED or kind == _REPLACED)
                              and events[i].order_type == _LIMIT and events[i].tif != _IOC and events[i].tif != _FOK):
            if 0 <= symbol < symbols:
                market_last[symbol] = seq
        account = events[i].account
        if 0 <= account < accounts:
            account_last[account] = seq
        if kind == _TRADE:
            maker = events[i].maker_account
            if maker != account and 0 <= maker < accounts:
                account_last[maker] = seq
