"""Seeded, reproducible benchmark workloads of engine commands.

``exchange_core`` follows the benchmark the exchange-core project (LMAX-style, Java) describes in its
README: one symbol, 1,000 accounts, about 1,000 resting limit orders over about 750 price levels, then a
stream of 9% GTC orders, 3% IOC orders, 6% cancels and 82% moves (a cancel-replace to a new price), with
about 5% of the commands trading. ``multi_symbol`` is the same mix over 100 symbols and 100,000 accounts.

The generator keeps the stream valid the way a real client population would: it places, moves and cancels
orders that are open. To know which are, it drives a fast engine alongside, chunk by chunk, and reads the
open orders back from its books. Workloads are cached under ``bench/.cache`` keyed by their parameters.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from common.config import ExchangeConfig, default_document, parse_config
from common.records import COMMAND_DTYPE, CommandKind, OrderType, Side, TimeInForce
from engine.core import Engine
from engine.inspection import open_order_rows

CACHE_DIR = Path(__file__).resolve().parent / ".cache"
GENERATOR_VERSION = 4  # bump when the generator changes what it emits

# Per command, the share of each kind (exchange-core's published mix).
MIX = {"gtc": 0.09, "ioc": 0.03, "cancel": 0.06, "move": 0.82}

# Column numbers of engine.inspection._book_rows (the state-hash order rows).
ROW_ORDER_ID, ROW_ACCOUNT, ROW_SYMBOL, ROW_SIDE, ROW_PRICE, ROW_QTY, ROW_FILLED = 0, 2, 3, 4, 6, 7, 8

TS0 = 1_750_000_000_000_000_000


@dataclass(frozen=True)
class WorkloadSpec:
    name: str
    symbols: int
    accounts: int
    commands: int
    resting_per_symbol: int = 1000
    spread_ticks: int = 360  # mean distance of a passive order from the mid price
    cross_probability: float = 0.12  # a move priced at the opposite best, while the book is at its size
    max_lots: int = 100
    max_ioc_lots: int = 8
    seed: int = 1
    chunk: int = 64  # commands generated between two looks at the books (about 64 per symbol)

    def key(self) -> str:
        blob = json.dumps({**asdict(self), "version": GENERATOR_VERSION}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


EXCHANGE_CORE = WorkloadSpec(name="exchange_core", symbols=1, accounts=1_000, commands=3_000_000)
MULTI_SYMBOL = WorkloadSpec(name="multi_symbol", symbols=100, accounts=100_000, commands=3_000_000, chunk=6400)

MID_PRICE = 500_000  # ticks; the band is [1, 1_000_000]
BAND = (1, 1_000_000)
BASE_ASSETS = 10  # symbols share ten base assets against one quote asset


def workload_config(spec: WorkloadSpec, *, max_open_orders: int | None = None) -> ExchangeConfig:
    """The exchange the workload runs on: integer ticks and lots with 1 unit per tick-lot."""
    return parse_config(workload_document(spec, max_open_orders=max_open_orders), source=f"<workload {spec.name}>")


def workload_document(spec: WorkloadSpec, *, max_open_orders: int | None = None) -> dict:
    """``workload_config`` as the configuration document (to write to a file for the processes)."""
    n_base = min(BASE_ASSETS, spec.symbols)
    assets = [{"name": f"B{i}", "decimals": 0} for i in range(n_base)] + [{"name": "Q", "decimals": 0}]
    symbols = [
        {
            "name": f"S{i}",
            "base": f"B{i % n_base}",
            "quote": "Q",
            "tick_size": "1",
            "lot_size": "1",
            "min_qty": "1",
            "max_qty": "1000000",
            "min_notional": "0",
            "price_min": str(BAND[0]),
            "price_max": str(BAND[1]),
        }
        for i in range(spec.symbols)
    ]
    document = default_document()
    document.update({
        "fees": {"maker_bps": 2, "taker_bps": 5, "fee_account": 0},
        "capacity": {
            "max_open_orders": max_open_orders or max(4 * spec.symbols * spec.resting_per_symbol, 1 << 16),
            "max_accounts": spec.accounts + 1,
        },
        "assets": assets,
        "symbols": symbols,
    })
    return document


@dataclass
class Workload:
    spec: WorkloadSpec
    config: ExchangeConfig
    setup: np.ndarray  # accounts, deposits and the initial resting orders (not timed)
    commands: np.ndarray  # the measured stream

    def describe(self) -> dict:
        kinds = self.commands["kind"]
        tifs = self.commands["tif"]
        return {
            "name": self.spec.name,
            "symbols": self.spec.symbols,
            "accounts": self.spec.accounts,
            "setup_commands": int(len(self.setup)),
            "commands": int(len(self.commands)),
            "gtc_share": float(np.mean((kinds == CommandKind.NEW) & (tifs == TimeInForce.GTC))),
            "ioc_share": float(np.mean((kinds == CommandKind.NEW) & (tifs == TimeInForce.IOC))),
            "cancel_share": float(np.mean(kinds == CommandKind.CANCEL)),
            "move_share": float(np.mean(kinds == CommandKind.CANCEL_REPLACE)),
            "seed": self.spec.seed,
        }


def load(spec: WorkloadSpec, *, cache: bool = True) -> Workload:
    """The workload for ``spec``, from the cache or freshly generated (then cached)."""
    config = workload_config(spec)
    path = CACHE_DIR / f"{spec.name}-{spec.key()}.npz"
    if cache and path.exists():
        with np.load(path) as data:
            return Workload(spec, config, data["setup"], data["commands"])
    workload = generate(spec, config)
    if cache:
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, setup=workload.setup, commands=workload.commands)
        tmp.replace(path)
    return workload


class _Stream:
    """Appends commands with consecutive sequence numbers."""

    def __init__(self, capacity: int, first_seq: int = 1):
        self.records = np.zeros(capacity, dtype=COMMAND_DTYPE)
        self.count = 0
        self.first_seq = first_seq

    def add(self, kind: int, **fields: int) -> None:
        r = self.records[self.count]
        seq = self.first_seq + self.count
        r["seq"] = seq
        r["ts"] = TS0 + seq * 1_000
        r["kind"] = kind
        for name, value in fields.items():
            r[name] = value
        self.count += 1

    def taken(self) -> np.ndarray:
        return self.records[: self.count]


def _passive_price(rng: np.random.Generator, side: int, best_bid: int, best_ask: int, spec: WorkloadSpec,
                   cross_probability: float = 0.0) -> int:
    """A price on the order's own side of the book or, with ``cross_probability``, the opposite best."""
    mid = (best_bid + best_ask) // 2 if best_bid > 0 and best_ask > 0 else MID_PRICE
    if cross_probability and rng.random() < cross_probability:
        if side == Side.BUY and best_ask > 0:
            return best_ask
        if side == Side.SELL and best_bid > 0:
            return best_bid
    distance = 1 + int(rng.exponential(spec.spread_ticks))
    if side == Side.BUY:
        top = best_ask - 1 if best_ask > 0 else mid
        return int(max(min(mid, top) - distance + 1, BAND[0]))
    bottom = best_bid + 1 if best_bid > 0 else mid
    return int(min(max(mid, bottom) + distance - 1, BAND[1]))


def generate(spec: WorkloadSpec, config: ExchangeConfig | None = None) -> Workload:
    config = config or workload_config(spec)
    rng = np.random.default_rng(spec.seed)
    n_base = min(BASE_ASSETS, spec.symbols)
    quote_asset = n_base
    # Plenty for every order, and the sum over all accounts still fits the int64 supply.
    funds = (1 << 62) // (spec.accounts + 1)

    setup = _Stream(spec.accounts * (n_base + 2) + spec.symbols * spec.resting_per_symbol + 1)
    for account in range(1, spec.accounts + 1):
        setup.add(CommandKind.CREATE_ACCOUNT, account=account)
        for asset in range(n_base + 1):
            setup.add(CommandKind.DEPOSIT, account=account, asset=asset, amount=funds)
    for symbol in range(spec.symbols):
        for i in range(spec.resting_per_symbol):
            side = Side.BUY if i % 2 == 0 else Side.SELL
            distance = 1 + int(rng.exponential(spec.spread_ticks))
            price = MID_PRICE - distance if side == Side.BUY else MID_PRICE + distance
            setup.add(CommandKind.NEW, account=int(rng.integers(1, spec.accounts + 1)), symbol=symbol, side=side,
                      order_type=OrderType.LIMIT, tif=TimeInForce.GTC, price=price,
                      qty=int(rng.integers(1, spec.max_lots + 1)), client_order_id=setup.count)

    engine = Engine(config)
    for _ in engine.process(setup.taken()):
        pass

    stream = _Stream(spec.commands, first_seq=setup.count + 1)
    thresholds = np.cumsum([MIX["gtc"], MIX["ioc"], MIX["cancel"], MIX["move"]])
    arrays = engine.arrays
    while stream.count < spec.commands:
        rows = open_order_rows(arrays)
        by_symbol = _open_orders_by_symbol(rows, spec.symbols)
        used: set[int] = set()
        start = stream.count
        for _ in range(min(spec.chunk, spec.commands - stream.count)):
            symbol = int(rng.integers(0, spec.symbols))
            best_bid = int(arrays.symbols[symbol]["best_bid"])
            best_ask = int(arrays.symbols[symbol]["best_ask"])
            roll = rng.random()
            account = int(rng.integers(1, spec.accounts + 1))
            candidates = by_symbol[symbol]
            if roll < thresholds[1] or len(candidates) == 0:
                side = Side.BUY if rng.random() < 0.5 else Side.SELL
                if roll < thresholds[0] or len(candidates) == 0:
                    price = _passive_price(rng, side, best_bid, best_ask, spec)
                    tif = TimeInForce.GTC
                else:  # IOC: aggressive, a few ticks through the opposite best
                    opposite = best_ask if side == Side.BUY else best_bid
                    if opposite <= 0:
                        opposite = MID_PRICE
                    offset = int(rng.integers(0, 4))
                    price = opposite + offset if side == Side.BUY else opposite - offset
                    tif = TimeInForce.IOC
                lots = spec.max_lots if tif == TimeInForce.GTC else spec.max_ioc_lots
                stream.add(CommandKind.NEW, account=account, symbol=symbol, side=side, order_type=OrderType.LIMIT,
                           tif=tif, price=int(np.clip(price, *BAND)), qty=int(rng.integers(1, lots + 1)),
                           client_order_id=stream.count)
                continue
            pick = candidates[int(rng.integers(0, len(candidates)))]
            order_id = int(pick[ROW_ORDER_ID])
            if order_id in used:  # once per chunk: it may have traded or gone since
                pick = candidates[int(rng.integers(0, len(candidates)))]
                order_id = int(pick[ROW_ORDER_ID])
            used.add(order_id)
            owner = int(pick[ROW_ACCOUNT])
            if roll < thresholds[2]:
                stream.add(CommandKind.CANCEL, account=owner, order_id=order_id, symbol=symbol)
            else:
                side = int(pick[ROW_SIDE])
                # Moves trade only while the book is at least its target size, which holds it there.
                crossing = spec.cross_probability if len(candidates) >= spec.resting_per_symbol else 0.0
                price = _passive_price(rng, side, best_bid, best_ask, spec, crossing)
                stream.add(CommandKind.CANCEL_REPLACE, account=owner, order_id=order_id, symbol=symbol,
                           price=price, qty=int(pick[ROW_QTY]), client_order_id=stream.count)
        for _ in engine.process(stream.records[start:stream.count]):
            pass
    return Workload(spec, config, setup.taken().copy(), stream.taken().copy())


def _open_orders_by_symbol(rows: np.ndarray, symbols: int) -> list[np.ndarray]:
    if symbols == 1:
        return [rows]
    order = np.argsort(rows[:, ROW_SYMBOL], kind="stable")
    rows = rows[order]
    bounds = np.searchsorted(rows[:, ROW_SYMBOL], np.arange(symbols + 1))
    return [rows[bounds[i]:bounds[i + 1]] for i in range(symbols)]
