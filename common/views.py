"""An account's engine events and query replies in the public JSON format of the pusher and the REST API
(docs/market-data.md, docs/rest.md): integers become decimal strings and codes become names. Pure
functions of the configuration."""

from __future__ import annotations

from typing import Any

import numpy as np

from common.config import ExchangeConfig
from common.protocol import exec_id
from common.records import CancelReason, EventKind, OrderType, RejectReason, TimeInForce

SIDES = {1: "buy", 2: "sell"}
ORDER_TYPES = {int(OrderType.MARKET): "market", int(OrderType.LIMIT): "limit"}
TIME_IN_FORCE = {int(t): t.name.lower() for t in TimeInForce}
_EXPIRY = {int(CancelReason.IOC_REMAINDER), int(CancelReason.FOK), int(CancelReason.MARKET_REMAINDER)}
_NS_PER_MS = 1_000_000

_ACCEPTED, _REJECTED, _TRADE = int(EventKind.ACCEPTED), int(EventKind.REJECTED), int(EventKind.TRADE)
_CANCELLED, _REPLACED, _BALANCE = int(EventKind.CANCELLED), int(EventKind.REPLACED), int(EventKind.BALANCE)
_RESERVE_EVENTS = (_ACCEPTED, _REPLACED, _CANCELLED)  # they carry the balance of the asset they froze or freed


class AccountViews:
    """Formats one account's data; ``updates()`` turns an account message into the three channels' data."""

    def __init__(self, config: ExchangeConfig):
        self.config = config
        self.symbols = config.symbols
        self.assets = config.assets

    # --- snapshots (engine query replies) --------------------------------------------------------------

    def balances(self, rows: list[dict]) -> list[dict[str, str]]:
        return [self._balance(int(row["asset"]), int(row["available"]), int(row["frozen"])) for row in rows]

    def orders(self, rows: list[dict]) -> list[dict[str, Any]]:
        out = []
        for row in rows:
            symbol = self._symbol(row["symbol"])
            if symbol is None:
                continue
            out.append({
                "order_id": row["order_id"], "clordid": row["clordid"], "symbol": symbol.name,
                "side": SIDES.get(row["side"], ""), "type": ORDER_TYPES.get(row["order_type"], ""),
                "tif": TIME_IN_FORCE.get(row["tif"], ""), "price": symbol.tick.format(row["price"]),
                "qty": symbol.lot.format(row["qty"]), "filled": symbol.lot.format(row["filled"]),
                "leaves": symbol.lot.format(row["leaves"]), "status": row["status"],
                "time": row["ts"] // _NS_PER_MS,
            })
        return out

    def history(self, rows: list[dict]) -> list[dict[str, Any]]:
        """The ``history`` query's orders, each with its fills."""
        out = []
        for row, view in zip(rows, self.orders(rows)):
            symbol = self.symbols[row["symbol"]]
            view["fills"] = [self._history_fill(symbol, fill) for fill in row.get("fills", ())]
            out.append(view)
        return out

    @staticmethod
    def _history_fill(symbol, fill: list[int]) -> dict[str, Any]:
        seq, ts, price, qty, amount, fee, maker = fill
        role = "maker" if maker else "taker"
        return {"seq": seq, "time": ts // _NS_PER_MS, "price": symbol.tick.format(price),
                "qty": symbol.lot.format(qty), "quote_qty": symbol.quote.unit.format(amount),
                "fee": symbol.quote.unit.format(fee), "fee_asset": symbol.quote.name, "liquidity": role}

    # --- live events ----------------------------------------------------------------------------------

    def updates(self, account: int, events: np.ndarray, items: list, *, orders: bool, fills: bool,
                balances: bool) -> tuple[list[dict], list[dict], list[dict]]:
        """(order updates, fills, balance updates) of ``account`` in one account message; only the
        channels asked for are built. Balances are the last value of each asset in the message."""
        order_updates: list[dict] = []
        fill_list: list[dict] = []
        balance_by_asset: dict[int, tuple[int, int]] = {}
        for event, item in zip(events.tolist(), items or [[""] * 2] * len(events)):
            ev = dict(zip(events.dtype.names, event))
            kind = ev["kind"]
            own, maker = (item[0], item[1]) if len(item) == 2 else ("", "")
            if kind == _BALANCE or (kind in _RESERVE_EVENTS and ev["account"] == account):
                if balances:
                    balance_by_asset[ev["asset"]] = (ev["available"], ev["frozen"])
                if kind == _BALANCE:
                    continue
            if kind == _TRADE:
                sides = []
                if ev["account"] == account:
                    sides.append(("taker", own))
                if ev["maker_account"] == account:
                    sides.append(("maker", maker))
                for role, clordid in sides:
                    if orders:
                        order_updates.append(self._trade_order(ev, role, clordid))
                    if fills:
                        fill_list.append(self._fill(ev, role, clordid))
            elif orders and kind in (_ACCEPTED, _CANCELLED, _REPLACED, _REJECTED) and ev["account"] == account:
                update = self._order_event(ev, own)
                if update is not None:
                    order_updates.append(update)
        balance_list = [self._balance(asset, available, frozen)
                        for asset, (available, frozen) in sorted(balance_by_asset.items())]
        return order_updates, fill_list, balance_list

    def _symbol(self, symbol_id: int):
        return self.symbols[symbol_id] if 0 <= symbol_id < len(self.symbols) else None

    def _balance(self, asset_id: int, available: int, frozen: int) -> dict[str, str]:
        asset = self.assets[asset_id]
        return {"asset": asset.name, "available": asset.unit.format(available), "frozen": asset.unit.format(frozen)}

    def _order_event(self, ev: dict, clordid: str) -> dict | None:
        symbol = self._symbol(ev["symbol"])
        kind = ev["kind"]
        if symbol is None:
            return None
        base = {"order_id": ev["order_id"] if kind != _REJECTED else None, "clordid": clordid, "symbol": symbol.name,
                "side": SIDES.get(ev["side"], ""), "type": ORDER_TYPES.get(ev["order_type"], ""),
                "tif": TIME_IN_FORCE.get(ev["tif"], ""), "price": symbol.tick.format(ev["price"]),
                "qty": symbol.lot.format(ev["qty"]), "filled": symbol.lot.format(ev["filled"]),
                "time": ev["ts"] // _NS_PER_MS, "seq": ev["seq"]}
        if kind == _ACCEPTED:
            base.update(event="accepted", status="new", leaves=symbol.lot.format(ev["leaves"]))
        elif kind == _REPLACED:
            base.update(event="replaced", status="partially_filled" if ev["filled"] else "new",
                        leaves=symbol.lot.format(ev["leaves"]))
        elif kind == _CANCELLED:
            expired = ev["reason"] in _EXPIRY
            base.update(event="cancelled", status="expired" if expired else "canceled", leaves="0",
                        reason=CancelReason(ev["reason"]).name.lower())
        else:
            base.update(event="rejected", status="rejected", leaves="0",
                        reason=RejectReason(ev["reason"]).name.lower() if ev["reason"] in RejectReason._value2member_map_
                        else str(ev["reason"]))
        return base

    def _trade_order(self, ev: dict, role: str, clordid: str) -> dict:
        symbol = self.symbols[ev["symbol"]]
        maker = role == "maker"
        order_id = ev["maker_order_id"] if maker else ev["order_id"]
        leaves = ev["maker_leaves"] if maker else ev["leaves"]
        filled = ev["maker_filled"] if maker else ev["filled"]
        side = (3 - ev["side"]) if maker else ev["side"]
        return {"order_id": order_id, "clordid": clordid, "symbol": symbol.name, "side": SIDES.get(side, ""),
                "event": "trade", "status": "filled" if leaves == 0 else "partially_filled",
                "filled": symbol.lot.format(filled), "leaves": symbol.lot.format(leaves),
                "last_price": symbol.tick.format(ev["price"]), "last_qty": symbol.lot.format(ev["qty"]),
                "time": ev["ts"] // _NS_PER_MS, "seq": ev["seq"]}

    def _fill(self, ev: dict, role: str, clordid: str) -> dict:
        symbol = self.symbols[ev["symbol"]]
        maker = role == "maker"
        order_id = ev["maker_order_id"] if maker else ev["order_id"]
        filled = ev["maker_filled"] if maker else ev["filled"]
        side = (3 - ev["side"]) if maker else ev["side"]
        fee = ev["maker_fee"] if maker else ev["taker_fee"]
        return {"exec_id": exec_id(ev["seq"], ev["kind"], order_id, filled, role), "order_id": order_id, "clordid": clordid,
                "symbol": symbol.name, "side": SIDES.get(side, ""), "price": symbol.tick.format(ev["price"]),
                "qty": symbol.lot.format(ev["qty"]), "quote_qty": symbol.quote.unit.format(ev["amount"]),
                "fee": symbol.quote.unit.format(fee), "fee_asset": symbol.quote.name, "liquidity": role,
                "time": ev["ts"] // _NS_PER_MS, "seq": ev["seq"]}
