"""The fast engine's state: record layouts, table columns and the arrays built once from the config.

Everything the kernels touch lives in a handful of numpy arrays allocated here, sized by the
configuration's capacities. Nothing is allocated per order afterwards. Arrays are zero-filled so the
operating system maps their pages lazily: an engine configured for ten million orders costs memory only
for the slots it has used, unless the engine process maps them all before going live (``pretouch``,
config ``engine.pretouch``), which it does by default.
"""

from __future__ import annotations

import mmap
from dataclasses import dataclass

import numpy as np

from common.config import BPS_DENOMINATOR, ExchangeConfig

# An open order: one slot of the order table. The table has one extra slot, the scratch slot, that
# holds an incoming IOC, FOK or market order while it matches (it never rests, so it needs no slot).
ORDER_DTYPE = np.dtype(
    [
        ("order_id", "<i8"),
        ("client_order_id", "<i8"),
        ("price", "<i8"),  # ticks; 0 for a market order
        ("qty", "<i8"),  # lots, total (filled included); 0 for a market buy by quote amount
        ("filled", "<i8"),  # lots
        ("reserve", "<i8"),  # what the order holds frozen (quote for buys, base for sells)
        ("ts", "<i8"),  # when it was accepted
        ("account", "<i4"),
        ("symbol", "<i4"),
        ("prev", "<i4"),  # FIFO links inside the price level; `next` also links the free list
        ("next", "<i4"),
        ("acct_prev", "<i4"),  # links in the account's list of open orders, oldest first
        ("acct_next", "<i4"),
        ("side", "u1"),
        ("order_type", "u1"),
        ("tif", "u1"),
        ("by_quote", "u1"),  # 1 for a market buy by quote amount: `reserve` is its unspent amount
    ],
    align=True,
)

# A price level of a symbol's ladder. A level is empty when `count` is 0 (then head and tail are
# meaningless), so a zero-filled ladder is a valid empty book.
LEVEL_DTYPE = np.dtype([("qty", "<i8"), ("head", "<i4"), ("tail", "<i4"), ("count", "<i4"), ("spare", "<i4")])

# One entry of the order-id index: key and value share a cache line.
INDEX_DTYPE = np.dtype([("key", "<i8"), ("slot", "<i8")])

# One row per symbol: its configuration as integers, and the state of its book.
SYMBOL_DTYPE = np.dtype(
    [
        ("base", "<i8"),  # asset ids
        ("quote", "<i8"),
        ("min_price", "<i8"),  # ticks: the band
        ("max_price", "<i8"),
        ("level_offset", "<i8"),  # first level of this symbol in the shared level array
        ("bits0", "<i8"),  # offsets of the three bitmap layers in the shared bitmap array
        ("bits1", "<i8"),
        ("bits2", "<i8"),
        ("n_levels", "<i8"),  # price levels in the band: the ladder's length
        ("min_qty", "<i8"),  # lots
        ("max_qty", "<i8"),
        ("min_notional", "<i8"),  # quote units
        ("bpl", "<i8"),  # base units per lot
        ("qptl", "<i8"),  # quote units per tick x lot
        ("best_bid", "<i8"),  # ticks, or NO_PRICE
        ("best_ask", "<i8"),
        ("bid_orders", "<i8"),  # orders resting on each side
        ("ask_orders", "<i8"),
    ]
)

NO_PRICE = -1

# One row per account id.
ACCOUNT_DTYPE = np.dtype(
    [
        ("active", "<i4"),  # 1 once created
        ("open_orders", "<i4"),
        ("head", "<i4"),  # oldest open order's slot, or -1
        ("tail", "<i4"),  # newest open order's slot, or -1
    ]
)

# One per account and asset: balances[account, asset].
BALANCE_DTYPE = np.dtype([("available", "<i8"), ("frozen", "<i8")])

# Parameters and counters (int64 vector).
P_FEE_ACCOUNT = 0
P_MAKER_BPS = 1
P_TAKER_BPS = 2
P_RESERVE_BPS = 3
P_STP = 4
P_MAX_ORDERS = 5  # also the scratch slot's index
P_N_ASSETS = 6
P_N_SYMBOLS = 7
P_HASH_MASK = 8
P_HASH_SHIFT = 9  # 64 - log2(index size)
P_FREE_HEAD = 10  # first slot of the free list, or -1
P_HIGH_WATER = 11  # slots below it have been used at least once
P_OPEN_ORDERS = 12  # orders resting
P_NEED_EVENTS = 13  # out: room a command needs that the whole buffer lacks
P_N_ACCOUNTS = 14
P_BPS_DENOMINATOR = 15
PARAM_COUNT = 16

MIN_INDEX_BITS = 4


@dataclass
class EngineArrays:
    """Every array of the fast engine's state. The kernels get them as arguments, in this order."""

    orders: np.ndarray  # ORDER_DTYPE [max_open_orders + 1]
    levels: np.ndarray  # LEVEL_DTYPE [sum of symbol levels]
    bits: np.ndarray  # uint64, three bitmap layers per symbol: which levels are non-empty
    symbols: np.ndarray  # SYMBOL_DTYPE [symbols]
    accounts: np.ndarray  # ACCOUNT_DTYPE [max_accounts]
    balances: np.ndarray  # BALANCE_DTYPE [max_accounts, assets]
    supply: np.ndarray  # int64 [assets]: deposits - withdrawals
    index: np.ndarray  # INDEX_DTYPE: order id -> slot, open addressing; key 0 = empty
    params: np.ndarray  # int64 [PARAM_COUNT]

    def kernel_args(self) -> tuple:
        return (
            self.orders,
            self.levels,
            self.bits,
            self.symbols,
            self.accounts,
            self.balances,
            self.supply,
            self.index,
            self.params,
        )


def _words(bits: int) -> int:
    return (bits + 63) // 64


HUGE_PAGE = 2 << 20  # bytes: the x86-64 transparent huge page


def zeroed(shape, dtype) -> np.ndarray:
    """``np.zeros(shape, dtype)``, in transparent huge pages when the array spans one or more.

    The index and the order table are read at random: in 4 KiB pages nearly every lookup also misses
    the TLB (a 2 MiB index is 512 pages), in 2 MiB pages they stay mapped. numpy asks for huge pages
    only above 4 MiB and without aligning the array to them.
    """
    dtype = np.dtype(dtype)
    count = int(np.prod(shape))
    size = count * dtype.itemsize
    if size < HUGE_PAGE or not hasattr(mmap, "MADV_HUGEPAGE"):
        return np.zeros(shape, dtype=dtype)
    spanned = -(-size // HUGE_PAGE) * HUGE_PAGE
    # Private (a forked snapshot writer must see the arrays as they were), anonymous (zero-filled),
    # aligned to 4 KiB pages only.
    region = mmap.mmap(-1, spanned + HUGE_PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    start = -_address(region) % HUGE_PAGE
    region.madvise(mmap.MADV_HUGEPAGE, start, spanned)
    return np.frombuffer(region, dtype=dtype, count=count, offset=start).reshape(shape)


def pretouch(array: np.ndarray) -> None:
    """Have the operating system map every page of ``array`` now, its contents unchanged.

    A page of a zero-filled array is mapped at its first write: for a transparent huge page the kernel
    finds and zeroes 2 MiB then, 0.4 - 1 ms on this kind of machine. Mid-traffic that is a stall of
    matching (the first orders of a fresh engine process touched some 280 pages: 127 ms). Writing one
    byte of every page back to itself moves that cost to start-up.
    """
    if array.size == 0 or not array.flags.c_contiguous:
        return
    raw = array.reshape(-1).view(np.uint8)
    # A copy first: numpy skips an assignment of a view onto itself, which would map nothing.
    raw[:: mmap.PAGESIZE] = raw[:: mmap.PAGESIZE].copy()


def _address(region: mmap.mmap) -> int:
    return np.frombuffer(region, dtype=np.uint8, count=1).ctypes.data


def allocate(config: ExchangeConfig) -> EngineArrays:
    """Allocate the engine's arrays for ``config``, empty but for the fee account."""
    n_assets = len(config.assets)
    max_orders = config.capacity.max_open_orders
    max_accounts = config.capacity.max_accounts

    symbols = np.zeros(max(len(config.symbols), 1), dtype=SYMBOL_DTYPE)
    level_total = 0
    bit_total = 0
    for s in config.symbols:
        row = symbols[s.id]
        words0 = _words(s.levels)
        words1 = _words(words0)
        words2 = _words(words1)
        row["base"] = s.base.id
        row["quote"] = s.quote.id
        row["min_price"] = s.min_price_ticks
        row["max_price"] = s.max_price_ticks
        row["level_offset"] = level_total
        row["bits0"] = bit_total
        row["bits1"] = bit_total + words0
        row["bits2"] = bit_total + words0 + words1
        row["n_levels"] = s.levels
        row["min_qty"] = s.min_qty_lots
        row["max_qty"] = s.max_qty_lots
        row["min_notional"] = s.min_notional_units
        row["bpl"] = s.base_units_per_lot
        row["qptl"] = s.quote_units_per_tick_lot
        row["best_bid"] = NO_PRICE
        row["best_ask"] = NO_PRICE
        level_total += s.levels
        bit_total += words0 + words1 + words2

    # The order-id index is kept at most half full so that probes stay short.
    index_bits = max(MIN_INDEX_BITS, int(2 * max_orders - 1).bit_length())
    index_size = 1 << index_bits

    params = np.zeros(PARAM_COUNT, dtype=np.int64)
    params[P_FEE_ACCOUNT] = config.fees.fee_account
    params[P_MAKER_BPS] = config.fees.maker_bps
    params[P_TAKER_BPS] = config.fees.taker_bps
    params[P_RESERVE_BPS] = config.fees.reserve_bps
    params[P_STP] = int(config.engine.self_trade_prevention)
    params[P_MAX_ORDERS] = max_orders
    params[P_N_ASSETS] = n_assets
    params[P_N_SYMBOLS] = len(config.symbols)
    params[P_N_ACCOUNTS] = max_accounts
    params[P_HASH_MASK] = index_size - 1
    params[P_HASH_SHIFT] = 64 - index_bits
    params[P_FREE_HEAD] = -1
    params[P_BPS_DENOMINATOR] = BPS_DENOMINATOR

    accounts = np.zeros(max_accounts, dtype=ACCOUNT_DTYPE)
    accounts["head"] = -1
    accounts["tail"] = -1
    accounts["active"][config.fees.fee_account] = 1

    return EngineArrays(
        orders=zeroed(max_orders + 1, dtype=ORDER_DTYPE),
        levels=zeroed(max(level_total, 1), dtype=LEVEL_DTYPE),
        bits=np.zeros(max(bit_total, 1), dtype=np.uint64),
        symbols=symbols,
        accounts=accounts,
        balances=zeroed((max_accounts, n_assets), dtype=BALANCE_DTYPE),
        supply=np.zeros(n_assets, dtype=np.int64),
        index=zeroed(index_size, dtype=INDEX_DTYPE),
        params=params,
    )
