"""The gateway's pure core: client sessions, validation, commands out, reports back. No sockets.

    core = GatewayCore(config, instance, credentials, clock=time.time_ns)
    actions = core.on_client(identity, frame)       # a frame from a client connection (ROUTER identity)
    actions = core.on_report(report_message)        # a ReportMessage from the engine (gateway topic)
    actions = core.on_query_reply(reply)            # an answer from the engine's query socket
    actions = core.on_tick()                        # timers: heartbeats, silent sessions, timeouts
    actions = core.on_unreachable(identity, msgs)   # a client could not be sent to (gone, or too slow)
    actions = core.on_submit_failed(submit)         # the sequencer could not take a command
    actions = core.on_query_failed(query)           # the engine could not take a query

Every call returns a list of actions for ``gateway.main`` to carry out, in order:
:class:`ToClient` (send a message to a connection), :class:`Submit` (push a command to the sequencer,
common/intake.py) and :class:`Query` (ask the engine, common/reports.py).

Sessions (docs/protocol.md, "Session"): a connection sends a signed Logon first; its session then has a
64-bit id (a random 32-bit epoch of this gateway process and a counter), the account of its key, and
inbound and outbound MsgSeqNum counters. The account of every command comes from the session.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import struct
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Protocol

import numpy as np

from common.config import ExchangeConfig, GatewayInstance
from common.credentials import CreatedAccount, Credential, CredentialsError
from common.intake import Envelope, encode_submissions
from common.protocol import (
    ADMIN_CREATE_ACCOUNT,
    ADMIN_DEPOSIT,
    EXEC_TYPES,
    FIELDS,
    MASS_CANCEL_ALL,
    MASS_CANCEL_REJECTED,
    MASS_CANCEL_SYMBOL,
    MSG_TYPES,
    ORD_STATUSES,
    DecodeError,
    MassCancelRejectReason,
    SessionRejectReason,
    client_order_number,
    decode,
    sign_logon,
)
from common.records import ALL_SYMBOLS, COMMAND_DTYPE, CommandKind, EventKind, RejectReason
from common.reports import ReportMessage, gateway_topic
from gateway import reports, validation
from gateway.validation import BusinessReject, Context, SessionReject

log = logging.getLogger("gateway.core")

NOT_SYNCED_TEXT = "logon refused: the exchange is starting (no word from the engine yet); log on again in a moment"

F = FIELDS
M = MSG_TYPES
NS_PER_S = 1_000_000_000
NS_PER_MS = 1_000_000
OUTSIDE_SESSION_SEQ = 0  # MsgSeqNum of messages sent to a connection that has no session
TICKS_PER_HEARTBEAT = 4  # the timer runs this often per heartbeat interval
EXCHANGE_CLOSED = "EXCHANGE_CLOSED"

# COMMAND_DTYPE as a struct, to build a record without numpy per field (asserted against the dtype).
_COMMAND = struct.Struct("<7q4i4B4x")
assert _COMMAND.size == COMMAND_DTYPE.itemsize


class Credentials(Protocol):
    """What the core needs of the credential store (common.credentials.CredentialStore)."""

    def lookup(self, key_id: str) -> Credential | None: ...

    def create_account(self, request_id: str | None = None) -> CreatedAccount: ...

    def admin_request(self, request_id: str) -> CreatedAccount | None: ...


# --- actions ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ToClient:
    identity: bytes
    message: dict


@dataclass(frozen=True, slots=True)
class Submit:
    """A command for the sequencer (common/intake.py; ``gateway.main`` sends those of a turn together)."""

    record: bytes  # one COMMAND_DTYPE record
    envelope: Envelope
    request: Any = field(repr=False, default=None)  # what the client asked, to refuse it if this fails
    msg_seq_num: int = 0

    @property
    def frames(self) -> list[bytes]:
        """The command alone as a submission."""
        return encode_submissions([self.record], [self.envelope])

    @property
    def command(self) -> np.void:
        """The record as a numpy COMMAND_DTYPE record (for tests and logs)."""
        return np.frombuffer(self.record, dtype=COMMAND_DTYPE)[0]


@dataclass(frozen=True, slots=True)
class Query:
    query: dict


Action = ToClient | Submit | Query


# --- state ------------------------------------------------------------------------------------------


class Session:
    __slots__ = ("id", "identity", "key_id", "account", "admin", "in_seq", "out_seq", "last_received",
                 "last_sent", "test_request", "context")

    def __init__(self, session_id: int, identity: bytes, credential: Credential, in_seq: int, now: int,
                 context: Context):
        self.id = session_id
        self.identity = identity
        self.key_id = credential.key_id
        self.account = credential.account
        self.admin = credential.is_admin
        self.in_seq = in_seq
        self.out_seq = 0
        self.last_received = now
        self.last_sent = now
        self.test_request: str | None = None  # TestReqID we are waiting a Heartbeat for
        self.context = context


@dataclass(slots=True)
class _PendingQuery:
    session: int
    kind: str
    request: Any
    msg_type: str
    msg_seq_num: int
    deadline: int


class GatewayCore:
    """One gateway instance's sessions and message handling (see the module docstring)."""

    def __init__(self, config: ExchangeConfig, instance: GatewayInstance, credentials: Credentials, *,
                 clock: Callable[[], int] = time.time_ns, epoch: int | None = None):
        self.config = config
        self.instance = instance
        self.credentials = credentials
        self.clock = clock
        self.topic = gateway_topic(instance.id)
        self.max_bytes = config.gateway.max_message_bytes
        self.heartbeat_ns = config.gateway.heartbeat_s * NS_PER_S
        self.logon_window_ns = config.gateway.logon_window_ms * NS_PER_MS
        self.query_timeout_ns = self.heartbeat_ns
        self.tick_interval_ns = max(self.heartbeat_ns // TICKS_PER_HEARTBEAT, 1)
        self.epoch = secrets.randbits(32) if epoch is None else epoch & 0xFFFFFFFF
        self._counter = 0
        self._context = Context.of(config, account=None)
        self._sessions: dict[int, Session] = {}
        self._by_identity: dict[bytes, Session] = {}
        self._by_account: dict[int, dict[int, Session]] = {}
        self._seen_logons: OrderedDict[tuple[str, int, int], int] = OrderedDict()  # -> expiry
        self._decoy_secret = secrets.token_bytes(32)  # keeps an unknown key as slow as a bad signature
        self._queries: dict[int, _PendingQuery] = {}
        self._query_ids = 0
        # Report counter of our topic, and the resend state after a gap.
        self._next_n: int | None = None
        self._epoch: int | None = None  # the engine process whose counters _next_n follows
        self._held: dict[int, ReportMessage] = {}
        self._resend_query: int | None = None
        self._resend_deadline = 0
        self.lost_reports = 0

    # --- sessions -----------------------------------------------------------------------------------

    def session(self, session_id: int) -> Session | None:
        return self._sessions.get(session_id)

    def session_of(self, identity: bytes) -> Session | None:
        return self._by_identity.get(identity)

    @property
    def sessions(self) -> list[Session]:
        return list(self._sessions.values())

    def _new_session_id(self) -> int:
        self._counter = (self._counter + 1) & 0xFFFFFFFF
        return (self.epoch << 32) | self._counter

    def _end(self, session: Session) -> None:
        self._sessions.pop(session.id, None)
        if self._by_identity.get(session.identity) is session:
            del self._by_identity[session.identity]
        peers = self._by_account.get(session.account)
        if peers is not None:
            peers.pop(session.id, None)
            if not peers:
                del self._by_account[session.account]

    def _send(self, session: Session, body: dict, now: int) -> ToClient:
        session.out_seq += 1
        session.last_sent = now
        message = {F.MSG_TYPE: body[F.MSG_TYPE], F.MSG_SEQ_NUM: session.out_seq,
                   F.SENDING_TIME: now}
        message.update(body)
        return ToClient(session.identity, message)

    def _stamp(self, session: Session, message: dict, now: int) -> ToClient:
        """``_send`` for a message that has its MsgSeqNum and SendingTime slots (reports.order_message):
        they are filled in place, which spares copying the message behind a header."""
        session.out_seq += 1
        session.last_sent = now
        message[F.MSG_SEQ_NUM] = session.out_seq
        message[F.SENDING_TIME] = now
        return ToClient(session.identity, message)

    def _send_outside(self, identity: bytes, body: dict, now: int) -> ToClient:
        message = {F.MSG_TYPE: body[F.MSG_TYPE], F.MSG_SEQ_NUM: OUTSIDE_SESSION_SEQ,
                   F.SENDING_TIME: now}
        message.update(body)
        return ToClient(identity, message)

    @staticmethod
    def _reject_body(reject: SessionReject, message: dict | None) -> dict:
        body: dict[str, Any] = {F.MSG_TYPE: M.REJECT}
        if message is not None:
            seq = message.get(F.MSG_SEQ_NUM)
            if isinstance(seq, int) and not isinstance(seq, bool):
                body[F.REF_SEQ_NUM] = seq
            msg_type = message.get(F.MSG_TYPE)
            if isinstance(msg_type, str):
                body[F.REF_MSG_TYPE] = msg_type
        if reject.tag is not None:
            body[F.REF_TAG_ID] = reject.tag
        body[F.SESSION_REJECT_REASON] = int(reject.reason)
        body[F.TEXT] = reject.text
        return body

    # --- client frames ------------------------------------------------------------------------------

    def on_client(self, identity: bytes, frame: bytes, *, frame_count: int = 1) -> list[Action]:
        """One message from a client connection; ``frame_count`` > 1 if it came as several frames
        (refused: a message is one frame, and ``frame`` is then ignored)."""
        now = self.clock()
        session = self._by_identity.get(identity)
        if session is not None:
            session.last_received = now
        if frame_count != 1:
            reject = SessionReject(SessionRejectReason.INCORRECT_DATA_FORMAT,
                                   f"a message is one frame (one msgpack map), not {frame_count}")
            return [self._reply_reject(identity, session, reject, None, now)]
        if len(frame) > self.max_bytes:
            reject = SessionReject(SessionRejectReason.OTHER,
                                   f"message of {len(frame)} bytes exceeds the limit of {self.max_bytes}")
            return [self._reply_reject(identity, session, reject, None, now)]
        try:
            message = decode(frame, max_bytes=self.max_bytes)
        except DecodeError as exc:
            reject = SessionReject(SessionRejectReason.INCORRECT_DATA_FORMAT, str(exc))
            return [self._reply_reject(identity, session, reject, None, now)]
        try:
            msg_type = validation.read_msg_type(message)
        except SessionReject as reject:
            return [self._reply_reject(identity, session, reject, message, now)]
        if session is None:
            if msg_type != M.LOGON:
                reject = SessionReject(SessionRejectReason.COMP_ID_PROBLEM, "not logged on: send a Logon first")
                return [self._reply_reject(identity, None, reject, message, now)]
            return self._logon(identity, message, now)
        return self._in_session(session, msg_type, message, now)

    def _reply_reject(self, identity: bytes, session: Session | None, reject: SessionReject,
                      message: dict | None, now: int) -> ToClient:
        body = self._reject_body(reject, message)
        if session is None:
            return self._send_outside(identity, body, now)
        return self._send(session, body, now)

    def _logon(self, identity: bytes, message: dict, now: int) -> list[Action]:
        try:
            validation.read_msg_seq_num(message)
            request = validation.validate(message, self._context, M.LOGON)
            assert isinstance(request, validation.Logon)
            if abs(request.sending_time - now) > self.logon_window_ns:
                raise SessionReject(SessionRejectReason.SENDING_TIME_ACCURACY,
                                    f"logon refused: SendingTime is more than {self.config.gateway.logon_window_ms}"
                                    f" ms from the gateway's clock", F.SENDING_TIME)
            credential = self.credentials.lookup(request.key_id)
            secret = credential.secret_bytes if credential is not None else self._decoy_secret
            expected = sign_logon(secret, request.sending_time, request.msg_seq_num, request.key_id)
            if not hmac.compare_digest(expected, request.signature) or credential is None:
                raise SessionReject(SessionRejectReason.SIGNATURE_PROBLEM,
                                    "logon refused: unknown key or bad signature", F.RAW_DATA)
            replay_key = (request.key_id, request.sending_time, request.msg_seq_num)
            if replay_key in self._seen_logons:
                raise SessionReject(SessionRejectReason.SIGNATURE_PROBLEM,
                                    "logon refused: this signed Logon was already used", F.RAW_DATA)
            if not self.synced:
                raise SessionReject(SessionRejectReason.OTHER, NOT_SYNCED_TEXT)
        except SessionReject as reject:
            log.info("logon refused: %s", reject.text)
            return [self._send_outside(identity, self._reject_body(reject, message), now),
                    self._send_outside(identity, {F.MSG_TYPE: M.LOGOUT, F.TEXT: reject.text},
                                       now)]
        self._seen_logons[replay_key] = request.sending_time + self.logon_window_ns
        session = self._open(identity, credential, request.msg_seq_num, now)
        body: dict[str, Any] = {F.MSG_TYPE: M.LOGON, F.ENCRYPT_METHOD: 0,
                                F.HEART_BT_INT: self.config.gateway.heartbeat_s}
        if not session.admin:
            body[F.ACCOUNT] = session.account
        return [self._send(session, body, now)]

    def _open(self, identity: bytes, credential: Credential, in_seq: int, now: int) -> Session:
        context = self._context.for_session(account=None if credential.is_admin else credential.account,
                                            admin=credential.is_admin)
        session = Session(self._new_session_id(), identity, credential, in_seq, now, context)
        self._sessions[session.id] = session
        self._by_identity[identity] = session
        self._by_account.setdefault(session.account, {})[session.id] = session
        log.info("session %x: key %s logged on (account %d%s)", session.id, session.key_id, session.account,
                 ", admin" if session.admin else "")
        return session

    def open_trusted_session(self, identity: bytes, credential: Credential) -> Session | None:
        """A logged-on session without a Logon, for a front door that authenticates every request itself
        (the REST API: a signature per request). Its MsgSeqNums start at 1. None while the gateway has
        not heard from the engine yet (``synced``)."""
        existing = self._by_identity.get(identity)
        if existing is not None:
            return existing
        if not self.synced:
            return None
        return self._open(identity, credential, 0, self.clock())

    @property
    def synced(self) -> bool:
        """Whether a message on this gateway's report topic has arrived: the subscription is in place,
        so the reports of anything sent from now on reach this gateway. Until then no session is opened:
        the engine may be starting, and the answer to a command sent now could be published before the
        subscription reaches it, and lost (a heartbeat would then only show the counter past it)."""
        return self._next_n is not None

    def _in_session(self, session: Session, msg_type: str, message: dict, now: int) -> list[Action]:
        try:
            seq = validation.read_msg_seq_num(message)
            if seq <= session.in_seq:
                raise SessionReject(SessionRejectReason.VALUE_INCORRECT,
                                    f"MsgSeqNum {seq} is not above the last one received, {session.in_seq}",
                                    F.MSG_SEQ_NUM)
            session.in_seq = seq
            if msg_type == M.LOGON:
                raise SessionReject(SessionRejectReason.OTHER, "already logged on")
            if session.admin and msg_type in validation.TRADING_TYPES:
                raise SessionReject(SessionRejectReason.COMP_ID_PROBLEM,
                                    f"an admin session does not trade (MsgType {msg_type})", F.MSG_TYPE)
            if not session.admin and msg_type in validation.ADMIN_TYPES:
                raise SessionReject(SessionRejectReason.COMP_ID_PROBLEM,
                                    f"MsgType {msg_type} needs an admin session", F.MSG_TYPE)
            request = validation.validate(message, session.context, msg_type)
        except SessionReject as reject:
            return [self._send(session, self._reject_body(reject, message), now)]
        except BusinessReject as refusal:
            return [self._send(session, self._business_refusal(session, msg_type, message, refusal), now)]
        handler = _HANDLERS[type(request)]
        return handler(self, session, request, message, now)

    # --- business refusals (the request's own kind of answer) -------------------------------------

    def _business_refusal(self, session: Session, msg_type: str, message: dict, refusal: BusinessReject) -> dict:
        clordid = message.get(F.CL_ORD_ID, "")
        if msg_type == M.NEW_ORDER_SINGLE:
            return self._order_refusal(session, message, refusal.reason, refusal.text)
        if msg_type in (M.ORDER_CANCEL_REQUEST, M.ORDER_CANCEL_REPLACE_REQUEST):
            order_id = message.get(F.ORDER_ID)
            return reports.cancel_reject(int(order_id) if order_id is not None else 0, clordid,
                                         msg_type == M.ORDER_CANCEL_REPLACE_REQUEST, refusal.reason,
                                         refusal.text, orig_clordid=message.get(F.ORIG_CL_ORD_ID, ""))
        if msg_type == M.ORDER_MASS_CANCEL_REQUEST:
            return self._mass_cancel_refusal(session, message, refusal.reason, refusal.text)
        if msg_type == M.ADMIN_REQUEST:
            account = message.get(F.ACCOUNT)
            return reports.admin_refusal(message[F.ADMIN_REQ_ID], message[F.ADMIN_ACTION], refusal.text,
                                         account=int(account) if account is not None else None)
        # Queries refuse with a session Reject (validation does that); nothing else refuses like this.
        raise AssertionError(f"no business refusal for MsgType {msg_type}")  # pragma: no cover

    def _order_refusal(self, session: Session, message: dict, reason: str, text: str) -> dict:
        """ExecutionReport ExecType 8 for a NewOrderSingle refused by the gateway (echoes what it can)."""
        body: dict[str, Any] = {
            F.MSG_TYPE: M.EXECUTION_REPORT,
            F.ORDER_ID: reports.NO_ORDER_ID,
            F.CL_ORD_ID: message.get(F.CL_ORD_ID, ""),
            F.EXEC_ID: f"R-{session.id:x}-{session.in_seq}",
            F.EXEC_TYPE: EXEC_TYPES.REJECTED,
            F.ORD_STATUS: ORD_STATUSES.REJECTED,
            F.ACCOUNT: session.account,
        }
        for name in (F.SYMBOL, F.SIDE, F.ORD_TYPE, F.PRICE, F.ORDER_QTY, F.CASH_ORDER_QTY, F.TIME_IN_FORCE,
                     F.EXEC_INST):
            if name in message:
                body[name] = message[name]
        body[F.LEAVES_QTY] = "0"
        body[F.CUM_QTY] = "0"
        body[F.AVG_PX] = "0"
        body[F.ORD_REJ_REASON] = validation.ord_rej_reason(reason)
        body[F.TEXT] = text
        return body

    def _mass_cancel_refusal(self, session: Session, message: dict, reason: str, text: str) -> dict:
        unknown_symbol = reason == RejectReason.UNKNOWN_SYMBOL.name
        body: dict[str, Any] = {
            F.MSG_TYPE: M.ORDER_MASS_CANCEL_REPORT,
            F.CL_ORD_ID: message.get(F.CL_ORD_ID, ""),
            F.MASS_CANCEL_REQUEST_TYPE: message.get(F.MASS_CANCEL_REQUEST_TYPE, MASS_CANCEL_ALL),
            F.MASS_CANCEL_RESPONSE: MASS_CANCEL_REJECTED,
            F.MASS_CANCEL_REJECT_REASON: int(MassCancelRejectReason.UNKNOWN_SECURITY if unknown_symbol
                                                   else MassCancelRejectReason.OTHER),
            F.TOTAL_AFFECTED_ORDERS: 0,
            F.ACCOUNT: session.account,
            F.TEXT: text,
        }
        if F.SYMBOL in message:
            body[F.SYMBOL] = message[F.SYMBOL]
        return body

    # --- session messages ---------------------------------------------------------------------------

    def _on_logout(self, session: Session, request: validation.Logout, message: dict, now: int) -> list[Action]:
        reply = self._send(session, {F.MSG_TYPE: M.LOGOUT, F.TEXT: "logged out"}, now)
        log.info("session %x: logged out", session.id)
        self._end(session)
        return [reply]

    def _on_heartbeat(self, session: Session, request: validation.Heartbeat, message: dict,
                      now: int) -> list[Action]:
        if request.test_req_id is not None and request.test_req_id == session.test_request:
            session.test_request = None
        return []

    def _on_test_request(self, session: Session, request: validation.TestRequest, message: dict,
                         now: int) -> list[Action]:
        return [self._send(session, {F.MSG_TYPE: M.HEARTBEAT,
                                     F.TEST_REQ_ID: request.test_req_id}, now)]

    # --- commands -----------------------------------------------------------------------------------

    def _record(self, kind: CommandKind, *, account: int, client_order_id: int = 0, order_id: int = 0,
                price: int = 0, qty: int = 0, amount: int = 0, symbol: int = 0, asset: int = 0, side: int = 0,
                order_type: int = 0, tif: int = 0) -> bytes:
        return _COMMAND.pack(0, 0, order_id, client_order_id, price, qty, amount, symbol, account, asset,
                             self.instance.id, int(kind), side, order_type, tif)

    def _submit(self, session: Session, record: bytes, clordid: str, orig: str, request: Any,
                message: dict) -> list[Action]:
        envelope = Envelope(session=session.id, clordid=clordid, orig=orig)
        return [Submit(record, envelope, request, message.get(F.MSG_SEQ_NUM, 0))]

    def _on_new_order(self, session: Session, request: validation.NewOrder, message: dict,
                      now: int) -> list[Action]:
        kind = CommandKind.NEW
        record = self._record(
            kind, account=session.account,
            client_order_id=client_order_number(request.clordid, kind, by_quote=request.by_quote),
            price=request.price, qty=request.qty, amount=request.amount, symbol=request.symbol.id,
            side=int(request.side), order_type=int(request.order_type), tif=int(request.tif),
        )
        return self._submit(session, record, request.clordid, "", request, message)

    def _on_cancel(self, session: Session, request: validation.CancelOrder, message: dict,
                   now: int) -> list[Action]:
        kind = CommandKind.CANCEL
        record = self._record(kind, account=session.account,
                              client_order_id=client_order_number(request.clordid, kind),
                              order_id=request.order_id,
                              symbol=request.symbol.id if request.symbol is not None else 0)
        return self._submit(session, record, request.clordid, request.orig_clordid, request, message)

    def _on_replace(self, session: Session, request: validation.ReplaceOrder, message: dict,
                    now: int) -> list[Action]:
        kind = CommandKind.CANCEL_REPLACE
        record = self._record(kind, account=session.account,
                              client_order_id=client_order_number(request.clordid, kind),
                              order_id=request.order_id, price=request.price, qty=request.qty,
                              symbol=request.symbol.id)
        return self._submit(session, record, request.clordid, request.orig_clordid, request, message)

    def _on_mass_cancel(self, session: Session, request: validation.MassCancel, message: dict,
                        now: int) -> list[Action]:
        kind = CommandKind.CANCEL_ALL
        record = self._record(kind, account=session.account,
                              client_order_id=client_order_number(request.clordid, kind),
                              symbol=request.symbol.id if request.symbol is not None else ALL_SYMBOLS)
        return self._submit(session, record, request.clordid, "", request, message)

    def _on_admin(self, session: Session, request: validation.AdminRequest, message: dict,
                  now: int) -> list[Action]:
        if request.action == ADMIN_CREATE_ACCOUNT:
            kind = CommandKind.CREATE_ACCOUNT
            try:
                created = self.credentials.create_account(request.req_id)
            except CredentialsError as exc:
                return [self._send(session, reports.admin_refusal(request.req_id, request.action, str(exc)), now)]
            if created.created:
                log.info("session %x: created account %d with key %s (AdminReqID %r)", session.id,
                         created.account, created.key_id, request.req_id)
            record = self._record(kind, account=created.account,
                                  client_order_id=client_order_number(request.req_id, kind))
        else:
            kind = CommandKind.DEPOSIT if request.action == ADMIN_DEPOSIT else CommandKind.WITHDRAW
            assert request.asset is not None
            record = self._record(kind, account=request.account, asset=request.asset.id, amount=request.amount,
                                  client_order_id=client_order_number(request.req_id, kind))
        return self._submit(session, record, request.req_id, "", request, message)

    def on_submit_failed(self, submit: Submit) -> list[Action]:
        """The sequencer is not reachable: the command was not sent; the client is told so."""
        now = self.clock()
        session = self._sessions.get(submit.envelope.session)
        if session is None:
            return []
        text = f"{EXCHANGE_CLOSED}: the sequencer is not reachable; nothing was done"
        request = submit.request
        clordid = submit.envelope.clordid
        if isinstance(request, validation.NewOrder):
            body = self._order_refusal(session, {F.CL_ORD_ID: clordid, F.SYMBOL: request.symbol.name},
                                       EXCHANGE_CLOSED, text)
        elif isinstance(request, (validation.CancelOrder, validation.ReplaceOrder)):
            body = reports.cancel_reject(request.order_id, clordid, isinstance(request, validation.ReplaceOrder),
                                         EXCHANGE_CLOSED, text, orig_clordid=request.orig_clordid)
        elif isinstance(request, validation.MassCancel):
            body = self._mass_cancel_refusal(session, {
                F.CL_ORD_ID: clordid,
                F.MASS_CANCEL_REQUEST_TYPE: MASS_CANCEL_ALL if request.symbol is None else MASS_CANCEL_SYMBOL,
            }, EXCHANGE_CLOSED, text)
        elif isinstance(request, validation.AdminRequest):
            body = reports.admin_refusal(request.req_id, request.action, text)
        else:  # pragma: no cover - every Submit carries its request
            return []
        return [self._send(session, body, now)]

    # --- queries ------------------------------------------------------------------------------------

    def _query(self, session: Session, kind: str, request: Any, message: dict, now: int, **fields: Any) -> Query:
        self._query_ids += 1
        query_id = self._query_ids
        self._queries[query_id] = _PendingQuery(session.id, kind, request, message[F.MSG_TYPE],
                                                message[F.MSG_SEQ_NUM], now + self.query_timeout_ns)
        return Query({"id": query_id, "q": kind, **fields})

    def _on_order_status(self, session: Session, request: validation.OrderStatus, message: dict,
                         now: int) -> list[Action]:
        if request.order_id:
            return [self._query(session, "order", request, message, now, account=session.account,
                                order_id=request.order_id)]
        return [self._query(session, "order", request, message, now, account=session.account,
                            clordid=request.clordid)]

    def _on_mass_status(self, session: Session, request: validation.MassStatus, message: dict,
                        now: int) -> list[Action]:
        fields: dict[str, Any] = {"account": session.account}
        if request.symbol is not None:
            fields["symbol"] = request.symbol.id
        return [self._query(session, "open_orders", request, message, now, **fields)]

    def _on_balance_request(self, session: Session, request: validation.BalanceRequest, message: dict,
                            now: int) -> list[Action]:
        account = request.account if session.admin and request.account is not None else session.account
        return [self._query(session, "balances", request, message, now, account=account)]

    def on_query_reply(self, reply: Any) -> list[Action]:
        """An answer from the engine's query socket (common/reports.py; engine/service.py)."""
        if not isinstance(reply, dict):
            log.warning("ignoring a query reply that is not a map: %r", reply)
            return []
        query_id = reply.get("id")
        if query_id is not None and query_id == self._resend_query:
            return self._on_resend_reply(reply)
        pending = self._queries.pop(query_id, None) if isinstance(query_id, int) else None
        if pending is None:
            return []  # timed out already, or not ours
        session = self._sessions.get(pending.session)
        if session is None:
            return []
        now = self.clock()
        if not reply.get("ok"):
            text = f"the engine refused the query: {reply.get('error', 'no reason given')}"
            reject = SessionReject(SessionRejectReason.OTHER, text)
            return [self._send(session, self._pending_reject_body(pending, reject), now)]
        request = pending.request
        if pending.kind == "order":
            order = reply.get("order")
            if not reply.get("found") or not isinstance(order, dict) or int(order.get("account", -1)) != session.account:
                body = reports.unknown_order_status(clordid=request.clordid, order_id=request.order_id,
                                                    account=session.account)
            else:
                body = reports.status_report(self.config, order, req_clordid=request.clordid)
            return [self._send(session, body, now)]
        if pending.kind == "open_orders":
            views = [v for v in reply.get("orders") or () if isinstance(v, dict)
                     and int(v.get("account", -1)) == session.account]
            return [self._send(session, body, now)
                    for body in reports.mass_status_reports(self.config, views, request.req_id, session.account)]
        if pending.kind == "balances":
            account = request.account if session.admin and request.account is not None else session.account
            currency = request.currency.id if request.currency is not None else None
            body = reports.balance_report(self.config, request.req_id, account, reply.get("balances") or (),
                                          currency=currency)
            return [self._send(session, body, now)]
        return []  # pragma: no cover

    @staticmethod
    def _pending_reject_body(pending: _PendingQuery, reject: SessionReject) -> dict:
        return GatewayCore._reject_body(reject, {F.MSG_TYPE: pending.msg_type,
                                                 F.MSG_SEQ_NUM: pending.msg_seq_num})

    def on_query_failed(self, query: Query) -> list[Action]:
        """The engine's query socket is not reachable."""
        query_id = query.query.get("id")
        if query_id == self._resend_query:
            self._resend_query = None
            self._resend_deadline = self.clock()  # give up on the resend at the next tick
            return []
        pending = self._queries.pop(query_id, None)
        session = self._sessions.get(pending.session) if pending is not None else None
        if session is None:
            return []
        reject = SessionReject(SessionRejectReason.OTHER, "the engine is not reachable; try again")
        return [self._send(session, self._pending_reject_body(pending, reject), self.clock())]

    # --- reports from the engine --------------------------------------------------------------------

    def on_report(self, message: ReportMessage) -> list[Action]:
        """A report message on this gateway's topic: checked for gaps, then delivered in order."""
        if message.topic != self.topic or message.items is None:
            log.warning("ignoring a report message on topic %r", message.topic)
            return []
        n = message.n
        if message.epoch != self._epoch:
            if self._epoch is not None:
                # A restarted engine: its counters start at 1 again, and what it published before
                # this subscription reached it (its catch-up, say) is asked for again from n=1.
                log.warning("the engine restarted (report epoch %x, was %x): reports from n=1 of the new one",
                            message.epoch, self._epoch)
                self._next_n = 1
            self._epoch = message.epoch
            self._held.clear()
            self._resend_query = None
        if message.heartbeat:
            if self._next_n is None:  # nothing seen yet: follow the engine from its next message
                self._next_n = n + 1
                return []
            if n >= self._next_n and self._resend_query is None:  # the last messages went missing
                return [self._ask_resend()]
            return []
        if self._next_n is None or n == self._next_n:
            if self._held or self._resend_query is not None:  # still waiting for the gap before it
                self._held[n] = message
                return []
            self._next_n = n + 1
            return self._deliver(message.events, message.items)
        if n < self._next_n:
            return []  # already delivered
        self._held[n] = message
        if len(self._held) > self.config.engine.recent_reports:
            return self._skip_gap()
        if self._resend_query is None:
            return [self._ask_resend()]
        return []

    def _ask_resend(self) -> Query:
        self._query_ids += 1
        self._resend_query = self._query_ids
        self._resend_deadline = self.clock() + self.query_timeout_ns
        log.warning("report gap: expected n=%d; asking the engine to resend", self._next_n)
        return Query({"id": self._resend_query, "q": "resend", "gateway": self.instance.id, "from": self._next_n})

    def _on_resend_reply(self, reply: dict) -> list[Action]:
        self._resend_query = None
        actions: list[Action] = []
        if reply.get("ok") and reply.get("epoch", self._epoch) != self._epoch:
            return [self._ask_resend()]  # answered by another engine process than the gap is of
        if reply.get("ok"):
            for entry in reply.get("messages") or ():
                try:
                    n, events, items = int(entry[0]), entry[1], entry[2]
                    records = np.frombuffer(events, dtype=reports.EVENT_DTYPE)
                except Exception as exc:  # a malformed entry: the gap stays, counted below
                    log.error("malformed resend entry: %s", exc)
                    continue
                if self._next_n is not None and n < self._next_n:
                    continue
                if self._next_n is not None and n > self._next_n:
                    self._lost(n - self._next_n)
                self._next_n = n + 1
                actions.extend(self._deliver(records, list(items)))
            if reply.get("more"):
                actions.append(self._ask_resend())
                return actions
        else:
            log.error("the engine refused the resend: %s", reply.get("error"))
        return actions + self._drain_held()

    def _drain_held(self) -> list[Action]:
        """Deliver held messages in order; a gap nobody can fill any more is skipped."""
        actions: list[Action] = []
        while self._held:
            n = min(self._held)
            message = self._held.pop(n)
            if self._next_n is not None and n < self._next_n:
                continue
            if self._next_n is not None and n > self._next_n:
                self._lost(n - self._next_n)
            self._next_n = n + 1
            actions.extend(self._deliver(message.events, message.items))
        return actions

    def _skip_gap(self) -> list[Action]:
        self._resend_query = None
        return self._drain_held()

    def _lost(self, count: int) -> None:
        self.lost_reports += count
        log.error("%d report message(s) from n=%d are lost: the engine no longer has them", count, self._next_n)

    def _deliver(self, events: np.ndarray, items: list[dict]) -> list[Action]:
        now = self.clock()
        actions: list[Action] = []
        for ev, item in zip(reports.event_rows(events), items):
            session = self._sessions.get(item.get("session"))
            if reports.is_admin_event(ev):
                if session is not None and session.admin:
                    body = self._admin_answer(ev, item)
                    if body is not None:
                        actions.append(self._send(session, body, now))
                continue
            message = reports.order_message(self.config, ev, item)
            if message is None:
                continue
            owner = reports.owner_account(ev, item)
            if session is not None and not session.admin and session.account == owner:
                actions.append(self._stamp(session, message, now))
            else:  # the session is gone: every other live session of the account gets it (a copy each)
                for other in tuple(self._by_account.get(owner, {}).values()):
                    if not other.admin:
                        actions.append(self._stamp(other, dict(message), now))
        return actions

    def _admin_answer(self, ev: reports.Row, item: dict) -> dict | None:
        key_id = secret = None
        kind = ev[reports.KIND]
        if kind == _ACCOUNT_CREATED or (kind == _REJECTED and ev[reports.REASON] == _ACCOUNT_EXISTS
                                        and reports.command_kind(ev) == _CREATE_ACCOUNT):
            created = self.credentials.admin_request(item.get("clordid", ""))
            if created is not None and created.account == ev[reports.ACCOUNT]:
                key_id, secret = created.key_id, created.secret
                if kind == _REJECTED:
                    # The request was carried out before (the sequencer no longer remembered it, so the
                    # engine saw it twice): the account is this request's, and exists. That is success.
                    ev = reports.with_kind(ev, _ACCOUNT_CREATED)
                    item = dict(item, resend=True)
        return reports.admin_message(self.config, ev, item, key_id=key_id, secret=secret)

    def on_unreachable(self, identity: bytes, messages: Iterable[dict] = ()) -> list[Action]:
        """A send of ``messages`` to ``identity`` failed (disconnected, or not reading): its session ends.
        The order reports among them go to the account's other live sessions, in their order."""
        session = self._by_identity.get(identity)
        if session is None:
            return []
        log.info("session %x: connection gone; session ended", session.id)
        self._end(session)
        if session.admin:
            return []
        owed = [{k: v for k, v in message.items() if k not in (F.MSG_SEQ_NUM, F.SENDING_TIME)}
                for message in messages if message.get(F.MSG_TYPE) in _ROUTABLE]
        if not owed:
            return []
        now = self.clock()
        return [self._send(other, body, now)
                for other in tuple(self._by_account.get(session.account, {}).values()) for body in owed]

    def shutdown(self) -> list[Action]:
        """The gateway is stopping: a Logout to every session, and no session left."""
        now = self.clock()
        actions: list[Action] = []
        for session in tuple(self._sessions.values()):
            actions.append(self._send(session, {F.MSG_TYPE: M.LOGOUT,
                                                F.TEXT: "the gateway is shutting down"}, now))
            self._end(session)
        return actions

    # --- timers -------------------------------------------------------------------------------------

    def on_tick(self) -> list[Action]:
        """Heartbeats, TestRequests and the end of silent sessions; query, resend and replay timeouts."""
        now = self.clock()
        actions: list[Action] = []
        for session in tuple(self._sessions.values()):
            silent = now - session.last_received
            if silent >= 2 * self.heartbeat_ns:
                actions.append(self._send(session, {F.MSG_TYPE: M.LOGOUT,
                                                    F.TEXT: "heartbeat timeout: nothing received for "
                                                                  f"{2 * self.config.gateway.heartbeat_s} s"}, now))
                log.info("session %x: heartbeat timeout; session ended", session.id)
                self._end(session)
                continue
            if silent >= self.heartbeat_ns and session.test_request is None:
                session.test_request = f"T{now}"
                actions.append(self._send(session, {F.MSG_TYPE: M.TEST_REQUEST,
                                                    F.TEST_REQ_ID: session.test_request}, now))
            elif now - session.last_sent + self.tick_interval_ns >= self.heartbeat_ns:
                actions.append(self._send(session, {F.MSG_TYPE: M.HEARTBEAT}, now))
        for query_id in [q for q, p in self._queries.items() if p.deadline <= now]:
            pending = self._queries.pop(query_id)
            session = self._sessions.get(pending.session)
            if session is not None:
                reject = SessionReject(SessionRejectReason.OTHER,
                                       "the engine did not answer in time; try again")
                actions.append(self._send(session, self._pending_reject_body(pending, reject), now))
        if self._held and (self._resend_query is None or self._resend_deadline <= now):
            if self._resend_query is not None:
                log.error("the engine did not answer the resend request in time")
            actions.extend(self._skip_gap())
        while self._seen_logons:
            replay_key, expiry = next(iter(self._seen_logons.items()))
            if expiry > now:
                break
            del self._seen_logons[replay_key]
        return actions


_ACCOUNT_CREATED = int(EventKind.ACCOUNT_CREATED)
_REJECTED = int(EventKind.REJECTED)
_ACCOUNT_EXISTS = int(RejectReason.ACCOUNT_EXISTS)
_CREATE_ACCOUNT = int(CommandKind.CREATE_ACCOUNT)

_ROUTABLE = frozenset({M.EXECUTION_REPORT, M.ORDER_CANCEL_REJECT,
                       M.ORDER_MASS_CANCEL_REPORT})

_HANDLERS: dict[type, Callable[..., list[Action]]] = {
    validation.Logout: GatewayCore._on_logout,
    validation.Heartbeat: GatewayCore._on_heartbeat,
    validation.TestRequest: GatewayCore._on_test_request,
    validation.NewOrder: GatewayCore._on_new_order,
    validation.CancelOrder: GatewayCore._on_cancel,
    validation.ReplaceOrder: GatewayCore._on_replace,
    validation.MassCancel: GatewayCore._on_mass_cancel,
    validation.OrderStatus: GatewayCore._on_order_status,
    validation.MassStatus: GatewayCore._on_mass_status,
    validation.BalanceRequest: GatewayCore._on_balance_request,
    validation.AdminRequest: GatewayCore._on_admin,
}
