"""The order-id index of engine/kernels.py against a dict.

The index maps order ids (positive int64) to order-table slots by open addressing with linear probing
and backward-shift deletion. It is one structured array (``engine.layout.INDEX_DTYPE``: ``key``, ``slot``,
both int64); key 0 marks an empty cell, and an empty cell's slot is 0 too (deleting clears both). The tables here come from
``engine.layout.allocate`` with a small ``max_open_orders``, so they have 16 or 64 cells and Hypothesis
can crowd them: keys that share one home cell, runs that wrap from the last cell to the first, and far
more live keys than the engine ever keeps (it stays at most half full; correctness must not depend on it).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.kernels import _home, index_delete, index_find, index_insert
from engine.layout import INDEX_DTYPE, P_HASH_MASK, P_HASH_SHIFT, allocate
from tests.builders import make_config

KEY_POOL = list(range(1, 4000)) + [2**31 - 1, 2**31, 2**40 + 7, 2**62 + 1, 2**63 - 1]


class Table:
    def __init__(self, max_open_orders: int):
        arrays = allocate(make_config(max_open_orders=max_open_orders))
        self.index, self.params = arrays.index, arrays.params
        assert self.index.dtype == INDEX_DTYPE
        self.keys, self.slots = self.index["key"], self.index["slot"]  # views of the one array
        self.size = len(self.index)
        self.mask = int(self.params[P_HASH_MASK])
        self.shift = int(self.params[P_HASH_SHIFT])
        assert self.size == self.mask + 1 and not self.keys.any() and not self.slots.any()

    def home(self, key: int) -> int:
        return int(_home(np.int64(key), self.shift))

    def insert(self, key: int, slot: int) -> None:
        index_insert(self.index, self.params, np.int64(key), np.int64(slot))

    def delete(self, key: int) -> None:
        index_delete(self.index, self.params, np.int64(key))

    def find(self, key: int) -> int:
        return int(index_find(self.index, self.params, np.int64(key)))

    def check(self, model: dict[int, int], absent: list[int]) -> None:
        for key, slot in model.items():
            assert self.find(key) == slot, f"find({key}) = {self.find(key)}, expected {slot}; table {self.dump()}"
        for key in absent:
            if key not in model:
                assert self.find(key) == -1, f"find({key}) of a deleted/unknown key gave {self.find(key)}"
        live = {int(k): int(s) for k, s in zip(self.keys, self.slots) if k != 0}
        assert live == model, f"table holds {live}, expected {model}"
        stale = np.flatnonzero((self.keys == 0) & (self.slots != 0)).tolist()
        assert not stale, f"empty cells {stale} still hold a slot: deleting must clear key and slot"
        # The linear-probing invariant: every cell from a key's home up to the key is occupied.
        for cell in np.flatnonzero(self.keys).tolist():
            i = self.home(int(self.keys[cell]))
            while i != cell:
                assert self.keys[i] != 0, f"key {int(self.keys[cell])} at {cell} is cut off from its home {self.home(int(self.keys[cell]))}"
                i = (i + 1) & self.mask

    def dump(self) -> list[tuple[int, int, int]]:
        return [(cell, int(k), self.home(int(k))) for cell, k in enumerate(self.keys) if k]


def _keys_by_home(table: Table) -> dict[int, list[int]]:
    groups: dict[int, list[int]] = defaultdict(list)
    for key in KEY_POOL:
        groups[table.home(key)].append(key)
    return groups


# Tables of 16 cells (max_open_orders 8) and 64 cells (max_open_orders 20).
TABLES = [pytest.param(8, 16, id="16-cells"), pytest.param(20, 64, id="64-cells")]


@pytest.mark.parametrize("max_open_orders, cells", TABLES)
def test_the_table_size_comes_from_max_open_orders(max_open_orders, cells):
    table = Table(max_open_orders)
    assert table.size == cells
    assert table.size >= 2 * max_open_orders
    groups = _keys_by_home(table)
    assert set(groups) == set(range(cells)), "the key pool must reach every home cell"


@st.composite
def _operations(draw, cells: int):
    """("insert", home, pick) or ("delete", pick): homes favour a few cells and the end of the table."""
    crowded = [0, 1, cells - 3, cells - 2, cells - 1]
    home = st.one_of(st.sampled_from(crowded), st.sampled_from(crowded), st.integers(0, cells - 1))
    op = st.one_of(
        st.tuples(st.just("insert"), home, st.integers(0, 10**6)),
        st.tuples(st.just("insert"), home, st.integers(0, 10**6)),
        st.tuples(st.just("delete"), st.integers(0, 10**6), st.just(0)),
    )
    return draw(st.lists(op, min_size=1, max_size=120))


@pytest.mark.parametrize("max_open_orders, cells", TABLES)
@given(data=st.data())
def test_random_inserts_and_deletes_agree_with_a_dict(max_open_orders, cells, data):
    table = Table(max_open_orders)
    groups = _keys_by_home(table)
    operations = data.draw(_operations(cells))
    model: dict[int, int] = {}
    touched: list[int] = []
    next_slot = 0
    for kind, a, b in operations:
        if kind == "insert":
            if len(model) >= cells - 1:  # one cell always stays empty, or probes could not end
                continue
            candidates = [k for k in groups[a] if k not in model]
            if not candidates:
                continue
            key = candidates[b % len(candidates)]
            table.insert(key, next_slot)
            model[key] = next_slot
            next_slot += 1
        else:
            if not model:
                continue
            key = sorted(model)[a % len(model)]
            table.delete(key)
            del model[key]
        touched.append(key)
        table.check(model, touched[-12:])
    for key in list(model):
        table.delete(key)
        del model[key]
        table.check(model, touched[-12:])
    assert not table.keys.any(), f"keys left after deleting everything: {table.dump()}"
    assert not table.slots.any(), "slots left after deleting everything"


def test_colliding_keys_that_wrap_around_the_end_survive_deleting_any_one():
    table = Table(8)
    groups = _keys_by_home(table)
    last = table.size - 1
    # Five keys at home 15 (the last cell), two at home 0, one at home 14: the run wraps to cell 4..
    keys = groups[last][:5] + groups[0][:2] + groups[last - 1][:1]
    for victim in keys:
        table = Table(8)
        model = {}
        for slot, key in enumerate(keys):
            table.insert(key, slot)
            model[key] = slot
        table.check(model, [])
        assert table.keys[0] != 0 and table.keys[last] != 0, "the probe run must wrap"
        table.delete(victim)
        del model[victim]
        table.check(model, [victim])
        for key in list(model):
            table.delete(key)
            del model[key]
            table.check(model, [victim, key])
        assert not table.keys.any() and not table.slots.any()


def test_a_nearly_full_table_still_answers_every_lookup():
    table = Table(8)
    model = {}
    for slot, key in enumerate(KEY_POOL[: table.size - 1]):
        table.insert(key, slot)
        model[key] = slot
    table.check(model, KEY_POOL[table.size: table.size + 20])
    for key in KEY_POOL[: table.size - 1: 2]:
        table.delete(key)
        del model[key]
        table.check(model, [key])
    for key in list(model):
        table.delete(key)
    assert not table.keys.any() and not table.slots.any()


def test_large_keys_hash_into_the_table_and_round_trip():
    table = Table(20)
    big = [2**31, 2**40 + 7, 2**62 + 1, 2**63 - 1]
    for slot, key in enumerate(big):
        assert 0 <= table.home(key) < table.size
        table.insert(key, slot)
    table.check({key: slot for slot, key in enumerate(big)}, [1, 2, 3])
