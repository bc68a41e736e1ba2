"""engine/jit.py: the ``prefetch`` hint changes no result, whatever array it is given."""

from __future__ import annotations

import numpy as np
import pytest
from numba.core.errors import TypingError

from engine.jit import kernel, prefetch
from engine.ledger_kernels import POOL_DTYPE


@kernel
def _sum_prefetching(values, order, ahead):
    total = 0
    for i in range(order.shape[0]):
        if i + ahead < order.shape[0]:
            prefetch(values, order[i + ahead])
        total += values[order[i]]
    return total


@kernel
def _touch_rows(table, rows, pool):
    """Rows of a 2-D table and of a record array, asked for, then read."""
    total = 0
    for i in range(rows.shape[0]):
        prefetch(table, rows[i])
        prefetch(pool, rows[i] % pool.shape[0])
        total += table[rows[i], 1] + pool[rows[i] % pool.shape[0]].account
    return total


def test_prefetch_is_only_a_hint():
    rng = np.random.default_rng(7)
    values = rng.integers(-1000, 1000, 1 << 16)
    order = rng.integers(0, len(values), 5000)
    expected = int(values[order].sum())
    for ahead in (0, 1, 16, 10_000):
        assert _sum_prefetching(values, order, ahead) == expected
    # The last row and the first: the hint's address is the row's, in bounds.
    edges = np.array([len(values) - 1, 0], dtype=np.int64)
    assert _sum_prefetching(values, edges, 1) == int(values[-1] + values[0])


def test_prefetch_takes_rows_of_tables_and_record_arrays():
    table = np.arange(64 * 2, dtype=np.int64).reshape(64, 2)
    pool = np.zeros(8, dtype=POOL_DTYPE)
    pool["account"] = np.arange(8) * 10
    rows = np.array([63, 0, 5, 17], dtype=np.int64)
    assert _touch_rows(table, rows, pool) == int(table[rows, 1].sum() + pool["account"][rows % 8].sum())


def test_prefetch_refuses_what_is_not_an_array_row():
    @kernel
    def bad(value):
        prefetch(value, 0)
        return 0

    with pytest.raises(TypingError):
        bad(3)
