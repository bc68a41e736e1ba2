"""Engine events (and query answers) -> the FIX-like messages a session receives. Pure functions.

Each function returns a message body (a dict with MsgType first) without MsgSeqNum and SendingTime:
the session stamps those when it sends. Prices and quantities are decimal strings of the symbol's tick
and lot (common.fixedpoint), amounts and fees decimal strings of their asset.

Events arrive as plain dicts of the EVENT_DTYPE fields (``event_rows``) with their routing item
(common/reports.py: ``session, account, role, clordid, cum_quote, resend``).

| event | role | message |
|---|---|---|
| ACCEPTED | order | ExecutionReport ExecType 0 (New) |
| TRADE | taker / maker | ExecutionReport ExecType F (Trade) of that side's order |
| CANCELLED | order | ExecutionReport ExecType 4 (user, self-trade) or C (IOC/market remainder, FOK) |
| REPLACED | order | ExecutionReport ExecType 5 |
| REJECTED of a NEW | order | ExecutionReport ExecType 8, OrdStatus 8, OrdRejReason, Text = reason name |
| REJECTED of a CANCEL / CANCEL_REPLACE | order | OrderCancelReject (9) |
| REJECTED of a CANCEL_ALL, MASS_CANCELLED | order | OrderMassCancelReport (r) |
| ACCOUNT_CREATED, BALANCE of a deposit or withdrawal, REJECTED of those | order | AdminResponse (UR) |

Which command a REJECTED event answers is read from its ``client_order_id`` (see
``common.protocol.client_order_number``), so the answer does not depend on gateway memory.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import numpy as np

from common.config import ExchangeConfig, SymbolConfig
from common.fixedpoint import format_scaled
from common.protocol import (
    ADMIN_CREATE_ACCOUNT,
    ADMIN_DEPOSIT,
    ADMIN_WITHDRAW,
    EXEC_TYPES,
    FIELDS,
    LIQUIDITY_ADDED,
    LIQUIDITY_REMOVED,
    MASS_CANCEL_ALL,
    MASS_CANCEL_REJECTED,
    MASS_CANCEL_SYMBOL,
    MSG_TYPES,
    ORD_STATUSES,
    ORD_TYPE_CODES,
    POST_ONLY_EXEC_INST,
    SIDE_CODES,
    STATUS_OK,
    STATUS_REJECTED,
    TIF_CODES,
    CxlRejReason,
    MassCancelRejectReason,
    client_order_by_quote,
    client_order_kind,
    exec_id,
)
from common.records import (
    ALL_SYMBOLS,
    EVENT_DTYPE,
    CancelReason,
    CommandKind,
    EventKind,
    OrderType,
    RejectReason,
    Side,
    TimeInForce,
)
from gateway.validation import ord_rej_reason

F = FIELDS
M = MSG_TYPES
AVG_PX_EXTRA_DIGITS = 4  # AvgPx has the tick's decimals and this many more (rounded half to even)
NO_ORDER_ID = "NONE"  # OrderID of a report about an order that never existed (a rejected NEW)

ROLE_ORDER = "order"
ROLE_TAKER = "taker"
ROLE_MAKER = "maker"

_EVENT_NAMES = EVENT_DTYPE.names
_OPPOSITE = {int(Side.BUY): int(Side.SELL), int(Side.SELL): int(Side.BUY)}
_SIDE = {int(k): v for k, v in SIDE_CODES.items()}
_ORD_TYPE = {int(k): v for k, v in ORD_TYPE_CODES.items()}
_TIF = {int(k): v for k, v in TIF_CODES.items()}
_ADMIN_KINDS = frozenset({int(CommandKind.CREATE_ACCOUNT), int(CommandKind.DEPOSIT), int(CommandKind.WITHDRAW)})
_CANCEL_KINDS = {int(CommandKind.CANCEL): "1", int(CommandKind.CANCEL_REPLACE): "2"}  # CxlRejResponseTo
_EXPIRY = frozenset({int(CancelReason.IOC_REMAINDER), int(CancelReason.MARKET_REMAINDER), int(CancelReason.FOK)})
_ACTION_OF_KIND = {int(CommandKind.CREATE_ACCOUNT): ADMIN_CREATE_ACCOUNT, int(CommandKind.DEPOSIT): ADMIN_DEPOSIT,
                   int(CommandKind.WITHDRAW): ADMIN_WITHDRAW}

# Order status names of the engine's "order" query (engine/service.py) -> OrdStatus.
_STATUS_NAMES = {
    "new": ORD_STATUSES.NEW,
    "partially_filled": ORD_STATUSES.PARTIALLY_FILLED,
    "filled": ORD_STATUSES.FILLED,
    "canceled": ORD_STATUSES.CANCELED,
    "rejected": ORD_STATUSES.REJECTED,
    "expired": ORD_STATUSES.EXPIRED,
}

_ACCEPTED = int(EventKind.ACCEPTED)
_REJECTED = int(EventKind.REJECTED)
_TRADE = int(EventKind.TRADE)
_CANCELLED = int(EventKind.CANCELLED)
_REPLACED = int(EventKind.REPLACED)
_BALANCE = int(EventKind.BALANCE)
_ACCOUNT_CREATED = int(EventKind.ACCOUNT_CREATED)
_MASS_CANCELLED = int(EventKind.MASS_CANCELLED)
_MARKET = int(OrderType.MARKET)
_POST_ONLY = int(TimeInForce.POST_ONLY)


def event_rows(events: np.ndarray) -> list[dict[str, int]]:
    """EVENT_DTYPE records as dicts of plain ints (one ``tolist`` for the whole array)."""
    return [dict(zip(_EVENT_NAMES, row)) for row in events.tolist()]


# --- classification ---------------------------------------------------------------------------------


def command_kind(ev: Mapping[str, int]) -> int:
    """The CommandKind of the command a REJECTED event refuses (from its client_order_id); falls back
    on the fields for records not made by a gateway (a side means a NEW)."""
    kind = client_order_kind(ev["client_order_id"])
    if kind:
        return kind
    if ev["side"]:
        return int(CommandKind.NEW)
    if ev["amount"]:
        return int(CommandKind.DEPOSIT if ev["amount"] > 0 else CommandKind.WITHDRAW)
    return int(CommandKind.CREATE_ACCOUNT)


def is_admin_event(ev: Mapping[str, int]) -> bool:
    """An event that answers an admin request (AdminResponse), not an order message."""
    kind = ev["kind"]
    if kind == _ACCOUNT_CREATED:
        return True
    if kind == _BALANCE:
        return ev["amount"] != 0
    if kind == _REJECTED:
        return command_kind(ev) in _ADMIN_KINDS
    return False


def owner_account(ev: Mapping[str, int], item: Mapping[str, Any]) -> int:
    """The account whose order an event's message is about (the maker's, for the maker's side)."""
    return ev["maker_account"] if item.get("role") == ROLE_MAKER else ev["account"]


# --- formatting helpers -----------------------------------------------------------------------------


def _symbol(config: ExchangeConfig, symbol_id: int) -> SymbolConfig | None:
    return config.symbols[symbol_id] if 0 <= symbol_id < len(config.symbols) else None


def avg_px(cum_quote: int, filled_lots: int, symbol: SymbolConfig) -> str:
    """Average fill price: quote units filled / lots filled, as a price with the tick's decimals plus
    AVG_PX_EXTRA_DIGITS, rounded half to even; "0" before any fill."""
    if filled_lots <= 0 or cum_quote <= 0:
        return "0"
    numerator = cum_quote * symbol.tick.mantissa * 10**AVG_PX_EXTRA_DIGITS
    denominator = filled_lots * symbol.quote_units_per_tick_lot
    quotient, remainder = divmod(numerator, denominator)
    if 2 * remainder > denominator or (2 * remainder == denominator and quotient % 2):
        quotient += 1
    return format_scaled(quotient, symbol.tick.exponent + AVG_PX_EXTRA_DIGITS)


def _order_id_text(order_id: int) -> str:
    return str(order_id) if order_id > 0 else NO_ORDER_ID


def _order_terms(body: dict, symbol: SymbolConfig | None, side: int, order_type: int, tif: int) -> None:
    if symbol is not None:
        body[F.SYMBOL] = symbol.name
    if side in _SIDE:
        body[F.SIDE] = _SIDE[side]
    if order_type in _ORD_TYPE:
        body[F.ORD_TYPE] = _ORD_TYPE[order_type]
    if tif == _POST_ONLY:
        body[F.TIME_IN_FORCE] = _TIF[int(TimeInForce.GTC)]
        body[F.EXEC_INST] = POST_ONLY_EXEC_INST
    elif tif in _TIF:
        body[F.TIME_IN_FORCE] = _TIF[tif]


def _execution_report(ev: Mapping[str, int], item: Mapping[str, Any], *, order_id: int, exec_type: str,
                      ord_status: str, account: int, role: str, filled: int) -> dict:
    body = {
        F.MSG_TYPE: M.EXECUTION_REPORT,
        F.ORDER_ID: _order_id_text(order_id),
        F.CL_ORD_ID: item.get("clordid", ""),
        F.EXEC_ID: exec_id(ev, order_id, filled, role),
        F.EXEC_TYPE: exec_type,
        F.ORD_STATUS: ord_status,
        F.ACCOUNT: account,
    }
    return body


def _quantities(body: dict, symbol: SymbolConfig | None, *, price: int, qty: int, leaves: int, filled: int,
                cum_quote: int, cash: int = 0) -> None:
    if symbol is None:
        return
    if price > 0:
        body[F.PRICE] = symbol.tick.format(price)
    if qty > 0:
        body[F.ORDER_QTY] = symbol.lot.format(qty)
    elif cash > 0:
        body[F.CASH_ORDER_QTY] = symbol.quote.unit.format(cash)
    body[F.LEAVES_QTY] = symbol.lot.format(leaves)
    body[F.CUM_QTY] = symbol.lot.format(filled)
    body[F.AVG_PX] = avg_px(cum_quote, filled, symbol)


def _finish(body: dict, ev: Mapping[str, int], item: Mapping[str, Any], text: str | None = None) -> dict:
    if text is not None:
        body[F.TEXT] = text
    body[F.TRANSACT_TIME] = ev["ts"]
    if item.get("resend"):
        body[F.POSS_RESEND] = True
    return body


# --- order messages ---------------------------------------------------------------------------------


def order_message(config: ExchangeConfig, ev: Mapping[str, int], item: Mapping[str, Any]) -> dict | None:
    """The message a trading session gets for one event (None for events that are not its business)."""
    kind = ev["kind"]
    builder = _ORDER_BUILDERS.get(kind)
    return None if builder is None else builder(config, ev, item)


def _accepted(config: ExchangeConfig, ev: Mapping[str, int], item: Mapping[str, Any]) -> dict:
    symbol = _symbol(config, ev["symbol"])
    body = _execution_report(ev, item, order_id=ev["order_id"], exec_type=EXEC_TYPES.NEW,
                             ord_status=ORD_STATUSES.NEW, account=ev["account"], role=ROLE_ORDER, filled=0)
    _order_terms(body, symbol, ev["side"], ev["order_type"], ev["tif"])
    by_quote = client_order_by_quote(ev["client_order_id"]) and ev["qty"] == 0
    _quantities(body, symbol, price=ev["price"], qty=ev["qty"], leaves=ev["leaves"], filled=ev["filled"],
                cum_quote=0, cash=ev["amount"] if by_quote else 0)
    return _finish(body, ev, item)


def _trade(config: ExchangeConfig, ev: Mapping[str, int], item: Mapping[str, Any]) -> dict:
    symbol = _symbol(config, ev["symbol"])
    maker = item.get("role") == ROLE_MAKER
    if maker:
        order_id, leaves, filled = ev["maker_order_id"], ev["maker_leaves"], ev["maker_filled"]
        side, order_type, tif, account = _OPPOSITE.get(ev["side"], 0), int(OrderType.LIMIT), 0, ev["maker_account"]
        fee, liquidity, price, by_quote = ev["maker_fee"], LIQUIDITY_ADDED, ev["price"], False
        role = ROLE_MAKER
    else:
        order_id, leaves, filled = ev["order_id"], ev["leaves"], ev["filled"]
        side, order_type, tif, account = ev["side"], ev["order_type"], ev["tif"], ev["account"]
        fee, liquidity, price = ev["taker_fee"], LIQUIDITY_REMOVED, 0
        by_quote = client_order_by_quote(ev["client_order_id"]) and order_type == _MARKET
        role = ROLE_TAKER
    if by_quote or leaves > 0:
        status = ORD_STATUSES.PARTIALLY_FILLED  # a buy by quote amount ends with ExecType C
    else:
        status = ORD_STATUSES.FILLED
    body = _execution_report(ev, item, order_id=order_id, exec_type=EXEC_TYPES.TRADE, ord_status=status,
                             account=account, role=role, filled=filled)
    _order_terms(body, symbol, side, order_type, tif)
    cum_quote = int(item.get("cum_quote") or 0)
    _quantities(body, symbol, price=price, qty=0 if by_quote else leaves + filled, leaves=leaves,
                filled=filled, cum_quote=cum_quote)
    if symbol is not None:
        body[F.LAST_PX] = symbol.tick.format(ev["price"])
        body[F.LAST_QTY] = symbol.lot.format(ev["qty"])
        body[F.COMMISSION] = symbol.quote.unit.format(fee)
        body[F.COMM_CURRENCY] = symbol.quote.name
    body[F.LAST_LIQUIDITY_IND] = liquidity
    body[F.TRD_MATCH_ID] = f"{ev['seq']}-{ev['maker_order_id']}-{ev['maker_filled']}"
    return _finish(body, ev, item)


def _cancelled(config: ExchangeConfig, ev: Mapping[str, int], item: Mapping[str, Any]) -> dict:
    symbol = _symbol(config, ev["symbol"])
    reason = ev["reason"]
    expired = reason in _EXPIRY
    body = _execution_report(
        ev, item, order_id=ev["order_id"],
        exec_type=EXEC_TYPES.EXPIRED if expired else EXEC_TYPES.CANCELED,
        ord_status=ORD_STATUSES.EXPIRED if expired else ORD_STATUSES.CANCELED,
        account=ev["account"], role=ROLE_ORDER, filled=ev["filled"],
    )
    _order_terms(body, symbol, ev["side"], ev["order_type"], ev["tif"])
    _quantities(body, symbol, price=ev["price"], qty=ev["qty"], leaves=0, filled=ev["filled"],
                cum_quote=int(item.get("cum_quote") or 0))
    try:
        text = CancelReason(reason).name
    except ValueError:
        text = f"cancel reason {reason}"
    return _finish(body, ev, item, text)


def _replaced(config: ExchangeConfig, ev: Mapping[str, int], item: Mapping[str, Any]) -> dict:
    symbol = _symbol(config, ev["symbol"])
    status = ORD_STATUSES.PARTIALLY_FILLED if ev["filled"] > 0 else ORD_STATUSES.NEW
    body = _execution_report(ev, item, order_id=ev["order_id"], exec_type=EXEC_TYPES.REPLACED,
                             ord_status=status, account=ev["account"], role=ROLE_ORDER, filled=ev["filled"])
    _order_terms(body, symbol, ev["side"], ev["order_type"], ev["tif"])
    _quantities(body, symbol, price=ev["price"], qty=ev["qty"], leaves=ev["leaves"], filled=ev["filled"],
                cum_quote=int(item.get("cum_quote") or 0))
    return _finish(body, ev, item)


def _reason_name(reason: int) -> str:
    try:
        return RejectReason(reason).name
    except ValueError:
        return f"REJECT_REASON_{reason}"


def _rejected(config: ExchangeConfig, ev: Mapping[str, int], item: Mapping[str, Any]) -> dict | None:
    kind = command_kind(ev)
    reason = _reason_name(ev["reason"])
    if kind in _CANCEL_KINDS:
        return cancel_reject(ev["order_id"], item.get("clordid", ""), kind == int(CommandKind.CANCEL_REPLACE),
                             reason, reason, transact_time=ev["ts"], resend=bool(item.get("resend")))
    if kind == int(CommandKind.CANCEL_ALL):
        body = {
            F.MSG_TYPE: M.ORDER_MASS_CANCEL_REPORT,
            F.CL_ORD_ID: item.get("clordid", ""),
            F.MASS_CANCEL_REQUEST_TYPE: MASS_CANCEL_ALL if ev["symbol"] == ALL_SYMBOLS else MASS_CANCEL_SYMBOL,
            F.MASS_CANCEL_RESPONSE: MASS_CANCEL_REJECTED,
            F.MASS_CANCEL_REJECT_REASON: int(
                MassCancelRejectReason.UNKNOWN_SECURITY if reason == RejectReason.UNKNOWN_SYMBOL.name
                else MassCancelRejectReason.OTHER),
            F.TOTAL_AFFECTED_ORDERS: 0,
            F.ACCOUNT: ev["account"],
        }
        return _finish(body, ev, item, reason)
    if kind in _ADMIN_KINDS:
        return None  # an AdminResponse (admin_message)
    symbol = _symbol(config, ev["symbol"])
    body = _execution_report(ev, item, order_id=ev["order_id"], exec_type=EXEC_TYPES.REJECTED,
                             ord_status=ORD_STATUSES.REJECTED, account=ev["account"], role=ROLE_ORDER,
                             filled=0)
    _order_terms(body, symbol, ev["side"], ev["order_type"], ev["tif"])
    by_quote = client_order_by_quote(ev["client_order_id"])
    _quantities(body, symbol, price=ev["price"], qty=ev["qty"], leaves=0, filled=0, cum_quote=0,
                cash=ev["amount"] if by_quote else 0)
    body[F.ORD_REJ_REASON] = ord_rej_reason(reason)
    return _finish(body, ev, item, reason)


def _mass_cancelled(config: ExchangeConfig, ev: Mapping[str, int], item: Mapping[str, Any]) -> dict:
    symbol = _symbol(config, ev["symbol"])
    request_type = MASS_CANCEL_ALL if ev["symbol"] == ALL_SYMBOLS else MASS_CANCEL_SYMBOL
    body = {
        F.MSG_TYPE: M.ORDER_MASS_CANCEL_REPORT,
        F.CL_ORD_ID: item.get("clordid", ""),
        F.MASS_CANCEL_REQUEST_TYPE: request_type,
        F.MASS_CANCEL_RESPONSE: request_type,
        F.TOTAL_AFFECTED_ORDERS: ev["qty"],
        F.ACCOUNT: ev["account"],
    }
    if symbol is not None and ev["symbol"] != ALL_SYMBOLS:
        body[F.SYMBOL] = symbol.name
    return _finish(body, ev, item)


_ORDER_BUILDERS = {
    _ACCEPTED: _accepted,
    _TRADE: _trade,
    _CANCELLED: _cancelled,
    _REPLACED: _replaced,
    _REJECTED: _rejected,
    _MASS_CANCELLED: _mass_cancelled,
}


def cancel_reject(order_id: int, clordid: str, replace: bool, reason: str, text: str, *,
                  orig_clordid: str = "", transact_time: int | None = None, resend: bool = False,
                  ord_status: str | None = None) -> dict:
    """OrderCancelReject (9) for a cancel (F) or replace (G) refused by the engine or the gateway."""
    unknown = reason == RejectReason.UNKNOWN_ORDER.name
    if ord_status is None:
        # FIX: OrdStatus is the order's status after the reject; "8" when the order is unknown. The
        # gateway does not know the order's fill state here: "0" otherwise (OrderStatusRequest knows).
        ord_status = ORD_STATUSES.REJECTED if unknown else ORD_STATUSES.NEW
    body = {
        F.MSG_TYPE: M.ORDER_CANCEL_REJECT,
        F.ORDER_ID: _order_id_text(order_id),
        F.CL_ORD_ID: clordid,
        F.ORD_STATUS: ord_status,
        F.CXL_REJ_RESPONSE_TO: "2" if replace else "1",
        F.CXL_REJ_REASON: int(CxlRejReason.UNKNOWN_ORDER if unknown else CxlRejReason.OTHER),
        F.TEXT: text,
    }
    if orig_clordid:
        body[F.ORIG_CL_ORD_ID] = orig_clordid
    if transact_time is not None:
        body[F.TRANSACT_TIME] = transact_time
    if resend:
        body[F.POSS_RESEND] = True
    return body


# --- admin responses --------------------------------------------------------------------------------


def admin_message(config: ExchangeConfig, ev: Mapping[str, int], item: Mapping[str, Any], *,
                  key_id: str | None = None, secret: str | None = None) -> dict | None:
    """The AdminResponse (UR) an admin session gets for an event that answers its request.
    ``key_id``/``secret``: the credentials of a created account (from the credential store)."""
    kind = ev["kind"]
    body: dict[str, Any] = {F.MSG_TYPE: M.ADMIN_RESPONSE,
                            F.ADMIN_REQ_ID: item.get("clordid", "")}
    if kind == _ACCOUNT_CREATED:
        body[F.ADMIN_ACTION] = ADMIN_CREATE_ACCOUNT
        body[F.STATUS] = STATUS_OK
        body[F.ACCOUNT] = ev["account"]
        if key_id:
            body[F.KEY_ID] = key_id
            body[F.SECRET] = secret or ""
    elif kind == _BALANCE:
        asset = config.assets[ev["asset"]] if 0 <= ev["asset"] < len(config.assets) else None
        body[F.ADMIN_ACTION] = ADMIN_DEPOSIT if ev["amount"] > 0 else ADMIN_WITHDRAW
        body[F.STATUS] = STATUS_OK
        body[F.ACCOUNT] = ev["account"]
        if asset is not None:
            body[F.CURRENCY] = asset.name
            body[F.AMOUNT] = asset.unit.format(abs(ev["amount"]))
            body[F.AVAILABLE] = asset.unit.format(ev["available"])
            body[F.FROZEN] = asset.unit.format(ev["frozen"])
    elif kind == _REJECTED:
        command = command_kind(ev)
        if command not in _ADMIN_KINDS:
            return None
        reason = _reason_name(ev["reason"])
        body[F.ADMIN_ACTION] = _ACTION_OF_KIND[command]
        body[F.STATUS] = STATUS_REJECTED
        body[F.ACCOUNT] = ev["account"]
        body[F.TEXT] = reason
    else:
        return None
    return _finish(body, ev, item)


def admin_refusal(req_id: str, action: str, text: str, *, account: int | None = None) -> dict:
    """An AdminResponse refusing a request before it reached the engine."""
    body: dict[str, Any] = {F.MSG_TYPE: M.ADMIN_RESPONSE, F.ADMIN_REQ_ID: req_id,
                            F.ADMIN_ACTION: action, F.STATUS: STATUS_REJECTED, F.TEXT: text}
    if account is not None and account >= 0:
        body[F.ACCOUNT] = account
    return body


# --- query answers ----------------------------------------------------------------------------------


def status_report(config: ExchangeConfig, view: Mapping[str, Any], *, req_clordid: str | None = None,
                  mass_status_req_id: str | None = None, total: int | None = None,
                  last: bool | None = None) -> dict:
    """ExecutionReport ExecType I (order status) of one order, from the engine's order view."""
    symbol = _symbol(config, int(view.get("symbol", -1)))
    order_id = int(view.get("order_id", 0))
    filled = int(view.get("filled", 0))
    status = _STATUS_NAMES.get(str(view.get("status", "")), ORD_STATUSES.NEW)
    body: dict[str, Any] = {
        F.MSG_TYPE: M.EXECUTION_REPORT,
        F.ORDER_ID: _order_id_text(order_id),
        F.CL_ORD_ID: str(view.get("clordid") or req_clordid or ""),
        F.EXEC_ID: f"status-{order_id}-{filled}-{view.get('ts', 0)}",
        F.EXEC_TYPE: EXEC_TYPES.ORDER_STATUS,
        F.ORD_STATUS: status,
        F.ACCOUNT: int(view.get("account", -1)),
    }
    _order_terms(body, symbol, int(view.get("side", 0)), int(view.get("order_type", 0)), int(view.get("tif", 0)))
    _quantities(body, symbol, price=int(view.get("price", 0)), qty=int(view.get("qty", 0)),
                leaves=int(view.get("leaves", 0)), filled=filled, cum_quote=int(view.get("cum_quote", 0)))
    if status == ORD_STATUSES.REJECTED and "reason" in view:
        reason = _reason_name(int(view["reason"]))
        body[F.ORD_REJ_REASON] = ord_rej_reason(reason)
        body[F.TEXT] = reason
    if "ts" in view:
        body[F.TRANSACT_TIME] = int(view["ts"])
    if mass_status_req_id is not None:
        body[F.MASS_STATUS_REQ_ID] = mass_status_req_id
    if total is not None:
        body[F.TOT_NUM_REPORTS] = total
    if last is not None:
        body[F.LAST_RPT_REQUESTED] = last
    return body


def unknown_order_status(*, clordid: str | None, order_id: int, account: int) -> dict:
    """The answer to an OrderStatusRequest for an order the engine does not know (for this account)."""
    body = {
        F.MSG_TYPE: M.EXECUTION_REPORT,
        F.ORDER_ID: _order_id_text(order_id),
        F.EXEC_ID: f"status-{order_id}-unknown",
        F.EXEC_TYPE: EXEC_TYPES.ORDER_STATUS,
        F.ORD_STATUS: ORD_STATUSES.REJECTED,
        F.ORD_REJ_REASON: ord_rej_reason(RejectReason.UNKNOWN_ORDER.name),
        F.TEXT: RejectReason.UNKNOWN_ORDER.name,
        F.ACCOUNT: account,
    }
    if clordid is not None:
        body[F.CL_ORD_ID] = clordid
    return body


def mass_status_reports(config: ExchangeConfig, views: Iterable[Mapping[str, Any]], req_id: str,
                        account: int) -> list[dict]:
    """The answer to an OrderMassStatusRequest: one ExecutionReport I per order, each with
    TotNumReports, the last with LastRptRequested; with no order, one report that names none."""
    views = list(views)
    total = len(views)
    if total == 0:
        return [{
            F.MSG_TYPE: M.EXECUTION_REPORT,
            F.EXEC_ID: f"status-{req_id}-none",
            F.EXEC_TYPE: EXEC_TYPES.ORDER_STATUS,
            F.MASS_STATUS_REQ_ID: req_id,
            F.TOT_NUM_REPORTS: 0,
            F.LAST_RPT_REQUESTED: True,
            F.ACCOUNT: account,
            F.TEXT: "no open orders",
        }]
    return [status_report(config, view, mass_status_req_id=req_id, total=total, last=i == total - 1)
            for i, view in enumerate(views)]


def balance_report(config: ExchangeConfig, req_id: str, account: int, balances: Iterable[Mapping[str, Any]],
                   *, currency: int | None = None) -> dict:
    """BalanceReport (UP): per asset (or the one asked for), available and frozen as decimal strings."""
    entries = []
    for entry in balances:
        asset_id = int(entry["asset"])
        if not 0 <= asset_id < len(config.assets) or (currency is not None and asset_id != currency):
            continue
        asset = config.assets[asset_id]
        entries.append({F.CURRENCY: asset.name, F.AVAILABLE: asset.unit.format(int(entry["available"])),
                        F.FROZEN: asset.unit.format(int(entry["frozen"]))})
    return {F.MSG_TYPE: M.BALANCE_REPORT, F.BALANCE_REQ_ID: req_id,
            F.ACCOUNT: account, F.STATUS: STATUS_OK, F.BALANCES: entries}
