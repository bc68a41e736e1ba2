"""Every client message checked against the protocol and the configuration, before anything is sent on.

Pure functions of (message map, configuration, session): no sockets, no clock, no state. A message is
either turned into a request object (``NewOrder``, ``CancelOrder``, ...) or refused with one of two
exceptions, which docs/protocol.md ("What a bad value gets back") lists case by case:

- :class:`SessionReject`: the message is malformed for its type (unknown type, a field the type does
  not have, a required field missing, a wrong data type, a code not in the list, a decimal that is not a
  plain positive decimal, a field combination the type does not allow). Answered with a Reject (3).
- :class:`BusinessReject`: a well-formed request breaks a trading rule of the configuration (unknown
  symbol, tick or lot precision, quantity limits, price band, minimum notional, a time in force the
  order type cannot have). Answered in the request's own kind (ExecutionReport 8/8 for D,
  OrderCancelReject for F and G, OrderMassCancelReport for q, AdminResponse for UA), with the reason
  named as the engine names it (``RejectReason``), so a client reads one vocabulary whoever refused.

The checks of one message run in a fixed order (the first failure is reported): fields the type does
not have, required fields, each present field's type and code, field combinations, then the rules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

from common.config import AssetConfig, ExchangeConfig, SymbolConfig
from common.fixedpoint import INT64_MAX, FixedPointError, Refusal, Step
from common.fixedpoint import MAX_TEXT_LENGTH as MAX_DECIMAL_LENGTH
from common.protocol import (
    ADMIN_ACTIONS,
    ADMIN_CREATE_ACCOUNT,
    FIELDS,
    HEX_SIGNATURE_LENGTH,
    MASS_CANCEL_ALL,
    MASS_CANCEL_SYMBOL,
    MASS_STATUS_ALL,
    MASS_STATUS_SYMBOL,
    MSG_TYPES,
    ORD_TYPES,
    POST_ONLY_EXEC_INST,
    SIDES,
    TIMES_IN_FORCE,
    MsgType,
    OrdRejReason,
    SessionRejectReason,
)
from common.records import OrderType, RejectReason, Side, TimeInForce

F = FIELDS
M = MSG_TYPES
MAX_ID_LENGTH = 64  # ClOrdID, OrigClOrdID, request ids, key ids
MAX_FREE_TEXT_LENGTH = 1024  # Text
MAX_NAME_LENGTH = 32  # Symbol, Currency
MAX_HEART_BT_INT = 3600
_ID = re.compile(r"[\x21-\x7e]{1,%d}" % MAX_ID_LENGTH)  # printable ASCII, no blanks
_DIGITS = re.compile(r"[0-9]{1,19}")
_HEX = re.compile(r"[0-9a-fA-F]{%d}" % HEX_SIGNATURE_LENGTH)
_UNIT = Step("1")
_PLAIN = re.compile(r"[0-9]+(?:\.[0-9]+)?")  # the shape common.fixedpoint accepts
_SAFE_WHOLE_DIGITS = 19  # fewer whole digits than this always fit in int64


# --- outcomes ---------------------------------------------------------------------------------------


class SessionReject(Exception):
    """A malformed message: answered with Reject (3) carrying ``reason``, ``tag`` and ``text``."""

    def __init__(self, reason: SessionRejectReason, text: str, tag: str | None = None):
        super().__init__(text)
        self.reason = reason
        self.text = text
        self.tag = tag


class BusinessReject(Exception):
    """A well-formed request that breaks a rule; ``reason`` is the engine's name for it (or the
    gateway's own, ``INVALID_PRICE_INCREMENT``), ``text`` = ``"<reason>: <detail>"``."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.text = f"{reason}: {detail}"

    @property
    def ord_rej_reason(self) -> int:
        return ord_rej_reason(self.reason)


INVALID_PRICE_INCREMENT = "INVALID_PRICE_INCREMENT"  # a price that is not a multiple of the tick

# The engine's reasons (and the gateway's one of its own) as FIX OrdRejReason (103) values.
_ORD_REJ_REASONS = {
    RejectReason.UNKNOWN_SYMBOL.name: OrdRejReason.UNKNOWN_SYMBOL,
    RejectReason.UNKNOWN_ACCOUNT.name: OrdRejReason.UNKNOWN_ACCOUNT,
    RejectReason.UNKNOWN_ORDER.name: OrdRejReason.UNKNOWN_ORDER,
    RejectReason.PRICE_OUT_OF_BAND.name: OrdRejReason.PRICE_EXCEEDS_CURRENT_PRICE_BAND,
    RejectReason.INVALID_QUANTITY.name: OrdRejReason.INCORRECT_QUANTITY,
    RejectReason.INVALID_AMOUNT.name: OrdRejReason.INCORRECT_QUANTITY,
    RejectReason.INSUFFICIENT_FUNDS.name: OrdRejReason.ORDER_EXCEEDS_LIMIT,
    RejectReason.JOURNAL_UNAVAILABLE.name: OrdRejReason.EXCHANGE_CLOSED,
    INVALID_PRICE_INCREMENT: OrdRejReason.INVALID_PRICE_INCREMENT,
    "EXCHANGE_CLOSED": OrdRejReason.EXCHANGE_CLOSED,
}


def ord_rej_reason(reason: str) -> int:
    """OrdRejReason (103) for a reason name; 99 (other) for those FIX has no code for."""
    return int(_ORD_REJ_REASONS.get(reason, OrdRejReason.OTHER))


# --- requests -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Logon:
    key_id: str
    signature: str
    sending_time: int
    msg_seq_num: int
    heart_bt_int: int | None


@dataclass(frozen=True, slots=True)
class Logout:
    text: str | None


@dataclass(frozen=True, slots=True)
class Heartbeat:
    test_req_id: str | None


@dataclass(frozen=True, slots=True)
class TestRequest:
    test_req_id: str

    __test__ = False  # not a pytest test class


@dataclass(frozen=True, slots=True)
class NewOrder:
    clordid: str
    symbol: SymbolConfig
    side: Side
    order_type: OrderType
    tif: TimeInForce
    price: int  # ticks; 0 for a market order
    qty: int  # lots; 0 for a market buy by quote amount
    amount: int  # quote units of a market buy by quote amount (CashOrderQty), else 0

    @property
    def by_quote(self) -> bool:
        return self.amount > 0


@dataclass(frozen=True, slots=True)
class CancelOrder:
    clordid: str
    orig_clordid: str  # "" if the order is named by OrderID
    order_id: int  # 0 if the order is named by OrigClOrdID
    symbol: SymbolConfig | None


@dataclass(frozen=True, slots=True)
class ReplaceOrder:
    clordid: str
    orig_clordid: str
    order_id: int
    symbol: SymbolConfig
    price: int  # ticks
    qty: int  # lots, the new total quantity


@dataclass(frozen=True, slots=True)
class MassCancel:
    clordid: str
    symbol: SymbolConfig | None  # None: every symbol


@dataclass(frozen=True, slots=True)
class OrderStatus:
    clordid: str | None
    order_id: int  # 0 if named by ClOrdID
    symbol: SymbolConfig | None


@dataclass(frozen=True, slots=True)
class MassStatus:
    req_id: str
    symbol: SymbolConfig | None


@dataclass(frozen=True, slots=True)
class BalanceRequest:
    req_id: str
    account: int | None  # admin sessions name the account
    currency: AssetConfig | None


@dataclass(frozen=True, slots=True)
class AdminRequest:
    req_id: str
    action: str
    account: int  # -1 for create_account
    asset: AssetConfig | None
    amount: int  # asset units


Request = (Logon | Logout | Heartbeat | TestRequest | NewOrder | CancelOrder | ReplaceOrder | MassCancel
           | OrderStatus | MassStatus | BalanceRequest | AdminRequest)


# --- message types and their fields -----------------------------------------------------------------

HEADER = (F.MSG_TYPE, F.MSG_SEQ_NUM, F.SENDING_TIME)


@dataclass(frozen=True, slots=True)
class MessageSpec:
    required: tuple[str, ...]
    optional: tuple[str, ...]
    fields: frozenset[str] = frozenset()  # every field the type may carry, header included

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", frozenset(HEADER + self.required + self.optional))


def _spec(required: tuple[str, ...] = (), optional: tuple[str, ...] = ()) -> MessageSpec:
    return MessageSpec(tuple(required), tuple(optional))


# What a client may send. Everything else the protocol defines goes the other way only.
SPECS: dict[str, MessageSpec] = {
    M.LOGON: _spec((F.SENDING_TIME, F.USERNAME, F.RAW_DATA), (F.HEART_BT_INT, F.ENCRYPT_METHOD)),
    M.LOGOUT: _spec((), (F.TEXT,)),
    M.HEARTBEAT: _spec((), (F.TEST_REQ_ID,)),
    M.TEST_REQUEST: _spec((F.TEST_REQ_ID,)),
    M.NEW_ORDER_SINGLE: _spec(
        (F.CL_ORD_ID, F.SYMBOL, F.SIDE, F.ORD_TYPE),
        (F.PRICE, F.ORDER_QTY, F.CASH_ORDER_QTY, F.TIME_IN_FORCE, F.EXEC_INST, F.ACCOUNT, F.TRANSACT_TIME),
    ),
    M.ORDER_CANCEL_REQUEST: _spec(
        (F.CL_ORD_ID,), (F.ORIG_CL_ORD_ID, F.ORDER_ID, F.SYMBOL, F.SIDE, F.ACCOUNT, F.TRANSACT_TIME)
    ),
    M.ORDER_CANCEL_REPLACE_REQUEST: _spec(
        (F.CL_ORD_ID, F.SYMBOL, F.PRICE, F.ORDER_QTY),
        (F.ORIG_CL_ORD_ID, F.ORDER_ID, F.SIDE, F.ORD_TYPE, F.TIME_IN_FORCE, F.EXEC_INST, F.ACCOUNT,
         F.TRANSACT_TIME),
    ),
    M.ORDER_MASS_CANCEL_REQUEST: _spec(
        (F.CL_ORD_ID, F.MASS_CANCEL_REQUEST_TYPE), (F.SYMBOL, F.ACCOUNT, F.TRANSACT_TIME)
    ),
    M.ORDER_STATUS_REQUEST: _spec((), (F.CL_ORD_ID, F.ORDER_ID, F.SYMBOL, F.SIDE, F.ACCOUNT)),
    M.ORDER_MASS_STATUS_REQUEST: _spec(
        (F.MASS_STATUS_REQ_ID,), (F.MASS_STATUS_REQ_TYPE, F.SYMBOL, F.ACCOUNT)
    ),
    M.BALANCE_REQUEST: _spec((F.BALANCE_REQ_ID,), (F.CURRENCY, F.ACCOUNT)),
    M.ADMIN_REQUEST: _spec((F.ADMIN_REQ_ID, F.ADMIN_ACTION), (F.ACCOUNT, F.CURRENCY, F.AMOUNT)),
}

# Message types that only trading sessions send, and those only admin sessions send.
TRADING_TYPES = frozenset({
    M.NEW_ORDER_SINGLE, M.ORDER_CANCEL_REQUEST,
    M.ORDER_CANCEL_REPLACE_REQUEST, M.ORDER_MASS_CANCEL_REQUEST,
    M.ORDER_STATUS_REQUEST, M.ORDER_MASS_STATUS_REQUEST,
})
ADMIN_TYPES = frozenset({M.ADMIN_REQUEST})
KNOWN_TYPES = frozenset(t.value for t in MsgType)


# --- field value checks -----------------------------------------------------------------------------


def _fail_type(name: str, expected: str, value: Any) -> SessionReject:
    return SessionReject(SessionRejectReason.INCORRECT_DATA_FORMAT,
                         f"{name} must be {expected}, got {type(value).__name__}", name)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_int(name: str, value: Any, minimum: int = 0, maximum: int = INT64_MAX) -> None:
    if not _is_int(value):
        raise _fail_type(name, "an integer", value)
    if not minimum <= value <= maximum:
        raise SessionReject(SessionRejectReason.VALUE_INCORRECT,
                            f"{name} {value} is outside {minimum}..{maximum}", name)


def _check_id(name: str, value: Any) -> None:
    if not isinstance(value, str):
        raise _fail_type(name, "a string", value)
    if not _ID.fullmatch(value):
        raise SessionReject(SessionRejectReason.VALUE_INCORRECT,
                            f"{name} must be 1 to {MAX_ID_LENGTH} printable ASCII characters without blanks",
                            name)


def _check_name(name: str, value: Any) -> None:
    if not isinstance(value, str):
        raise _fail_type(name, "a string", value)
    if not 0 < len(value) <= MAX_NAME_LENGTH:
        raise SessionReject(SessionRejectReason.VALUE_INCORRECT,
                            f"{name} must be 1 to {MAX_NAME_LENGTH} characters", name)


def _check_text(name: str, value: Any) -> None:
    if not isinstance(value, str):
        raise _fail_type(name, "a string", value)
    if len(value) > MAX_FREE_TEXT_LENGTH:
        raise SessionReject(SessionRejectReason.VALUE_INCORRECT, f"{name} is longer than {MAX_FREE_TEXT_LENGTH}",
                            name)


def _code_check(codes: tuple[str, ...]):
    def check(name: str, value: Any) -> None:
        if not isinstance(value, str):
            raise _fail_type(name, "a string code", value)
        if value not in codes:
            raise SessionReject(SessionRejectReason.VALUE_INCORRECT,
                                f"{name} {value!r} is not one of {', '.join(repr(c) for c in codes)}", name)
    return check


def _check_decimal(name: str, value: Any) -> None:
    """A plain positive decimal string; its precision is judged later, against the symbol."""
    if type(value) is str and len(value) <= MAX_DECIMAL_LENGTH and _PLAIN.fullmatch(value):
        if not value.strip("0."):
            raise SessionReject(SessionRejectReason.VALUE_INCORRECT, f"{name} must be greater than zero", name)
        if len(value.partition(".")[0].lstrip("0")) < _SAFE_WHOLE_DIGITS:
            return  # the common case, decided without common.fixedpoint
    try:
        _UNIT.count(value, what=name, allow_zero=True)
    except FixedPointError as exc:
        if exc.reason in (Refusal.TOO_MANY_DECIMALS, Refusal.NOT_A_MULTIPLE):
            pass  # a fine decimal; whether it fits the tick or lot is a rule of the symbol
        elif exc.reason in (Refusal.NEGATIVE, Refusal.OVERFLOW):
            raise SessionReject(SessionRejectReason.VALUE_INCORRECT, str(exc), name) from None
        else:
            raise SessionReject(SessionRejectReason.INCORRECT_DATA_FORMAT, str(exc), name) from None
    if not value.strip("0."):
        raise SessionReject(SessionRejectReason.VALUE_INCORRECT, f"{name} must be greater than zero", name)


def _check_positive_id_number(name: str, value: Any) -> None:
    """OrderID, Account: an integer or a string of decimal digits."""
    if isinstance(value, str):
        if not _DIGITS.fullmatch(value):
            raise SessionReject(SessionRejectReason.INCORRECT_DATA_FORMAT,
                                f"{name} {value!r} is not a decimal integer", name)
        value = int(value)
    elif not _is_int(value):
        raise _fail_type(name, "an integer or a string of digits", value)
    if not 0 <= value <= INT64_MAX:
        raise SessionReject(SessionRejectReason.VALUE_INCORRECT, f"{name} {value} is out of range", name)


def _check_raw_data(name: str, value: Any) -> None:
    if not isinstance(value, str):
        raise _fail_type(name, "a string", value)
    if not _HEX.fullmatch(value):
        raise SessionReject(SessionRejectReason.SIGNATURE_PROBLEM,
                            f"{name} must be {HEX_SIGNATURE_LENGTH} hex characters (HMAC-SHA256)", name)


def _check_heart_bt_int(name: str, value: Any) -> None:
    _check_int(name, value, 1, MAX_HEART_BT_INT)


def _check_encrypt_method(name: str, value: Any) -> None:
    _check_int(name, value, 0, 0)


def _check_time(name: str, value: Any) -> None:
    _check_int(name, value, 0, INT64_MAX)


FIELD_CHECKS = {
    F.SENDING_TIME: _check_time,
    F.TRANSACT_TIME: _check_time,
    F.USERNAME: _check_id,
    F.RAW_DATA: _check_raw_data,
    F.HEART_BT_INT: _check_heart_bt_int,
    F.ENCRYPT_METHOD: _check_encrypt_method,
    F.TEXT: _check_text,
    F.TEST_REQ_ID: _check_id,
    F.CL_ORD_ID: _check_id,
    F.ORIG_CL_ORD_ID: _check_id,
    F.MASS_STATUS_REQ_ID: _check_id,
    F.BALANCE_REQ_ID: _check_id,
    F.ADMIN_REQ_ID: _check_id,
    F.ORDER_ID: _check_positive_id_number,
    F.ACCOUNT: _check_positive_id_number,
    F.SYMBOL: _check_name,
    F.CURRENCY: _check_name,
    F.SIDE: _code_check(tuple(SIDES)),
    F.ORD_TYPE: _code_check(tuple(ORD_TYPES)),
    F.TIME_IN_FORCE: _code_check(tuple(TIMES_IN_FORCE)),
    F.EXEC_INST: _code_check((POST_ONLY_EXEC_INST,)),
    F.MASS_CANCEL_REQUEST_TYPE: _code_check((MASS_CANCEL_SYMBOL, MASS_CANCEL_ALL)),
    F.MASS_STATUS_REQ_TYPE: _code_check((MASS_STATUS_SYMBOL, MASS_STATUS_ALL)),
    F.ADMIN_ACTION: _code_check(ADMIN_ACTIONS),
    F.PRICE: _check_decimal,
    F.ORDER_QTY: _check_decimal,
    F.CASH_ORDER_QTY: _check_decimal,
    F.AMOUNT: _check_decimal,
}


# --- the header --------------------------------------------------------------------------------------


def read_msg_type(message: Mapping[str, Any]) -> str:
    """The MsgType of a decoded message, refused if missing, not text, or not one a client sends."""
    msg_type = message.get(F.MSG_TYPE)
    if msg_type is None:
        raise SessionReject(SessionRejectReason.REQUIRED_TAG_MISSING, "MsgType is required", F.MSG_TYPE)
    if not isinstance(msg_type, str):
        raise _fail_type(F.MSG_TYPE, "a string", msg_type)
    if msg_type not in SPECS:
        known = "a message type the gateway sends" if msg_type in KNOWN_TYPES else "not a known message type"
        raise SessionReject(SessionRejectReason.INVALID_MSG_TYPE, f"MsgType {msg_type!r} is {known}",
                            F.MSG_TYPE)
    return msg_type


def read_msg_seq_num(message: Mapping[str, Any]) -> int:
    seq = message.get(F.MSG_SEQ_NUM)
    if seq is None:
        raise SessionReject(SessionRejectReason.REQUIRED_TAG_MISSING, "MsgSeqNum is required",
                            F.MSG_SEQ_NUM)
    _check_int(F.MSG_SEQ_NUM, seq, 1, INT64_MAX)
    return seq


# --- whole messages ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Context:
    """What validation needs to know about the configuration and the session."""

    config: ExchangeConfig
    symbols: Mapping[str, SymbolConfig]
    assets: Mapping[str, AssetConfig]
    account: int | None  # the session's account (None for an admin session)
    admin: bool = False

    @classmethod
    def of(cls, config: ExchangeConfig, *, account: int | None, admin: bool = False) -> "Context":
        return cls(config, {s.name: s for s in config.symbols}, {a.name: a for a in config.assets}, account, admin)

    def for_session(self, *, account: int | None, admin: bool) -> "Context":
        return Context(self.config, self.symbols, self.assets, account, admin)


def check_structure(msg_type: str, message: Mapping[str, Any]) -> None:
    """Fields the type does not have, required fields missing, then each field's type and code."""
    spec = SPECS[msg_type]
    allowed = spec.fields
    for name in message:
        if name not in allowed:
            raise SessionReject(SessionRejectReason.INVALID_TAG,
                                f"{name} is not a field of MsgType {msg_type}", name)
    for name in spec.required:
        if name not in message:
            raise SessionReject(SessionRejectReason.REQUIRED_TAG_MISSING, f"{name} is required", name)
    for name, value in message.items():
        check = FIELD_CHECKS.get(name)
        if check is not None:
            check(name, value)


def validate(message: Mapping[str, Any], context: Context, msg_type: str | None = None) -> Request:
    """The request a message makes, or SessionReject / BusinessReject. MsgType and MsgSeqNum are read
    by the session first (:func:`read_msg_type`, :func:`read_msg_seq_num`)."""
    if msg_type is None:
        msg_type = read_msg_type(message)
    check_structure(msg_type, message)
    if msg_type in TRADING_TYPES or msg_type == M.BALANCE_REQUEST:
        _check_account(message, context)
    return _BUILDERS[msg_type](message, context)


def _check_account(message: Mapping[str, Any], context: Context) -> None:
    """The account is the session's: an Account field may only repeat it (admins may name any)."""
    value = message.get(F.ACCOUNT)
    if value is None or context.admin:
        return
    if int(value) != context.account:
        raise SessionReject(SessionRejectReason.COMP_ID_PROBLEM,
                            f"Account {value} is not the account of this session", F.ACCOUNT)


def _symbol(message: Mapping[str, Any], context: Context) -> SymbolConfig | None:
    name = message.get(F.SYMBOL)
    if name is None:
        return None
    symbol = context.symbols.get(name)
    if symbol is None:
        raise BusinessReject(RejectReason.UNKNOWN_SYMBOL.name, f"unknown symbol {name!r}")
    return symbol


def _count(text: str, step: Step, what: str, reason: str) -> int:
    """Whole steps in an already well-formed decimal; a precision problem is ``reason``."""
    try:
        count = step.count(text, what=what)
    except FixedPointError as exc:
        if exc.reason is Refusal.OVERFLOW:
            raise BusinessReject(reason, f"{what} {text} is too large") from None
        raise BusinessReject(reason, str(exc)) from None
    return count


def _order_id(message: Mapping[str, Any]) -> int:
    value = message.get(F.ORDER_ID)
    if value is None:
        return 0
    order_id = int(value)
    if order_id <= 0:
        raise SessionReject(SessionRejectReason.VALUE_INCORRECT, "OrderID must be positive", F.ORDER_ID)
    return order_id


def _target(message: Mapping[str, Any]) -> tuple[str, int]:
    """(OrigClOrdID or "", OrderID or 0) of a cancel or replace; one of them is required."""
    orig = message.get(F.ORIG_CL_ORD_ID, "")
    order_id = _order_id(message)
    if not orig and not order_id:
        raise SessionReject(SessionRejectReason.REQUIRED_TAG_MISSING,
                            "OrigClOrdID or OrderID is required", F.ORIG_CL_ORD_ID)
    if orig and orig == message[F.CL_ORD_ID]:
        raise SessionReject(SessionRejectReason.VALUE_INCORRECT,
                            "ClOrdID must be new: it equals OrigClOrdID", F.CL_ORD_ID)
    return orig, order_id


def _quantity(text: str, symbol: SymbolConfig) -> int:
    """Lots of a quantity, within the symbol's [min_qty, max_qty]."""
    reason = RejectReason.INVALID_QUANTITY.name
    lots = _count(text, symbol.lot, "OrderQty", reason)
    if not symbol.min_qty_lots <= lots <= symbol.max_qty_lots:
        raise BusinessReject(reason, f"OrderQty {text} is outside {symbol.lot.format(symbol.min_qty_lots)}.."
                                     f"{symbol.lot.format(symbol.max_qty_lots)}")
    return lots


def _price(text: str, symbol: SymbolConfig) -> int:
    """Ticks of a limit price, inside the symbol's band."""
    ticks = _count(text, symbol.tick, "Price", INVALID_PRICE_INCREMENT)
    if not symbol.min_price_ticks <= ticks <= symbol.max_price_ticks:
        raise BusinessReject(RejectReason.PRICE_OUT_OF_BAND.name,
                             f"Price {text} is outside {symbol.tick.format(symbol.min_price_ticks)}.."
                             f"{symbol.tick.format(symbol.max_price_ticks)}")
    return ticks


def _min_notional(notional: int, symbol: SymbolConfig, what: str) -> None:
    if notional < symbol.min_notional_units:
        raise BusinessReject(RejectReason.BELOW_MIN_NOTIONAL.name,
                             f"{what} is below the minimum of {symbol.quote.unit.format(symbol.min_notional_units)} "
                             f"{symbol.quote.name}")


def _logon(message: Mapping[str, Any], context: Context) -> Logon:
    return Logon(key_id=message[F.USERNAME], signature=message[F.RAW_DATA].lower(),
                 sending_time=message[F.SENDING_TIME], msg_seq_num=message[F.MSG_SEQ_NUM],
                 heart_bt_int=message.get(F.HEART_BT_INT))


def _logout(message: Mapping[str, Any], context: Context) -> Logout:
    return Logout(message.get(F.TEXT))


def _heartbeat(message: Mapping[str, Any], context: Context) -> Heartbeat:
    return Heartbeat(message.get(F.TEST_REQ_ID))


def _test_request(message: Mapping[str, Any], context: Context) -> TestRequest:
    return TestRequest(message[F.TEST_REQ_ID])


def _new_order(message: Mapping[str, Any], context: Context) -> NewOrder:
    order_type = ORD_TYPES[message[F.ORD_TYPE]]
    side = SIDES[message[F.SIDE]]
    price_text = message.get(F.PRICE)
    qty_text = message.get(F.ORDER_QTY)
    cash_text = message.get(F.CASH_ORDER_QTY)
    # Field combinations (structure).
    if order_type is OrderType.LIMIT and price_text is None:
        raise SessionReject(SessionRejectReason.REQUIRED_TAG_MISSING, "a limit order needs a Price", F.PRICE)
    if order_type is OrderType.MARKET and price_text is not None:
        raise SessionReject(SessionRejectReason.VALUE_INCORRECT, "a market order has no Price", F.PRICE)
    if qty_text is None and cash_text is None:
        raise SessionReject(SessionRejectReason.REQUIRED_TAG_MISSING,
                            "OrderQty (or CashOrderQty for a market buy) is required", F.ORDER_QTY)
    if qty_text is not None and cash_text is not None:
        raise SessionReject(SessionRejectReason.VALUE_INCORRECT, "give OrderQty or CashOrderQty, not both",
                            F.CASH_ORDER_QTY)
    # Rules, in the engine's order: symbol, time in force, quantity, price, notional.
    symbol = _symbol(message, context)
    tif_code = message.get(F.TIME_IN_FORCE)
    post_only = F.EXEC_INST in message
    invalid_tif = RejectReason.INVALID_TIME_IN_FORCE.name
    if order_type is OrderType.MARKET:
        if post_only:
            raise BusinessReject(invalid_tif, "post only (ExecInst 6) is for limit orders")
        if tif_code is not None and TIMES_IN_FORCE[tif_code] is not TimeInForce.IOC:
            raise BusinessReject(invalid_tif, "a market order is immediate or cancel (TimeInForce 3)")
        tif = TimeInForce.IOC
    else:
        tif = TIMES_IN_FORCE[tif_code] if tif_code is not None else TimeInForce.GTC
        if post_only:
            if tif is not TimeInForce.GTC:
                raise BusinessReject(invalid_tif, "a post-only order rests: TimeInForce must be 1 (GTC)")
            tif = TimeInForce.POST_ONLY
    if cash_text is not None:
        if side is Side.SELL:
            raise BusinessReject(RejectReason.INVALID_ORDER_TYPE.name, "CashOrderQty is for market buys only")
        if order_type is OrderType.LIMIT:
            raise BusinessReject(RejectReason.INVALID_QUANTITY.name, "CashOrderQty is for market buys only")
        amount = _count(cash_text, symbol.quote.unit, "CashOrderQty", RejectReason.INVALID_AMOUNT.name)
        _min_notional(amount, symbol, f"CashOrderQty {cash_text}")
        return NewOrder(message[F.CL_ORD_ID], symbol, side, order_type, tif, 0, 0, amount)
    qty = _quantity(qty_text, symbol)
    price = 0
    if order_type is OrderType.LIMIT:
        price = _price(price_text, symbol)
        _min_notional(price * qty * symbol.quote_units_per_tick_lot, symbol, "Price x OrderQty")
    return NewOrder(message[F.CL_ORD_ID], symbol, side, order_type, tif, price, qty, 0)


def _cancel(message: Mapping[str, Any], context: Context) -> CancelOrder:
    orig, order_id = _target(message)
    return CancelOrder(message[F.CL_ORD_ID], orig, order_id, _symbol(message, context))


def _replace(message: Mapping[str, Any], context: Context) -> ReplaceOrder:
    orig, order_id = _target(message)
    symbol = _symbol(message, context)
    ord_type = message.get(F.ORD_TYPE)
    if ord_type is not None and ORD_TYPES[ord_type] is not OrderType.LIMIT:
        raise BusinessReject(RejectReason.INVALID_ORDER_TYPE.name, "only a limit order can be replaced")
    qty = _quantity(message[F.ORDER_QTY], symbol)
    price = _price(message[F.PRICE], symbol)
    _min_notional(price * qty * symbol.quote_units_per_tick_lot, symbol, "Price x OrderQty")
    return ReplaceOrder(message[F.CL_ORD_ID], orig, order_id, symbol, price, qty)


def _mass_cancel(message: Mapping[str, Any], context: Context) -> MassCancel:
    request_type = message[F.MASS_CANCEL_REQUEST_TYPE]
    has_symbol = F.SYMBOL in message
    if request_type == MASS_CANCEL_SYMBOL and not has_symbol:
        raise SessionReject(SessionRejectReason.REQUIRED_TAG_MISSING,
                            "MassCancelRequestType 1 needs a Symbol", F.SYMBOL)
    if request_type == MASS_CANCEL_ALL and has_symbol:
        raise SessionReject(SessionRejectReason.VALUE_INCORRECT,
                            "MassCancelRequestType 7 (all orders) takes no Symbol", F.SYMBOL)
    return MassCancel(message[F.CL_ORD_ID], _symbol(message, context))


def _query_symbol(message: Mapping[str, Any], context: Context) -> SymbolConfig | None:
    """A query's Symbol: an unknown one is a bad value of the query (Reject), not an order's rule."""
    try:
        return _symbol(message, context)
    except BusinessReject as exc:
        raise SessionReject(SessionRejectReason.VALUE_INCORRECT, exc.text, F.SYMBOL) from None


def _order_status(message: Mapping[str, Any], context: Context) -> OrderStatus:
    clordid = message.get(F.CL_ORD_ID)
    order_id = _order_id(message)
    if clordid is None and not order_id:
        raise SessionReject(SessionRejectReason.REQUIRED_TAG_MISSING, "ClOrdID or OrderID is required",
                            F.CL_ORD_ID)
    return OrderStatus(clordid, order_id, _query_symbol(message, context))


def _mass_status(message: Mapping[str, Any], context: Context) -> MassStatus:
    request_type = message.get(F.MASS_STATUS_REQ_TYPE)
    has_symbol = F.SYMBOL in message
    if request_type == MASS_STATUS_SYMBOL and not has_symbol:
        raise SessionReject(SessionRejectReason.REQUIRED_TAG_MISSING,
                            "MassStatusReqType 1 needs a Symbol", F.SYMBOL)
    if request_type == MASS_STATUS_ALL and has_symbol:
        raise SessionReject(SessionRejectReason.VALUE_INCORRECT,
                            "MassStatusReqType 7 (all orders) takes no Symbol", F.SYMBOL)
    return MassStatus(message[F.MASS_STATUS_REQ_ID], _query_symbol(message, context))


def _account_number(message: Mapping[str, Any], context: Context) -> int:
    account = int(message[F.ACCOUNT])
    if account >= context.config.capacity.max_accounts:
        raise SessionReject(SessionRejectReason.VALUE_INCORRECT,
                            f"Account {account} is outside 0..{context.config.capacity.max_accounts - 1}",
                            F.ACCOUNT)
    return account


def _balance_request(message: Mapping[str, Any], context: Context) -> BalanceRequest:
    account = None
    if context.admin:
        if F.ACCOUNT not in message:
            raise SessionReject(SessionRejectReason.REQUIRED_TAG_MISSING,
                                "an admin session names the Account", F.ACCOUNT)
        account = _account_number(message, context)
    currency = None
    name = message.get(F.CURRENCY)
    if name is not None:
        currency = context.assets.get(name)
        if currency is None:
            raise SessionReject(SessionRejectReason.VALUE_INCORRECT, f"unknown currency {name!r}",
                                F.CURRENCY)
    return BalanceRequest(message[F.BALANCE_REQ_ID], account, currency)


def _admin_request(message: Mapping[str, Any], context: Context) -> AdminRequest:
    action = message[F.ADMIN_ACTION]
    req_id = message[F.ADMIN_REQ_ID]
    if action == ADMIN_CREATE_ACCOUNT:
        for name in (F.ACCOUNT, F.CURRENCY, F.AMOUNT):
            if name in message:
                raise SessionReject(SessionRejectReason.VALUE_INCORRECT,
                                    f"create_account takes no {name}", name)
        return AdminRequest(req_id, action, -1, None, 0)
    for name in (F.ACCOUNT, F.CURRENCY, F.AMOUNT):
        if name not in message:
            raise SessionReject(SessionRejectReason.REQUIRED_TAG_MISSING, f"{action} needs {name}", name)
    account = _account_number(message, context)
    name = message[F.CURRENCY]
    asset = context.assets.get(name)
    if asset is None:
        raise BusinessReject(RejectReason.UNKNOWN_ASSET.name, f"unknown currency {name!r}")
    amount = _count(message[F.AMOUNT], asset.unit, "Amount", RejectReason.INVALID_AMOUNT.name)
    return AdminRequest(req_id, action, account, asset, amount)


_BUILDERS = {
    M.LOGON: _logon,
    M.LOGOUT: _logout,
    M.HEARTBEAT: _heartbeat,
    M.TEST_REQUEST: _test_request,
    M.NEW_ORDER_SINGLE: _new_order,
    M.ORDER_CANCEL_REQUEST: _cancel,
    M.ORDER_CANCEL_REPLACE_REQUEST: _replace,
    M.ORDER_MASS_CANCEL_REQUEST: _mass_cancel,
    M.ORDER_STATUS_REQUEST: _order_status,
    M.ORDER_MASS_STATUS_REQUEST: _mass_status,
    M.BALANCE_REQUEST: _balance_request,
    M.ADMIN_REQUEST: _admin_request,
}
