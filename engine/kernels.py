"""The matching engine's Numba kernels: commands in, events out, on preallocated arrays.

This module implements docs/engine.md. It imports no I/O, reads no clock and allocates nothing: the
state is the arrays of ``engine.layout``, events go into a buffer the caller owns, and every function
returns values or result codes instead of raising.

Argument order is the same everywhere: ``orders, levels, bits, sym, accts, bal, supply, index, params`` (the fields of ``layout.EngineArrays``), abbreviated ``state`` in comments.
"""

from __future__ import annotations

import numpy as np
from engine.jit import kernel

from common.records import (
    ALL_SYMBOLS,
    SelfTradePrevention,
    EVENT_DTYPE,
    CancelReason,
    CommandKind,
    EventKind,
    OrderType,
    RejectReason,
    Side,
    TimeInForce,
)
from engine.ladder import bit_clear, bit_set, next_set, prev_set
from engine.unchecked import at, at2, prefetch, prefetch2
from engine.layout import (
    NO_PRICE,
    P_FEE_ACCOUNT,
    P_FREE_HEAD,
    P_HASH_MASK,
    P_HASH_SHIFT,
    P_HIGH_WATER,
    P_MAKER_BPS,
    P_MAX_ORDERS,
    P_N_ACCOUNTS,
    P_N_ASSETS,
    P_N_SYMBOLS,
    P_NEED_EVENTS,
    P_OPEN_ORDERS,
    P_RESERVE_BPS,
    P_STP,
    P_TAKER_BPS,
)

# Codes as plain ints, so Numba folds them into constants.
NEW = int(CommandKind.NEW)
CANCEL = int(CommandKind.CANCEL)
CANCEL_REPLACE = int(CommandKind.CANCEL_REPLACE)
CANCEL_ALL = int(CommandKind.CANCEL_ALL)
DEPOSIT = int(CommandKind.DEPOSIT)
WITHDRAW = int(CommandKind.WITHDRAW)
CREATE_ACCOUNT = int(CommandKind.CREATE_ACCOUNT)

BUY = int(Side.BUY)
SELL = int(Side.SELL)
MARKET = int(OrderType.MARKET)
LIMIT = int(OrderType.LIMIT)
GTC = int(TimeInForce.GTC)
IOC = int(TimeInForce.IOC)
FOK = int(TimeInForce.FOK)
POST_ONLY = int(TimeInForce.POST_ONLY)

EV_ACCEPTED = int(EventKind.ACCEPTED)
EV_REJECTED = int(EventKind.REJECTED)
EV_TRADE = int(EventKind.TRADE)
EV_CANCELLED = int(EventKind.CANCELLED)
EV_REPLACED = int(EventKind.REPLACED)
EV_BALANCE = int(EventKind.BALANCE)
EV_ACCOUNT_CREATED = int(EventKind.ACCOUNT_CREATED)
EV_MASS_CANCELLED = int(EventKind.MASS_CANCELLED)

R_UNKNOWN_COMMAND = int(RejectReason.UNKNOWN_COMMAND)
R_UNKNOWN_ACCOUNT = int(RejectReason.UNKNOWN_ACCOUNT)
R_UNKNOWN_SYMBOL = int(RejectReason.UNKNOWN_SYMBOL)
R_UNKNOWN_ASSET = int(RejectReason.UNKNOWN_ASSET)
R_UNKNOWN_ORDER = int(RejectReason.UNKNOWN_ORDER)
R_INVALID_SIDE = int(RejectReason.INVALID_SIDE)
R_INVALID_ORDER_TYPE = int(RejectReason.INVALID_ORDER_TYPE)
R_INVALID_TIF = int(RejectReason.INVALID_TIME_IN_FORCE)
R_PRICE_OUT_OF_BAND = int(RejectReason.PRICE_OUT_OF_BAND)
R_INVALID_QUANTITY = int(RejectReason.INVALID_QUANTITY)
R_BELOW_MIN_NOTIONAL = int(RejectReason.BELOW_MIN_NOTIONAL)
R_INVALID_AMOUNT = int(RejectReason.INVALID_AMOUNT)
R_INSUFFICIENT_FUNDS = int(RejectReason.INSUFFICIENT_FUNDS)
R_ORDER_TABLE_FULL = int(RejectReason.ORDER_TABLE_FULL)
R_POST_ONLY_WOULD_CROSS = int(RejectReason.POST_ONLY_WOULD_CROSS)
R_INVALID_ORDER_ID = int(RejectReason.INVALID_ORDER_ID)
R_ACCOUNT_EXISTS = int(RejectReason.ACCOUNT_EXISTS)
R_BALANCE_OVERFLOW = int(RejectReason.BALANCE_OVERFLOW)

C_USER = int(CancelReason.USER)
C_IOC_REMAINDER = int(CancelReason.IOC_REMAINDER)
C_FOK = int(CancelReason.FOK)
C_SELF_TRADE = int(CancelReason.SELF_TRADE)
C_MARKET_REMAINDER = int(CancelReason.MARKET_REMAINDER)

STP_OFF = int(SelfTradePrevention.OFF)
STP_CANCEL_TAKER = int(SelfTradePrevention.CANCEL_TAKER)
STP_CANCEL_MAKER = int(SelfTradePrevention.CANCEL_MAKER)
STP_CANCEL_BOTH = int(SelfTradePrevention.CANCEL_BOTH)

INT64_MAX = np.iinfo(np.int64).max
EVENT_WORDS = EVENT_DTYPE.itemsize // 8
BPS = 10_000
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: spreads consecutive order ids

# Events a command may write, beyond its fills: order event + balance, and an ending cancel + balance.
EVENTS_PER_COMMAND = 4
EVENTS_PER_FILL = 6  # TRADE + 5 BALANCE
EVENTS_PER_CANCEL = 1  # CANCELLED (it carries the released balance)

# Return codes of apply_batch's status.
BATCH_DONE = 0  # every command was applied
BATCH_SPLIT = 1  # the buffer is full: hand the events over and call again
BATCH_GROW = 2  # the next command alone needs more than the buffer: grow it to params[P_NEED_EVENTS]


# --- arithmetic -------------------------------------------------------------------------------------


@kernel(inline=True)
def fee(notional, bps):
    """floor(notional * bps / 10000) without overflowing int64."""
    return (notional // BPS) * bps + (notional % BPS) * bps // BPS


@kernel(inline=True)
def buy_reserve(price, lots, qptl, reserve_bps):
    notional = price * lots * qptl
    return notional + fee(notional, reserve_bps)


@kernel
def affordable_lots(budget, price, qptl, taker_bps):
    """The most lots whose notional plus taker fee at ``price`` fit in ``budget``."""
    unit = price * qptl
    if unit <= 0 or budget <= 0:
        return 0
    most = budget // unit  # ignoring the fee: an upper bound, and notional stays <= budget
    # Start from the fee-inclusive estimate, then settle exactly (cost is monotonic in lots).
    lots = np.int64(float(budget) / (float(unit) * (1.0 + taker_bps / BPS)))
    if lots > most:
        lots = most
    if lots < 0:
        lots = 0
    while lots > 0 and fee(lots * unit, taker_bps) > budget - lots * unit:
        lots -= 1
    while lots < most and fee((lots + 1) * unit, taker_bps) <= budget - (lots + 1) * unit:
        lots += 1
    return lots


# --- the order-id index (open addressing, linear probing, backward-shift deletion) ------------------


@kernel(inline=True)
def _home(key, shift):
    return np.int64((np.uint64(key) * _GOLDEN) >> np.uint64(shift))


@kernel(inline=True)
def index_find(index, params, key):
    mask = params[P_HASH_MASK]
    i = _home(key, params[P_HASH_SHIFT])
    while True:
        k = at(index, i).key
        if k == key:
            return at(index, i).slot
        if k == 0:
            return np.int64(-1)
        i = (i + 1) & mask


@kernel(inline=True)
def index_insert(index, params, key, slot):
    mask = params[P_HASH_MASK]
    i = _home(key, params[P_HASH_SHIFT])
    while at(index, i).key != 0:
        i = (i + 1) & mask
    at(index, i).key = key
    at(index, i).slot = slot


@kernel(inline=True)
def index_delete(index, params, key):
    mask = params[P_HASH_MASK]
    shift = params[P_HASH_SHIFT]
    i = _home(key, shift)
    while at(index, i).key != key:
        i = (i + 1) & mask
    # Backward shift: pull later entries of the probe run into the hole unless their home lies
    # cyclically in (hole, entry], which would put them before their home.
    j = i
    while True:
        j = (j + 1) & mask
        k = at(index, j).key
        if k == 0:
            break
        home = _home(k, shift)
        if (j > i and (home <= i or home > j)) or (j < i and home <= i and home > j):
            at(index, i).key = k
            at(index, i).slot = at(index, j).slot
            i = j
    at(index, i).key = 0
    at(index, i).slot = 0


# --- events ---------------------------------------------------------------------------------------


@kernel(inline=True)
def _clear_event(ev_words, n):
    for k in range(EVENT_WORDS):  # a constant, so the compiler emits a few vector stores
        ev_words[n, k] = 0


@kernel(inline=True)
def _leaves(orders, slot):
    if at(orders, slot).by_quote:
        return np.int64(0)
    return at(orders, slot).qty - at(orders, slot).filled


@kernel(inline=True)
def emit_order(ev, ev_words, n, kind, reason, seq, ts, orders, sym, bal, slot, amount):
    """An event about one order (ACCEPTED, CANCELLED, REPLACED) with its current fields, and the
    account's balance of the order's reserve asset after whatever the event froze or released."""
    _clear_event(ev_words, n)
    e = at(ev, n)
    o = at(orders, slot)
    e.seq = seq
    e.ts = ts
    e.kind = kind
    e.reason = reason
    e.order_id = o.order_id
    e.client_order_id = o.client_order_id
    e.account = o.account
    e.symbol = o.symbol
    e.side = o.side
    e.order_type = o.order_type
    e.tif = o.tif
    e.price = o.price
    e.qty = o.qty
    e.leaves = _leaves(orders, slot)
    e.filled = o.filled
    e.amount = amount
    asset = _reserve_asset(sym, orders, slot)
    e.asset = asset
    e.available = at2(bal, o.account, asset).available
    e.frozen = at2(bal, o.account, asset).frozen
    return n + 1


@kernel(inline=True)
def emit_balance(ev, ev_words, n, seq, ts, bal, account, asset, amount):
    _clear_event(ev_words, n)
    e = at(ev, n)
    e.seq = seq
    e.ts = ts
    e.kind = EV_BALANCE
    e.account = account
    e.asset = asset
    e.available = at2(bal, account, asset).available
    e.frozen = at2(bal, account, asset).frozen
    e.amount = amount
    return n + 1


@kernel(inline=True)
def emit_reject(ev, ev_words, n, c, reason):
    """REJECTED: the command's own fields echoed with the reason."""
    _clear_event(ev_words, n)
    e = at(ev, n)
    e.seq = c.seq
    e.ts = c.ts
    e.kind = EV_REJECTED
    e.reason = reason
    e.order_id = c.order_id
    e.client_order_id = c.client_order_id
    e.account = c.account
    e.symbol = c.symbol
    e.asset = c.asset
    e.side = c.side
    e.order_type = c.order_type
    e.tif = c.tif
    e.price = c.price
    e.qty = c.qty
    e.amount = c.amount
    return n + 1


@kernel(inline=True)
def emit_simple(ev, ev_words, n, seq, ts, kind, account, symbol, qty):
    """ACCOUNT_CREATED and MASS_CANCELLED."""
    _clear_event(ev_words, n)
    e = at(ev, n)
    e.seq = seq
    e.ts = ts
    e.kind = kind
    e.account = account
    e.symbol = symbol
    e.qty = qty
    return n + 1


# --- order slots, books and account lists --------------------------------------------------------


@kernel(inline=True)
def _reserve_asset(sym, orders, slot):
    if at(orders, slot).side == BUY:
        return at(sym, at(orders, slot).symbol).quote
    return at(sym, at(orders, slot).symbol).base


@kernel(inline=True)
def slot_alloc(orders, params):
    head = params[P_FREE_HEAD]
    if head >= 0:
        params[P_FREE_HEAD] = at(orders, head).next
        return head
    slot = params[P_HIGH_WATER]
    params[P_HIGH_WATER] = slot + 1
    return slot


@kernel(inline=True)
def slot_free(orders, params, slot):
    at(orders, slot).next = params[P_FREE_HEAD]
    params[P_FREE_HEAD] = slot


@kernel(inline=True)
def book_link(orders, levels, bits, sym, slot):
    """Put an order at the tail of its price level (and update the best price)."""
    s = at(orders, slot).symbol
    price = at(orders, slot).price
    offset = price - at(sym, s).min_price
    lvl = at(sym, s).level_offset + offset
    level = at(levels, lvl)
    if level.count == 0:
        level.head = slot
        level.tail = slot
        at(orders, slot).prev = -1
        bit_set(bits, at(sym, s).bits0, at(sym, s).bits1, at(sym, s).bits2, offset)
    else:
        tail = level.tail
        at(orders, tail).next = slot
        at(orders, slot).prev = tail
        level.tail = slot
    at(orders, slot).next = -1
    level.count += 1
    level.qty += at(orders, slot).qty - at(orders, slot).filled
    if at(orders, slot).side == BUY:
        at(sym, s).bid_orders += 1
        if at(sym, s).best_bid == NO_PRICE or price > at(sym, s).best_bid:
            at(sym, s).best_bid = price
    else:
        at(sym, s).ask_orders += 1
        if at(sym, s).best_ask == NO_PRICE or price < at(sym, s).best_ask:
            at(sym, s).best_ask = price


@kernel(inline=True)
def book_unlink(orders, levels, bits, sym, slot):
    """Take an order out of its price level (and update the best price if the level empties)."""
    s = at(orders, slot).symbol
    price = at(orders, slot).price
    min_price = at(sym, s).min_price
    offset = price - min_price
    lvl = at(sym, s).level_offset + offset
    level = at(levels, lvl)
    prev = at(orders, slot).prev
    nxt = at(orders, slot).next
    if prev >= 0:
        at(orders, prev).next = nxt
    else:
        level.head = nxt
    if nxt >= 0:
        at(orders, nxt).prev = prev
    else:
        level.tail = prev
    level.count -= 1
    level.qty -= at(orders, slot).qty - at(orders, slot).filled
    bid = at(orders, slot).side == BUY
    if bid:
        at(sym, s).bid_orders -= 1
    else:
        at(sym, s).ask_orders -= 1
    if level.count == 0:
        base0 = at(sym, s).bits0
        base1 = at(sym, s).bits1
        base2 = at(sym, s).bits2
        bit_clear(bits, base0, base1, base2, offset)
        if bid and at(sym, s).best_bid == price:
            found = prev_set(bits, base0, base1, base2, at(sym, s).n_levels, offset - 1)
            at(sym, s).best_bid = NO_PRICE if found < 0 else min_price + found
        elif not bid and at(sym, s).best_ask == price:
            found = next_set(bits, base0, base1, base2, at(sym, s).n_levels, offset + 1)
            at(sym, s).best_ask = NO_PRICE if found < 0 else min_price + found


@kernel(inline=True)
def order_register(orders, accts, index, params, slot):
    """Make a resting order known: the id index, the account's order list, the open count."""
    index_insert(index, params, at(orders, slot).order_id, slot)
    a = at(orders, slot).account
    tail = at(accts, a).tail
    at(orders, slot).acct_prev = tail
    at(orders, slot).acct_next = -1
    if tail >= 0:
        at(orders, tail).acct_next = slot
    else:
        at(accts, a).head = slot
    at(accts, a).tail = slot
    at(accts, a).open_orders += 1
    params[P_OPEN_ORDERS] += 1


@kernel(inline=True)
def order_release(orders, accts, index, params, slot):
    """Forget an order that left the book, and free its slot."""
    index_delete(index, params, at(orders, slot).order_id)
    a = at(orders, slot).account
    prev = at(orders, slot).acct_prev
    nxt = at(orders, slot).acct_next
    if prev >= 0:
        at(orders, prev).acct_next = nxt
    else:
        at(accts, a).head = nxt
    if nxt >= 0:
        at(orders, nxt).acct_prev = prev
    else:
        at(accts, a).tail = prev
    at(accts, a).open_orders -= 1
    params[P_OPEN_ORDERS] -= 1
    slot_free(orders, params, slot)


@kernel(inline=True)
def end_order(ev, ev_words, n, seq, ts, orders, sym, bal, slot, reason):
    """CANCELLED with what the order had left, its reserve released."""
    a = at(orders, slot).account
    asset = _reserve_asset(sym, orders, slot)
    amount = at(orders, slot).reserve
    at2(bal, a, asset).available += amount
    at2(bal, a, asset).frozen -= amount
    at(orders, slot).reserve = 0
    return emit_order(ev, ev_words, n, EV_CANCELLED, reason, seq, ts, orders, sym, bal, slot, amount)


@kernel(inline=True)
def cancel_resting(ev, ev_words, n, seq, ts, orders, levels, bits, sym, accts, bal, index,
                   params, slot, reason):
    """Take a resting order off the book, release its reserve, report it, free its slot."""
    book_unlink(orders, levels, bits, sym, slot)
    n = end_order(ev, ev_words, n, seq, ts, orders, sym, bal, slot, reason)
    order_release(orders, accts, index, params, slot)
    return n


# --- matching ------------------------------------------------------------------------------------


@kernel(inline=True)
def fill(ev, ev_words, n, seq, ts, orders, levels, sym, bal, params, taker, maker, lvl, price, lots,
         taker_limit):
    """Clear one fill of ``lots`` at the maker's ``price``; write TRADE and the five BALANCE events."""
    s = at(orders, taker).symbol
    base = at(sym, s).base
    quote = at(sym, s).quote
    bpl = at(sym, s).bpl
    qptl = at(sym, s).qptl
    reserve_bps = params[P_RESERVE_BPS]
    notional = price * lots * qptl
    maker_fee = fee(notional, params[P_MAKER_BPS])
    taker_fee = fee(notional, params[P_TAKER_BPS])
    base_lots = lots * bpl

    at(orders, taker).filled += lots
    at(orders, maker).filled += lots
    at(levels, lvl).qty -= lots

    if at(orders, taker).side == BUY:
        buyer = taker
        seller = maker
        buyer_fee = taker_fee
        seller_fee = maker_fee
        buyer_limit = taker_limit
    else:
        buyer = maker
        seller = taker
        buyer_fee = maker_fee
        seller_fee = taker_fee
        buyer_limit = at(orders, maker).price
    buyer_account = at(orders, buyer).account
    seller_account = at(orders, seller).account

    cost = notional + buyer_fee
    if at(orders, buyer).by_quote:
        at(orders, buyer).reserve -= cost
        at2(bal, buyer_account, quote).frozen -= cost
    else:
        # Hold exactly what the remaining lots need at the limit; the rest (price improvement and
        # unused fee reserve) goes back at once.
        kept = buy_reserve(buyer_limit, at(orders, buyer).qty - at(orders, buyer).filled, qptl, reserve_bps)
        released = at(orders, buyer).reserve - kept
        at(orders, buyer).reserve = kept
        at2(bal, buyer_account, quote).frozen -= released
        at2(bal, buyer_account, quote).available += released - cost
    at2(bal, buyer_account, base).available += base_lots

    at(orders, seller).reserve -= base_lots
    at2(bal, seller_account, base).frozen -= base_lots
    at2(bal, seller_account, quote).available += notional - seller_fee

    fee_account = params[P_FEE_ACCOUNT]
    at2(bal, fee_account, quote).available += maker_fee + taker_fee

    _clear_event(ev_words, n)
    e = at(ev, n)
    t = at(orders, taker)
    m = at(orders, maker)
    e.seq = seq
    e.ts = ts
    e.kind = EV_TRADE
    e.order_id = t.order_id
    e.client_order_id = t.client_order_id
    e.account = t.account
    e.symbol = s
    e.side = t.side
    e.order_type = t.order_type
    e.tif = t.tif
    e.price = price
    e.qty = lots
    e.amount = notional
    e.leaves = _leaves(orders, taker)
    e.filled = t.filled
    e.maker_order_id = m.order_id
    e.maker_client_order_id = m.client_order_id
    e.maker_account = m.account
    e.maker_leaves = m.qty - m.filled
    e.maker_filled = m.filled
    e.maker_fee = maker_fee
    e.taker_fee = taker_fee
    n += 1
    taker_account = t.account
    maker_account = m.account
    n = emit_balance(ev, ev_words, n, seq, ts, bal, taker_account, base, 0)
    n = emit_balance(ev, ev_words, n, seq, ts, bal, taker_account, quote, 0)
    n = emit_balance(ev, ev_words, n, seq, ts, bal, maker_account, base, 0)
    n = emit_balance(ev, ev_words, n, seq, ts, bal, maker_account, quote, 0)
    return emit_balance(ev, ev_words, n, seq, ts, bal, fee_account, quote, 0)


@kernel(inline=True)
def can_trade(sym, s, buying, limit):
    """Is there an opposite order at or within ``limit``? (Spares the call to ``match`` when not.)"""
    if buying:
        best = at(sym, s).best_ask
        return best != NO_PRICE and best <= limit
    best = at(sym, s).best_bid
    return best != NO_PRICE and best >= limit


@kernel
def match(ev, ev_words, n, seq, ts, orders, levels, bits, sym, accts, bal, index,
          params, taker, limit):
    """Match ``taker`` against the opposite side up to ``limit`` (ticks).

    Returns (events written so far, True if self-trade prevention cancelled the taker). The caller
    decides what happens to whatever the taker has left.
    """
    s = at(orders, taker).symbol
    buying = at(orders, taker).side == BUY
    by_quote = at(orders, taker).by_quote != 0
    account = at(orders, taker).account
    stp = params[P_STP]
    min_price = at(sym, s).min_price
    level_offset = at(sym, s).level_offset
    qptl = at(sym, s).qptl
    taker_bps = params[P_TAKER_BPS]
    while True:
        if not by_quote and at(orders, taker).qty == at(orders, taker).filled:
            return n, False
        if buying:
            price = at(sym, s).best_ask
            if price == NO_PRICE or price > limit:
                return n, False
        else:
            price = at(sym, s).best_bid
            if price == NO_PRICE or price < limit:
                return n, False
        lvl = level_offset + price - min_price
        maker = at(levels, lvl).head
        while True:
            next_maker = at(orders, maker).next
            maker_leaves = at(orders, maker).qty - at(orders, maker).filled
            if by_quote:
                # "While it can afford one more lot" comes first, before self-trade prevention.
                lots = affordable_lots(at(orders, taker).reserve, price, qptl, taker_bps)
                if lots == 0:
                    return n, False
            else:
                lots = at(orders, taker).qty - at(orders, taker).filled
            if lots > maker_leaves:
                lots = maker_leaves
            if stp != STP_OFF and at(orders, maker).account == account:
                if stp == STP_CANCEL_MAKER:
                    last = at(levels, lvl).count == 1
                    n = cancel_resting(ev, ev_words, n, seq, ts, orders, levels, bits, sym, accts, bal,
                                       index, params, maker, C_SELF_TRADE)
                    if last:
                        break
                    maker = next_maker
                    continue
                if stp == STP_CANCEL_BOTH:
                    n = cancel_resting(ev, ev_words, n, seq, ts, orders, levels, bits, sym, accts, bal,
                                       index, params, maker, C_SELF_TRADE)
                return n, True
            n = fill(ev, ev_words, n, seq, ts, orders, levels, sym, bal, params, taker, maker, lvl, price,
                     lots, limit)
            if lots < maker_leaves:
                if not by_quote:
                    return n, False  # the taker is filled
                continue  # by quote amount: see whether what is left buys more of this maker
            last = at(levels, lvl).count == 1
            book_unlink(orders, levels, bits, sym, maker)
            order_release(orders, accts, index, params, maker)
            if not by_quote and at(orders, taker).qty == at(orders, taker).filled:
                return n, False
            if last:
                break
            maker = next_maker


# The same function inlined where most trades start, a NEW that crosses: a call passes a dozen arrays as
# structs (some 200 instructions of copying; docs/benchmarks.md). A replace keeps the call: inlining
# match there too adds a minute of compile time for no measurable gain.
match_inline = kernel(match.py_func, inline=True)


@kernel
def fok_fillable(orders, levels, bits, sym, params, s, buying, account, limit, lots):
    """Would a FOK order for ``lots`` fill completely now? (A dry run of ``match``.)"""
    stp = params[P_STP]
    min_price = at(sym, s).min_price
    level_offset = at(sym, s).level_offset
    base0 = at(sym, s).bits0
    base1 = at(sym, s).bits1
    base2 = at(sym, s).bits2
    n_levels = at(sym, s).n_levels
    price = at(sym, s).best_ask if buying else at(sym, s).best_bid
    while price != NO_PRICE:
        if (buying and price > limit) or (not buying and price < limit):
            return False
        maker = at(levels, level_offset + price - min_price).head
        while maker >= 0:
            if stp != STP_OFF and at(orders, maker).account == account:
                if stp != STP_CANCEL_MAKER:
                    return False
            else:
                lots -= at(orders, maker).qty - at(orders, maker).filled
                if lots <= 0:
                    return True
            maker = at(orders, maker).next
        offset = price - min_price
        if buying:
            found = next_set(bits, base0, base1, base2, n_levels, offset + 1)
        else:
            found = prev_set(bits, base0, base1, base2, n_levels, offset - 1)
        price = NO_PRICE if found < 0 else min_price + found
    return False


@kernel
def worst_ask_for(levels, bits, sym, s, lots):
    """The price of the ask level where the cumulative ask quantity first reaches ``lots`` (the last
    ask level if the asks hold less; 0 with no asks)."""
    price = at(sym, s).best_ask
    if price == NO_PRICE:
        return np.int64(0)
    min_price = at(sym, s).min_price
    level_offset = at(sym, s).level_offset
    offset = price - min_price
    while True:
        lots -= at(levels, level_offset + offset).qty
        if lots <= 0:
            return min_price + offset
        found = next_set(bits, at(sym, s).bits0, at(sym, s).bits1, at(sym, s).bits2, at(sym, s).n_levels, offset + 1)
        if found < 0:
            return min_price + offset
        offset = found


# --- commands ------------------------------------------------------------------------------------


@kernel(inline=True)
def _account_exists(accts, params, a):
    return 0 <= a < params[P_N_ACCOUNTS] and at(accts, a).active != 0


@kernel(inline=True)
def apply_new(c, ev, ev_words, n, orders, levels, bits, sym, accts, bal, supply, index,
              params):
    a = c.account
    s = c.symbol
    if not _account_exists(accts, params, a):
        return emit_reject(ev, ev_words, n, c, R_UNKNOWN_ACCOUNT)
    if s < 0 or s >= params[P_N_SYMBOLS]:
        return emit_reject(ev, ev_words, n, c, R_UNKNOWN_SYMBOL)
    side = c.side
    if side != BUY and side != SELL:
        return emit_reject(ev, ev_words, n, c, R_INVALID_SIDE)
    otype = c.order_type
    if otype != MARKET and otype != LIMIT:
        return emit_reject(ev, ev_words, n, c, R_INVALID_ORDER_TYPE)
    tif = c.tif
    if tif != GTC and tif != IOC and tif != FOK and tif != POST_ONLY:
        return emit_reject(ev, ev_words, n, c, R_INVALID_TIF)
    if otype == MARKET and tif != IOC:
        return emit_reject(ev, ev_words, n, c, R_INVALID_TIF)
    by_quote = otype == MARKET and c.amount != 0
    qty = c.qty
    if by_quote:
        if side != BUY:
            return emit_reject(ev, ev_words, n, c, R_INVALID_ORDER_TYPE)
        if qty != 0:
            return emit_reject(ev, ev_words, n, c, R_INVALID_QUANTITY)
        if c.amount < 0:
            return emit_reject(ev, ev_words, n, c, R_INVALID_AMOUNT)
    elif (otype == LIMIT and c.amount != 0) or qty < at(sym, s).min_qty or qty > at(sym, s).max_qty:
        return emit_reject(ev, ev_words, n, c, R_INVALID_QUANTITY)
    price = c.price
    qptl = at(sym, s).qptl
    if otype == LIMIT:
        if price < at(sym, s).min_price or price > at(sym, s).max_price:
            return emit_reject(ev, ev_words, n, c, R_PRICE_OUT_OF_BAND)
        if price * qty * qptl < at(sym, s).min_notional:
            return emit_reject(ev, ev_words, n, c, R_BELOW_MIN_NOTIONAL)
    elif by_quote and c.amount < at(sym, s).min_notional:
        return emit_reject(ev, ev_words, n, c, R_BELOW_MIN_NOTIONAL)
    seq = c.seq
    if seq <= 0 or index_find(index, params, seq) >= 0:
        return emit_reject(ev, ev_words, n, c, R_INVALID_ORDER_ID)
    may_rest = tif == GTC or tif == POST_ONLY
    if may_rest and params[P_OPEN_ORDERS] >= params[P_MAX_ORDERS]:
        return emit_reject(ev, ev_words, n, c, R_ORDER_TABLE_FULL)
    buying = side == BUY
    if tif == POST_ONLY:
        if buying:
            best = at(sym, s).best_ask
            if best != NO_PRICE and price >= best:
                return emit_reject(ev, ev_words, n, c, R_POST_ONLY_WOULD_CROSS)
        else:
            best = at(sym, s).best_bid
            if best != NO_PRICE and price <= best:
                return emit_reject(ev, ev_words, n, c, R_POST_ONLY_WOULD_CROSS)

    # The reserve, and the price the order matches up to.
    if buying:
        asset = at(sym, s).quote
        if by_quote:
            reserve = c.amount
            limit = at(sym, s).max_price
        else:
            limit = price if otype == LIMIT else worst_ask_for(levels, bits, sym, s, qty)
            reserve = buy_reserve(limit, qty, qptl, params[P_RESERVE_BPS])
    else:
        asset = at(sym, s).base
        reserve = qty * at(sym, s).bpl
        limit = price if otype == LIMIT else at(sym, s).min_price
    if reserve > at2(bal, a, asset).available:
        return emit_reject(ev, ev_words, n, c, R_INSUFFICIENT_FUNDS)

    slot = slot_alloc(orders, params) if may_rest else params[P_MAX_ORDERS]
    o = at(orders, slot)
    o.order_id = seq
    o.client_order_id = c.client_order_id
    o.price = price if otype == LIMIT else 0
    o.qty = qty
    o.filled = 0
    o.reserve = 0
    o.ts = c.ts
    o.account = a
    o.symbol = s
    o.side = side
    o.order_type = otype
    o.tif = tif
    o.by_quote = 1 if by_quote else 0

    if tif == FOK and not fok_fillable(orders, levels, bits, sym, params, s, buying, a, limit, qty):
        return emit_order(ev, ev_words, n, EV_CANCELLED, C_FOK, seq, c.ts, orders, sym, bal, slot, 0)

    o.reserve = reserve
    at2(bal, a, asset).available -= reserve
    at2(bal, a, asset).frozen += reserve
    n = emit_order(ev, ev_words, n, EV_ACCEPTED, 0, seq, c.ts, orders, sym, bal, slot, reserve)

    self_trade = False
    if can_trade(sym, s, buying, limit):
        n, self_trade = match_inline(ev, ev_words, n, seq, c.ts, orders, levels, bits, sym, accts, bal, index, params, slot, limit)
    if self_trade:
        n = end_order(ev, ev_words, n, seq, c.ts, orders, sym, bal, slot, C_SELF_TRADE)
    elif by_quote:
        if at(orders, slot).reserve > 0:
            n = end_order(ev, ev_words, n, seq, c.ts, orders, sym, bal, slot, C_MARKET_REMAINDER)
    elif at(orders, slot).qty > at(orders, slot).filled:
        if may_rest:
            book_link(orders, levels, bits, sym, slot)
            order_register(orders, accts, index, params, slot)
            return n
        reason = C_IOC_REMAINDER if otype == LIMIT else C_MARKET_REMAINDER
        n = end_order(ev, ev_words, n, seq, c.ts, orders, sym, bal, slot, reason)
    if may_rest:
        slot_free(orders, params, slot)
    return n


@kernel(inline=True)
def _find_own_order(orders, index, params, order_id, account):
    if order_id <= 0:
        return np.int64(-1)
    slot = index_find(index, params, order_id)
    if slot >= 0 and at(orders, slot).account != account:
        return np.int64(-1)
    return slot


@kernel(inline=True)
def apply_cancel(c, ev, ev_words, n, orders, levels, bits, sym, accts, bal, supply, index,
                 params):
    if not _account_exists(accts, params, c.account):
        return emit_reject(ev, ev_words, n, c, R_UNKNOWN_ACCOUNT)
    slot = _find_own_order(orders, index, params, c.order_id, c.account)
    if slot < 0:
        return emit_reject(ev, ev_words, n, c, R_UNKNOWN_ORDER)
    return cancel_resting(ev, ev_words, n, c.seq, c.ts, orders, levels, bits, sym, accts, bal, index, params, slot, C_USER)


@kernel(inline=True)
def apply_replace(c, ev, ev_words, n, orders, levels, bits, sym, accts, bal, supply, index, params):
    a = c.account
    if not _account_exists(accts, params, a):
        return emit_reject(ev, ev_words, n, c, R_UNKNOWN_ACCOUNT)
    slot = _find_own_order(orders, index, params, c.order_id, a)
    if slot < 0:
        return emit_reject(ev, ev_words, n, c, R_UNKNOWN_ORDER)
    o = at(orders, slot)
    s = o.symbol
    price = c.price
    qty = c.qty
    if price < at(sym, s).min_price or price > at(sym, s).max_price:
        return emit_reject(ev, ev_words, n, c, R_PRICE_OUT_OF_BAND)
    if qty < at(sym, s).min_qty or qty > at(sym, s).max_qty or qty <= o.filled:
        return emit_reject(ev, ev_words, n, c, R_INVALID_QUANTITY)
    qptl = at(sym, s).qptl
    if price * qty * qptl < at(sym, s).min_notional:
        return emit_reject(ev, ev_words, n, c, R_BELOW_MIN_NOTIONAL)
    buying = o.side == BUY
    if o.tif == POST_ONLY:
        if buying:
            best = at(sym, s).best_ask
            if best != NO_PRICE and price >= best:
                return emit_reject(ev, ev_words, n, c, R_POST_ONLY_WOULD_CROSS)
        else:
            best = at(sym, s).best_bid
            if best != NO_PRICE and price <= best:
                return emit_reject(ev, ev_words, n, c, R_POST_ONLY_WOULD_CROSS)
    leaves = qty - o.filled
    if buying:
        asset = at(sym, s).quote
        reserve = buy_reserve(price, leaves, qptl, params[P_RESERVE_BPS])
    else:
        asset = at(sym, s).base
        reserve = leaves * at(sym, s).bpl
    extra = reserve - o.reserve
    if extra > at2(bal, a, asset).available:
        return emit_reject(ev, ev_words, n, c, R_INSUFFICIENT_FUNDS)

    keeps_priority = price == o.price and qty <= o.qty
    if keeps_priority:
        s_off = at(sym, s).level_offset + price - at(sym, s).min_price
        at(levels, s_off).qty -= o.qty - qty
    else:
        book_unlink(orders, levels, bits, sym, slot)
    o.price = price
    o.qty = qty
    o.client_order_id = c.client_order_id
    o.reserve = reserve
    at2(bal, a, asset).available -= extra
    at2(bal, a, asset).frozen += extra
    n = emit_order(ev, ev_words, n, EV_REPLACED, 0, c.seq, c.ts, orders, sym, bal, slot, reserve)
    if keeps_priority:
        return n
    self_trade = False
    if can_trade(sym, s, buying, price):
        n, self_trade = match(ev, ev_words, n, c.seq, c.ts, orders, levels, bits, sym, accts, bal, index, params, slot, price)
    if self_trade:
        n = end_order(ev, ev_words, n, c.seq, c.ts, orders, sym, bal, slot, C_SELF_TRADE)
        order_release(orders, accts, index, params, slot)
    elif at(orders, slot).qty > at(orders, slot).filled:
        book_link(orders, levels, bits, sym, slot)
    else:
        order_release(orders, accts, index, params, slot)
    return n


@kernel(inline=True)
def apply_cancel_all(c, ev, ev_words, n, orders, levels, bits, sym, accts, bal, supply, index, params):
    a = c.account
    if not _account_exists(accts, params, a):
        return emit_reject(ev, ev_words, n, c, R_UNKNOWN_ACCOUNT)
    s = c.symbol
    if s != ALL_SYMBOLS and (s < 0 or s >= params[P_N_SYMBOLS]):
        return emit_reject(ev, ev_words, n, c, R_UNKNOWN_SYMBOL)
    count = 0
    slot = at(accts, a).head
    while slot >= 0:
        nxt = at(orders, slot).acct_next
        if s == ALL_SYMBOLS or at(orders, slot).symbol == s:
            n = cancel_resting(ev, ev_words, n, c.seq, c.ts, orders, levels, bits, sym, accts, bal,
                               index, params, slot, C_USER)
            count += 1
        slot = nxt
    return emit_simple(ev, ev_words, n, c.seq, c.ts, EV_MASS_CANCELLED, a, s, count)


@kernel(inline=True)
def apply_funds(c, ev, ev_words, n, accts, bal, supply, params):
    """DEPOSIT and WITHDRAW."""
    a = c.account
    if not _account_exists(accts, params, a):
        return emit_reject(ev, ev_words, n, c, R_UNKNOWN_ACCOUNT)
    asset = c.asset
    if asset < 0 or asset >= params[P_N_ASSETS]:
        return emit_reject(ev, ev_words, n, c, R_UNKNOWN_ASSET)
    amount = c.amount
    if amount <= 0:
        return emit_reject(ev, ev_words, n, c, R_INVALID_AMOUNT)
    if c.kind == DEPOSIT:
        if amount > INT64_MAX - supply[asset]:
            return emit_reject(ev, ev_words, n, c, R_BALANCE_OVERFLOW)
    else:
        if amount > at2(bal, a, asset).available:
            return emit_reject(ev, ev_words, n, c, R_INSUFFICIENT_FUNDS)
        amount = -amount
    at2(bal, a, asset).available += amount
    supply[asset] += amount
    return emit_balance(ev, ev_words, n, c.seq, c.ts, bal, a, asset, amount)


@kernel(inline=True)
def apply_create_account(c, ev, ev_words, n, accts, params):
    a = c.account
    if a < 0 or a >= params[P_N_ACCOUNTS]:
        return emit_reject(ev, ev_words, n, c, R_UNKNOWN_ACCOUNT)
    if at(accts, a).active != 0:
        return emit_reject(ev, ev_words, n, c, R_ACCOUNT_EXISTS)
    at(accts, a).active = 1
    return emit_simple(ev, ev_words, n, c.seq, c.ts, EV_ACCOUNT_CREATED, a, 0, 0)


@kernel(inline=True)
def apply_command(c, ev, ev_words, n, orders, levels, bits, sym, accts, bal, supply, index, params):
    """Apply one command; returns the new number of events in the buffer."""
    kind = c.kind
    if kind == CANCEL_REPLACE:
        return apply_replace(c, ev, ev_words, n, orders, levels, bits, sym, accts, bal, supply, index, params)
    if kind == NEW:
        return apply_new(c, ev, ev_words, n, orders, levels, bits, sym, accts, bal, supply, index, params)
    if kind == CANCEL:
        return apply_cancel(c, ev, ev_words, n, orders, levels, bits, sym, accts, bal, supply, index, params)
    if kind == CANCEL_ALL:
        return apply_cancel_all(c, ev, ev_words, n, orders, levels, bits, sym, accts, bal, supply,
                                index, params)
    if kind == DEPOSIT or kind == WITHDRAW:
        return apply_funds(c, ev, ev_words, n, accts, bal, supply, params)
    if kind == CREATE_ACCOUNT:
        return apply_create_account(c, ev, ev_words, n, accts, params)
    return emit_reject(ev, ev_words, n, c, R_UNKNOWN_COMMAND)


# --- event budget --------------------------------------------------------------------------------


@kernel(inline=True)
def _min(x, y):
    return x if x < y else y


@kernel(inline=True)
def event_bound(c, orders, sym, accts, params):
    """The most events ``c`` can write: a cheap bound from order counts (docs/engine.md)."""
    kind = c.kind
    a = c.account
    own = np.int64(0)
    if 0 <= a < params[P_N_ACCOUNTS]:
        own = np.int64(at(accts, a).open_orders)
    if kind == CANCEL_ALL:
        return EVENTS_PER_COMMAND + EVENTS_PER_CANCEL * own
    if kind == NEW or kind == CANCEL_REPLACE:
        s = c.symbol
        if kind == NEW and 0 <= s < params[P_N_SYMBOLS]:
            opposite = at(sym, s).ask_orders if c.side == BUY else at(sym, s).bid_orders
        else:
            opposite = params[P_OPEN_ORDERS]
        fills = opposite
        if c.amount == 0 and c.qty >= 0:
            fills = _min(fills, c.qty)
        else:
            # By quote amount, fees rounded per fill can leave enough to buy one more lot of the
            # last maker: one fill more than there are makers.
            fills += 1
        return (EVENTS_PER_COMMAND + EVENTS_PER_FILL * fills
                + EVENTS_PER_CANCEL * _min(opposite, own))
    return EVENTS_PER_COMMAND


@kernel
def event_bound_tight(c, orders, levels, bits, sym, accts, index, params):
    """A tighter bound for a NEW or CANCEL_REPLACE: only makers within its limit price count."""
    kind = c.kind
    a = c.account
    if kind != NEW and kind != CANCEL_REPLACE:
        return event_bound(c, orders, sym, accts, params)
    if not (0 <= a < params[P_N_ACCOUNTS]):
        return np.int64(EVENTS_PER_COMMAND)
    own = np.int64(at(accts, a).open_orders)
    if kind == NEW:
        s = c.symbol
        if s < 0 or s >= params[P_N_SYMBOLS] or (c.side != BUY and c.side != SELL):
            return np.int64(EVENTS_PER_COMMAND)
        buying = c.side == BUY
        if c.order_type == LIMIT:
            limit = c.price
        else:
            limit = at(sym, s).max_price if buying else at(sym, s).min_price
    else:
        slot = _find_own_order(orders, index, params, c.order_id, a)
        if slot < 0:
            return np.int64(EVENTS_PER_COMMAND)
        s = at(orders, slot).symbol
        buying = at(orders, slot).side == BUY
        limit = c.price
    lots = c.qty if (c.amount == 0 and c.qty > 0) else INT64_MAX
    saturated = lots if lots > own else own
    min_price = at(sym, s).min_price
    level_offset = at(sym, s).level_offset
    makers = np.int64(0)
    price = at(sym, s).best_ask if buying else at(sym, s).best_bid
    while price != NO_PRICE and makers < saturated:
        if (buying and price > limit) or (not buying and price < limit):
            break
        offset = price - min_price
        makers += at(levels, level_offset + offset).count
        if buying:
            found = next_set(bits, at(sym, s).bits0, at(sym, s).bits1, at(sym, s).bits2, at(sym, s).n_levels,
                             offset + 1)
        else:
            found = prev_set(bits, at(sym, s).bits0, at(sym, s).bits1, at(sym, s).bits2, at(sym, s).n_levels,
                             offset - 1)
        price = NO_PRICE if found < 0 else min_price + found
    fills = _min(makers, lots) if lots != INT64_MAX else makers + 1  # see event_bound
    return EVENTS_PER_COMMAND + EVENTS_PER_FILL * fills + EVENTS_PER_CANCEL * _min(makers, own)


# How many commands ahead apply_batch starts loading what a command will touch: first the line of the
# order-id index its order id (a NEW's seq) hashes to; later, through that line, the order's record, and
# the level of its price, its account and its balances. Without it each command waits on those loads one
# after the other (the index alone was 15 % of the time on the exchange-core stream: a NEW's seq hashes to
# a line nothing has touched). Distances measured: 6/3 and 8/4 alike, 12/6 slower.
INDEX_AHEAD = 8
ORDER_AHEAD = 4


@kernel(inline=True)
def prefetch_index(commands, j, index, params):
    c = at(commands, j)
    kind = c.kind
    if kind == NEW:
        key = c.seq
    elif kind == CANCEL_REPLACE or kind == CANCEL:
        key = c.order_id
    else:
        return
    if key > 0:
        prefetch(index, _home(key, params[P_HASH_SHIFT]))


@kernel(inline=True)
def prefetch_order(commands, j, orders, levels, sym, accts, bal, index, params):
    c = at(commands, j)
    kind = c.kind
    if kind != CANCEL_REPLACE and kind != CANCEL and kind != NEW:
        return
    key = c.order_id
    if key > 0 and kind != NEW:
        i = _home(key, params[P_HASH_SHIFT])
        if at(index, i).key == key:  # most orders sit at their home slot; a hint needs no more
            prefetch(orders, at(index, i).slot)
    s = c.symbol
    if 0 <= s < params[P_N_SYMBOLS]:
        price = c.price
        if at(sym, s).min_price <= price <= at(sym, s).max_price:
            prefetch(levels, at(sym, s).level_offset + price - at(sym, s).min_price)
    a = c.account
    if 0 <= a < params[P_N_ACCOUNTS]:
        prefetch(accts, a)
        if 0 <= s < params[P_N_SYMBOLS]:
            prefetch2(bal, a, at(sym, s).quote)
            prefetch2(bal, a, at(sym, s).base)


@kernel
def apply_batch(commands, start, stop, ev, ev_words, orders, levels, bits, sym, accts, bal, supply,
                index, params):
    """Apply ``commands[start:stop]`` while the event buffer has room for each next command.

    Returns (index of the first command not applied, events written, status): BATCH_DONE,
    BATCH_SPLIT (call again after taking the events), or BATCH_GROW (the next command alone needs
    ``params[P_NEED_EVENTS]`` events: grow the buffer and call again).
    """
    capacity = ev.shape[0]
    n = np.int64(0)
    i = start
    while i < stop:
        if i + INDEX_AHEAD < stop:
            prefetch_index(commands, i + INDEX_AHEAD, index, params)
        if i + ORDER_AHEAD < stop:
            prefetch_order(commands, i + ORDER_AHEAD, orders, levels, sym, accts, bal, index, params)
        c = commands[i]
        need = event_bound(c, orders, sym, accts, params)
        if n + need > capacity:
            need = event_bound_tight(c, orders, levels, bits, sym, accts, index, params)
            if n + need > capacity:
                if n > 0:
                    return i, n, BATCH_SPLIT
                params[P_NEED_EVENTS] = need
                return i, n, BATCH_GROW
        n = apply_command(c, ev, ev_words, n, orders, levels, bits, sym, accts, bal, supply, index, params)
        i += 1
    return i, n, BATCH_DONE
