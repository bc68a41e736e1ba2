"""Reading the fast engine's arrays: order lookups, depth, the canonical state, and `validate()`.

None of this is on the matching path. The book walks are jitted because a book can hold millions of
orders; the invariant checks are plain numpy and Python, written for clarity, because they exist to catch
the kernels' mistakes.
"""

from __future__ import annotations

import numpy as np
from engine.jit import kernel

from common.config import ExchangeConfig
from common.records import Side
from engine.invariants import InvariantViolation
from engine.kernels import BUY, buy_reserve, index_find
from engine.ladder import next_set, prev_set
from engine.layout import (
    NO_PRICE,
    P_FREE_HEAD,
    P_HIGH_WATER,
    P_MAX_ORDERS,
    P_N_SYMBOLS,
    P_OPEN_ORDERS,
    P_RESERVE_BPS,
    EngineArrays,
)

ORDER_FIELDS = ("order_id", "client_order_id", "account", "symbol", "side", "order_type", "tif", "price",
                "qty", "filled", "reserve", "ts")


def _order_dict(orders: np.ndarray, slot: int) -> dict:
    record = orders[slot]
    out = {name: int(record[name]) for name in ORDER_FIELDS}
    out["leaves"] = out["qty"] - out["filled"]
    return out


def order(arrays: EngineArrays, order_id: int) -> dict | None:
    if order_id <= 0:
        return None
    slot = index_find(arrays.index, arrays.params, order_id)
    return None if slot < 0 else _order_dict(arrays.orders, int(slot))


def open_orders(arrays: EngineArrays, account: int) -> list[dict]:
    result = []
    slot = int(arrays.accounts[account]["head"])
    while slot >= 0:
        result.append(_order_dict(arrays.orders, slot))
        slot = int(arrays.orders[slot]["acct_next"])
    return sorted(result, key=lambda o: o["order_id"])


def _level_walk(arrays: EngineArrays, symbol: int, bids: bool):
    """Yield (price, level index) of one side of a book, best first."""
    row = arrays.symbols[symbol]
    min_price = int(row["min_price"])
    bitmap = (arrays.bits, row["bits0"], row["bits1"], row["bits2"], row["n_levels"])
    price = int(row["best_bid"] if bids else row["best_ask"])
    while price != NO_PRICE:
        offset = price - min_price
        yield price, int(row["level_offset"]) + offset
        found = prev_set(*bitmap, offset - 1) if bids else next_set(*bitmap, offset + 1)
        price = NO_PRICE if found < 0 else min_price + int(found)


def depth(arrays: EngineArrays, symbol: int, levels: int) -> tuple[list, list]:
    """Best ``levels`` price levels per side as (price, qty lots, order count), best first."""
    sides = []
    for bids in (True, False):
        side = []
        for price, lvl in _level_walk(arrays, symbol, bids):
            if len(side) >= levels:
                break
            level = arrays.levels[lvl]
            side.append((price, int(level["qty"]), int(level["count"])))
        sides.append(side)
    return sides[0], sides[1]


def level_quantities(arrays: EngineArrays, symbol: int, prices: np.ndarray, sides: np.ndarray) -> np.ndarray:
    """Lots resting at each (price, side) of ``symbol``'s book now: 0 where the level is empty or holds
    the other side's orders (a level holds one side at a time: the book is never crossed).

    Asked after every batch that changed a book: one kernel call instead of a handful of numpy
    operations on record arrays (12 us for one level)."""
    out = np.empty(len(prices), dtype=np.int64)
    _level_quantities(arrays.symbols, arrays.levels, arrays.orders, symbol, prices, sides, out)
    return out


@kernel
def _level_quantities(sym, levels, orders, symbol, prices, sides, out):
    base = sym[symbol].level_offset - sym[symbol].min_price
    for i in range(prices.shape[0]):
        level = levels[base + prices[i]]
        out[i] = level.qty if level.count > 0 and orders[level.head].side == sides[i] else 0


@kernel
def _book_rows(orders, levels, bits, sym, params, out):
    """Every open order as a state-hash row, in book order (symbol; bids best first; asks best first)."""
    k = 0
    for s in range(params[P_N_SYMBOLS]):
        min_price = sym[s].min_price
        for bids in (True, False):
            price = sym[s].best_bid if bids else sym[s].best_ask
            while price != NO_PRICE and k < out.shape[0]:
                offset = price - min_price
                slot = levels[sym[s].level_offset + offset].head
                for _ in range(levels[sym[s].level_offset + offset].count):
                    if k >= out.shape[0]:
                        break
                    o = orders[slot]
                    out[k, 0] = o.order_id
                    out[k, 1] = o.client_order_id
                    out[k, 2] = o.account
                    out[k, 3] = o.symbol
                    out[k, 4] = o.side
                    out[k, 5] = o.tif
                    out[k, 6] = o.price
                    out[k, 7] = o.qty
                    out[k, 8] = o.filled
                    out[k, 9] = o.reserve
                    k += 1
                    slot = o.next
                if bids:
                    found = prev_set(bits, sym[s].bits0, sym[s].bits1, sym[s].bits2, sym[s].n_levels,
                                     offset - 1)
                else:
                    found = next_set(bits, sym[s].bits0, sym[s].bits1, sym[s].bits2, sym[s].n_levels,
                                     offset + 1)
                price = NO_PRICE if found < 0 else min_price + found
    return k


def open_order_rows(arrays: EngineArrays) -> np.ndarray:
    """Every open order as a row of engine.digest.ORDER_ROW_FIELDS, in book order."""
    rows = np.zeros((int(arrays.params[P_OPEN_ORDERS]), 10), dtype=np.int64)
    written = _book_rows(arrays.orders, arrays.levels, arrays.bits, arrays.symbols, arrays.params, rows)
    if written != len(rows):
        raise InvariantViolation([f"the books hold {written} orders but {len(rows)} are counted open"])
    return rows


def canonical_state(arrays: EngineArrays) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(supply, account rows, order rows) as engine.digest.state_digest wants them."""
    active = np.flatnonzero(arrays.accounts["active"])
    balances = arrays.balances[active].view(np.int64).reshape(len(active), -1)
    account_rows = np.concatenate([active.astype(np.int64)[:, None], balances], axis=1)
    return arrays.supply.copy(), account_rows, open_order_rows(arrays)


# --- validate ----------------------------------------------------------------------------------------


def validate(arrays: EngineArrays, config: ExchangeConfig) -> None:
    """Check every invariant of docs/engine.md; raise InvariantViolation listing what is broken."""
    problems: list[str] = []
    _check_balances(arrays, problems)
    book_slots = _check_books(arrays, config, problems)
    _check_reserves(arrays, config, book_slots, problems)
    _check_index_and_lists(arrays, book_slots, problems)
    if problems:
        raise InvariantViolation(problems)


def _check_balances(arrays: EngineArrays, problems: list[str]) -> None:
    bal = arrays.balances
    negative = (bal["available"] < 0) | (bal["frozen"] < 0)
    if negative.any():
        where = np.argwhere(negative)[:5].tolist()
        problems.append(f"negative balances at [account, asset] {where}")
    totals = bal["available"].sum(axis=0) + bal["frozen"].sum(axis=0)
    for asset, (total, supply) in enumerate(zip(totals.tolist(), arrays.supply.tolist())):
        if total != supply:
            problems.append(f"asset {asset}: accounts hold {total} but supply is {supply}")


def _check_books(arrays: EngineArrays, config: ExchangeConfig, problems: list[str]) -> list[int]:
    """Walk every level of every book; returns the slots of all resting orders."""
    orders, levels = arrays.orders, arrays.levels
    slots: list[int] = []
    for symbol in config.symbols:
        row = arrays.symbols[symbol.id]
        first = int(row["level_offset"])
        counts = levels["count"][first:first + symbol.levels]
        if (counts < 0).any():
            problems.append(f"{symbol.name}: negative level counts")
        _check_bitmap(arrays, symbol.id, symbol.levels, counts > 0, problems)
        bid_prices, ask_prices = [], []
        side_orders = {int(Side.BUY): 0, int(Side.SELL): 0}
        for offset in np.flatnonzero(counts > 0).tolist():
            price = symbol.min_price_ticks + offset
            level = levels[first + offset]
            walked, qty, sides = [], 0, set()
            slot, prev = int(level["head"]), -1
            while slot >= 0 and len(walked) <= int(level["count"]):
                o = orders[slot]
                if int(o["prev"]) != prev:
                    problems.append(f"{symbol.name} @{price}: slot {slot} has prev {int(o['prev'])}, not {prev}")
                if int(o["price"]) != price or int(o["symbol"]) != symbol.id:
                    problems.append(f"{symbol.name} @{price}: order {int(o['order_id'])} is at the wrong level")
                walked.append(slot)
                qty += int(o["qty"]) - int(o["filled"])
                sides.add(int(o["side"]))
                prev, slot = slot, int(o["next"])
            if len(walked) != int(level["count"]) or (walked and int(level["tail"]) != walked[-1]):
                problems.append(f"{symbol.name} @{price}: FIFO of {len(walked)} orders, count {int(level['count'])}")
            if qty != int(level["qty"]):
                problems.append(f"{symbol.name} @{price}: level qty {int(level['qty'])}, orders hold {qty}")
            if len(sides) != 1:
                problems.append(f"{symbol.name} @{price}: orders of both sides share a level")
                continue
            side = sides.pop()
            side_orders[side] += len(walked)
            (bid_prices if side == int(Side.BUY) else ask_prices).append(price)
            slots.extend(walked)
        best_bid = max(bid_prices, default=NO_PRICE)
        best_ask = min(ask_prices, default=NO_PRICE)
        if int(row["best_bid"]) != best_bid or int(row["best_ask"]) != best_ask:
            problems.append(
                f"{symbol.name}: best bid/ask recorded {int(row['best_bid'])}/{int(row['best_ask'])}, "
                f"actual {best_bid}/{best_ask}"
            )
        if bid_prices and ask_prices and best_bid >= best_ask:
            problems.append(f"{symbol.name}: crossed book, bid {best_bid} >= ask {best_ask}")
        if (int(row["bid_orders"]), int(row["ask_orders"])) != (side_orders[int(Side.BUY)],
                                                               side_orders[int(Side.SELL)]):
            problems.append(f"{symbol.name}: side order counts do not match the books")
        if bid_prices and not (symbol.min_price_ticks <= best_bid <= int(row["max_price"])):
            problems.append(f"{symbol.name}: best bid outside the band")
    return slots


def _check_bitmap(arrays: EngineArrays, symbol_id: int, n_levels: int, non_empty: np.ndarray,
                  problems: list[str]) -> None:
    row = arrays.symbols[symbol_id]
    base0, base1, base2 = int(row["bits0"]), int(row["bits1"]), int(row["bits2"])
    words0 = base1 - base0
    words1 = base2 - base1
    words2 = (words1 + 63) // 64
    layers = [arrays.bits[base0:base1], arrays.bits[base1:base2], arrays.bits[base2:base2 + words2]]
    expected = non_empty
    for depth_index, (layer, words) in enumerate(zip(layers, (words0, words1, words2))):
        bits = np.unpackbits(layer.view(np.uint8), bitorder="little")
        want = np.zeros(words * 64, dtype=bool)
        want[:len(expected)] = expected
        if not np.array_equal(bits.astype(bool), want):
            problems.append(f"symbol {symbol_id}: bitmap layer {depth_index} disagrees with the levels")
            return
        expected = layer != 0


def _check_reserves(arrays: EngineArrays, config: ExchangeConfig, slots: list[int], problems: list[str]) -> None:
    orders = arrays.orders
    reserve_bps = int(arrays.params[P_RESERVE_BPS])
    frozen = np.zeros_like(arrays.balances["frozen"])
    for slot in slots:
        o = orders[slot]
        sym = arrays.symbols[int(o["symbol"])]
        leaves = int(o["qty"]) - int(o["filled"])
        if leaves <= 0:
            problems.append(f"order {int(o['order_id'])} rests with {leaves} lots left")
        if int(o["side"]) == BUY:
            asset = int(sym["quote"])
            expected = buy_reserve(int(o["price"]), leaves, int(sym["qptl"]), reserve_bps)
        else:
            asset = int(sym["base"])
            expected = leaves * int(sym["bpl"])
        if int(o["reserve"]) != expected:
            problems.append(f"order {int(o['order_id'])}: reserve {int(o['reserve'])}, rule gives {expected}")
        frozen[int(o["account"]), asset] += int(o["reserve"])
    actual = arrays.balances["frozen"]
    if not np.array_equal(frozen, actual):
        where = np.argwhere(frozen != actual)[:5].tolist()
        problems.append(f"frozen differs from the open orders' reserves at [account, asset] {where}")


def _check_index_and_lists(arrays: EngineArrays, slots: list[int], problems: list[str]) -> None:
    orders, params = arrays.orders, arrays.params
    open_count = int(params[P_OPEN_ORDERS])
    if len(slots) != open_count:
        problems.append(f"{len(slots)} orders rest in the books, {open_count} counted open")
    for slot in slots:
        order_id = int(orders[slot]["order_id"])
        if index_find(arrays.index, params, order_id) != slot:
            problems.append(f"order {order_id} is not found at its slot through the id index")
    held = int(np.count_nonzero(arrays.index["key"]))
    if held != open_count:
        problems.append(f"the id index holds {held} ids for {open_count} orders")

    listed: set[int] = set()
    for account in np.flatnonzero((arrays.accounts["open_orders"] != 0) | (arrays.accounts["head"] >= 0)).tolist():
        slot, prev, ids = int(arrays.accounts[account]["head"]), -1, []
        while slot >= 0 and len(ids) <= open_count:
            o = orders[slot]
            if int(o["account"]) != account or int(o["acct_prev"]) != prev:
                problems.append(f"account {account}: broken order list at slot {slot}")
                break
            ids.append(int(o["order_id"]))
            listed.add(slot)
            prev, slot = slot, int(o["acct_next"])
        if len(ids) != int(arrays.accounts[account]["open_orders"]) or int(arrays.accounts[account]["tail"]) != prev:
            problems.append(f"account {account}: list of {len(ids)} orders, {int(arrays.accounts[account]['open_orders'])} counted")
        if ids != sorted(ids):
            problems.append(f"account {account}: order list is not in order-id order")
    if listed != set(slots):
        problems.append("the account order lists and the books hold different orders")

    free: set[int] = set()
    slot = int(params[P_FREE_HEAD])
    high_water = int(params[P_HIGH_WATER])
    while slot >= 0 and len(free) <= high_water:
        free.add(slot)
        slot = int(orders[slot]["next"])
    if free & set(slots) or len(free) + open_count != high_water or high_water > int(params[P_MAX_ORDERS]):
        problems.append(
            f"slots: {len(free)} free + {open_count} open != {high_water} used (or free and open overlap)"
        )
