"""A slow, plain model of the engine service's order tracking (engine/ledger.py), the oracle of
tests/test_engine_ledger.py: dicts of orders, an ordered history of ended ones, the OrigClOrdID map as a
dict, fed the same chunks of events, at the same points, as the service's ledger.

    model = ReferenceTracking()
    model.take(events, first, records, sessions, clordids, history, per_order)  # a chunk of a batch
    model.end_command(history)
    model.sweep()
    model.rows()  # the form of EngineService.tracked()
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from common.records import CancelReason, CommandKind, EventKind, OrderType, TimeInForce

_EXPIRY = {int(CancelReason.IOC_REMAINDER), int(CancelReason.FOK), int(CancelReason.MARKET_REMAINDER)}
_IMMEDIATE = {int(TimeInForce.IOC), int(TimeInForce.FOK)}


class _Order:
    def __init__(self, **fields):
        self.__dict__.update(fields)

    def row(self) -> list:
        return [self.order_id, self.account, self.symbol, self.side, self.order_type, self.tif, self.price, self.qty,
                self.filled, self.gateway, self.session, self.clordids[-1] if self.clordids else "",
                list(self.clordids), self.cum_quote, self.ts, self.status, [list(fill) for fill in self.fills]]


class ReferenceTracking:
    def __init__(self) -> None:
        self.open: dict[int, _Order] = {}
        self.closed: OrderedDict[int, _Order] = OrderedDict()
        self.by_clordid: dict[tuple[int, str], int] = {}
        self.pending: list[tuple[int, str, int]] = []  # (account, ClOrdID, order id): leave at the next sweep
        self.seq = self.transient = self.kind = self.target = self.at = 0
        self.evictions = self.pushed_out = self.forgotten = 0  # how often each bounded path was taken

    def begin_batch(self) -> None:
        self.seq = self.transient = 0

    def _close(self, order: _Order, status: str, history: int) -> None:
        del self.open[order.order_id]
        order.status = status
        self.closed[order.order_id] = order
        while len(self.closed) > history:
            evicted = self.closed.popitem(last=False)[1]
            self.evictions += 1
            self.pending.extend((evicted.account, clordid, evicted.order_id) for clordid in evicted.clordids)

    def end_command(self, history: int) -> None:
        order = self.open.get(self.transient)
        self.transient = 0
        if order is not None:
            done = order.filled > 0 if order.qty > 0 else order.cum_quote > 0
            self._close(order, "filled" if done else "expired", history)

    def sweep(self) -> None:
        for account, clordid, order_id in self.pending:
            if self.by_clordid.get((account, clordid)) == order_id:
                del self.by_clordid[(account, clordid)]
                self.forgotten += 1
        self.pending.clear()

    def take(self, events: np.ndarray, first: int, records: np.ndarray, sessions: list[int], clordids: list[str],
             history: int, per_order: int) -> None:
        for event in events:
            e = {name: int(event[name]) for name in ("seq", "ts", "order_id", "account", "symbol", "side",
                                                     "order_type", "tif", "price", "qty", "filled", "leaves",
                                                     "amount", "maker_order_id", "maker_filled", "maker_leaves",
                                                     "maker_fee", "taker_fee", "reason", "kind")}
            if e["seq"] != self.seq:
                self.end_command(history)
                self.seq, self.at = e["seq"], e["seq"] - first
                self.kind = int(records[self.at]["kind"])
                self.target = (e["seq"] if self.kind == CommandKind.NEW else
                               int(records[self.at]["order_id"]) if self.kind == CommandKind.CANCEL_REPLACE else 0)
            gateway, session = int(records[self.at]["origin"]), int(sessions[self.at])
            clordid = clordids[self.at]
            kind = e["kind"]
            if kind == EventKind.TRADE:
                for oid, filled, leaves_done, fee, maker in (
                        (e["order_id"], e["filled"], e["leaves"] == 0, e["taker_fee"], 0),
                        (e["maker_order_id"], e["maker_filled"], e["maker_leaves"] == 0, e["maker_fee"], 1)):
                    order = self.open.get(oid)
                    if order is None:
                        continue
                    order.filled = filled
                    order.cum_quote += e["amount"]
                    order.ts = e["ts"]
                    order.fills.append([e["seq"], e["ts"], e["price"], e["qty"], e["amount"], fee, maker])
                    if leaves_done and (maker or order.qty > 0):
                        self._close(order, "filled", history)
            elif kind == EventKind.ACCEPTED:
                order = _Order(order_id=e["order_id"], account=e["account"], symbol=e["symbol"], side=e["side"],
                               order_type=e["order_type"], tif=e["tif"], price=e["price"], qty=e["qty"], filled=0,
                               gateway=gateway, session=session, clordids=[clordid] if clordid else [], cum_quote=0,
                               ts=e["ts"], status="new", fills=[])
                self.open[order.order_id] = order
                if clordid:
                    self.by_clordid[(order.account, clordid)] = order.order_id
                if order.order_type == OrderType.MARKET or order.tif in _IMMEDIATE:
                    self.transient = order.order_id
            elif kind == EventKind.CANCELLED:
                order = self.open.get(e["order_id"])
                if order is not None:
                    order.filled = e["filled"]
                    order.ts = e["ts"]
                    self._close(order, "expired" if e["reason"] in _EXPIRY else "canceled", history)
            elif kind == EventKind.REPLACED:
                order = self.open.get(e["order_id"])
                if order is not None:
                    order.price, order.qty, order.filled, order.ts = e["price"], e["qty"], e["filled"], e["ts"]
                    order.gateway, order.session = gateway, session
                    if clordid:
                        order.clordids.append(clordid)
                        self.by_clordid[(order.account, clordid)] = order.order_id
                        if len(order.clordids) > per_order:
                            self.pushed_out += 1
                            self.pending.append((order.account, order.clordids.pop(0), order.order_id))

    def rows(self) -> dict[str, list]:
        return {"open": [order.row() for _, order in sorted(self.open.items())],
                "closed": [order.row() for order in self.closed.values()], "evicted": [],
                "retired": [list(entry) for entry in self.pending],
                "by_clordid": sorted([account, clordid, order_id]
                                     for (account, clordid), order_id in self.by_clordid.items())}
