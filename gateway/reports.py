"""Engine events (and query answers) -> the FIX-like messages a session receives. Pure functions.

The message of an event (``order_message``) is whole: MsgType, then MsgSeqNum and SendingTime as None,
for the session that sends it to stamp in place (``GatewayCore._stamp``) rather than copy it behind a
header; those two fields come second and third in every message sent, and a dict keeps its keys' order.
Every other function returns a message body (a dict with MsgType first) without MsgSeqNum and
SendingTime: the session adds those when it sends. Prices and quantities are decimal strings of the
symbol's tick and lot (common.fixedpoint), amounts and fees decimal strings of their asset.

Events arrive as rows, tuples of the EVENT_DTYPE fields read at the positions ``SEQ``, ``TS``, ...
(``event_rows``), with their routing item (common/reports.py: ``session, account, role, clordid,
cum_quote, resend``).

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

import struct
from typing import Any, Iterable, Iterator, Mapping

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

Row = tuple[int, ...]  # one event's EVENT_DTYPE fields (event_rows)

_STRUCT_CODES = {"<i8": "q", "<i4": "i", "|u1": "B"}


def _row_struct(dtype: np.dtype) -> tuple[struct.Struct, tuple[str, ...]]:
    """A struct that unpacks one record of ``dtype`` into a tuple of its scalar fields, skipping the
    sub-array ones (spare bytes), and those fields' names. Made from the dtype so it cannot drift."""
    codes, names, end = ["<"], [], 0
    for name in dtype.names:
        field, offset = dtype.fields[name][:2]
        if offset != end:
            raise TypeError(f"field {name} of {dtype} is not packed after the one before it")
        end += field.itemsize
        if field.subdtype is not None:
            codes.append(f"{field.itemsize}x")
        else:
            codes.append(_STRUCT_CODES[field.str])
            names.append(name)
    return struct.Struct("".join(codes)), tuple(names)


_EVENT_ROW, ROW_FIELDS = _row_struct(EVENT_DTYPE)
assert _EVENT_ROW.size == EVENT_DTYPE.itemsize
(SEQ, TS, ORDER_ID, CLIENT_ORDER_ID, PRICE, QTY, LEAVES, FILLED, AMOUNT, MAKER_ORDER_ID, MAKER_LEAVES,
 MAKER_FILLED, MAKER_FEE, TAKER_FEE, AVAILABLE, FROZEN, SYMBOL, ACCOUNT, MAKER_ACCOUNT, ASSET, KIND, REASON,
 SIDE, ORDER_TYPE, TIF) = map(ROW_FIELDS.index, (
    "seq", "ts", "order_id", "client_order_id", "price", "qty", "leaves", "filled", "amount", "maker_order_id",
    "maker_leaves", "maker_filled", "maker_fee", "taker_fee", "available", "frozen", "symbol", "account",
    "maker_account", "asset", "kind", "reason", "side", "order_type", "tif"))

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
_LIMIT = int(OrderType.LIMIT)
_POST_ONLY = int(TimeInForce.POST_ONLY)
_NEW = int(CommandKind.NEW)
_CANCEL_REPLACE = int(CommandKind.CANCEL_REPLACE)
_CANCEL_ALL = int(CommandKind.CANCEL_ALL)


def event_rows(events: np.ndarray) -> Iterator[Row]:
    """EVENT_DTYPE records as rows: tuples of plain ints, read at the positions SEQ, TS, ... (the spare
    bytes left out). Unpacked from the records' bytes, which costs a third of ``tolist``; a tuple is
    also cheaper to make and to read than a dict of the field names."""
    return _EVENT_ROW.iter_unpack(events.tobytes())


def with_kind(ev: Row, kind: int) -> Row:
    """An event's row as if it were of another EventKind."""
    return ev[:KIND] + (kind,) + ev[KIND + 1:]


# --- classification ---------------------------------------------------------------------------------


def command_kind(ev: Row) -> int:
    """The CommandKind of the command a REJECTED event refuses (from its client_order_id); falls back
    on the fields for records not made by a gateway (a side means a NEW)."""
    kind = client_order_kind(ev[CLIENT_ORDER_ID])
    if kind:
        return kind
    if ev[SIDE]:
        return _NEW
    if ev[AMOUNT]:
        return int(CommandKind.DEPOSIT if ev[AMOUNT] > 0 else CommandKind.WITHDRAW)
    return int(CommandKind.CREATE_ACCOUNT)


def is_admin_event(ev: Row) -> bool:
    """An event that answers an admin request (AdminResponse), not an order message."""
    kind = ev[KIND]
    if kind == _ACCOUNT_CREATED:
        return True
    if kind == _BALANCE:
        return ev[AMOUNT] != 0
    if kind == _REJECTED:
        return command_kind(ev) in _ADMIN_KINDS
    return False


def owner_account(ev: Row, item: Mapping[str, Any]) -> int:
    """The account whose order an event's message is about (the maker's, for the maker's side)."""
    return ev[MAKER_ACCOUNT] if item.get("role") == ROLE_MAKER else ev[ACCOUNT]


# --- formatting helpers -----------------------------------------------------------------------------


def _symbol(config: ExchangeConfig, symbol_id: int) -> SymbolConfig | None:
    return config.symbols[symbol_id] if 0 <= symbol_id < len(config.symbols) else None


def avg_px(cum_quote: int, filled_lots: int, symbol: SymbolConfig) -> str:
    """Average fill price: quote units filled / lots filled, as a price with the tick's decimals plus
    AVG_PX_EXTRA_DIGITS, rounded half to even; "0" before any fill."""
    if filled_lots <= 0 or cum_quote <= 0:
        return "0"
    denominator = filled_lots * symbol.quote_units_per_tick_lot  # the lots' quote units at one tick
    ticks, remainder = divmod(cum_quote, denominator)
    if not remainder:  # a whole number of ticks (every fill at one price, say): the same text, memoized
        return symbol.tick.format(ticks)
    numerator = cum_quote * symbol.tick.mantissa * 10**AVG_PX_EXTRA_DIGITS
    quotient, remainder = divmod(numerator, denominator)
    if 2 * remainder > denominator or (2 * remainder == denominator and quotient % 2):
        quotient += 1
    return format_scaled(quotient, symbol.tick.exponent + AVG_PX_EXTRA_DIGITS)


def _order_id_text(order_id: int) -> str:
    return str(order_id) if order_id > 0 else NO_ORDER_ID


_TERMS_MEMO_ENTRIES = 4096
_terms_memo: dict[tuple, dict[str, str]] = {}


def _order_terms(symbol: SymbolConfig | None, side: int, order_type: int, tif: int) -> dict[str, str]:
    """Symbol, Side, OrdType, TimeInForce and ExecInst of an order, those it has, as message fields.
    Memoized: a handful of combinations make nearly every report (the caller copies the dict)."""
    key = (symbol.name if symbol is not None else None, side, order_type, tif)
    terms = _terms_memo.get(key)
    if terms is None:
        terms = {}
        if symbol is not None:
            terms[F.SYMBOL] = symbol.name
        if side in _SIDE:
            terms[F.SIDE] = _SIDE[side]
        if order_type in _ORD_TYPE:
            terms[F.ORD_TYPE] = _ORD_TYPE[order_type]
        if tif == _POST_ONLY:
            terms[F.TIME_IN_FORCE] = _TIF[int(TimeInForce.GTC)]
            terms[F.EXEC_INST] = POST_ONLY_EXEC_INST
        elif tif in _TIF:
            terms[F.TIME_IN_FORCE] = _TIF[tif]
        if len(_terms_memo) >= _TERMS_MEMO_ENTRIES:
            _terms_memo.clear()
        _terms_memo[key] = terms
    return terms


def _execution_report(ev: Row, item: Mapping[str, Any], order_id: int, exec_type: str, ord_status: str,
                      account: int, role: str, filled: int, terms: dict[str, str]) -> dict:
    """An ExecutionReport of an event up to the order's terms, with the slots of MsgSeqNum and
    SendingTime (see the module docstring)."""
    return {
        F.MSG_TYPE: M.EXECUTION_REPORT,
        F.MSG_SEQ_NUM: None,
        F.SENDING_TIME: None,
        F.ORDER_ID: _order_id_text(order_id),
        F.CL_ORD_ID: item.get("clordid", ""),
        F.EXEC_ID: exec_id(ev[SEQ], ev[KIND], order_id, filled, role),
        F.EXEC_TYPE: exec_type,
        F.ORD_STATUS: ord_status,
        F.ACCOUNT: account,
        **terms,
    }


def _quantities(message: dict, symbol: SymbolConfig | None, price: int, qty: int, leaves: int, filled: int,
                cum_quote: int, cash: int) -> None:
    if symbol is None:
        return
    lot = symbol.lot.format
    if price > 0:
        message[F.PRICE] = symbol.tick.format(price)
    if qty > 0:
        message[F.ORDER_QTY] = lot(qty)
    elif cash > 0:
        message[F.CASH_ORDER_QTY] = symbol.quote.unit.format(cash)
    message[F.LEAVES_QTY] = lot(leaves)
    message[F.CUM_QTY] = lot(filled)
    message[F.AVG_PX] = avg_px(cum_quote, filled, symbol)


def _finish(message: dict, ev: Row, item: Mapping[str, Any], text: str | None = None) -> dict:
    if text is not None:
        message[F.TEXT] = text
    message[F.TRANSACT_TIME] = ev[TS]
    if item.get("resend"):
        message[F.POSS_RESEND] = True
    return message


# --- order messages ---------------------------------------------------------------------------------


def order_message(config: ExchangeConfig, ev: Row, item: Mapping[str, Any]) -> dict | None:
    """The message a trading session gets for one event, with MsgSeqNum and SendingTime to fill in
    (None for events that are not its business, among them every admin event)."""
    builder = _ORDER_BUILDERS.get(ev[KIND])
    return None if builder is None else builder(config, ev, item)


def _accepted(config: ExchangeConfig, ev: Row, item: Mapping[str, Any]) -> dict:
    symbol = _symbol(config, ev[SYMBOL])
    order_id = ev[ORDER_ID]
    message = _execution_report(ev, item, order_id, EXEC_TYPES.NEW, ORD_STATUSES.NEW, ev[ACCOUNT], ROLE_ORDER, 0,
                                _order_terms(symbol, ev[SIDE], ev[ORDER_TYPE], ev[TIF]))
    qty = ev[QTY]
    by_quote = qty == 0 and client_order_by_quote(ev[CLIENT_ORDER_ID])
    _quantities(message, symbol, ev[PRICE], qty, ev[LEAVES], ev[FILLED], 0, ev[AMOUNT] if by_quote else 0)
    return _finish(message, ev, item)


def _trade(config: ExchangeConfig, ev: Row, item: Mapping[str, Any]) -> dict:
    symbol = _symbol(config, ev[SYMBOL])
    if item.get("role") == ROLE_MAKER:
        role, order_id, leaves, filled, account = (ROLE_MAKER, ev[MAKER_ORDER_ID], ev[MAKER_LEAVES],
                                                   ev[MAKER_FILLED], ev[MAKER_ACCOUNT])
        terms = _order_terms(symbol, _OPPOSITE.get(ev[SIDE], 0), _LIMIT, 0)
        fee, liquidity, price, by_quote = ev[MAKER_FEE], LIQUIDITY_ADDED, ev[PRICE], False
    else:
        role, order_id, leaves, filled, account = ROLE_TAKER, ev[ORDER_ID], ev[LEAVES], ev[FILLED], ev[ACCOUNT]
        order_type = ev[ORDER_TYPE]
        terms = _order_terms(symbol, ev[SIDE], order_type, ev[TIF])
        fee, liquidity, price = ev[TAKER_FEE], LIQUIDITY_REMOVED, 0
        by_quote = order_type == _MARKET and client_order_by_quote(ev[CLIENT_ORDER_ID])
    if by_quote or leaves > 0:
        status = ORD_STATUSES.PARTIALLY_FILLED  # a buy by quote amount ends with ExecType C
    else:
        status = ORD_STATUSES.FILLED
    message = _execution_report(ev, item, order_id, EXEC_TYPES.TRADE, status, account, role, filled, terms)
    cum_quote = int(item.get("cum_quote") or 0)
    if symbol is not None:
        _quantities(message, symbol, price, 0 if by_quote else leaves + filled, leaves, filled, cum_quote, 0)
        quote = symbol.quote
        message[F.LAST_PX] = symbol.tick.format(ev[PRICE])
        message[F.LAST_QTY] = symbol.lot.format(ev[QTY])
        message[F.COMMISSION] = quote.unit.format(fee)
        message[F.COMM_CURRENCY] = quote.name
    message[F.LAST_LIQUIDITY_IND] = liquidity
    message[F.TRD_MATCH_ID] = f"{ev[SEQ]}-{ev[MAKER_ORDER_ID]}-{ev[MAKER_FILLED]}"
    return _finish(message, ev, item)


def _cancelled(config: ExchangeConfig, ev: Row, item: Mapping[str, Any]) -> dict:
    symbol = _symbol(config, ev[SYMBOL])
    reason = ev[REASON]
    expired = reason in _EXPIRY
    filled = ev[FILLED]
    message = _execution_report(ev, item, ev[ORDER_ID], EXEC_TYPES.EXPIRED if expired else EXEC_TYPES.CANCELED,
                                ORD_STATUSES.EXPIRED if expired else ORD_STATUSES.CANCELED, ev[ACCOUNT], ROLE_ORDER,
                                filled, _order_terms(symbol, ev[SIDE], ev[ORDER_TYPE], ev[TIF]))
    _quantities(message, symbol, ev[PRICE], ev[QTY], 0, filled, int(item.get("cum_quote") or 0), 0)
    try:
        text = CancelReason(reason).name
    except ValueError:
        text = f"cancel reason {reason}"
    return _finish(message, ev, item, text)


def _replaced(config: ExchangeConfig, ev: Row, item: Mapping[str, Any]) -> dict:
    symbol = _symbol(config, ev[SYMBOL])
    filled = ev[FILLED]
    status = ORD_STATUSES.PARTIALLY_FILLED if filled > 0 else ORD_STATUSES.NEW
    message = _execution_report(ev, item, ev[ORDER_ID], EXEC_TYPES.REPLACED, status, ev[ACCOUNT], ROLE_ORDER,
                                filled, _order_terms(symbol, ev[SIDE], ev[ORDER_TYPE], ev[TIF]))
    _quantities(message, symbol, ev[PRICE], ev[QTY], ev[LEAVES], filled, int(item.get("cum_quote") or 0), 0)
    return _finish(message, ev, item)


def _reason_name(reason: int) -> str:
    try:
        return RejectReason(reason).name
    except ValueError:
        return f"REJECT_REASON_{reason}"


def _rejected(config: ExchangeConfig, ev: Row, item: Mapping[str, Any]) -> dict | None:
    kind = command_kind(ev)
    reason = _reason_name(ev[REASON])
    if kind in _CANCEL_KINDS:
        body = cancel_reject(ev[ORDER_ID], item.get("clordid", ""), kind == _CANCEL_REPLACE, reason, reason,
                             transact_time=ev[TS], resend=bool(item.get("resend")))
        return {F.MSG_TYPE: body[F.MSG_TYPE], F.MSG_SEQ_NUM: None, F.SENDING_TIME: None, **body}  # slots added
    if kind == _CANCEL_ALL:
        message = {
            F.MSG_TYPE: M.ORDER_MASS_CANCEL_REPORT,
            F.MSG_SEQ_NUM: None,
            F.SENDING_TIME: None,
            F.CL_ORD_ID: item.get("clordid", ""),
            F.MASS_CANCEL_REQUEST_TYPE: MASS_CANCEL_ALL if ev[SYMBOL] == ALL_SYMBOLS else MASS_CANCEL_SYMBOL,
            F.MASS_CANCEL_RESPONSE: MASS_CANCEL_REJECTED,
            F.MASS_CANCEL_REJECT_REASON: int(
                MassCancelRejectReason.UNKNOWN_SECURITY if reason == RejectReason.UNKNOWN_SYMBOL.name
                else MassCancelRejectReason.OTHER),
            F.TOTAL_AFFECTED_ORDERS: 0,
            F.ACCOUNT: ev[ACCOUNT],
        }
        return _finish(message, ev, item, reason)
    if kind in _ADMIN_KINDS:
        return None  # an AdminResponse (admin_message)
    symbol = _symbol(config, ev[SYMBOL])
    message = _execution_report(ev, item, ev[ORDER_ID], EXEC_TYPES.REJECTED, ORD_STATUSES.REJECTED, ev[ACCOUNT],
                                ROLE_ORDER, 0, _order_terms(symbol, ev[SIDE], ev[ORDER_TYPE], ev[TIF]))
    by_quote = client_order_by_quote(ev[CLIENT_ORDER_ID])
    _quantities(message, symbol, ev[PRICE], ev[QTY], 0, 0, 0, ev[AMOUNT] if by_quote else 0)
    message[F.ORD_REJ_REASON] = ord_rej_reason(reason)
    return _finish(message, ev, item, reason)


def _mass_cancelled(config: ExchangeConfig, ev: Row, item: Mapping[str, Any]) -> dict:
    symbol = _symbol(config, ev[SYMBOL])
    request_type = MASS_CANCEL_ALL if ev[SYMBOL] == ALL_SYMBOLS else MASS_CANCEL_SYMBOL
    message = {
        F.MSG_TYPE: M.ORDER_MASS_CANCEL_REPORT,
        F.MSG_SEQ_NUM: None,
        F.SENDING_TIME: None,
        F.CL_ORD_ID: item.get("clordid", ""),
        F.MASS_CANCEL_REQUEST_TYPE: request_type,
        F.MASS_CANCEL_RESPONSE: request_type,
        F.TOTAL_AFFECTED_ORDERS: ev[QTY],
        F.ACCOUNT: ev[ACCOUNT],
    }
    if symbol is not None and ev[SYMBOL] != ALL_SYMBOLS:
        message[F.SYMBOL] = symbol.name
    return _finish(message, ev, item)


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


def admin_message(config: ExchangeConfig, ev: Row, item: Mapping[str, Any], *,
                  key_id: str | None = None, secret: str | None = None) -> dict | None:
    """The AdminResponse (UR) an admin session gets for an event that answers its request.
    ``key_id``/``secret``: the credentials of a created account (from the credential store)."""
    kind = ev[KIND]
    body: dict[str, Any] = {F.MSG_TYPE: M.ADMIN_RESPONSE,
                            F.ADMIN_REQ_ID: item.get("clordid", "")}
    if kind == _ACCOUNT_CREATED:
        body[F.ADMIN_ACTION] = ADMIN_CREATE_ACCOUNT
        body[F.STATUS] = STATUS_OK
        body[F.ACCOUNT] = ev[ACCOUNT]
        if key_id:
            body[F.KEY_ID] = key_id
            body[F.SECRET] = secret or ""
    elif kind == _BALANCE:
        asset = config.assets[ev[ASSET]] if 0 <= ev[ASSET] < len(config.assets) else None
        body[F.ADMIN_ACTION] = ADMIN_DEPOSIT if ev[AMOUNT] > 0 else ADMIN_WITHDRAW
        body[F.STATUS] = STATUS_OK
        body[F.ACCOUNT] = ev[ACCOUNT]
        if asset is not None:
            body[F.CURRENCY] = asset.name
            body[F.AMOUNT] = asset.unit.format(abs(ev[AMOUNT]))
            body[F.AVAILABLE] = asset.unit.format(ev[AVAILABLE])
            body[F.FROZEN] = asset.unit.format(ev[FROZEN])
    elif kind == _REJECTED:
        command = command_kind(ev)
        if command not in _ADMIN_KINDS:
            return None
        reason = _reason_name(ev[REASON])
        body[F.ADMIN_ACTION] = _ACTION_OF_KIND[command]
        body[F.STATUS] = STATUS_REJECTED
        body[F.ACCOUNT] = ev[ACCOUNT]
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
    body.update(_order_terms(symbol, int(view.get("side", 0)), int(view.get("order_type", 0)),
                             int(view.get("tif", 0))))
    _quantities(body, symbol, int(view.get("price", 0)), int(view.get("qty", 0)), int(view.get("leaves", 0)),
                filled, int(view.get("cum_quote", 0)), 0)
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
