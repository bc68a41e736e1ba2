"""engine/unchecked.py: ``prefetch`` and ``prefetch2`` are hints only, whatever the array; ``at`` reaches the
element asked for and writes through to it."""

from __future__ import annotations

import numpy as np
import pytest
from numba.core.errors import TypingError

from engine.jit import kernel
from engine.ledger_kernels import POOL_DTYPE, TRACK_DTYPE
from engine.unchecked import at, prefetch, prefetch2


@kernel
def _sum_prefetching(values, order, ahead):
    total = 0
    for i in range(order.shape[0]):
        if i + ahead < order.shape[0]:
            prefetch(values, order[i + ahead])
        total += values[order[i]]
    return total


@kernel
def _read_rows(table, rows, pool, slots):
    """Rows of a 2-D table and of record arrays (one wider than a cache line), asked for, then read."""
    total = 0
    for i in range(rows.shape[0]):
        prefetch2(table, rows[i], 0)
        prefetch(pool, rows[i] % pool.shape[0])
        prefetch(slots, rows[i] % slots.shape[0])
        total += table[rows[i], 1] + pool[rows[i] % pool.shape[0]].account + slots[rows[i] % slots.shape[0]].account
    return total


@kernel
def _bump_accounts(pool, rows):
    for i in range(rows.shape[0]):
        at(pool, rows[i]).account += 1


def test_prefetch_is_only_a_hint():
    rng = np.random.default_rng(7)
    values = rng.integers(-1000, 1000, 1 << 16)
    order = rng.integers(0, len(values), 5000)
    expected = int(values[order].sum())
    for ahead in (0, 1, 16, 10_000):
        assert _sum_prefetching(values, order, ahead) == expected
    edges = np.array([len(values) - 1, 0], dtype=np.int64)  # the last element and the first
    assert _sum_prefetching(values, edges, 1) == int(values[-1] + values[0])


def test_prefetch_takes_rows_of_tables_and_record_arrays():
    table = np.arange(64 * 2, dtype=np.int64).reshape(64, 2)
    pool = np.zeros(8, dtype=POOL_DTYPE)
    pool["account"] = np.arange(8) * 10
    slots = np.zeros(5, dtype=TRACK_DTYPE)  # 232-byte rows: an element over several cache lines
    slots["account"] = np.arange(5) + 100
    rows = np.array([63, 0, 5, 17], dtype=np.int64)
    expected = table[rows, 1].sum() + pool["account"][rows % 8].sum() + slots["account"][rows % 5].sum()
    assert _read_rows(table, rows, pool, slots) == int(expected)


def test_at_writes_through_to_the_element():
    pool = np.zeros(4, dtype=POOL_DTYPE)
    _bump_accounts(pool, np.array([3, 3, 0], dtype=np.int64))
    assert pool["account"].tolist() == [1, 0, 0, 2]


def test_prefetch_refuses_what_is_not_an_array():
    @kernel
    def bad(value):
        prefetch(value, 0)
        return 0

    with pytest.raises(TypingError):
        bad(3)
