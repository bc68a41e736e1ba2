"""Test helpers: a small configuration, a command tape, and readable event checks.

The configuration keeps the price ladders short: BTC-USDT trades from 100 to 200 USDT in 1 USDT ticks
and 0.001 BTC lots, so one lot at ``p`` ticks costs ``p * 1000`` USDT units (USDT has 6 decimals) and
holds ``100_000`` BTC units (satoshis). ETH-USDT (0.1 USDT ticks, 0.01 ETH lots, 10..50 USDT) has a
10 USDT minimum notional, for the checks that need one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from common.config import ExchangeConfig, default_document, parse_config
from common.records import (
    ALL_SYMBOLS,
    COMMAND_DTYPE,
    EVENT_DTYPE,
    CancelReason,
    CommandKind,
    EventKind,
    OrderType,
    RejectReason,
    Side,
    TimeInForce,
    event_to_dict,
)

# Ids in the configuration below.
BTC, USDT, ETH = 0, 1, 2
BTC_USDT, ETH_USDT = 0, 1
FEE_ACCOUNT = 0


def make_config(
    *,
    stp: str = "cancel_taker",
    maker_bps: int = 2,
    taker_bps: int = 5,
    max_open_orders: int = 64,
    max_accounts: int = 16,
    event_buffer: int = 64,
    fee_account: int = FEE_ACCOUNT,
) -> ExchangeConfig:
    document: dict[str, Any] = default_document()
    document["engine"].update(self_trade_prevention=stp, event_buffer=event_buffer)
    document.update({
        "fees": {"maker_bps": maker_bps, "taker_bps": taker_bps, "fee_account": fee_account},
        "capacity": {"max_open_orders": max_open_orders, "max_accounts": max_accounts},
        "assets": [
            {"name": "BTC", "decimals": 8},
            {"name": "USDT", "decimals": 6},
            {"name": "ETH", "decimals": 8},
        ],
        "symbols": [
            {
                "name": "BTC-USDT",
                "base": "BTC",
                "quote": "USDT",
                "tick_size": "1",
                "lot_size": "0.001",
                "min_qty": "0.001",
                "max_qty": "1",  # 1000 lots
                "min_notional": "0.1",  # 100_000 USDT units
                "price_min": "100",
                "price_max": "200",
            },
            {
                "name": "ETH-USDT",
                "base": "ETH",
                "quote": "USDT",
                "tick_size": "0.1",
                "lot_size": "0.01",
                "min_qty": "0.01",
                "max_qty": "100",
                "min_notional": "10",  # 10_000_000 USDT units
                "price_min": "10",  # 100 ticks
                "price_max": "50",  # 500 ticks
            },
        ],
    })
    return parse_config(document, source="<tests.builders>")


class CommandTape:
    """Builds command records with ``seq`` 1, 2, 3... and ``ts`` increasing with it.

    Every method appends one command and returns its ``seq`` (a NEW's order id). Prices are ticks,
    quantities lots, amounts asset units. ``flush()`` hands over the commands added since the last
    flush, ``array()`` all of them (or the last ``n``).
    """

    TS0 = 1_700_000_000_000_000_000

    def __init__(self) -> None:
        self.records: list[np.ndarray] = []
        self._flushed = 0

    @property
    def last_seq(self) -> int:
        return len(self.records)

    def add(self, kind: int, **fields: int) -> int:
        """Append one command of ``kind`` with these fields (the rest zero); returns its position."""
        seq = len(self.records) + 1
        record = np.zeros(1, dtype=COMMAND_DTYPE)
        record["seq"] = seq
        record["ts"] = self.TS0 + seq * 1_000
        record["kind"] = kind
        for name, value in fields.items():
            record[name] = value
        self.records.append(record)
        return seq

    def array(self, last: int | None = None) -> np.ndarray:
        chosen = self.records if last is None else self.records[len(self.records) - last :]
        return np.concatenate(chosen) if chosen else np.zeros(0, dtype=COMMAND_DTYPE)

    def flush(self) -> np.ndarray:
        out = self.array(last=len(self.records) - self._flushed)
        self._flushed = len(self.records)
        return out

    # --- admin ---

    def create_account(self, account: int) -> int:
        return self.add(CommandKind.CREATE_ACCOUNT, account=account)

    def deposit(self, account: int, asset: int, amount: int) -> int:
        return self.add(CommandKind.DEPOSIT, account=account, asset=asset, amount=amount)

    def withdraw(self, account: int, asset: int, amount: int) -> int:
        return self.add(CommandKind.WITHDRAW, account=account, asset=asset, amount=amount)

    # --- orders ---

    def order(
        self,
        account: int,
        symbol: int,
        side: int,
        price: int,
        qty: int,
        *,
        tif: int = TimeInForce.GTC,
        order_type: int = OrderType.LIMIT,
        amount: int = 0,
        client_order_id: int | None = None,
        **extra: int,
    ) -> int:
        """A NEW. ``extra`` sets any other field (``seq=...`` overrides the sequence number)."""
        seq = len(self.records) + 1
        return self.add(
            CommandKind.NEW,
            account=account,
            symbol=symbol,
            side=side,
            order_type=order_type,
            tif=tif,
            price=price,
            qty=qty,
            amount=amount,
            client_order_id=1000 + seq if client_order_id is None else client_order_id,
            **extra,
        )

    def buy(self, account: int, symbol: int, price: int, qty: int, tif: int = TimeInForce.GTC, **kw: Any) -> int:
        return self.order(account, symbol, Side.BUY, price, qty, tif=tif, **kw)

    def sell(self, account: int, symbol: int, price: int, qty: int, tif: int = TimeInForce.GTC, **kw: Any) -> int:
        return self.order(account, symbol, Side.SELL, price, qty, tif=tif, **kw)

    def market_buy(self, account: int, symbol: int, *, qty: int = 0, amount: int = 0, **kw: Any) -> int:
        return self.order(
            account, symbol, Side.BUY, 0, qty, tif=TimeInForce.IOC, order_type=OrderType.MARKET, amount=amount, **kw
        )

    def market_sell(self, account: int, symbol: int, *, qty: int, **kw: Any) -> int:
        return self.order(account, symbol, Side.SELL, 0, qty, tif=TimeInForce.IOC, order_type=OrderType.MARKET, **kw)

    def cancel(self, account: int, order_id: int) -> int:
        return self.add(CommandKind.CANCEL, account=account, order_id=order_id)

    def replace(self, account: int, order_id: int, price: int, qty: int, client_order_id: int | None = None) -> int:
        seq = len(self.records) + 1
        return self.add(
            CommandKind.CANCEL_REPLACE,
            account=account,
            order_id=order_id,
            price=price,
            qty=qty,
            client_order_id=2000 + seq if client_order_id is None else client_order_id,
        )

    def cancel_all(self, account: int, symbol: int = ALL_SYMBOLS) -> int:
        return self.add(CommandKind.CANCEL_ALL, account=account, symbol=symbol)


# --- reading events -----------------------------------------------------------------------------------


def summary(events: np.ndarray) -> list[str]:
    """``["ACCEPTED", "TRADE", "BALANCE", ..., "CANCELLED:IOC_REMAINDER", "REJECTED:INVALID_SIDE"]``."""
    out = []
    for event in events:
        kind = EventKind(int(event["kind"]))
        if kind is EventKind.REJECTED:
            out.append(f"REJECTED:{RejectReason(int(event['reason'])).name}")
        elif kind is EventKind.CANCELLED:
            out.append(f"CANCELLED:{CancelReason(int(event['reason'])).name}")
        else:
            out.append(kind.name)
    return out


def of_kind(events: np.ndarray, kind: EventKind) -> np.ndarray:
    return events[events["kind"] == kind]


def check(event: np.void, **expected: int) -> None:
    """The named fields of ``event`` have these values (the others are not looked at)."""
    actual = {name: int(event[name]) for name in expected}
    wanted = {name: int(value) for name, value in expected.items()}
    assert actual == wanted, f"event {event_to_dict(event)}\n differs: got {actual}\n wanted {wanted}"


def check_exact(event: np.void, kind: EventKind, **expected: int) -> None:
    """Every field of ``event``: ``kind``, the given values, and zero for every other field."""
    wanted = {name: 0 for name in EVENT_DTYPE.names if name != "reserved"}
    wanted["kind"] = int(kind)
    for name, value in expected.items():
        wanted[name] = int(value)
    actual = {name: int(event[name]) for name in wanted}
    diff = {name: (actual[name], wanted[name]) for name in wanted if actual[name] != wanted[name]}
    assert not diff, f"event {event_to_dict(event)}\n fields (got, wanted): {diff}"
