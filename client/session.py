"""The client side of the FIX-like protocol as pure state: messages in, messages out, no sockets.

:class:`ClientSession` numbers every message it builds (MsgSeqNum), signs the Logon, makes ClOrdIDs,
and reads what the gateway sends back (:meth:`ClientSession.receive`), keeping three things:

- whether the session is logged on, and the HeartBtInt the gateway asked for;
- the automatic answers owed to the gateway (a Heartbeat for each TestRequest), taken with
  :meth:`ClientSession.data_to_send`;
- the order messages sent but not yet acknowledged (:attr:`ClientSession.unacknowledged`, by
  ClOrdID). An order message is acknowledged by the first ExecutionReport, OrderCancelReject or
  OrderMassCancelReport that names its ClOrdID, or by a session Reject whose RefSeqNum is its
  MsgSeqNum. After a reconnect, what is still unacknowledged may have been lost: send it again with
  :meth:`ClientSession.resend` (same ClOrdID, so the exchange gives the original outcome if it had it).

The I/O shells (``client.sync``, ``client.aio``) own a socket and call into this; tests drive it with
plain dicts. docs/protocol.md is the contract; ``common.protocol`` holds its vocabulary.
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from common.protocol import (
    ADMIN_ACTIONS,
    ADMIN_CREATE_ACCOUNT,
    MASS_CANCEL_ALL,
    MASS_CANCEL_REJECTED,
    MASS_CANCEL_SYMBOL,
    MASS_STATUS_ALL,
    MASS_STATUS_SYMBOL,
    ORD_TYPE_CODES,
    POST_ONLY_EXEC_INST,
    STATUS_OK,
    ExecType,
    Field,
    MsgType,
    OrdStatus,
    SessionRejectReason,
    decode,
    sign_logon,
)
from common.protocol import SIDE_CODES as PROTOCOL_SIDE_CODES
from common.protocol import TIF_CODES as PROTOCOL_TIF_CODES
from common.protocol import secret_bytes as protocol_secret_bytes
from common.records import OrderType, Side, TimeInForce

# Plain names for FIX codes, the form the library's callers use.
SIDE_CODES = {"buy": PROTOCOL_SIDE_CODES[Side.BUY], "sell": PROTOCOL_SIDE_CODES[Side.SELL]}
TIF_CODES = {"gtc": PROTOCOL_TIF_CODES[TimeInForce.GTC], "ioc": PROTOCOL_TIF_CODES[TimeInForce.IOC],
             "fok": PROTOCOL_TIF_CODES[TimeInForce.FOK]}
ORD_TYPE_MARKET = ORD_TYPE_CODES[OrderType.MARKET]
ORD_TYPE_LIMIT = ORD_TYPE_CODES[OrderType.LIMIT]

EXEC_ID_MEMORY = 100_000  # ExecIDs remembered to recognise a report the exchange sends again

# Replies that acknowledge an order message by naming its ClOrdID.
ACKNOWLEDGING_REPLIES = frozenset(
    {
        MsgType.EXECUTION_REPORT.value,
        MsgType.ORDER_CANCEL_REJECT.value,
        MsgType.ORDER_MASS_CANCEL_REPORT.value,
    }
)

# Session upkeep, answered by the library and not handed to the application.
SESSION_LEVEL = frozenset({MsgType.HEARTBEAT.value, MsgType.TEST_REQUEST.value})

_MSG_TYPE_NAMES = {t.value: t.name for t in MsgType}
_EXEC_TYPE_NAMES = {t.value: t.name for t in ExecType}
_ORD_STATUS_NAMES = {s.value: s.name for s in OrdStatus}
_SIDE_NAMES = {code: name for name, code in SIDE_CODES.items()}


class SessionUsageError(ValueError):
    """A message the caller asked for cannot be built (an unknown side, a limit order without price...)."""


@dataclass(frozen=True, slots=True)
class Incoming:
    """One message from the gateway.

    ``fields`` is the decoded map, unchanged. ``clordid`` is the ClOrdID it is about: its own ClOrdID
    field, or, for a session Reject (3), the ClOrdID of the order message its RefSeqNum names (if
    this session sent one). ``ref`` is the request id a query answer carries (MassStatusReqID,
    BalanceReqID, AdminReqID), or None.
    """

    fields: Mapping[str, Any]
    clordid: str | None = None
    ref: str | None = None
    # A fill (ExecutionReport, ExecType F) marked PossResend whose ExecID this session has seen: the
    # exchange sends again what it may have sent before (after its engine restarted); the clients do
    # not deliver a fill twice. Other reports sent again (the original outcome of an order sent again)
    # are delivered, marked PossResend.
    duplicate: bool = False

    @property
    def msg_type(self) -> str:
        return str(self.fields.get(Field.MSG_TYPE.value, ""))

    @property
    def text(self) -> str | None:
        value = self.fields.get(Field.TEXT.value)
        return None if value is None else str(value)

    def get(self, name: Field | str, default: Any = None) -> Any:
        key = name.value if isinstance(name, Field) else name
        return self.fields.get(key, default)

    def __getitem__(self, name: Field | str) -> Any:
        key = name.value if isinstance(name, Field) else name
        return self.fields[key]

    def __contains__(self, name: object) -> bool:
        key = name.value if isinstance(name, Field) else name
        return key in self.fields

    def is_type(self, msg_type: MsgType) -> bool:
        return self.msg_type == msg_type.value

    @property
    def is_session_level(self) -> bool:
        """A Heartbeat or TestRequest: the client library handles these; applications never see them
        unless they wait for one explicitly (``wait_for``)."""
        return self.msg_type in SESSION_LEVEL

    @property
    def exec_type(self) -> str | None:
        return self.fields.get(Field.EXEC_TYPE.value)

    @property
    def is_reject(self) -> bool:
        """A refusal: a session Reject, a rejected order, a cancel reject, a refused admin request,
        a rejected mass cancel, or a Logout that carries a reason while a request was outstanding."""
        msg_type = self.msg_type
        if msg_type in (MsgType.REJECT.value, MsgType.ORDER_CANCEL_REJECT.value):
            return True
        if msg_type == MsgType.EXECUTION_REPORT.value:
            return self.exec_type == ExecType.REJECTED.value
        if msg_type == MsgType.ADMIN_RESPONSE.value:
            return self.fields.get(Field.STATUS.value) != STATUS_OK
        if msg_type == MsgType.ORDER_MASS_CANCEL_REPORT.value:
            return str(self.fields.get(Field.MASS_CANCEL_RESPONSE.value, "")) == MASS_CANCEL_REJECTED
        return False

    def describe(self) -> str:
        """One readable line (for the command-line tool and logs)."""
        return describe(self.fields)


def describe(fields: Mapping[str, Any]) -> str:
    """One readable line for a message map: its type by name, then its fields with codes named."""
    msg_type = str(fields.get(Field.MSG_TYPE.value, "?"))
    parts = [_MSG_TYPE_NAMES.get(msg_type, f"MsgType={msg_type}")]
    for key, value in fields.items():
        if key in (Field.MSG_TYPE.value, Field.MSG_SEQ_NUM.value, Field.SENDING_TIME.value):
            continue
        if key == Field.EXEC_TYPE.value:
            value = _EXEC_TYPE_NAMES.get(value, value)
        elif key == Field.ORD_STATUS.value:
            value = _ORD_STATUS_NAMES.get(value, value)
        elif key == Field.SIDE.value:
            value = _SIDE_NAMES.get(value, value)
        elif key == Field.BALANCES.value and isinstance(value, list):
            value = ", ".join(_describe_balance(b) for b in value)
            parts.append(f"{key}=[{value}]")
            continue
        elif isinstance(value, str) and (" " in value or value == ""):
            value = repr(value)
        parts.append(f"{key}={value}")
    return " ".join(parts)


def _describe_balance(balance: Any) -> str:
    if not isinstance(balance, Mapping):
        return repr(balance)
    return (f"{balance.get(Field.CURRENCY.value)} available {balance.get(Field.AVAILABLE.value)} "
            f"frozen {balance.get(Field.FROZEN.value)}")


@dataclass(slots=True)
class Pending:
    """An order message sent and not yet acknowledged."""

    clordid: str
    msg_seq_num: int
    message: dict[str, Any]


@dataclass(slots=True)
class _OrderMemory:
    """What this session knows of an order it placed, so that an amend can repeat what is unchanged."""

    symbol: str
    side: str
    price: str | None
    qty: str | None


class ClientSession:
    """Protocol state of one client connection (see the module docstring).

    ``key_id`` and ``secret`` are the account's API credentials: the secret as the 64 hex characters
    the exchange hands out (the HMAC key is the bytes they spell), or as those bytes.
    ``clordid_prefix`` starts every ClOrdID this session makes (default: 12 random hex digits, so
    that two runs of a program never reuse a ClOrdID: the exchange remembers them). ``clock`` gives
    SendingTime in nanoseconds since the epoch (default ``time.time_ns``). ``remember_orders``
    (default 100,000) bounds how many orders' terms it keeps for amends (the oldest are forgotten).
    """

    def __init__(
        self,
        key_id: str,
        secret: str | bytes,
        *,
        clordid_prefix: str | None = None,
        clock: Callable[[], int] = time.time_ns,
        remember_orders: int = 100_000,
    ):
        if not key_id:
            raise SessionUsageError("a key id is required")
        if not secret:
            raise SessionUsageError("a secret is required")
        self.key_id = key_id
        self._secret = secret_bytes(secret)
        self.clordid_prefix = clordid_prefix if clordid_prefix is not None else secrets.token_hex(6)
        self._clock = clock
        self._seq = itertools.count(1)
        self._ids = itertools.count(1)
        self.last_seq_num = 0
        self.logged_on = False
        self.heartbeat_s: int | None = None  # HeartBtInt from the gateway's Logon reply
        self.account: int | None = None  # the Account the gateway's Logon reply names, if any
        self.logout_text: str | None = None  # the gateway's reason when it logged us out
        self.unacknowledged: dict[str, Pending] = {}
        self._pending_by_seq: dict[int, str] = {}
        self._outbox: list[dict[str, Any]] = []
        self._exec_ids: OrderedDict[str, None] = OrderedDict()  # the newest EXEC_ID_MEMORY ExecIDs seen
        self._orders: dict[str, _OrderMemory] = {}
        self._remember_orders = remember_orders

    # --- identifiers and framing ----------------------------------------------------------------

    def next_clordid(self) -> str:
        """A fresh ClOrdID: the session's prefix and a counter (``"9f2c01ab77e4-17"``)."""
        return f"{self.clordid_prefix}-{next(self._ids)}"

    def new_request_id(self) -> str:
        """A fresh id for a query or admin request (MassStatusReqID, BalanceReqID, AdminReqID)."""
        return f"{self.clordid_prefix}-r{next(self._ids)}"

    def _stamp(self, msg_type: MsgType, body: dict[str, Any]) -> dict[str, Any]:
        seq = next(self._seq)
        self.last_seq_num = seq
        message = {Field.MSG_TYPE.value: msg_type.value, Field.MSG_SEQ_NUM.value: seq,
                   Field.SENDING_TIME.value: self._clock()}
        message.update(body)
        return message

    def _track(self, message: dict[str, Any]) -> dict[str, Any]:
        clordid = message[Field.CL_ORD_ID.value]
        seq = message[Field.MSG_SEQ_NUM.value]
        self.unacknowledged[clordid] = Pending(clordid, seq, message)
        self._pending_by_seq[seq] = clordid
        return message

    # --- session messages -----------------------------------------------------------------------

    def logon(self, *, heartbeat_s: int | None = None) -> dict[str, Any]:
        """Logon (A): Username = key id, RawData = HMAC-SHA256 over SendingTime|MsgSeqNum|key id."""
        message = self._stamp(MsgType.LOGON, {Field.USERNAME.value: self.key_id})
        message[Field.RAW_DATA.value] = sign_logon(
            self._secret, message[Field.SENDING_TIME.value], message[Field.MSG_SEQ_NUM.value], self.key_id
        )
        if heartbeat_s is not None:
            message[Field.HEART_BT_INT.value] = int(heartbeat_s)
        return message

    def heartbeat(self, *, test_req_id: str | None = None) -> dict[str, Any]:
        """Heartbeat (0); with ``test_req_id`` it answers a TestRequest."""
        body = {} if test_req_id is None else {Field.TEST_REQ_ID.value: test_req_id}
        return self._stamp(MsgType.HEARTBEAT, body)

    def test_request(self, *, test_req_id: str | None = None) -> dict[str, Any]:
        """TestRequest (1): asks the gateway for a Heartbeat carrying ``test_req_id``."""
        return self._stamp(MsgType.TEST_REQUEST, {Field.TEST_REQ_ID.value: test_req_id or self.new_request_id()})

    def logout(self, *, text: str | None = None) -> dict[str, Any]:
        """Logout (5)."""
        return self._stamp(MsgType.LOGOUT, {} if text is None else {Field.TEXT.value: text})

    # --- orders ---------------------------------------------------------------------------------

    def new_order(
        self,
        symbol: str,
        side: str,
        *,
        qty: str | None = None,
        price: str | None = None,
        tif: str | None = None,
        post_only: bool = False,
        cash_qty: str | None = None,
        clordid: str | None = None,
    ) -> dict[str, Any]:
        """NewOrderSingle (D).

        ``side`` is "buy" or "sell"; ``qty`` the base quantity and ``price`` the limit, as decimal
        strings; no price makes a market order. ``tif`` is "gtc", "ioc" or "fok" (default "gtc" for a
        limit order, "ioc" for a market order). ``post_only`` adds ExecInst 6 (a limit order that
        never takes). ``cash_qty`` instead of ``qty`` makes a market buy spend that quote amount.
        """
        if side not in SIDE_CODES:
            raise SessionUsageError(f"side must be 'buy' or 'sell', not {side!r}")
        if (qty is None) == (cash_qty is None):
            raise SessionUsageError("give exactly one of qty and cash_qty")
        if cash_qty is not None and (price is not None or side != "buy"):
            raise SessionUsageError("cash_qty is for market buys only")
        if post_only and price is None:
            raise SessionUsageError("a post-only order needs a price")
        if tif is None:
            tif = "gtc" if price is not None else "ioc"
        if tif not in TIF_CODES:
            raise SessionUsageError(f"tif must be one of {', '.join(TIF_CODES)}, not {tif!r}")
        clordid = clordid or self.next_clordid()
        body: dict[str, Any] = {
            Field.CL_ORD_ID.value: clordid,
            Field.SYMBOL.value: symbol,
            Field.SIDE.value: SIDE_CODES[side],
            Field.ORD_TYPE.value: ORD_TYPE_LIMIT if price is not None else ORD_TYPE_MARKET,
            Field.TIME_IN_FORCE.value: TIF_CODES[tif],
        }
        if price is not None:
            body[Field.PRICE.value] = _decimal(price, "price")
        if qty is not None:
            body[Field.ORDER_QTY.value] = _decimal(qty, "qty")
        else:
            body[Field.CASH_ORDER_QTY.value] = _decimal(cash_qty, "cash_qty")
        if post_only:
            body[Field.EXEC_INST.value] = POST_ONLY_EXEC_INST
        self._remember(clordid, _OrderMemory(symbol, body[Field.SIDE.value], body.get(Field.PRICE.value),
                                             body.get(Field.ORDER_QTY.value)))
        return self._track(self._stamp(MsgType.NEW_ORDER_SINGLE, body))

    def cancel(
        self,
        orig_clordid: str | None = None,
        *,
        order_id: str | int | None = None,
        symbol: str | None = None,
        clordid: str | None = None,
    ) -> dict[str, Any]:
        """OrderCancelRequest (F) for the order named by ``orig_clordid`` or ``order_id``."""
        body = self._target(orig_clordid, order_id, symbol, clordid)
        return self._track(self._stamp(MsgType.ORDER_CANCEL_REQUEST, body))

    def replace(
        self,
        orig_clordid: str | None = None,
        *,
        order_id: str | int | None = None,
        price: str | None = None,
        qty: str | None = None,
        symbol: str | None = None,
        side: str | None = None,
        clordid: str | None = None,
    ) -> dict[str, Any]:
        """OrderCancelReplaceRequest (G): a new price and/or total quantity for an open order.

        What is not given is repeated from the order as this session placed or last amended it; an
        order this session does not know needs ``symbol``, ``price`` and ``qty`` (and ``side``, which
        the message carries for FIX's sake, defaults to what is known).
        """
        if price is None and qty is None:
            raise SessionUsageError("an amend changes the price, the quantity, or both")
        known = self._orders.get(orig_clordid) if orig_clordid is not None else None
        symbol = symbol or (known.symbol if known else None)
        if price is None and known is not None:
            price = known.price
        if qty is None and known is not None:
            qty = known.qty
        if symbol is None or price is None or qty is None:
            raise SessionUsageError("this session did not place that order: give symbol, price and qty")
        body = self._target(orig_clordid, order_id, symbol, clordid)
        side_code = SIDE_CODES.get(side) if side is not None else (known.side if known else None)
        if side is not None and side_code is None:
            raise SessionUsageError(f"side must be 'buy' or 'sell', not {side!r}")
        if side_code is not None:
            body[Field.SIDE.value] = side_code
        body[Field.ORD_TYPE.value] = ORD_TYPE_LIMIT
        body[Field.PRICE.value] = _decimal(price, "price")
        body[Field.ORDER_QTY.value] = _decimal(qty, "qty")
        self._remember(body[Field.CL_ORD_ID.value], _OrderMemory(symbol, side_code or "", body[Field.PRICE.value],
                                                                  body[Field.ORDER_QTY.value]))
        return self._track(self._stamp(MsgType.ORDER_CANCEL_REPLACE_REQUEST, body))

    def knows(self, clordid: str | None) -> bool:
        """Whether this session placed (or last amended) the order with this ClOrdID and remembers it."""
        return clordid is not None and clordid in self._orders

    def mass_cancel(self, *, symbol: str | None = None, clordid: str | None = None) -> dict[str, Any]:
        """OrderMassCancelRequest (q): every open order of the account, or of one symbol."""
        body: dict[str, Any] = {Field.CL_ORD_ID.value: clordid or self.next_clordid()}
        if symbol is None:
            body[Field.MASS_CANCEL_REQUEST_TYPE.value] = MASS_CANCEL_ALL
        else:
            body[Field.MASS_CANCEL_REQUEST_TYPE.value] = MASS_CANCEL_SYMBOL
            body[Field.SYMBOL.value] = symbol
        return self._track(self._stamp(MsgType.ORDER_MASS_CANCEL_REQUEST, body))

    def _target(self, orig_clordid: str | None, order_id: str | int | None, symbol: str | None,
                clordid: str | None) -> dict[str, Any]:
        if (orig_clordid is None) == (order_id is None):
            raise SessionUsageError("name the order by exactly one of orig_clordid and order_id")
        body: dict[str, Any] = {Field.CL_ORD_ID.value: clordid or self.next_clordid()}
        if orig_clordid is not None:
            body[Field.ORIG_CL_ORD_ID.value] = orig_clordid
            known = self._orders.get(orig_clordid)
            symbol = symbol or (known.symbol if known else None)
        else:
            body[Field.ORDER_ID.value] = str(order_id)
        if symbol is not None:
            body[Field.SYMBOL.value] = symbol
        return body

    def _remember(self, clordid: str, memory: _OrderMemory) -> None:
        if len(self._orders) >= self._remember_orders:
            self._orders.pop(next(iter(self._orders)))  # the oldest first: dicts keep insertion order
        self._orders[clordid] = memory

    # --- queries and admin ----------------------------------------------------------------------

    def order_status(self, clordid: str | None = None, *, order_id: str | int | None = None,
                     symbol: str | None = None) -> dict[str, Any]:
        """OrderStatusRequest (H) for one order, by ClOrdID or OrderID."""
        if (clordid is None) == (order_id is None):
            raise SessionUsageError("name the order by exactly one of clordid and order_id")
        body: dict[str, Any] = {}
        if clordid is not None:
            body[Field.CL_ORD_ID.value] = clordid
            known = self._orders.get(clordid)
            symbol = symbol or (known.symbol if known else None)
        else:
            body[Field.ORDER_ID.value] = str(order_id)
        if symbol is not None:
            body[Field.SYMBOL.value] = symbol
        return self._stamp(MsgType.ORDER_STATUS_REQUEST, body)

    def mass_status(self, *, symbol: str | None = None, request_id: str | None = None) -> dict[str, Any]:
        """OrderMassStatusRequest (AF): a report per open order, the last with LastRptRequested."""
        body: dict[str, Any] = {Field.MASS_STATUS_REQ_ID.value: request_id or self.new_request_id()}
        if symbol is None:
            body[Field.MASS_STATUS_REQ_TYPE.value] = MASS_STATUS_ALL
        else:
            body[Field.MASS_STATUS_REQ_TYPE.value] = MASS_STATUS_SYMBOL
            body[Field.SYMBOL.value] = symbol
        return self._stamp(MsgType.ORDER_MASS_STATUS_REQUEST, body)

    def balance_request(self, *, account: int | None = None, currency: str | None = None,
                        request_id: str | None = None) -> dict[str, Any]:
        """BalanceRequest (UB): answered by one BalanceReport (UP). A trading session asks for its own
        account; an admin session names ``account``. ``currency`` narrows it to one asset."""
        body: dict[str, Any] = {Field.BALANCE_REQ_ID.value: request_id or self.new_request_id()}
        if account is not None:
            body[Field.ACCOUNT.value] = int(account)
        if currency is not None:
            body[Field.CURRENCY.value] = currency
        return self._stamp(MsgType.BALANCE_REQUEST, body)

    def admin_request(
        self,
        action: str,
        *,
        account: int | None = None,
        currency: str | None = None,
        amount: str | None = None,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        """AdminRequest (UA), admin sessions only. ``action`` is "create_account" (no other fields),
        "deposit" or "withdraw" (``account``, ``currency``, ``amount``). ``request_id`` is the
        AdminReqID, the request's idempotency key (default: fresh)."""
        if action not in ADMIN_ACTIONS:
            raise SessionUsageError(f"admin action must be one of {', '.join(ADMIN_ACTIONS)}, not {action!r}")
        body: dict[str, Any] = {Field.ADMIN_ACTION.value: action,
                                Field.ADMIN_REQ_ID.value: request_id or self.new_request_id()}
        if action != ADMIN_CREATE_ACCOUNT:
            if account is None or currency is None or amount is None:
                raise SessionUsageError(f"{action} needs account, currency and amount")
            body[Field.ACCOUNT.value] = int(account)
            body[Field.CURRENCY.value] = currency
            body[Field.AMOUNT.value] = _decimal(amount, "amount")
        return self._stamp(MsgType.ADMIN_REQUEST, body)

    # --- incoming -------------------------------------------------------------------------------

    def receive_frame(self, frame: bytes, *, max_bytes: int) -> Incoming:
        """Decode one frame (``common.protocol.DecodeError`` if it is not a message) and :meth:`receive` it."""
        return self.receive(decode(frame, max_bytes=max_bytes))

    def receive(self, fields: Mapping[str, Any]) -> Incoming:
        """Take in one message from the gateway: update the session and return it as :class:`Incoming`."""
        msg_type = fields.get(Field.MSG_TYPE.value)
        clordid = fields.get(Field.CL_ORD_ID.value)
        clordid = str(clordid) if clordid is not None else None
        ref = None
        if msg_type == MsgType.LOGON.value:
            self.logged_on = True
            heartbeat = fields.get(Field.HEART_BT_INT.value)
            if isinstance(heartbeat, int) and not isinstance(heartbeat, bool) and heartbeat > 0:
                self.heartbeat_s = heartbeat
            account = fields.get(Field.ACCOUNT.value)
            if isinstance(account, int) and not isinstance(account, bool):
                self.account = account
        elif msg_type == MsgType.LOGOUT.value:
            self.logged_on = False
            self.logout_text = fields.get(Field.TEXT.value)
        elif msg_type == MsgType.TEST_REQUEST.value:
            self._outbox.append(self.heartbeat(test_req_id=fields.get(Field.TEST_REQ_ID.value)))
        elif msg_type == MsgType.REJECT.value:
            ref_seq = fields.get(Field.REF_SEQ_NUM.value)
            referenced = self._pending_by_seq.get(ref_seq) if isinstance(ref_seq, int) else None
            if fields.get(Field.SESSION_REJECT_REASON.value) == SessionRejectReason.COMP_ID_PROBLEM:
                # The gateway has no session for this connection (it restarted): nothing was taken.
                # The order stays unacknowledged, to be sent again after a new Logon (reconnect()).
                self.logged_on = False
                if referenced is not None:
                    clordid = referenced
            elif referenced is not None:
                clordid = referenced
                self._acknowledge(referenced)
        elif msg_type in ACKNOWLEDGING_REPLIES and clordid is not None:
            self._acknowledge(clordid)
            self._update_memory(fields, clordid)
        duplicate = False
        if msg_type == MsgType.EXECUTION_REPORT.value and fields.get(Field.EXEC_TYPE.value) == ExecType.TRADE.value:
            exec_id = fields.get(Field.EXEC_ID.value)
            if isinstance(exec_id, str):
                duplicate = exec_id in self._exec_ids and bool(fields.get(Field.POSS_RESEND.value))
                self._exec_ids[exec_id] = None
                self._exec_ids.move_to_end(exec_id)
                if len(self._exec_ids) > EXEC_ID_MEMORY:
                    self._exec_ids.popitem(last=False)
        for key in (Field.MASS_STATUS_REQ_ID, Field.BALANCE_REQ_ID, Field.ADMIN_REQ_ID):
            if key.value in fields:
                ref = str(fields[key.value])
                break
        return Incoming(fields=dict(fields), clordid=clordid, ref=ref, duplicate=duplicate)

    def _acknowledge(self, clordid: str) -> None:
        pending = self.unacknowledged.pop(clordid, None)
        if pending is not None:
            self._pending_by_seq.pop(pending.msg_seq_num, None)

    def _update_memory(self, fields: Mapping[str, Any], clordid: str) -> None:
        """A replace that was refused leaves the order as it was; forget the ClOrdID it would have had."""
        if fields.get(Field.MSG_TYPE.value) == MsgType.ORDER_CANCEL_REJECT.value:
            self._orders.pop(clordid, None)

    def data_to_send(self) -> list[dict[str, Any]]:
        """Messages the session owes the gateway (Heartbeats answering TestRequests), oldest first."""
        outbox, self._outbox = self._outbox, []
        return outbox

    # --- reconnect ------------------------------------------------------------------------------

    def restart(self) -> None:
        """Start a new connection: MsgSeqNum starts again at 1, logged off. Unacknowledged orders stay."""
        self._seq = itertools.count(1)
        self.last_seq_num = 0
        self.logged_on = False
        self.heartbeat_s = None
        self._outbox = []
        self._pending_by_seq = {}

    def resend(self) -> list[dict[str, Any]]:
        """Every unacknowledged order message again, oldest first, with a new MsgSeqNum and
        SendingTime and its original ClOrdID (the exchange answers a ClOrdID it already has with
        the original outcome and does not act twice)."""
        messages = []
        for pending in sorted(self.unacknowledged.values(), key=lambda p: p.msg_seq_num):
            body = {k: v for k, v in pending.message.items()
                    if k not in (Field.MSG_TYPE.value, Field.MSG_SEQ_NUM.value, Field.SENDING_TIME.value)}
            messages.append(self._track(self._stamp(MsgType(pending.message[Field.MSG_TYPE.value]), body)))
        return messages


def secret_bytes(secret: str | bytes) -> bytes:
    """The HMAC key of a secret: the bytes its hex text spells (``common.credentials`` makes secrets
    as ``token_bytes(32).hex()``), or the bytes themselves."""
    if isinstance(secret, (bytes, bytearray)):
        return bytes(secret)
    try:
        return protocol_secret_bytes(secret)
    except (TypeError, ValueError):
        raise SessionUsageError("the secret must be the hex text the exchange issued") from None


def _decimal(value: object, what: str) -> str:
    """A decimal value as the wire's decimal string. Strings pass unchanged (the gateway judges
    them); ints and Decimals are formatted plainly; floats are refused (they are not exact)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or isinstance(value, float):
        raise SessionUsageError(f"{what} must be a decimal string, not {type(value).__name__}")
    if isinstance(value, int):
        return str(value)
    from decimal import Decimal

    if isinstance(value, Decimal) and value.is_finite():
        return format(value, "f")
    raise SessionUsageError(f"{what} must be a decimal string, not {value!r}")


# --- errors and answers: shared by the sync and asyncio clients ----------------------------------------


class ClientError(Exception):
    """Something the client library could not do; the message says why."""


class LogonRefused(ClientError):
    """The gateway refused the Logon; ``text`` is its reason."""

    def __init__(self, text: str | None):
        reason = text or "no reason given"
        super().__init__(reason if reason.startswith("logon refused") else f"logon refused: {reason}")
        self.text = text


class RequestRejected(ClientError):
    """The gateway or the exchange refused a request; ``incoming`` is the refusal."""

    def __init__(self, incoming: Incoming):
        super().__init__(f"rejected: {incoming.text or incoming.describe()}")
        self.incoming = incoming
        self.text = incoming.text


class ClientTimeout(ClientError, TimeoutError):
    """No answer within the timeout."""


class Disconnected(ClientError):
    """The gateway logged this session out (``text`` is its reason), or the client was closed."""

    def __init__(self, text: str | None):
        super().__init__(f"logged out by the gateway: {text or 'no reason given'}")
        self.text = text


class Answer:
    """What one request waits for: which incoming messages belong to its answer, when the answer is
    complete, and what it amounts to. The I/O shells feed it messages until :attr:`done`."""

    what = "an answer"

    def __init__(self, message: Mapping[str, Any]):
        self.message = message
        self.seq = message[Field.MSG_SEQ_NUM.value]
        self.collected: list[Incoming] = []
        self.done = False

    def refused_by(self, incoming: Incoming) -> bool:
        """A session Reject of the request itself."""
        return (self.seq is not None and incoming.is_type(MsgType.REJECT)
                and incoming.get(Field.REF_SEQ_NUM) == self.seq)

    def belongs(self, incoming: Incoming) -> bool:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def offer(self, incoming: Incoming) -> bool:
        """Take ``incoming`` if it belongs to this answer (and then maybe complete it)."""
        if self.done:
            return False
        if self.refused_by(incoming):
            self.collected.append(incoming)
            self.done = True
            return True
        if not self.belongs(incoming):
            return False
        self.collected.append(incoming)
        self.done = self.complete(incoming)
        return True

    def complete(self, incoming: Incoming) -> bool:
        return True

    def result(self) -> Any:
        """The answer's value; raises :class:`RequestRejected` if it is a refusal."""
        last = self.collected[-1]
        if last.is_reject:
            raise RequestRejected(last)
        return last


class PredicateAnswer(Answer):
    """The first message for which ``predicate`` is true (``wait_for``)."""

    what = "a matching message"

    def __init__(self, predicate: Callable[[Incoming], bool]):
        self.message = {}
        self.seq = None
        self.collected = []
        self.done = False
        self.predicate = predicate

    def belongs(self, incoming: Incoming) -> bool:
        return bool(self.predicate(incoming))

    def result(self) -> Incoming:
        return self.collected[-1]


class LogonAnswer(Answer):
    """The gateway's Logon (accepted), or a Logout or Reject (refused)."""

    what = "an answer to the Logon"

    def belongs(self, incoming: Incoming) -> bool:
        return incoming.msg_type in (MsgType.LOGON.value, MsgType.LOGOUT.value)

    def result(self) -> Incoming:
        last = self.collected[-1]
        if not last.is_type(MsgType.LOGON):
            raise LogonRefused(last.text)
        return last


class ReportAnswer(Answer):
    """The first report about a ClOrdID: an ExecutionReport, an OrderCancelReject, an
    OrderMassCancelReport, or a session Reject of the message that carried it. Not raised on
    refusal: the report is the outcome, to be read."""

    def __init__(self, clordid: str):
        self.message = {}
        self.seq = None  # a Reject of the message is recognised by the ClOrdID the session gives it
        self.collected = []
        self.done = False
        self.clordid = clordid
        self.what = f"a report on ClOrdID {clordid}"

    def belongs(self, incoming: Incoming) -> bool:
        return incoming.clordid == self.clordid and (
            incoming.msg_type in ACKNOWLEDGING_REPLIES or incoming.is_type(MsgType.REJECT)
        )

    def result(self) -> Incoming:
        return self.collected[-1]


class StatusAnswer(Answer):
    """The order-status ExecutionReport (ExecType I, without MassStatusReqID) answering an
    OrderStatusRequest, or its refusal. Such a report answers nothing else, and the gateway answers
    status requests in the order it receives them, so the first one that comes is this request's
    (its ClOrdID may differ from the one asked about: an amended order reports its latest). An
    unknown order gets OrdStatus 8 (rejected) with Text UNKNOWN_ORDER."""

    what = "an order status"

    def belongs(self, incoming: Incoming) -> bool:
        return (incoming.is_type(MsgType.EXECUTION_REPORT) and incoming.exec_type == ExecType.ORDER_STATUS.value
                and Field.MASS_STATUS_REQ_ID.value not in incoming)


class MassStatusAnswer(Answer):
    """The ExecutionReports answering an OrderMassStatusRequest, up to the one with LastRptRequested;
    the result is the list of reports about open orders (empty if there are none)."""

    what = "the open orders"

    def belongs(self, incoming: Incoming) -> bool:
        return (incoming.is_type(MsgType.EXECUTION_REPORT)
                and incoming.get(Field.MASS_STATUS_REQ_ID) == self.message[Field.MASS_STATUS_REQ_ID.value])

    def complete(self, incoming: Incoming) -> bool:
        if incoming.get(Field.LAST_RPT_REQUESTED):
            return True
        total = incoming.get(Field.TOT_NUM_REPORTS)
        return isinstance(total, int) and len(self.collected) >= total

    def result(self) -> list[Incoming]:
        last = self.collected[-1]
        if last.is_type(MsgType.REJECT):
            raise RequestRejected(last)
        return [m for m in self.collected if m.get(Field.TOT_NUM_REPORTS) != 0 and Field.ORDER_ID.value in m]


@dataclass(frozen=True, slots=True)
class Balance:
    available: str
    frozen: str


class BalanceAnswer(Answer):
    """The BalanceReport answering a BalanceRequest; the result maps currency -> :class:`Balance`."""

    what = "the balances"

    def belongs(self, incoming: Incoming) -> bool:
        return (incoming.is_type(MsgType.BALANCE_REPORT)
                and incoming.get(Field.BALANCE_REQ_ID) == self.message[Field.BALANCE_REQ_ID.value])

    def result(self) -> dict[str, Balance]:
        last = super().result()
        if last.is_type(MsgType.BALANCE_REPORT) and str(last.get(Field.STATUS, STATUS_OK)) != STATUS_OK:
            raise RequestRejected(last)
        balances = {}
        for entry in last.get(Field.BALANCES) or []:
            balances[str(entry[Field.CURRENCY.value])] = Balance(
                available=str(entry[Field.AVAILABLE.value]), frozen=str(entry[Field.FROZEN.value])
            )
        return balances


@dataclass(frozen=True, slots=True)
class NewAccount:
    """An account created by an admin request, with its API credentials (the secret is shown once)."""

    account: int
    key_id: str
    secret: str


class AdminAnswer(Answer):
    """The AdminResponse answering an AdminRequest; raises on ``Status`` other than "ok"."""

    what = "an answer to the admin request"

    def belongs(self, incoming: Incoming) -> bool:
        return (incoming.is_type(MsgType.ADMIN_RESPONSE)
                and incoming.get(Field.ADMIN_REQ_ID) == self.message[Field.ADMIN_REQ_ID.value])


def new_account(response: Incoming) -> NewAccount:
    """The account and credentials an accepted ``create_account`` AdminResponse carries."""
    return NewAccount(account=int(response[Field.ACCOUNT]), key_id=str(response[Field.KEY_ID]),
                      secret=str(response[Field.SECRET]))


def amend_defaults(status: Incoming, symbol: str | None, side: str | None, price: str | None,
                   qty: str | None) -> tuple[str | None, str | None, str | None, str | None]:
    """(symbol, side, price, qty) of an amend, what was not given taken from the order's status
    report; raises :class:`RequestRejected` if the report says the order is unknown or not open."""
    if status.is_reject or status.get(Field.ORD_STATUS) in (OrdStatus.REJECTED.value, None):
        raise RequestRejected(status)
    side_name = {code: name for name, code in SIDE_CODES.items()}.get(status.get(Field.SIDE))
    return (symbol or status.get(Field.SYMBOL), side or side_name, price or status.get(Field.PRICE),
            qty or status.get(Field.ORDER_QTY))
