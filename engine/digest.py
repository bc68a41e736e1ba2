"""The implementation-independent state hash (docs/engine.md, "State hash").

Any engine that can list its supply, its accounts' balances and its books in priority order can compute
this digest, so two engines (or one engine before and after recovery) are equal exactly when their
digests are.
"""

from __future__ import annotations

import hashlib

import numpy as np

STATE_HASH_MAGIC = b"exchange-state-v1"

# One open order in the hash, in this column order.
ORDER_ROW_FIELDS = (
    "order_id",
    "client_order_id",
    "account",
    "symbol",
    "side",
    "tif",
    "price",
    "qty",
    "filled",
    "reserve",
)


def state_digest(supply: np.ndarray, account_rows: np.ndarray, order_rows: np.ndarray) -> str:
    """SHA-256 hex digest of the canonical state.

    ``supply``: int64 per asset. ``account_rows``: int64 ``(accounts, 1 + 2 * assets)`` rows of
    ``account id, available0, frozen0, available1, ...`` for existing accounts in id order.
    ``order_rows``: int64 ``(orders, 10)`` in book order (symbol, bids best first, asks best first, FIFO).
    """
    digest = hashlib.sha256(STATE_HASH_MAGIC)
    for block in (supply, account_rows, order_rows):
        flat = np.ascontiguousarray(block, dtype="<i8").reshape(-1)
        digest.update(np.int64(flat.size).astype("<i8").tobytes())
        digest.update(flat.tobytes())
    return digest.hexdigest()
