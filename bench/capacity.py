"""Resident memory of an engine filled to capacity: 10,000,000 open orders, 1,000,000 accounts x 10 assets.

Builds the engine, creates every account, deposits every asset into every account, then places orders
until the order table is full (none of them trade: bids sit below asks), and reports the resident set
size. Run in its own process by ``bench.engine`` (or ``python -m bench.capacity``); prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import psutil

from common.config import default_document, parse_config
from common.records import COMMAND_DTYPE, CommandKind, OrderType, Side, TimeInForce

ASSETS = 10
SYMBOLS = ASSETS - 1  # every base asset against the last asset
BAND = (1, 200_000)
CHUNK = 1_000_000


def capacity_config(orders: int, accounts: int):
    document = default_document()
    document.update({
        "fees": {"maker_bps": 2, "taker_bps": 5, "fee_account": 0},
        "capacity": {"max_open_orders": orders, "max_accounts": accounts},
        "assets": [{"name": f"A{i}", "decimals": 0} for i in range(ASSETS)],
        "symbols": [
            {"name": f"S{i}", "base": f"A{i}", "quote": f"A{ASSETS - 1}", "tick_size": "1", "lot_size": "1",
             "min_qty": "1", "max_qty": "1000", "min_notional": "0", "price_min": str(BAND[0]),
             "price_max": str(BAND[1])}
            for i in range(SYMBOLS)
        ],
    })
    return parse_config(document, source="<capacity benchmark>")


def _chunks(total: int):
    for start in range(0, total, CHUNK):
        yield start, min(CHUNK, total - start)


def fill(engine, orders: int, accounts: int, seed: int = 7) -> dict:
    rng = np.random.default_rng(seed)
    seq = 0

    def run(commands: np.ndarray) -> None:
        nonlocal seq
        commands["seq"] = np.arange(seq + 1, seq + 1 + len(commands))
        commands["ts"] = commands["seq"]
        seq += len(commands)
        for _ in engine.process(commands):
            pass

    users = np.arange(1, accounts, dtype=np.int32)  # account 0 is the fee account
    for start, size in _chunks(len(users)):
        batch = np.zeros(size, dtype=COMMAND_DTYPE)
        batch["kind"] = CommandKind.CREATE_ACCOUNT
        batch["account"] = users[start:start + size]
        run(batch)
    for asset in range(ASSETS):
        for start, size in _chunks(len(users)):
            batch = np.zeros(size, dtype=COMMAND_DTYPE)
            batch["kind"] = CommandKind.DEPOSIT
            batch["account"] = users[start:start + size]
            batch["asset"] = asset
            batch["amount"] = 1 << 40  # 1e6 accounts x 2**40 stays inside int64 supply
            run(batch)
    mid = (BAND[0] + BAND[1]) // 2
    for start, size in _chunks(orders):
        batch = np.zeros(size, dtype=COMMAND_DTYPE)
        batch["kind"] = CommandKind.NEW
        batch["account"] = rng.integers(1, accounts, size)
        batch["symbol"] = rng.integers(0, SYMBOLS, size)
        sides = rng.integers(0, 2, size)
        batch["side"] = np.where(sides == 0, Side.BUY, Side.SELL)
        distance = rng.integers(1, mid - BAND[0], size)
        batch["price"] = np.where(sides == 0, mid - distance, mid + distance)
        batch["qty"] = rng.integers(1, 1000, size)
        batch["order_type"] = OrderType.LIMIT
        batch["tif"] = TimeInForce.GTC
        run(batch)
    return {"commands": seq}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=10_000_000)
    parser.add_argument("--accounts", type=int, default=1_000_000)
    args = parser.parse_args()

    from engine.core import Engine
    from engine.layout import P_OPEN_ORDERS

    process = psutil.Process()
    rss_start = process.memory_info().rss
    t0 = time.perf_counter()
    engine = Engine(capacity_config(args.orders, args.accounts))
    built = time.perf_counter()
    info = fill(engine, args.orders, args.accounts)
    filled = time.perf_counter()
    arrays = engine.arrays
    nbytes = {name: int(getattr(arrays, name).nbytes) for name in arrays.__dataclass_fields__}
    print(json.dumps({
        "orders": args.orders,
        "accounts": args.accounts,
        "assets": ASSETS,
        "open_orders": int(arrays.params[P_OPEN_ORDERS]),
        "rss_bytes": process.memory_info().rss,
        "rss_bytes_before_engine": rss_start,
        "array_bytes": nbytes,
        "build_s": built - t0,
        "fill_s": filled - built,
        "fill_commands": info["commands"],
    }))


if __name__ == "__main__":
    main()
