"""The REST API's pure parts (docs/rest.md): request signatures, JSON requests into the FIX-like messages the
gateway core validates (one validation path for both front doors), and the core's answers into JSON.

Signing a private request (headers ``X-API-KEY``, ``X-API-TIMESTAMP``, ``X-API-SIGNATURE``):

    payload   = f"{timestamp_ms}|{METHOD}|{path_and_query}|{body}"
    signature = hex(HMAC-SHA256(bytes.fromhex(secret), payload))

``path_and_query`` is the request target as sent (``/api/v1/orders?symbol=BTC-USDT``), ``body`` the raw
body ("" without one). The timestamp must be within ``gateway.logon_window_ms`` of the server's clock,
and a signature is accepted once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from common.protocol import FIELDS, MSG_TYPES

F = FIELDS
M = MSG_TYPES

KEY_HEADER = "X-API-KEY"
TIMESTAMP_HEADER = "X-API-TIMESTAMP"
SIGNATURE_HEADER = "X-API-SIGNATURE"

SIDES = {"buy": "1", "sell": "2"}
ORDER_TYPES = {"market": "1", "limit": "2"}
TIME_IN_FORCE = {"gtc": "1", "ioc": "3", "fok": "4"}
POST_ONLY_EXEC_INST = "6"
SIDE_NAMES = {code: name for name, code in SIDES.items()}
TYPE_NAMES = {code: name for name, code in ORDER_TYPES.items()}
TIF_NAMES = {code: name for name, code in TIME_IN_FORCE.items()}
STATUS_NAMES = {"0": "new", "1": "partially_filled", "2": "filled", "4": "canceled", "8": "rejected",
                "C": "expired"}
EXEC_NAMES = {"0": "new", "F": "trade", "4": "canceled", "C": "expired", "5": "replaced", "8": "rejected",
              "I": "status"}
CLORDID_BYTES = 8  # a ClOrdID the server makes up when the request has none: 16 hex characters


class RestError(Exception):
    """An HTTP error answer: ``status`` and the JSON body ``{"error": reason, ...}``."""

    def __init__(self, status: int, reason: str, **extra: Any):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"error": self.reason, **self.extra}


class Credentials(Protocol):
    def lookup(self, key_id: str) -> Any: ...


def signature(secret: bytes, timestamp_ms: int, method: str, target: str, body: str) -> str:
    """The ``X-API-SIGNATURE`` of a request."""
    payload = f"{timestamp_ms}|{method.upper()}|{target}|{body}".encode()
    return hmac.new(secret, payload, hashlib.sha256).hexdigest()


class RequestSigning:
    """Checks private requests' signatures; remembers each accepted one for the window (no replay)."""

    def __init__(self, credentials: Credentials, window_ms: int, clock_ms: Callable[[], int]):
        self.credentials = credentials
        self.window_ms = window_ms
        self.clock_ms = clock_ms
        self._seen: dict[str, int] = {}  # signature -> when it may be forgotten (ms)
        self._decoy = secrets.token_bytes(32)  # an unknown key costs what a bad signature costs

    def verify(self, headers: Any, method: str, target: str, body: str):
        """The request's credential, or RestError 401 with the reason."""
        key, timestamp, signed = (headers.get(KEY_HEADER), headers.get(TIMESTAMP_HEADER),
                                  headers.get(SIGNATURE_HEADER))
        if not key or not timestamp or not signed:
            raise RestError(401, f"a private request needs the headers {KEY_HEADER}, {TIMESTAMP_HEADER} and "
                                 f"{SIGNATURE_HEADER}")
        if not timestamp.isdigit() or len(timestamp) > 16:
            raise RestError(401, f"{TIMESTAMP_HEADER} must be milliseconds since the Unix epoch")
        now = self.clock_ms()
        if abs(now - int(timestamp)) > self.window_ms:
            raise RestError(401, f"{TIMESTAMP_HEADER} is more than {self.window_ms} ms from the server's clock")
        credential = self.credentials.lookup(key)
        secret = credential.secret_bytes if credential is not None else self._decoy
        expected = signature(secret, int(timestamp), method, target, body)
        if not hmac.compare_digest(expected, signed.lower()) or credential is None:
            raise RestError(401, "unknown key or bad signature")
        self._seen = {sig: expiry for sig, expiry in self._seen.items() if expiry > now}
        if expected in self._seen:
            raise RestError(401, "this signed request was already used")
        self._seen[expected] = int(timestamp) + self.window_ms
        if credential.is_admin:
            raise RestError(403, "an admin key does not trade")
        return credential


# --- requests ------------------------------------------------------------------------------------------


def _text(body: dict, key: str, *, required: bool = False) -> str | None:
    value = body.get(key)
    if value is None:
        if required:
            raise RestError(400, f"{key} is required")
        return None
    if not isinstance(value, str):
        raise RestError(400, f"{key} must be a string (decimals are strings: \"65000.5\")")
    return value


def _choice(body: dict, key: str, choices: dict[str, str], *, required: bool = False) -> str | None:
    value = _text(body, key, required=required)
    if value is None:
        return None
    if value.lower() not in choices:
        raise RestError(400, f"{key} must be one of {', '.join(choices)}")
    return choices[value.lower()]


def new_clordid() -> str:
    return secrets.token_hex(CLORDID_BYTES)


def new_order(body: Any) -> dict[str, Any]:
    """A NewOrderSingle from ``POST /api/v1/orders``: fields of the request, unchecked values (the
    gateway's validation checks them as for any FIX client)."""
    if not isinstance(body, dict):
        raise RestError(400, "the body must be a JSON object")
    allowed = {"symbol", "side", "type", "price", "qty", "quote_qty", "tif", "post_only", "clordid"}
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise RestError(400, f"unknown field {unknown[0]!r}")
    message: dict[str, Any] = {F.MSG_TYPE: M.NEW_ORDER_SINGLE, F.CL_ORD_ID: _text(body, "clordid") or new_clordid(),
                               F.SYMBOL: _text(body, "symbol", required=True),
                               F.SIDE: _choice(body, "side", SIDES, required=True),
                               F.ORD_TYPE: _choice(body, "type", ORDER_TYPES) or ORDER_TYPES["limit"]}
    for key, field in (("price", F.PRICE), ("qty", F.ORDER_QTY), ("quote_qty", F.CASH_ORDER_QTY)):
        value = _text(body, key)
        if value is not None:
            message[field] = value
    tif = _choice(body, "tif", TIME_IN_FORCE)
    if tif is not None:
        message[F.TIME_IN_FORCE] = tif
    post_only = body.get("post_only", False)
    if not isinstance(post_only, bool):
        raise RestError(400, "post_only must be true or false")
    if post_only:
        message[F.EXEC_INST] = POST_ONLY_EXEC_INST
    return message


def cancel(clordid: str) -> dict[str, Any]:
    return {F.MSG_TYPE: M.ORDER_CANCEL_REQUEST, F.CL_ORD_ID: new_clordid(), F.ORIG_CL_ORD_ID: clordid}


def amend(clordid: str, body: Any) -> dict[str, Any]:
    """An OrderCancelReplaceRequest from ``PATCH /api/v1/orders/{clordid}``: a new price and/or total
    quantity; what is not given stays as the order has it (``order`` fills it in)."""
    if not isinstance(body, dict):
        raise RestError(400, "the body must be a JSON object")
    unknown = sorted(set(body) - {"price", "qty", "new_clordid"})
    if unknown:
        raise RestError(400, f"unknown field {unknown[0]!r}")
    price, qty = _text(body, "price"), _text(body, "qty")
    if price is None and qty is None:
        raise RestError(400, "give price, qty or both")
    message: dict[str, Any] = {F.MSG_TYPE: M.ORDER_CANCEL_REPLACE_REQUEST,
                               F.CL_ORD_ID: _text(body, "new_clordid") or new_clordid(), F.ORIG_CL_ORD_ID: clordid}
    if price is not None:
        message[F.PRICE] = price
    if qty is not None:
        message[F.ORDER_QTY] = qty
    return message


# --- answers ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """What ends a REST request: the core's first message about it."""

    status: int
    body: dict[str, Any]


def report_view(message: dict[str, Any]) -> dict[str, Any]:
    """An ExecutionReport as the REST API shows an order."""
    order_id = message.get(F.ORDER_ID)
    view = {
        "order_id": int(order_id) if isinstance(order_id, str) and order_id.isdigit() else None,
        "clordid": message.get(F.CL_ORD_ID),
        "symbol": message.get(F.SYMBOL),
        "side": SIDE_NAMES.get(message.get(F.SIDE)),
        "type": TYPE_NAMES.get(message.get(F.ORD_TYPE)),
        "tif": "post_only" if message.get(F.EXEC_INST) == POST_ONLY_EXEC_INST
        else TIF_NAMES.get(message.get(F.TIME_IN_FORCE)),
        "price": message.get(F.PRICE),
        "qty": message.get(F.ORDER_QTY),
        "quote_qty": message.get(F.CASH_ORDER_QTY),
        "filled": message.get(F.CUM_QTY),
        "leaves": message.get(F.LEAVES_QTY),
        "avg_price": message.get(F.AVG_PX),
        "status": STATUS_NAMES.get(message.get(F.ORD_STATUS)),
        "event": EXEC_NAMES.get(message.get(F.EXEC_TYPE)),
    }
    return {key: value for key, value in view.items() if value is not None}


def answer(message: dict[str, Any]) -> Answer:
    """The HTTP answer to a request that the core answered with ``message``."""
    msg_type = message.get(F.MSG_TYPE)
    if msg_type == M.EXECUTION_REPORT:
        if message.get(F.EXEC_TYPE) == "8":
            return Answer(400, {"error": message.get(F.TEXT, "rejected"), "code": message.get(F.ORD_REJ_REASON),
                                "order": report_view(message)})
        return Answer(200, report_view(message))
    if msg_type == M.ORDER_CANCEL_REJECT:
        unknown = message.get(F.CXL_REJ_REASON) == 1
        return Answer(404 if unknown else 400, {"error": message.get(F.TEXT, "refused"),
                                                "code": message.get(F.CXL_REJ_REASON)})
    if msg_type == M.REJECT:
        return Answer(400, {"error": message.get(F.TEXT, "refused"), "field": message.get(F.REF_TAG_ID),
                            "code": message.get(F.SESSION_REJECT_REASON)})
    return Answer(502, {"error": f"unexpected answer {msg_type!r}"})


def answers(request: dict[str, Any], msg_seq_num: int) -> Callable[[dict[str, Any]], bool]:
    """Whether a message of the core is the answer to ``request`` (sent with ``msg_seq_num``)."""
    clordid = request.get(F.CL_ORD_ID)

    def match(message: dict[str, Any]) -> bool:
        msg_type = message.get(F.MSG_TYPE)
        if msg_type == M.REJECT:
            return message.get(F.REF_SEQ_NUM) == msg_seq_num
        if msg_type in (M.EXECUTION_REPORT, M.ORDER_CANCEL_REJECT):
            return message.get(F.CL_ORD_ID) == clordid and message.get(F.EXEC_TYPE) != "F"
        return False

    return match
