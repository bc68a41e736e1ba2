"""``validate()`` catches corruption (docs/engine.md, "Invariants").

A small book is built through commands; then one thing in ``engine.arrays`` is tampered with, and
``validate()`` must raise InvariantViolation naming the right kind of problem. Undoing the tampering makes
the engine valid again, which shows the tampering (not something else) was what was caught.
"""

from __future__ import annotations

import re
from typing import Callable

import numpy as np
import pytest

from engine.core import Engine
from engine.invariants import InvariantViolation
from engine.kernels import index_find
from engine.layout import P_FREE_HEAD, P_OPEN_ORDERS
from engine.reference import ReferenceEngine
from tests.builders import BTC, BTC_USDT, ETH, ETH_USDT, USDT, CommandTape, make_config


class Book:
    """The engine and the ids of its orders:

    BTC-USDT bids 140: [b140a (acct 1, 3 lots), b140b (acct 2, 2 lots)], 139: [b139 (acct 1, 4 lots)];
    asks 160: [a160 (acct 2, 5 lots, 2 filled)], 161: [a161 (acct 1)], 170: [a170 (acct 2)];
    ETH-USDT one bid at 300 (acct 2).
    """

    def __init__(self, engine_cls=Engine):
        tape = CommandTape()
        for account in (1, 2):
            tape.create_account(account)
            tape.deposit(account, BTC, 10**9)
            tape.deposit(account, USDT, 10**11)
            tape.deposit(account, ETH, 10**10)
        self.b140a = tape.buy(1, BTC_USDT, 140, 3)
        self.b140b = tape.buy(2, BTC_USDT, 140, 2)
        self.b139 = tape.buy(1, BTC_USDT, 139, 4)
        self.a160 = tape.sell(2, BTC_USDT, 160, 5)
        self.a161 = tape.sell(1, BTC_USDT, 161, 1)
        self.a170 = tape.sell(2, BTC_USDT, 170, 2)
        tape.buy(1, BTC_USDT, 160, 2)  # fills 2 lots of a160, nothing rests
        self.eth = tape.buy(2, ETH_USDT, 300, 40)
        self.engine = engine_cls(make_config())
        self.engine.apply(tape.array())

    @property
    def arrays(self):
        return self.engine.arrays

    def slot(self, order_id: int) -> int:
        a = self.arrays
        slot = int(index_find(a.index, a.params, order_id))
        assert slot >= 0
        return slot

    def level(self, symbol: int, price: int):
        row = self.arrays.symbols[symbol]
        return self.arrays.levels[int(row["level_offset"] + price - row["min_price"])]

    def bitmap_word(self, symbol: int, layer: int, index: int) -> tuple[int, np.uint64]:
        """(position in the shared bit array, bit) of ``index`` in one layer of a symbol's bitmap."""
        row = self.arrays.symbols[symbol]
        base = int(row[("bits0", "bits1", "bits2")[layer]])
        return base + (index >> 6), np.uint64(1) << np.uint64(index & 63)


@pytest.fixture
def book() -> Book:
    built = Book()
    built.engine.validate()
    assert built.engine.depth(BTC_USDT, 5) == ([(140, 5, 2), (139, 4, 1)], [(160, 3, 1), (161, 1, 1), (170, 2, 1)])
    return built


def test_an_untouched_engine_validates(book):
    book.engine.validate()
    assert book.arrays.params[P_OPEN_ORDERS] == 7


# --- the tamperings: each returns a function that undoes it -----------------------------------------------


def _add(array: np.ndarray, where, amount: int = 1) -> Callable[[], None]:
    array[where] += amount
    return lambda: array.__setitem__(where, array[where] - amount)


def _put(array: np.ndarray, where, value) -> Callable[[], None]:
    old = array[where].copy()  # indexing a record array gives a view: keep a copy
    array[where] = value
    return lambda: array.__setitem__(where, old)


def _set_field(record_array: np.ndarray, index: int, field: str, value) -> Callable[[], None]:
    old = record_array[index][field]
    record_array[index][field] = value
    return lambda: record_array[index].__setitem__(field, old)


def balance_plus_one(b: Book):
    return _add(b.arrays.balances["available"], (1, USDT))


def frozen_moved_from_available(b: Book):
    # The total is unchanged, so only the frozen == sum of reserves rule can see it.
    undo_available = _add(b.arrays.balances["available"], (2, BTC), -1)
    undo_frozen = _add(b.arrays.balances["frozen"], (2, BTC), +1)
    return lambda: (undo_available(), undo_frozen())


def supply_changed(b: Book):
    return _add(b.arrays.supply, ETH, 5)


def negative_available(b: Book):
    # A balance below zero, the supply adjusted so that conservation still holds.
    a = b.arrays
    amount = int(a.balances[1, ETH]["available"]) + 1
    undo_balance = _add(a.balances["available"], (1, ETH), -amount)
    undo_supply = _add(a.supply, ETH, -amount)
    return lambda: (undo_balance(), undo_supply())


def order_reserve(b: Book):
    return _set_field(b.arrays.orders, b.slot(b.b139), "reserve", int(b.arrays.orders[b.slot(b.b139)]["reserve"]) + 1)


def order_reserve_with_frozen(b: Book):
    # Reserve and frozen both +1, taken from available: only the freezing rule is broken.
    slot = b.slot(b.a161)
    undo_reserve = _set_field(b.arrays.orders, slot, "reserve", int(b.arrays.orders[slot]["reserve"]) + 1)
    undo_frozen = _add(b.arrays.balances["frozen"], (1, BTC), 1)
    undo_available = _add(b.arrays.balances["available"], (1, BTC), -1)
    return lambda: (undo_reserve(), undo_frozen(), undo_available())


def level_qty(b: Book):
    return _put(b.arrays.levels, _level_index(b, BTC_USDT, 139), _with(b.level(BTC_USDT, 139), qty=5))


def level_count(b: Book):
    return _put(b.arrays.levels, _level_index(b, BTC_USDT, 140), _with(b.level(BTC_USDT, 140), count=3))


def level_tail(b: Book):
    return _put(b.arrays.levels, _level_index(b, BTC_USDT, 140), _with(b.level(BTC_USDT, 140), tail=b.slot(b.b140a)))


def fifo_prev(b: Book):
    return _set_field(b.arrays.orders, b.slot(b.b140b), "prev", -1)


def fifo_next(b: Book):
    # The head's next skips the second order: the walk ends early.
    return _set_field(b.arrays.orders, b.slot(b.b140a), "next", -1)


def order_at_wrong_price(b: Book):
    return _set_field(b.arrays.orders, b.slot(b.a170), "price", 171)


def bitmap_bit_of_an_empty_level(b: Book):
    position, bit = b.bitmap_word(BTC_USDT, 0, 150 - 100)
    return _put(b.arrays.bits, position, b.arrays.bits[position] | bit)


def bitmap_bit_of_a_level_cleared(b: Book):
    position, bit = b.bitmap_word(BTC_USDT, 0, 161 - 100)
    return _put(b.arrays.bits, position, b.arrays.bits[position] & ~bit)


def bitmap_layer1_bit_cleared(b: Book):
    # ETH-USDT's only level is at offset 200: layer-0 word 3, so bit 3 of layer 1.
    position, bit = b.bitmap_word(ETH_USDT, 1, (300 - 100) >> 6)
    assert b.arrays.bits[position] & bit
    return _put(b.arrays.bits, position, b.arrays.bits[position] & ~bit)


def bitmap_layer2_bit_cleared(b: Book):
    position, bit = b.bitmap_word(ETH_USDT, 2, 0)
    return _put(b.arrays.bits, position, b.arrays.bits[position] & ~bit)


def best_bid(b: Book):
    return _put(b.arrays.symbols["best_bid"], BTC_USDT, 139)


def best_ask_crossed(b: Book):
    return _put(b.arrays.symbols["best_ask"], BTC_USDT, 140)


def side_order_count(b: Book):
    return _add(b.arrays.symbols["bid_orders"], BTC_USDT)


def open_orders_counter(b: Book):
    return _add(b.arrays.params, P_OPEN_ORDERS)


def index_key_removed(b: Book):
    a = b.arrays
    cell = int(np.flatnonzero(a.index["key"] == b.b139)[0])
    return _set_field(a.index, cell, "key", 0)


def index_slot_wrong(b: Book):
    a = b.arrays
    cell = int(np.flatnonzero(a.index["key"] == b.b139)[0])
    return _set_field(a.index, cell, "slot", b.slot(b.a160))


def account_open_count(b: Book):
    return _add(b.arrays.accounts["open_orders"], 2)


def account_list_head(b: Book):
    return _put(b.arrays.accounts["head"], 1, b.slot(b.b139))


def free_list_head(b: Book):
    # A slot of an open order on the free list.
    return _put(b.arrays.params, P_FREE_HEAD, b.slot(b.a170))


def _level_index(b: Book, symbol: int, price: int) -> int:
    row = b.arrays.symbols[symbol]
    return int(row["level_offset"] + price - row["min_price"])


def _with(level: np.void, **fields) -> np.void:
    copy = level.copy()
    for name, value in fields.items():
        copy[name] = value
    return copy


TAMPERINGS = [
    (balance_plus_one, r"asset 1: accounts hold \d+ but supply is \d+"),
    (frozen_moved_from_available, r"frozen differs from the open orders' reserves at \[account, asset\] \[\[2, 0\]\]"),
    (supply_changed, r"asset 2: accounts hold \d+ but supply is \d+"),
    (negative_available, r"negative balances"),
    (order_reserve, r"order {b139}: reserve \d+, rule gives \d+"),
    (order_reserve_with_frozen, r"order {a161}: reserve 100001, rule gives 100000"),
    (level_qty, r"@139: level qty 5, orders hold 4"),
    (level_count, r"@140: FIFO of 2 orders, count 3"),
    (level_tail, r"@140: FIFO of 2 orders"),
    (fifo_prev, r"@140: slot \d+ has prev -1, not \d+"),
    (fifo_next, r"@140: FIFO of 1 orders, count 2"),
    (order_at_wrong_price, r"@170: order {a170} is at the wrong level"),
    (bitmap_bit_of_an_empty_level, r"symbol 0: bitmap layer 0 disagrees"),
    (bitmap_bit_of_a_level_cleared, r"symbol 0: bitmap layer 0 disagrees"),
    (bitmap_layer1_bit_cleared, r"symbol 1: bitmap layer 1 disagrees"),
    (bitmap_layer2_bit_cleared, r"symbol 1: bitmap layer 2 disagrees"),
    (best_bid, r"best bid/ask recorded 139/160, actual 140/160"),
    (best_ask_crossed, r"best bid/ask recorded 140/140, actual 140/160"),
    (side_order_count, r"side order counts do not match"),
    (open_orders_counter, r"7 orders rest in the books, 8 counted open"),
    (index_key_removed, r"order {b139} is not found at its slot through the id index"),
    (index_slot_wrong, r"order {b139} is not found at its slot through the id index"),
    (account_open_count, r"account 2: list of \d+ orders, \d+ counted"),
    (account_list_head, r"account 1: (broken order list|list of)"),
    (free_list_head, r"slots: .* \(or free and open overlap\)"),
]


@pytest.mark.parametrize("tamper, message", [pytest.param(t, m, id=t.__name__) for t, m in TAMPERINGS])
def test_validate_catches_each_kind_of_corruption(book, tamper, message):
    message = message.format_map(vars(book))
    undo = tamper(book)
    with pytest.raises(InvariantViolation, match=message) as caught:
        book.engine.validate()
    assert caught.value.problems, "the exception lists the problems"
    assert any(re.search(message, problem) for problem in caught.value.problems)
    undo()
    book.engine.validate()


def test_the_message_counts_and_lists_every_problem(book):
    balance_plus_one(book)
    order_reserve(book)
    with pytest.raises(InvariantViolation) as caught:
        book.engine.validate()
    problems = caught.value.problems
    assert len(problems) >= 2
    text = str(caught.value)
    assert text.startswith(f"{len(problems)} invariant violation(s):")
    assert all(problem in text for problem in problems)


def test_the_state_hash_refuses_a_wrong_open_orders_counter(book):
    open_orders_counter(book)
    with pytest.raises(InvariantViolation, match="counted open"):
        book.engine.state_hash()


# --- the reference engine ----------------------------------------------------------------------------------


@pytest.fixture
def reference_book() -> Book:
    built = Book(ReferenceEngine)
    built.engine.validate()
    return built


def test_an_untouched_reference_engine_validates(reference_book):
    reference_book.engine.validate()
    assert reference_book.engine.state_hash() == Book().engine.state_hash()


def test_reference_validate_catches_a_balance_plus_one(reference_book):
    engine = reference_book.engine
    engine._accounts[1].available[USDT] += 1
    with pytest.raises(InvariantViolation, match=r"asset 1: balances sum to \d+, supply is \d+"):
        engine.validate()
    engine._accounts[1].available[USDT] -= 1
    engine.validate()


def test_reference_validate_catches_a_frozen_amount(reference_book):
    engine = reference_book.engine
    engine._accounts[2].available[BTC] -= 1
    engine._accounts[2].frozen[BTC] += 1
    with pytest.raises(InvariantViolation, match=r"account 2 asset 0: frozen \d+, reserves sum to \d+"):
        engine.validate()


def test_reference_validate_catches_an_order_reserve(reference_book):
    engine = reference_book.engine
    engine._orders[reference_book.b139].reserve += 1
    with pytest.raises(InvariantViolation, match=rf"order {reference_book.b139}: reserve \d+, the rule gives \d+"):
        engine.validate()


def test_reference_validate_catches_an_order_missing_from_its_level(reference_book):
    engine = reference_book.engine
    engine._bids[BTC_USDT][140].remove(reference_book.b140b)
    with pytest.raises(InvariantViolation, match=rf"orders \[{reference_book.b140b}\] are in the order table but on no level"):
        engine.validate()
