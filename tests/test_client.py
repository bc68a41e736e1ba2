"""The sync and asyncio clients against a fake gateway: a ROUTER in a thread, on an ipc endpoint in the
test's temporary directory, that checks Logon signatures and answers like a tiny exchange. The real
pipeline is tested end to end elsewhere; here the point is the client's side of the conversation."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import pytest
import zmq

from client.aio import AsyncClient
from client.session import ClientError, ClientTimeout, Disconnected, LogonRefused, RequestRejected
from client.sync import Client
from common.protocol import ExecType, MsgType, OrdStatus, decode, encode, sign_logon

TRADER_KEY, TRADER_SECRET = "trader0000000001", "11" * 32
OTHER_KEY, OTHER_SECRET = "trader0000000002", "22" * 32
ADMIN_KEY, ADMIN_SECRET = "admin00000000001", "aa" * 32
SYMBOLS = ("BTC-USDT", "ETH-USDT")
LOGON_WINDOW_NS = 30 * 10**9
TIMEOUT = 5.0  # generous: only reached when a test fails


# --- the fake gateway ----------------------------------------------------------------------------------


@dataclass
class Key:
    secret: str
    account: int | None  # None for an admin key
    role: str = "trader"


@dataclass
class Order:
    clordid: str
    order_id: int
    account: int
    symbol: str
    side: str
    price: str | None
    qty: str
    status: str = OrdStatus.NEW.value


@dataclass
class Peer:
    key_id: str | None = None
    account: int | None = None
    admin: bool = False
    seq: itertools.count = field(default_factory=lambda: itertools.count(1))


class FakeGateway:
    """A stand-in gateway (see the module docstring). ``received`` lists every message it decoded;
    ``handlers`` (MsgType -> function(message, peer) -> replies or None) override its answers; ``keys``
    may be a dict or a function key_id -> Key | None (to read a real credentials store)."""

    def __init__(self, endpoint: str, *, keys: dict[str, Key] | Callable[[str], Key | None] | None = None,
                 heartbeat_s: int = 30):
        self.endpoint = endpoint
        self.keys = keys if keys is not None else {
            TRADER_KEY: Key(TRADER_SECRET, 1), OTHER_KEY: Key(OTHER_SECRET, 2), ADMIN_KEY: Key(ADMIN_SECRET, None, "admin"),
        }
        self.created_keys: dict[str, Key] = {}  # keys of the accounts it created
        self.heartbeat_s = heartbeat_s
        self.handlers: dict[str, Callable[[dict, Peer], list[dict] | None]] = {}
        self.received: list[dict] = []
        self.seen_logons: set[tuple[str, int, int]] = set()
        self.orders: dict[tuple[int, str], Order] = {}
        self.order_ids = itertools.count(1)
        self.accounts = itertools.count(3)
        self.balances: dict[int, dict[str, list[int]]] = {1: {"BTC": [2, 0], "USDT": [100000, 0]}, 2: {}}
        self.peers: dict[bytes, Peer] = {}
        self._context = zmq.Context()
        self._router = self._context.socket(zmq.ROUTER)
        self._router.setsockopt(zmq.LINGER, 0)
        self._router.bind(endpoint)
        self._control = self._context.socket(zmq.PAIR)
        self._control.setsockopt(zmq.LINGER, 0)
        self._control.bind(f"inproc://control-{id(self)}")
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    # --- used by tests ------------------------------------------------------------------------------

    def push(self, message: dict) -> None:
        """Send ``message`` (MsgSeqNum added) to every logged-on client, from the gateway's thread."""
        self._control.send_multipart([b"push", encode(message)])

    def stop(self) -> None:
        self._control.send_multipart([b"stop"])
        self._thread.join(TIMEOUT)
        self._control.close(linger=0)
        self._context.term()

    def received_types(self) -> list[str]:
        return [m.get("MsgType") for m in list(self.received)]

    def wait_received(self, predicate: Callable[[dict], bool], *, timeout: float = TIMEOUT) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in list(self.received):
                if predicate(message):
                    return message
            time.sleep(0.01)
        raise AssertionError(f"the gateway did not receive the expected message; it got {self.received}")

    # --- the thread ---------------------------------------------------------------------------------

    def _run(self) -> None:
        control = self._context.socket(zmq.PAIR)
        control.setsockopt(zmq.LINGER, 0)
        control.connect(f"inproc://control-{id(self)}")
        poller = zmq.Poller()
        poller.register(self._router, zmq.POLLIN)
        poller.register(control, zmq.POLLIN)
        try:
            while True:
                events = dict(poller.poll())
                if control in events:
                    command = control.recv_multipart()
                    if command[0] == b"stop":
                        return
                    message = decode(command[1], max_bytes=1 << 20)
                    for identity, peer in self.peers.items():
                        if peer.key_id is not None:
                            self._send(identity, peer, dict(message))
                if self._router in events:
                    identity, frame = self._router.recv_multipart()
                    message = decode(frame, max_bytes=1 << 20)
                    self.received.append(message)
                    peer = self.peers.setdefault(identity, Peer())
                    for reply in self._answer(message, peer) or []:
                        self._send(identity, peer, reply)
        finally:
            control.close(linger=0)
            self._router.close(linger=0)

    def _send(self, identity: bytes, peer: Peer, message: dict) -> None:
        message.setdefault("MsgSeqNum", next(peer.seq))
        message.setdefault("SendingTime", time.time_ns())
        self._router.send_multipart([identity, encode(message)])

    def _answer(self, message: dict, peer: Peer) -> list[dict] | None:
        msg_type = message.get("MsgType")
        if msg_type in self.handlers:
            return self.handlers[msg_type](message, peer)
        if msg_type == "A":
            return self._logon(message, peer)
        if peer.key_id is None:
            return [reject(message, 9, "not logged on")]
        if msg_type == "5":
            peer.key_id = None
            return [{"MsgType": "5", "Text": "logged out"}]
        if msg_type == "0":
            return []
        if msg_type == "1":
            return [{"MsgType": "0", "TestReqID": message["TestReqID"]}]
        if msg_type == "UA":
            return [self._admin(message, peer)]
        if msg_type == "UB":
            account = message.get("Account", peer.account)
            balances = [{"Currency": c, "Available": str(a), "Frozen": str(f)}
                        for c, (a, f) in sorted(self.balances.get(account, {}).items())]
            return [{"MsgType": "UP", "BalanceReqID": message["BalanceReqID"], "Account": account,
                     "Balances": balances}]
        if peer.admin:
            return [reject(message, 9, "an admin session does not trade")]
        return getattr(self, f"_order_{ORDER_HANDLERS[msg_type]}")(message, peer)

    def _logon(self, message: dict, peer: Peer) -> list[dict]:
        key_id = message.get("Username")
        key = self.created_keys.get(key_id) or (self.keys(key_id) if callable(self.keys) else self.keys.get(key_id))
        expected = key and sign_logon(bytes.fromhex(key.secret), message["SendingTime"], message["MsgSeqNum"], key_id)
        stamp = (key_id, message["SendingTime"], message["MsgSeqNum"])
        refusal = ("logon refused: unknown key or bad signature" if message.get("RawData") != expected else
                   "logon refused: SendingTime is too far from the gateway's clock"
                   if abs(message["SendingTime"] - time.time_ns()) > LOGON_WINDOW_NS else
                   "logon refused: this signed Logon was already used" if stamp in self.seen_logons else None)
        if refusal is not None:  # as the gateway does: a Reject of the Logon, then a Logout
            return [reject(message, 8, refusal), {"MsgType": "5", "Text": refusal}]
        self.seen_logons.add(stamp)
        peer.key_id, peer.account, peer.admin = key_id, key.account, key.role == "admin"
        reply = {"MsgType": "A", "EncryptMethod": 0, "HeartBtInt": message.get("HeartBtInt", self.heartbeat_s)}
        if key.account is not None:
            reply["Account"] = key.account
        return [reply]

    def _admin(self, message: dict, peer: Peer) -> dict:
        base = {"MsgType": "UR", "AdminReqID": message["AdminReqID"], "AdminAction": message["AdminAction"]}
        if not peer.admin:
            return {**base, "Status": "rejected", "Text": "admin requests need an admin key"}
        if message["AdminAction"] == "create_account":
            account = next(self.accounts)
            key_id, secret = f"trader{account:010d}", f"{account:02x}" * 32
            self.created_keys[key_id] = Key(secret, account)
            self.balances[account] = {}
            return {**base, "Status": "ok", "Account": account, "KeyID": key_id, "Secret": secret}
        balance = self.balances.setdefault(message["Account"], {}).setdefault(message["Currency"], [0, 0])
        amount = int(message["Amount"])
        if message["AdminAction"] == "withdraw":
            if balance[0] < amount:
                return {**base, "Status": "rejected", "Account": message["Account"],
                        "Text": "INSUFFICIENT_FUNDS: available is less than the amount"}
            amount = -amount
        balance[0] += amount
        return {**base, "Status": "ok", "Account": message["Account"]}

    # --- a tiny exchange ------------------------------------------------------------------------------

    def _order_new(self, message: dict, peer: Peer) -> list[dict]:
        clordid = message["ClOrdID"]
        if message["Symbol"] not in SYMBOLS:
            return [report(message, ExecType.REJECTED, OrdStatus.REJECTED, OrdRejReason=1,
                           Text=f"UNKNOWN_SYMBOL: unknown symbol {message['Symbol']!r}")]
        if (peer.account, clordid) in self.orders:
            return [report(message, ExecType.NEW, OrdStatus.NEW, PossResend=True,
                           OrderID=str(self.orders[(peer.account, clordid)].order_id))]
        order = Order(clordid, next(self.order_ids), peer.account, message["Symbol"], message["Side"],
                      message.get("Price"), message.get("OrderQty") or "1")
        self.orders[(peer.account, clordid)] = order
        replies = [order_report(order, ExecType.NEW, LeavesQty=order.qty, CumQty="0")]
        if order.price is None:  # a market order fills at 100 at once
            order.status = OrdStatus.FILLED.value
            replies.append(order_report(order, ExecType.TRADE, LastPx="100", LastQty=order.qty, LeavesQty="0",
                                        CumQty=order.qty, AvgPx="100", Commission="0.05", CommCurrency="USDT",
                                        LastLiquidityInd="2"))
        elif message.get("TimeInForce") == "3":  # an IOC limit order finds nothing
            order.status = OrdStatus.EXPIRED.value
            replies.append(order_report(order, ExecType.EXPIRED, LeavesQty="0", CumQty="0"))
        return replies

    def _find(self, message: dict, peer: Peer) -> Order | None:
        if "OrigClOrdID" in message:
            order = self.orders.get((peer.account, message["OrigClOrdID"]))
        else:
            order = next((o for o in self.orders.values()
                          if o.account == peer.account and str(o.order_id) == str(message.get("OrderID"))), None)
        return order if order is not None and order.status in (OrdStatus.NEW.value, "1") else None

    def _order_cancel(self, message: dict, peer: Peer) -> list[dict]:
        order = self._find(message, peer)
        if order is None:
            return [{"MsgType": "9", "ClOrdID": message["ClOrdID"], "OrigClOrdID": message.get("OrigClOrdID"),
                     "CxlRejResponseTo": "1", "CxlRejReason": 1, "Text": "UNKNOWN_ORDER: no such open order"}]
        order.status = OrdStatus.CANCELED.value
        return [order_report(order, ExecType.CANCELED, ClOrdID=message["ClOrdID"], OrigClOrdID=order.clordid,
                             LeavesQty="0")]

    def _order_replace(self, message: dict, peer: Peer) -> list[dict]:
        order = self._find(message, peer)
        if order is None:
            return [{"MsgType": "9", "ClOrdID": message["ClOrdID"], "OrigClOrdID": message.get("OrigClOrdID"),
                     "CxlRejResponseTo": "2", "CxlRejReason": 1, "Text": "UNKNOWN_ORDER: no such open order"}]
        previous = order.clordid
        del self.orders[(peer.account, previous)]
        order.clordid, order.price, order.qty = message["ClOrdID"], message["Price"], message["OrderQty"]
        self.orders[(peer.account, order.clordid)] = order
        return [order_report(order, ExecType.REPLACED, OrigClOrdID=previous, LeavesQty=order.qty)]

    def _order_mass_cancel(self, message: dict, peer: Peer) -> list[dict]:
        replies = []
        for order in list(self.orders.values()):
            if order.account == peer.account and order.status == OrdStatus.NEW.value and (
                    message.get("Symbol") in (None, order.symbol)):
                order.status = OrdStatus.CANCELED.value  # the reports carry the request's ClOrdID
                replies.append(order_report(order, ExecType.CANCELED, ClOrdID=message["ClOrdID"], LeavesQty="0"))
        replies.append({"MsgType": "r", "ClOrdID": message["ClOrdID"],
                        "MassCancelRequestType": message["MassCancelRequestType"],
                        "MassCancelResponse": message["MassCancelRequestType"], "TotalAffectedOrders": len(replies)})
        return replies

    def _order_status(self, message: dict, peer: Peer) -> list[dict]:
        order = (self.orders.get((peer.account, message["ClOrdID"])) if "ClOrdID" in message else
                 next((o for o in self.orders.values() if str(o.order_id) == str(message.get("OrderID"))), None))
        if order is None:
            echo = {k: message[k] for k in ("ClOrdID", "OrderID") if k in message}
            return [{"MsgType": "8", **echo, "ExecType": "I", "OrdStatus": "8", "OrdRejReason": 5,
                     "Text": "UNKNOWN_ORDER: no such order"}]
        return [order_report(order, ExecType.ORDER_STATUS)]

    def _order_mass_status(self, message: dict, peer: Peer) -> list[dict]:
        open_orders = [o for o in self.orders.values() if o.account == peer.account and o.status == OrdStatus.NEW.value]
        rid = message["MassStatusReqID"]
        if not open_orders:
            return [{"MsgType": "8", "MassStatusReqID": rid, "TotNumReports": 0, "LastRptRequested": True,
                     "ExecType": "I", "OrdStatus": "8", "Text": "no open orders"}]
        return [order_report(o, ExecType.ORDER_STATUS, MassStatusReqID=rid, TotNumReports=len(open_orders),
                             LastRptRequested=i == len(open_orders) - 1) for i, o in enumerate(open_orders)]


ORDER_HANDLERS = {"D": "new", "F": "cancel", "G": "replace", "q": "mass_cancel", "H": "status", "AF": "mass_status"}


def reject(message: dict, reason: int, text: str) -> dict:
    return {"MsgType": "3", "RefSeqNum": message.get("MsgSeqNum"), "RefMsgType": message.get("MsgType"),
            "SessionRejectReason": reason, "Text": text}


def report(message: dict, exec_type: ExecType, status: OrdStatus, **fields) -> dict:
    return {"MsgType": "8", "ClOrdID": message["ClOrdID"], "OrderID": "0", "ExecID": "0", "ExecType": exec_type.value,
            "OrdStatus": status.value, "Symbol": message.get("Symbol"), "Side": message.get("Side"), **fields}


def order_report(order: Order, exec_type: ExecType, **fields) -> dict:
    message = {"MsgType": "8", "ClOrdID": order.clordid, "OrderID": str(order.order_id), "ExecID": f"x{time.time_ns()}",
               "ExecType": exec_type.value, "OrdStatus": order.status, "Symbol": order.symbol, "Side": order.side,
               "OrderQty": order.qty, "LeavesQty": order.qty, "CumQty": "0"}
    if order.price is not None:
        message["Price"] = order.price
    message.update(fields)
    return message


@pytest.fixture
def gateway(tmp_path):
    fake = FakeGateway(f"ipc://{tmp_path}/fix.sock")
    yield fake
    fake.stop()


@pytest.fixture
def client(gateway):
    with Client(gateway.endpoint, TRADER_KEY, TRADER_SECRET, timeout=TIMEOUT) as connected:
        connected.logon()
        yield connected


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, 30))


# --- the sync client ---------------------------------------------------------------------------------


def test_logon_with_a_valid_signature_returns_the_gateways_logon(gateway):
    with Client(gateway.endpoint, TRADER_KEY, TRADER_SECRET, timeout=TIMEOUT) as client:
        logon = client.logon()
        assert logon.is_type(MsgType.LOGON) and logon["Account"] == 1 and client.session.heartbeat_s == 30
    assert gateway.wait_received(lambda m: m["MsgType"] == "5")


def test_logon_with_the_wrong_secret_raises_with_the_gateways_reason(gateway):
    with Client(gateway.endpoint, TRADER_KEY, OTHER_SECRET, timeout=TIMEOUT) as client:
        with pytest.raises(LogonRefused, match="^logon refused: unknown key or bad signature$"):
            client.logon()
        assert not client.session.logged_on


def test_logon_times_out_when_no_gateway_answers(tmp_path):
    with Client(f"ipc://{tmp_path}/nobody.sock", TRADER_KEY, TRADER_SECRET, timeout=0.2) as client:
        with pytest.raises(ClientTimeout, match="Logon"):
            client.logon()


def test_a_limit_order_is_acknowledged_and_listed_among_open_orders(client):
    clordid = client.buy("BTC-USDT", "0.5", "65000")
    new = client.first_report(clordid)
    assert new.exec_type == ExecType.NEW.value and new["Price"] == "65000" and not new.is_reject
    assert not client.session.unacknowledged
    [listed] = client.open_orders()
    assert listed.clordid == clordid and listed["OrderID"] == new["OrderID"]


def test_a_market_orders_reports_come_in_order_and_the_later_ones_wait_for_next_message(client):
    clordid = client.market_buy("BTC-USDT", "0.1")
    assert client.first_report(clordid).exec_type == ExecType.NEW.value
    trade = client.next_message()
    assert trade.exec_type == ExecType.TRADE.value and trade["OrdStatus"] == OrdStatus.FILLED.value
    assert trade["LastQty"] == "0.1"


def test_a_rejected_order_is_returned_as_its_report_not_raised(client):
    clordid = client.sell("DOGE-USDT", "1", "1")
    rejected = client.first_report(clordid)
    assert rejected.is_reject and "UNKNOWN_SYMBOL" in rejected.text


def test_a_session_reject_of_an_order_is_that_orders_first_report(gateway, client):
    gateway.handlers["D"] = lambda message, peer: [reject(message, 5, "OrderQty must be greater than zero")]
    clordid = client.buy("BTC-USDT", "0", "1")
    refused = client.first_report(clordid)
    assert refused.is_type(MsgType.REJECT) and refused.clordid == clordid and "greater than zero" in refused.text


def test_amend_and_cancel_name_the_order_by_its_clordid(client):
    placed = client.sell("ETH-USDT", "2", "3000")
    client.first_report(placed)
    amended = client.amend(placed, price="3100")
    replaced = client.first_report(amended)
    assert replaced.exec_type == ExecType.REPLACED.value and replaced["Price"] == "3100"
    assert replaced["OrderQty"] == "2" and replaced["OrigClOrdID"] == placed
    cancelled = client.first_report(client.cancel(amended))
    assert cancelled.exec_type == ExecType.CANCELED.value and cancelled["OrigClOrdID"] == amended
    assert client.open_orders() == []


def test_cancelling_an_unknown_order_returns_the_cancel_reject(client):
    refused = client.first_report(client.cancel("never-placed", symbol="BTC-USDT"))
    assert refused.is_type(MsgType.ORDER_CANCEL_REJECT) and refused.is_reject and "UNKNOWN_ORDER" in refused.text


def test_cancel_all_reports_each_cancelled_order_then_the_count(client):
    first, second = client.buy("BTC-USDT", "1", "10"), client.buy("BTC-USDT", "1", "11")
    mass = client.cancel_all()
    report_of_mass = client.wait_for(lambda m: m.is_type(MsgType.ORDER_MASS_CANCEL_REPORT))
    assert report_of_mass.clordid == mass and report_of_mass["TotalAffectedOrders"] == 2
    kept = [(m.clordid, m.exec_type) for m in client.messages(timeout=0.05)]
    assert kept == [(first, "0"), (second, "0"), (mass, "4"), (mass, "4")]  # nothing was lost


def test_status_is_the_orders_status_report(client):
    clordid = client.buy("BTC-USDT", "1", "10")
    status = client.status(clordid)
    assert status.exec_type == ExecType.ORDER_STATUS.value and status.clordid == clordid
    assert client.status(order_id=status["OrderID"]).clordid == clordid


def test_balances_are_given_by_currency(client):
    balances = client.balances()
    assert balances["BTC"].available == "2" and balances["USDT"].frozen == "0"


def test_an_admin_creates_funds_and_debits_an_account(gateway):
    with Client(gateway.endpoint, ADMIN_KEY, ADMIN_SECRET, timeout=TIMEOUT) as admin:
        admin.logon()
        created = admin.admin_create_account()
        assert admin.admin_deposit(created.account, "USDT", "500", request_id="dep-1")["Status"] == "ok"
        admin.admin_withdraw(created.account, "USDT", "200")
        with pytest.raises(RequestRejected, match="INSUFFICIENT_FUNDS"):
            admin.admin_withdraw(created.account, "USDT", "1000")
        assert admin.balances(account=created.account)["USDT"].available == "300"
    with Client(gateway.endpoint, created.key_id, created.secret, timeout=TIMEOUT) as trader:
        assert trader.logon()["Account"] == created.account


def test_an_admin_request_from_a_trader_raises_the_refusal(client):
    with pytest.raises(RequestRejected, match="admin"):
        client.admin_create_account()


def test_a_test_request_is_answered_with_its_id_while_the_client_waits(gateway, client):
    gateway.push({"MsgType": "1", "TestReqID": "are-you-there"})
    gateway.push({"MsgType": "0"})
    gateway.push({"MsgType": "8", "ClOrdID": "after"})
    assert client.next_message().clordid == "after"  # the session messages were handled, not handed out
    gateway.wait_received(lambda m: m["MsgType"] == "0" and m.get("TestReqID") == "are-you-there")


def test_a_waiting_client_sends_heartbeats_when_it_has_sent_nothing_for_the_interval(gateway):
    with Client(gateway.endpoint, TRADER_KEY, TRADER_SECRET, timeout=TIMEOUT, heartbeat_s=1) as client:
        client.logon()
        assert client.next_message(timeout=1.3) is None
        gateway.wait_received(lambda m: m["MsgType"] == "0" and "TestReqID" not in m)


def test_messages_nobody_waited_for_are_kept_in_order_for_next_message(gateway, client):
    gateway.push({"MsgType": "8", "ClOrdID": "elsewhere-1", "ExecType": "F", "OrdStatus": "2"})
    assert client.balances()["BTC"].available == "2"
    assert client.next_message().clordid == "elsewhere-1"
    assert client.next_message(timeout=0.05) is None


def test_wait_for_skips_other_messages_and_raises_on_the_gateways_logout(gateway, client):
    gateway.push({"MsgType": "0"})
    gateway.push({"MsgType": "8", "ClOrdID": "x"})
    assert client.wait_for(lambda m: m.clordid == "x").clordid == "x"
    gateway.push({"MsgType": "5", "Text": "heartbeat timeout"})
    with pytest.raises(Disconnected, match="heartbeat timeout"):
        client.wait_for(lambda m: m.clordid == "never")
    assert [m.msg_type for m in client.messages(timeout=0.05)] == ["5"]


def test_iterating_the_client_yields_every_message_until_the_logout(gateway, client):
    for n in range(3):
        gateway.push({"MsgType": "8", "ClOrdID": f"c{n}"})
    gateway.push({"MsgType": "5", "Text": "bye"})
    assert [m.clordid or m.msg_type for m in client] == ["c0", "c1", "c2", "5"]


def test_an_order_with_no_answer_stays_unacknowledged_for_a_resend(gateway, client):
    gateway.handlers["D"] = lambda message, peer: None
    clordid = client.buy("BTC-USDT", "1", "10")
    with pytest.raises(ClientTimeout):
        client.first_report(clordid, timeout=0.1)
    assert list(client.session.unacknowledged) == [clordid]


def test_close_logs_out_and_a_closed_client_refuses_to_send(gateway):
    client = Client(gateway.endpoint, TRADER_KEY, TRADER_SECRET, timeout=TIMEOUT)
    client.logon()
    client.close()
    assert gateway.received_types()[-1] == "5" and client.closed
    with pytest.raises(ClientError, match="closed"):
        client.buy("BTC-USDT", "1", "10")
    client.close()  # twice is fine


# --- the asyncio client -----------------------------------------------------------------------------------


def test_async_logon_order_and_queries(gateway):
    async def session():
        async with AsyncClient(gateway.endpoint, TRADER_KEY, TRADER_SECRET, timeout=TIMEOUT) as client:
            logon = await client.logon()
            clordid = await client.buy("BTC-USDT", "0.5", "65000")
            new = await client.first_report(clordid)
            [listed] = await client.open_orders()
            status = await client.status(clordid)
            balances = await client.balances()
            amended = await client.first_report(await client.amend(clordid, qty="0.25"))
            cancelled = await client.first_report(await client.cancel(amended.clordid))
            return logon, new, listed, status, balances, amended, cancelled

    logon, new, listed, status, balances, amended, cancelled = run(session())
    assert logon["Account"] == 1 and new.exec_type == ExecType.NEW.value and listed.clordid == new.clordid
    assert status.exec_type == ExecType.ORDER_STATUS.value and balances["USDT"].available == "100000"
    assert amended["OrderQty"] == "0.25" and cancelled.exec_type == ExecType.CANCELED.value
    assert gateway.received_types()[-1] == "5"


def test_async_logon_refused_raises_with_the_reason(gateway):
    async def session():
        async with AsyncClient(gateway.endpoint, OTHER_KEY, TRADER_SECRET, timeout=TIMEOUT) as client:
            await client.logon()

    with pytest.raises(LogonRefused, match="bad signature"):
        run(session())


def test_async_reports_arrive_in_order_through_async_iteration(gateway):
    async def session():
        async with AsyncClient(gateway.endpoint, TRADER_KEY, TRADER_SECRET, timeout=TIMEOUT) as client:
            await client.logon()
            clordid = await client.market_sell("ETH-USDT", "3")
            first = await client.first_report(clordid)
            gateway.push({"MsgType": "5", "Text": "closing"})
            return first, [m async for m in client]

    first, rest = run(session())
    assert first.exec_type == ExecType.NEW.value
    assert [m.exec_type or m.msg_type for m in rest] == [ExecType.TRADE.value, "5"]


def test_async_admin_requests_and_a_trader_refused(gateway):
    async def session():
        async with AsyncClient(gateway.endpoint, ADMIN_KEY, ADMIN_SECRET, timeout=TIMEOUT) as admin:
            await admin.logon()
            created = await admin.admin_create_account()
            await admin.admin_deposit(created.account, "BTC", "3")
            await admin.admin_withdraw(created.account, "BTC", "1")
        async with AsyncClient(gateway.endpoint, created.key_id, created.secret, timeout=TIMEOUT) as trader:
            await trader.logon()
            balances = await trader.balances()
            with pytest.raises(RequestRejected):
                await trader.admin_deposit(created.account, "BTC", "1")
        return balances

    assert run(session())["BTC"].available == "2"


def test_async_client_answers_test_requests_and_heartbeats_while_the_program_sleeps(gateway):
    async def session():
        async with AsyncClient(gateway.endpoint, TRADER_KEY, TRADER_SECRET, timeout=TIMEOUT, heartbeat_s=1) as client:
            await client.logon()
            gateway.push({"MsgType": "1", "TestReqID": "t-1"})
            await asyncio.sleep(1.3)  # the program does not touch the client
            return await client.next_message(timeout=0.05)

    assert run(session()) is None
    gateway.wait_received(lambda m: m["MsgType"] == "0" and m.get("TestReqID") == "t-1")
    gateway.wait_received(lambda m: m["MsgType"] == "0" and "TestReqID" not in m)


def test_async_wait_for_times_out_and_raises_on_logout(gateway):
    async def session():
        async with AsyncClient(gateway.endpoint, TRADER_KEY, TRADER_SECRET, timeout=TIMEOUT) as client:
            await client.logon()
            with pytest.raises(ClientTimeout):
                await client.wait_for(lambda m: False, timeout=0.05)
            waiting = asyncio.create_task(client.wait_for(lambda m: m.clordid == "never"))
            gateway.push({"MsgType": "5", "Text": "session expired"})
            with pytest.raises(Disconnected, match="session expired"):
                await waiting
            assert (await client.next_message()).is_type(MsgType.LOGOUT)
            assert await client.next_message(timeout=0.05) is None

    run(session())


def test_async_concurrent_requests_each_get_their_own_answer(gateway):
    async def session():
        async with AsyncClient(gateway.endpoint, TRADER_KEY, TRADER_SECRET, timeout=TIMEOUT) as client:
            await client.logon()
            ids = [await client.buy("BTC-USDT", "1", str(10 + n)) for n in range(5)]
            reports = await asyncio.gather(*(client.first_report(i) for i in reversed(ids)), client.balances())
            return ids, reports

    ids, reports = run(session())
    assert [r.clordid for r in reports[:-1]] == list(reversed(ids)) and "BTC" in reports[-1]
