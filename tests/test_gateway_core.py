"""The gateway's pure core, driven with messages and engine reports alone (no sockets), a settable clock
and a real credential store in a temporary directory.

The configuration is the packaged default (BTC-USDT: tick 0.1, lot 0.0001, so one lot at one tick is 10
USDT units; fees 2 bps maker, 5 bps taker) with a 10 s heartbeat and a 5 s logon window.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import numpy as np
import pytest

from common.config import default_document, parse_config
from common.credentials import CredentialStore
from common.intake import decode_submissions
from common.protocol import client_order_number, encode, exec_id, sign_logon
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
from common.reports import ReportMessage, gateway_topic
from gateway import reports
from gateway.core import GatewayCore, Query, Submit, ToClient

T0 = 1_700_000_000_000_000_000
SECOND = 1_000_000_000
EPOCH = 0xABCD1234
HEARTBEAT_S = 10
BTC_USDT = 0
USDT = 2  # asset ids of the default configuration: BTC, ETH, USDT


class Gateway:
    """A core with a clock, a credential store and clients that number their messages."""

    def __init__(self, tmp_path, *, synced_at: int = 0):
        document = default_document()
        document["paths"]["data_dir"] = str(tmp_path)
        document["gateway"].update(heartbeat_s=HEARTBEAT_S, logon_window_ms=5000)
        document["capacity"]["max_accounts"] = 1000
        self.config = parse_config(document)
        self.instance = self.config.gateway.instances[0]
        self.store = CredentialStore.open(self.config)
        self.now = T0
        self.core = GatewayCore(self.config, self.instance, self.store, clock=lambda: self.now, epoch=EPOCH)
        self.next_seq: dict[bytes, int] = {}
        self.n = 0
        self.heartbeat(synced_at)  # the engine's first word: sessions may open from now on (GatewayCore.synced)

    def heartbeat(self, n: int, epoch: int = 1) -> list:
        return self.core.on_report(ReportMessage(gateway_topic(self.instance.id), n, np.zeros(0, EVENT_DTYPE), [],
                                                 epoch, heartbeat=True))

    def close(self) -> None:
        self.store.close()

    # --- clients -----------------------------------------------------------------------------------

    def trader(self) -> tuple[int, str, str]:
        account = self.store.allocate_account()
        key_id, secret = self.store.create_key(account)
        return account, key_id, secret

    def logon_message(self, key_id: str, secret: str, *, seq: int = 1, sending_time: int | None = None,
                      **extra: Any) -> dict:
        sending_time = self.now if sending_time is None else sending_time
        return {"MsgType": "A", "MsgSeqNum": seq, "SendingTime": sending_time, "Username": key_id,
                "RawData": sign_logon(bytes.fromhex(secret), sending_time, seq, key_id), **extra}

    def logon(self, identity: bytes, key_id: str, secret: str, **kwargs: Any) -> list:
        message = self.logon_message(key_id, secret, **kwargs)
        self.next_seq[identity] = message["MsgSeqNum"] + 1
        return self.core.on_client(identity, encode(message))

    def connect_trader(self, identity: bytes = b"c1") -> int:
        account, key_id, secret = self.trader()
        [logged_on] = self.logon(identity, key_id, secret)
        assert logged_on.message["MsgType"] == "A"
        return account

    def connect_admin(self, identity: bytes = b"admin") -> None:
        key_id, secret = self.store.create_admin_key()
        [logged_on] = self.logon(identity, key_id, secret)
        assert logged_on.message["MsgType"] == "A"

    def send(self, identity: bytes, msg_type: str, **fields: Any) -> list:
        seq = self.next_seq.get(identity, 1)
        self.next_seq[identity] = seq + 1
        return self.core.on_client(identity, encode({"MsgType": msg_type, "MsgSeqNum": seq, **fields}))

    def session_id(self, identity: bytes) -> int:
        return self.core.session_of(identity).id

    # --- the engine --------------------------------------------------------------------------------

    def report(self, *pairs: tuple[np.ndarray, dict], n: int | None = None, epoch: int = 1) -> list:
        if n is None:
            self.n += 1
            n = self.n
        events = np.concatenate([event for event, _ in pairs]) if pairs else np.zeros(0, EVENT_DTYPE)
        return self.core.on_report(ReportMessage(gateway_topic(self.instance.id), n, events,
                                                 [item for _, item in pairs], epoch))


@pytest.fixture
def gw(tmp_path):
    gateway = Gateway(tmp_path)
    yield gateway
    gateway.close()


def event(kind: EventKind, **fields: int) -> np.ndarray:
    record = np.zeros(1, dtype=EVENT_DTYPE)
    record["kind"] = kind
    for name, value in fields.items():
        record[name] = value
    return record


def item(session: int, account: int, clordid: str, role: str = "order", cum_quote: int = 0,
         resend: bool = False) -> dict:
    return {"session": session, "account": account, "role": role, "clordid": clordid, "cum_quote": cum_quote,
            "resend": resend}


def messages(actions: list) -> list[dict]:
    assert all(isinstance(a, ToClient) for a in actions), actions
    return [a.message for a in actions]


def only(actions: list) -> dict:
    [message] = messages(actions)
    return message


def submitted(actions: list) -> tuple[np.void, Any]:
    [action] = actions
    assert isinstance(action, Submit), action
    [record], [envelope] = decode_submissions(action.frames)
    return record, envelope


# --- logon --------------------------------------------------------------------------------------------


def test_a_signed_logon_opens_a_session_with_the_keys_account(gw):
    account, key_id, secret = gw.trader()
    reply = only(gw.logon(b"c1", key_id, secret, HeartBtInt=30))
    assert reply == {"MsgType": "A", "MsgSeqNum": 1, "SendingTime": T0, "EncryptMethod": 0,
                     "HeartBtInt": HEARTBEAT_S, "Account": account}
    session = gw.core.session_of(b"c1")
    assert session.account == account and not session.admin


def test_session_ids_are_the_epoch_and_a_counter(gw):
    gw.connect_trader(b"c1")
    gw.connect_trader(b"c2")
    assert gw.session_id(b"c1") == (EPOCH << 32) | 1
    assert gw.session_id(b"c2") == (EPOCH << 32) | 2


def test_each_gateway_start_draws_its_own_random_epoch(gw):
    epochs = {GatewayCore(gw.config, gw.instance, gw.store).epoch for _ in range(8)}
    assert len(epochs) == 8 and all(0 <= epoch < 1 << 32 for epoch in epochs)


def test_a_bad_signature_is_refused_with_a_reject_and_a_logout(gw):
    _, key_id, _ = gw.trader()
    reject, logout = messages(gw.logon(b"c1", key_id, "11" * 32))
    assert reject["MsgType"] == "3" and reject["SessionRejectReason"] == 8 and reject["RefTagID"] == "RawData"
    assert reject["RefSeqNum"] == 1 and reject["RefMsgType"] == "A" and reject["MsgSeqNum"] == 0
    assert logout["MsgType"] == "5" and "bad signature" in logout["Text"]
    assert gw.core.session_of(b"c1") is None


def test_an_unknown_key_gets_the_same_answer_as_a_bad_signature(gw):
    _, key_id, _ = gw.trader()
    bad_signature = messages(gw.logon(b"c1", key_id, "11" * 32))
    unknown_key = messages(gw.logon(b"c2", "0123456789abcdef", "11" * 32))
    assert [m["Text"] for m in bad_signature] == [m["Text"] for m in unknown_key]


def test_a_signature_made_with_the_secrets_hex_text_is_refused(gw):
    _, key_id, secret = gw.trader()
    message = gw.logon_message(key_id, secret)
    message["RawData"] = sign_logon(secret.encode(), T0, 1, key_id)
    assert messages(gw.core.on_client(b"c1", encode(message)))[0]["SessionRejectReason"] == 8


def test_a_replayed_logon_is_refused_even_on_another_connection(gw):
    _, key_id, secret = gw.trader()
    message = encode(gw.logon_message(key_id, secret))
    assert only(gw.core.on_client(b"c1", message))["MsgType"] == "A"
    reject, logout = messages(gw.core.on_client(b"c2", message))
    assert reject["SessionRejectReason"] == 8 and "already used" in reject["Text"]
    assert logout["MsgType"] == "5"


def test_a_logon_may_be_signed_again_with_a_new_time(gw):
    _, key_id, secret = gw.trader()
    assert only(gw.logon(b"c1", key_id, secret))["MsgType"] == "A"
    gw.now += 1
    assert only(gw.logon(b"c2", key_id, secret))["MsgType"] == "A"


@pytest.mark.parametrize("offset", [-6 * SECOND, 6 * SECOND])
def test_a_logon_outside_the_time_window_is_refused(gw, offset):
    _, key_id, secret = gw.trader()
    reject, logout = messages(gw.logon(b"c1", key_id, secret, sending_time=T0 + offset))
    assert reject["SessionRejectReason"] == 10 and reject["RefTagID"] == "SendingTime"
    assert logout["MsgType"] == "5"


def test_a_logon_at_the_edge_of_the_window_is_accepted(gw):
    _, key_id, secret = gw.trader()
    assert only(gw.logon(b"c1", key_id, secret, sending_time=T0 - 5 * SECOND))["MsgType"] == "A"


def test_a_malformed_logon_is_refused_with_a_reject_and_a_logout(gw):
    reject, logout = messages(gw.core.on_client(b"c1", encode({"MsgType": "A", "MsgSeqNum": 1})))
    assert reject["SessionRejectReason"] == 1 and logout["MsgType"] == "5"


@pytest.mark.parametrize("msg_type", ["D", "0", "5", "UB", "UA"])
def test_nothing_but_logon_is_accepted_before_logon(gw, msg_type):
    reject = only(gw.send(b"c1", msg_type, ClOrdID="x"))
    assert reject["MsgType"] == "3" and reject["SessionRejectReason"] == 9 and reject["MsgSeqNum"] == 0
    assert reject["RefMsgType"] == msg_type


def test_a_second_logon_on_a_session_is_rejected(gw):
    _, key_id, secret = gw.trader()
    gw.logon(b"c1", key_id, secret)
    gw.now += 1
    message = gw.logon_message(key_id, secret, seq=2)
    reject = only(gw.core.on_client(b"c1", encode(message)))
    assert reject["SessionRejectReason"] == 99 and reject["Text"] == "already logged on"


# --- frames and sequence numbers ----------------------------------------------------------------------


def test_a_frame_over_the_size_limit_is_refused_unread(gw):
    gw.connect_trader()
    reject = only(gw.core.on_client(b"c1", b"\x80" * (gw.config.gateway.max_message_bytes + 1)))
    assert reject["SessionRejectReason"] == 99 and "exceeds" in reject["Text"] and "RefSeqNum" not in reject


@pytest.mark.parametrize("frame", [b"hello", encode([1, 2]), b"", b"\xc1"])
def test_a_frame_that_is_not_a_msgpack_map_is_rejected(gw, frame):
    reject = only(gw.core.on_client(b"c1", frame))
    assert reject["MsgType"] == "3" and reject["SessionRejectReason"] == 6


def test_a_message_in_several_frames_is_rejected(gw):
    reject = only(gw.core.on_client(b"c1", encode({"MsgType": "0"}), frame_count=2))
    assert reject["SessionRejectReason"] == 6 and "one frame" in reject["Text"]


def test_msg_seq_num_must_increase_and_a_low_one_is_not_processed(gw):
    gw.connect_trader()
    order = dict(ClOrdID="a1", Symbol="BTC-USDT", Side="1", OrdType="2", Price="65000", OrderQty="0.01")
    assert isinstance(gw.core.on_client(b"c1", encode({"MsgType": "D", "MsgSeqNum": 5, **order}))[0], Submit)
    for low in (5, 4, 1):
        reject = only(gw.core.on_client(b"c1", encode({"MsgType": "D", "MsgSeqNum": low, **order})))
        assert reject["SessionRejectReason"] == 5 and reject["RefTagID"] == "MsgSeqNum"
        assert reject["RefSeqNum"] == low and "not above" in reject["Text"]
    assert isinstance(gw.core.on_client(b"c1", encode({"MsgType": "D", "MsgSeqNum": 9, **order}))[0], Submit)


def test_a_rejected_message_still_uses_up_its_sequence_number(gw):
    gw.connect_trader()
    assert only(gw.core.on_client(b"c1", encode({"MsgType": "D", "MsgSeqNum": 2})))["SessionRejectReason"] == 1
    assert only(gw.core.on_client(b"c1", encode({"MsgType": "1", "MsgSeqNum": 2, "TestReqID": "t"})))[
        "RefTagID"] == "MsgSeqNum"


def test_outgoing_sequence_numbers_count_up_per_session(gw):
    gw.connect_trader(b"c1")
    first = only(gw.send(b"c1", "1", TestReqID="a"))
    second = only(gw.send(b"c1", "1", TestReqID="b"))
    assert (first["MsgSeqNum"], second["MsgSeqNum"]) == (2, 3)
    assert first == {"MsgType": "0", "MsgSeqNum": 2, "SendingTime": T0, "TestReqID": "a"}


def test_an_account_field_of_another_account_is_rejected(gw):
    account = gw.connect_trader()
    reject = only(gw.send(b"c1", "D", ClOrdID="a1", Symbol="BTC-USDT", Side="1", OrdType="2", Price="65000",
                          OrderQty="0.01", Account=account + 1))
    assert reject["SessionRejectReason"] == 9 and reject["RefTagID"] == "Account"


# --- heartbeats ---------------------------------------------------------------------------------------


def test_a_quiet_gateway_sends_heartbeats(gw):
    gw.connect_trader()
    assert gw.core.on_tick() == []
    gw.now += HEARTBEAT_S * SECOND - gw.core.tick_interval_ns
    gw.send(b"c1", "0")  # the client keeps talking; the gateway has sent nothing since the Logon
    assert only(gw.core.on_tick()) == {"MsgType": "0", "MsgSeqNum": 2, "SendingTime": gw.now}


def test_a_silent_client_gets_a_test_request_then_is_logged_out(gw):
    gw.connect_trader()
    gw.now += HEARTBEAT_S * SECOND
    test_request = only(gw.core.on_tick())
    assert test_request["MsgType"] == "1" and test_request["TestReqID"]
    gw.now += HEARTBEAT_S * SECOND // 2
    assert all(m["MsgType"] != "1" for m in messages(gw.core.on_tick()))  # asked once
    gw.now += HEARTBEAT_S * SECOND // 2
    logout = only(gw.core.on_tick())
    assert logout["MsgType"] == "5" and "heartbeat timeout" in logout["Text"]
    assert gw.core.session_of(b"c1") is None


def test_a_client_answering_the_test_request_stays(gw):
    gw.connect_trader()
    gw.now += HEARTBEAT_S * SECOND
    test_request = only(gw.core.on_tick())
    assert gw.send(b"c1", "0", TestReqID=test_request["TestReqID"]) == []
    assert gw.core.session_of(b"c1").test_request is None
    gw.now += HEARTBEAT_S * SECOND + 1
    gw.core.on_tick()
    assert gw.core.session_of(b"c1") is not None


def test_a_test_request_is_answered_with_its_id(gw):
    gw.connect_trader()
    assert only(gw.send(b"c1", "1", TestReqID="ping-7"))["TestReqID"] == "ping-7"


def test_logout_is_answered_and_ends_the_session(gw):
    gw.connect_trader()
    assert only(gw.send(b"c1", "5"))["MsgType"] == "5"
    assert gw.core.session_of(b"c1") is None
    assert only(gw.send(b"c1", "0"))["SessionRejectReason"] == 9


def test_shutdown_logs_every_session_out(gw):
    gw.connect_trader(b"c1")
    gw.connect_trader(b"c2")
    logouts = gw.core.shutdown()
    assert sorted(a.identity for a in logouts) == [b"c1", b"c2"]
    assert all(a.message["MsgType"] == "5" for a in logouts) and gw.core.sessions == []


# --- requests become commands -------------------------------------------------------------------------


def test_a_new_order_becomes_a_command_record_with_the_sessions_account(gw):
    account = gw.connect_trader()
    record, envelope = submitted(gw.send(b"c1", "D", ClOrdID="a1", Symbol="ETH-USDT", Side="2", OrdType="2",
                                         Price="3000.01", OrderQty="1.5", TimeInForce="4"))
    assert (record["kind"], record["account"], record["origin"], record["symbol"]) == (
        CommandKind.NEW, account, gw.instance.id, 1)
    assert (record["side"], record["order_type"], record["tif"]) == (Side.SELL, OrderType.LIMIT, TimeInForce.FOK)
    assert (record["price"], record["qty"], record["amount"]) == (300001, 15000, 0)
    assert (record["seq"], record["ts"], record["order_id"]) == (0, 0, 0)
    assert record["client_order_id"] == client_order_number("a1", CommandKind.NEW)
    assert envelope.session == gw.session_id(b"c1") and envelope.clordid == "a1" and envelope.orig == ""


def test_a_post_only_order_and_a_market_buy_by_amount(gw):
    gw.connect_trader()
    record, _ = submitted(gw.send(b"c1", "D", ClOrdID="p1", Symbol="BTC-USDT", Side="1", OrdType="2",
                                  Price="65000", OrderQty="0.01", ExecInst="6"))
    assert record["tif"] == TimeInForce.POST_ONLY
    record, _ = submitted(gw.send(b"c1", "D", ClOrdID="m1", Symbol="BTC-USDT", Side="1", OrdType="1",
                                  CashOrderQty="250.5"))
    assert (record["order_type"], record["tif"], record["qty"], record["amount"]) == (
        OrderType.MARKET, TimeInForce.IOC, 0, 250_500_000)
    assert record["client_order_id"] == client_order_number("m1", CommandKind.NEW, by_quote=True)


def test_a_cancel_by_orig_clordid_leaves_the_order_id_to_the_engine(gw):
    account = gw.connect_trader()
    record, envelope = submitted(gw.send(b"c1", "F", ClOrdID="x1", OrigClOrdID="a1"))
    assert (record["kind"], record["account"], record["order_id"]) == (CommandKind.CANCEL, account, 0)
    assert (envelope.clordid, envelope.orig) == ("x1", "a1")


def test_a_cancel_by_order_id_names_it_in_the_record(gw):
    gw.connect_trader()
    record, envelope = submitted(gw.send(b"c1", "F", ClOrdID="x1", OrderID="77"))
    assert record["order_id"] == 77 and envelope.orig == ""


def test_a_replace_carries_its_new_clordid_price_and_quantity(gw):
    gw.connect_trader()
    record, envelope = submitted(gw.send(b"c1", "G", ClOrdID="a2", OrigClOrdID="a1", Symbol="BTC-USDT",
                                         Price="65000.5", OrderQty="0.02"))
    assert (record["kind"], record["price"], record["qty"], record["symbol"]) == (
        CommandKind.CANCEL_REPLACE, 650005, 200, BTC_USDT)
    assert record["client_order_id"] == client_order_number("a2", CommandKind.CANCEL_REPLACE)
    assert (envelope.clordid, envelope.orig) == ("a2", "a1")


@pytest.mark.parametrize("fields, symbol", [(dict(MassCancelRequestType="7"), ALL_SYMBOLS),
                                             (dict(MassCancelRequestType="1", Symbol="ETH-BTC"), 2)])
def test_a_mass_cancel_covers_one_symbol_or_all(gw, fields, symbol):
    gw.connect_trader()
    record, _ = submitted(gw.send(b"c1", "q", ClOrdID="m1", **fields))
    assert (record["kind"], record["symbol"]) == (CommandKind.CANCEL_ALL, symbol)


def test_an_invalid_order_is_answered_by_the_gateway_and_not_forwarded(gw):
    account = gw.connect_trader()
    report = only(gw.send(b"c1", "D", ClOrdID="a1", Symbol="BTC-USDT", Side="1", OrdType="2", Price="1",
                          OrderQty="0.01"))
    assert (report["MsgType"], report["ExecType"], report["OrdStatus"], report["OrdRejReason"]) == ("8", "8", "8", 16)
    assert report["Text"].startswith("PRICE_OUT_OF_BAND") and report["ClOrdID"] == "a1"
    assert report["OrderID"] == "NONE" and report["Account"] == account and report["Price"] == "1"


def test_an_invalid_cancel_or_replace_gets_an_order_cancel_reject(gw):
    gw.connect_trader()
    reject = only(gw.send(b"c1", "G", ClOrdID="a2", OrigClOrdID="a1", Symbol="BTC-USDT", Price="65000.01",
                          OrderQty="0.01"))
    assert (reject["MsgType"], reject["CxlRejResponseTo"], reject["CxlRejReason"]) == ("9", "2", 99)
    assert reject["Text"].startswith("INVALID_PRICE_INCREMENT") and reject["OrigClOrdID"] == "a1"
    reject = only(gw.send(b"c1", "F", ClOrdID="x1", OrigClOrdID="a1", Symbol="NOPE"))
    assert (reject["MsgType"], reject["CxlRejResponseTo"]) == ("9", "1")


def test_an_invalid_mass_cancel_gets_a_rejected_mass_cancel_report(gw):
    gw.connect_trader()
    report = only(gw.send(b"c1", "q", ClOrdID="m1", MassCancelRequestType="1", Symbol="NOPE"))
    assert (report["MsgType"], report["MassCancelResponse"], report["MassCancelRejectReason"]) == ("r", "0", 1)


def test_a_failed_submission_tells_the_client_the_exchange_is_closed(gw):
    gw.connect_trader()
    [action] = gw.send(b"c1", "D", ClOrdID="a1", Symbol="BTC-USDT", Side="1", OrdType="2", Price="65000",
                       OrderQty="0.01")
    report = only(gw.core.on_submit_failed(action))
    assert (report["ExecType"], report["OrdRejReason"], report["ClOrdID"]) == ("8", 2, "a1")
    assert report["Text"].startswith("EXCHANGE_CLOSED")
    [action] = gw.send(b"c1", "F", ClOrdID="x1", OrderID="5")
    assert only(gw.core.on_submit_failed(action))["MsgType"] == "9"


# --- roles --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("msg_type", ["D", "F", "G", "q", "H", "AF"])
def test_an_admin_session_does_not_trade(gw, msg_type):
    gw.connect_admin()
    reject = only(gw.send(b"admin", msg_type, ClOrdID="x"))
    assert reject["SessionRejectReason"] == 9 and reject["RefTagID"] == "MsgType"


def test_a_trading_session_cannot_send_admin_requests(gw):
    gw.connect_trader()
    reject = only(gw.send(b"c1", "UA", AdminReqID="r1", AdminAction="deposit", Account=1, Currency="USDT",
                          Amount="1"))
    assert reject["SessionRejectReason"] == 9 and reject["RefMsgType"] == "UA"


def test_an_admin_logon_names_no_account(gw):
    key_id, secret = gw.store.create_admin_key()
    assert "Account" not in only(gw.logon(b"admin", key_id, secret))


# --- admin flow ---------------------------------------------------------------------------------------


def test_create_account_allocates_credentials_and_answers_once_the_engine_opened_it(gw):
    gw.connect_admin()
    record, envelope = submitted(gw.send(b"admin", "UA", AdminReqID="new-1", AdminAction="create_account"))
    created = gw.store.admin_request("new-1")
    assert (record["kind"], record["account"]) == (CommandKind.CREATE_ACCOUNT, created.account)
    assert envelope.clordid == "new-1" and envelope.session == gw.session_id(b"admin")
    assert gw.store.lookup(created.key_id).account == created.account
    answer = only(gw.report((event(EventKind.ACCOUNT_CREATED, seq=9, account=created.account,
                                   client_order_id=record["client_order_id"]),
                             item(envelope.session, created.account, "new-1"))))
    assert answer["MsgType"] == "UR" and answer["Status"] == "ok" and answer["AdminAction"] == "create_account"
    assert (answer["Account"], answer["KeyID"], answer["Secret"]) == (created.account, created.key_id,
                                                                      created.secret)


def test_create_account_repeated_with_the_same_id_reuses_the_account(gw):
    gw.connect_admin()
    first, _ = submitted(gw.send(b"admin", "UA", AdminReqID="new-1", AdminAction="create_account"))
    again, _ = submitted(gw.send(b"admin", "UA", AdminReqID="new-1", AdminAction="create_account"))
    assert first["account"] == again["account"]
    other, _ = submitted(gw.send(b"admin", "UA", AdminReqID="new-2", AdminAction="create_account"))
    assert other["account"] == first["account"] + 1


def test_create_account_seen_twice_by_the_engine_is_still_a_success(gw):
    gw.connect_admin()
    record, envelope = submitted(gw.send(b"admin", "UA", AdminReqID="new-1", AdminAction="create_account"))
    created = gw.store.admin_request("new-1")
    answer = only(gw.report((event(EventKind.REJECTED, seq=12, account=created.account,
                                   reason=RejectReason.ACCOUNT_EXISTS, client_order_id=record["client_order_id"]),
                             item(envelope.session, created.account, "new-1"))))
    assert (answer["Status"], answer["KeyID"], answer["PossResend"]) == ("ok", created.key_id, True)


def test_create_account_refused_when_no_account_is_left(gw, tmp_path):
    document = default_document()
    document["paths"]["data_dir"] = str(tmp_path / "small")
    document["capacity"]["max_accounts"] = 2
    config = parse_config(document)
    with CredentialStore.open(config) as store:
        core = GatewayCore(config, config.gateway.instances[0], store, clock=lambda: T0)
        core.on_report(ReportMessage(gateway_topic(config.gateway.instances[0].id), 0, np.zeros(0, EVENT_DTYPE),
                                     [], 1, heartbeat=True))
        key_id, secret = store.create_admin_key()
        core.on_client(b"a", encode({"MsgType": "A", "MsgSeqNum": 1, "SendingTime": T0, "Username": key_id,
                                     "RawData": sign_logon(bytes.fromhex(secret), T0, 1, key_id)}))
        assert isinstance(core.on_client(b"a", encode({"MsgType": "UA", "MsgSeqNum": 2, "AdminReqID": "1",
                                                       "AdminAction": "create_account"}))[0], Submit)
        answer = only(core.on_client(b"a", encode({"MsgType": "UA", "MsgSeqNum": 3, "AdminReqID": "2",
                                                   "AdminAction": "create_account"})))
        assert answer["Status"] == "rejected" and "no account left" in answer["Text"]


def test_a_deposit_is_answered_with_the_new_balance(gw):
    gw.connect_admin()
    record, envelope = submitted(gw.send(b"admin", "UA", AdminReqID="d1", AdminAction="deposit", Account=3,
                                         Currency="USDT", Amount="1000.5"))
    assert (record["kind"], record["account"], record["asset"], record["amount"]) == (
        CommandKind.DEPOSIT, 3, USDT, 1_000_500_000)
    answer = only(gw.report((event(EventKind.BALANCE, seq=4, account=3, asset=USDT, amount=1_000_500_000,
                                   available=2_000_500_000, frozen=7), item(envelope.session, 3, "d1"))))
    assert answer == {"MsgType": "UR", "MsgSeqNum": 2, "SendingTime": T0, "AdminReqID": "d1",
                      "AdminAction": "deposit", "Status": "ok", "Account": 3, "Currency": "USDT",
                      "Amount": "1000.5", "Available": "2000.5", "Frozen": "0.000007", "TransactTime": 0}


def test_a_refused_withdrawal_is_answered_with_the_reason(gw):
    gw.connect_admin()
    record, envelope = submitted(gw.send(b"admin", "UA", AdminReqID="w1", AdminAction="withdraw", Account=3,
                                         Currency="USDT", Amount="5"))
    answer = only(gw.report((event(EventKind.REJECTED, seq=4, account=3, asset=USDT, amount=5_000_000,
                                   reason=RejectReason.INSUFFICIENT_FUNDS,
                                   client_order_id=record["client_order_id"]), item(envelope.session, 3, "w1"))))
    assert (answer["Status"], answer["AdminAction"], answer["Text"]) == ("rejected", "withdraw", "INSUFFICIENT_FUNDS")


def test_admin_answers_never_go_to_the_accounts_trading_sessions(gw):
    account = gw.connect_trader()
    assert gw.report((event(EventKind.BALANCE, seq=4, account=account, asset=USDT, amount=5, available=5),
                      item(12345, account, "d1"))) == []
    assert gw.report((event(EventKind.ACCOUNT_CREATED, seq=5, account=account), item(12345, account, "n1"))) == []


# --- reports ------------------------------------------------------------------------------------------


def new_order_events(gw: Gateway, identity: bytes = b"c1", clordid: str = "a1") -> tuple[int, int, int]:
    """(account, session, client_order_id) of a session that has sent a NEW."""
    record, envelope = submitted(gw.send(identity, "D", ClOrdID=clordid, Symbol="BTC-USDT", Side="1",
                                         OrdType="2", Price="65000", OrderQty="0.03"))
    return int(record["account"]), envelope.session, int(record["client_order_id"])


def test_accepted_becomes_an_execution_report_new(gw):
    gw.connect_trader()
    account, session, coid = new_order_events(gw)
    report = only(gw.report((event(EventKind.ACCEPTED, seq=10, ts=T0 + 5, order_id=10, client_order_id=coid,
                                   account=account, symbol=BTC_USDT, side=Side.BUY, order_type=OrderType.LIMIT,
                                   tif=TimeInForce.GTC, price=650000, qty=300, leaves=300),
                             item(session, account, "a1"))))
    assert report == {"MsgType": "8", "MsgSeqNum": 2, "SendingTime": T0, "OrderID": "10", "ClOrdID": "a1",
                      "ExecID": "10-1-10-0-order", "ExecType": "0", "OrdStatus": "0", "Account": account,
                      "Symbol": "BTC-USDT", "Side": "1", "OrdType": "2", "TimeInForce": "1", "Price": "65000",
                      "OrderQty": "0.03", "LeavesQty": "0.03", "CumQty": "0", "AvgPx": "0", "TransactTime": T0 + 5}


def trade(account: int, maker_account: int, **fields: int) -> np.ndarray:
    values = dict(seq=11, ts=T0 + 9, order_id=11, client_order_id=client_order_number("t1", CommandKind.NEW),
                  account=account, symbol=BTC_USDT, side=Side.BUY, order_type=OrderType.LIMIT, tif=TimeInForce.IOC,
                  price=649990, qty=100, leaves=200, filled=100, amount=649_990_000, maker_order_id=5,
                  maker_client_order_id=client_order_number("m1", CommandKind.NEW), maker_account=maker_account,
                  maker_leaves=0, maker_filled=300, maker_fee=129_998, taker_fee=324_995)
    values.update(fields)
    return event(EventKind.TRADE, **values)


def test_a_trade_reports_the_takers_fill_with_its_fee(gw):
    taker = gw.connect_trader(b"taker")
    report = only(gw.report((trade(taker, 99), item(gw.session_id(b"taker"), taker, "t1", "taker", 649_990_000))))
    assert (report["ExecType"], report["OrdStatus"], report["OrderID"], report["ClOrdID"]) == ("F", "1", "11", "t1")
    assert (report["LastPx"], report["LastQty"], report["CumQty"], report["LeavesQty"]) == ("64999", "0.01", "0.01",
                                                                                           "0.02")
    assert (report["AvgPx"], report["Commission"], report["CommCurrency"]) == ("64999", "0.324995", "USDT")
    assert (report["LastLiquidityInd"], report["Side"], report["TimeInForce"]) == ("2", "1", "3")
    assert report["ExecID"] == "11-3-11-100-taker" and report["TrdMatchID"] == "11-5-300"
    assert report["OrderQty"] == "0.03" and "Price" not in report


def test_a_trade_reports_the_makers_fill_with_its_fee(gw):
    maker = gw.connect_trader(b"maker")
    report = only(gw.report((trade(99, maker), item(gw.session_id(b"maker"), maker, "m1", "maker", 1_949_970_000))))
    assert (report["ExecType"], report["OrdStatus"], report["OrderID"], report["ClOrdID"]) == ("F", "2", "5", "m1")
    assert (report["Side"], report["OrdType"], report["Price"], report["Account"]) == ("2", "2", "64999", maker)
    assert (report["CumQty"], report["LeavesQty"], report["OrderQty"]) == ("0.03", "0", "0.03")
    assert (report["Commission"], report["LastLiquidityInd"], report["AvgPx"]) == ("0.129998", "1", "64999")
    assert report["ExecID"] == "11-3-5-300-maker" and "TimeInForce" not in report


def test_a_trade_report_has_each_sides_fields_in_their_order(gw):
    taker = gw.connect_trader(b"taker")
    maker = gw.connect_trader(b"maker")
    taker_report, maker_report = messages(gw.report(
        (trade(taker, maker), item(gw.session_id(b"taker"), taker, "t1", "taker", 649_990_000)),
        (trade(taker, maker), item(gw.session_id(b"maker"), maker, "m1", "maker", 1_949_970_000, resend=True))))
    # Lists of items: the key order shows in the msgpack bytes a client gets.
    assert list(taker_report.items()) == [
        ("MsgType", "8"), ("MsgSeqNum", 2), ("SendingTime", T0), ("OrderID", "11"), ("ClOrdID", "t1"),
        ("ExecID", "11-3-11-100-taker"), ("ExecType", "F"), ("OrdStatus", "1"), ("Account", taker),
        ("Symbol", "BTC-USDT"), ("Side", "1"), ("OrdType", "2"), ("TimeInForce", "3"), ("OrderQty", "0.03"),
        ("LeavesQty", "0.02"), ("CumQty", "0.01"), ("AvgPx", "64999"), ("LastPx", "64999"), ("LastQty", "0.01"),
        ("Commission", "0.324995"), ("CommCurrency", "USDT"), ("LastLiquidityInd", "2"), ("TrdMatchID", "11-5-300"),
        ("TransactTime", T0 + 9)]
    assert list(maker_report.items()) == [
        ("MsgType", "8"), ("MsgSeqNum", 2), ("SendingTime", T0), ("OrderID", "5"), ("ClOrdID", "m1"),
        ("ExecID", "11-3-5-300-maker"), ("ExecType", "F"), ("OrdStatus", "2"), ("Account", maker),
        ("Symbol", "BTC-USDT"), ("Side", "2"), ("OrdType", "2"), ("Price", "64999"), ("OrderQty", "0.03"),
        ("LeavesQty", "0"), ("CumQty", "0.03"), ("AvgPx", "64999"), ("LastPx", "64999"), ("LastQty", "0.01"),
        ("Commission", "0.129998"), ("CommCurrency", "USDT"), ("LastLiquidityInd", "1"), ("TrdMatchID", "11-5-300"),
        ("TransactTime", T0 + 9), ("PossResend", True)]


def test_exec_ids_are_the_protocols_for_every_side(gw):
    taker = gw.connect_trader(b"taker")
    maker = gw.connect_trader(b"maker")
    record = trade(taker, maker)
    fields = {name: record[name][0].item() for name in reports.ROW_FIELDS}
    taker_report, maker_report = messages(gw.report(
        (record, item(gw.session_id(b"taker"), taker, "t1", "taker", 649_990_000)),
        (record, item(gw.session_id(b"maker"), maker, "m1", "maker", 1_949_970_000))))
    assert taker_report["ExecID"] == exec_id(fields["seq"], fields["kind"], 11, 100, "taker")
    assert maker_report["ExecID"] == exec_id(fields["seq"], fields["kind"], 5, 300, "maker")


def test_event_rows_hold_every_field_at_its_position():
    records = np.zeros(4, dtype=EVENT_DTYPE)
    rng = np.random.default_rng(7)
    for name in reports.ROW_FIELDS:
        limits = np.iinfo(EVENT_DTYPE[name])
        records[name] = rng.integers(limits.min, limits.max, size=len(records), endpoint=True,
                                     dtype=EVENT_DTYPE[name])
    records["reserved"] = 0xFF
    assert set(reports.ROW_FIELDS) == set(EVENT_DTYPE.names) - {"reserved"}
    rows = list(reports.event_rows(records))
    assert rows == [tuple(record[name].item() for name in reports.ROW_FIELDS) for record in records]
    for name in ("seq", "maker_filled", "symbol", "maker_account", "kind", "tif"):
        assert rows[2][getattr(reports, name.upper())] == records[name][2]


@pytest.mark.parametrize("cum_quote, filled", [
    (650_000_000, 100),  # every fill at 65000
    (1_300_002_000, 200),  # 65000 and 65000.2: a whole number of ticks on average, 65000.1
    (19_500_010, 3),  # 65000.0333...
    (1, 16), (3, 16),  # ties beyond the tick's decimals: to the even digit
])
def test_the_average_price_is_the_quotient_rounded_half_to_even(gw, cum_quote, filled):
    symbol = gw.config.symbols[BTC_USDT]  # one lot at one tick is 10 USDT units
    exact = Decimal(cum_quote) / (filled * symbol.quote_units_per_tick_lot) * Decimal("0.1")
    expected = format(exact.quantize(Decimal("0.00001"), ROUND_HALF_EVEN).normalize(), "f")
    assert reports.avg_px(cum_quote, filled, symbol) == expected


def test_the_average_price_rounds_half_to_even_beyond_the_tick(gw):
    taker = gw.connect_trader(b"taker")
    # 0.0003 filled for 19.50001 USDT: 65000.0333... per BTC.
    report = only(gw.report((trade(taker, 99, qty=3, leaves=0, filled=3),
                             item(gw.session_id(b"taker"), taker, "t1", "taker", 19_500_010))))
    assert report["AvgPx"] == "65000.03333" and report["OrdStatus"] == "2"


def test_a_fill_of_a_market_buy_by_amount_stays_partially_filled(gw):
    taker = gw.connect_trader(b"taker")
    coid = client_order_number("t1", CommandKind.NEW, by_quote=True)
    report = only(gw.report((trade(taker, 99, order_type=OrderType.MARKET, leaves=0, client_order_id=coid),
                             item(gw.session_id(b"taker"), taker, "t1", "taker", 6_499_900))))
    assert report["OrdStatus"] == "1" and "OrderQty" not in report


@pytest.mark.parametrize("reason, exec_type", [
    (CancelReason.USER, "4"), (CancelReason.SELF_TRADE, "4"), (CancelReason.IOC_REMAINDER, "C"),
    (CancelReason.MARKET_REMAINDER, "C"), (CancelReason.FOK, "C"),
])
def test_cancellations_are_canceled_or_expired_by_reason(gw, reason, exec_type):
    account = gw.connect_trader()
    report = only(gw.report((event(EventKind.CANCELLED, seq=12, order_id=10, account=account, symbol=BTC_USDT,
                                   side=Side.SELL, order_type=OrderType.LIMIT, tif=TimeInForce.GTC, price=650000,
                                   qty=300, leaves=200, filled=100, reason=reason),
                             item(gw.session_id(b"c1"), account, "x1", cum_quote=650_000_000))))
    assert (report["ExecType"], report["OrdStatus"], report["Text"]) == (exec_type, exec_type, reason.name)
    assert (report["LeavesQty"], report["CumQty"], report["AvgPx"], report["ClOrdID"]) == ("0", "0.01", "65000", "x1")


def test_replaced_becomes_an_execution_report_replaced(gw):
    account = gw.connect_trader()
    report = only(gw.report((event(EventKind.REPLACED, seq=13, order_id=10, account=account, symbol=BTC_USDT,
                                   side=Side.BUY, order_type=OrderType.LIMIT, tif=TimeInForce.POST_ONLY,
                                   price=650010, qty=500, leaves=400, filled=100),
                             item(gw.session_id(b"c1"), account, "a2", cum_quote=650_000_000))))
    assert (report["ExecType"], report["OrdStatus"], report["ClOrdID"], report["Price"]) == ("5", "1", "a2", "65001")
    assert (report["OrderQty"], report["LeavesQty"], report["TimeInForce"], report["ExecInst"]) == (
        "0.05", "0.04", "1", "6")


def test_a_rejected_new_order_names_the_engines_reason(gw):
    gw.connect_trader()
    account, session, coid = new_order_events(gw)
    report = only(gw.report((event(EventKind.REJECTED, seq=14, client_order_id=coid, account=account,
                                   symbol=BTC_USDT, side=Side.BUY, order_type=OrderType.LIMIT, tif=TimeInForce.GTC,
                                   price=650000, qty=300, reason=RejectReason.INSUFFICIENT_FUNDS),
                             item(session, account, "a1"))))
    assert (report["MsgType"], report["ExecType"], report["OrdStatus"]) == ("8", "8", "8")
    assert (report["OrdRejReason"], report["Text"], report["OrderID"]) == (3, "INSUFFICIENT_FUNDS", "NONE")


def test_an_order_the_journal_could_not_take_is_rejected_as_exchange_closed(gw):
    gw.connect_trader()
    account, session, coid = new_order_events(gw)
    report = only(gw.report((event(EventKind.REJECTED, seq=0, client_order_id=coid, account=account,
                                   symbol=BTC_USDT, side=Side.BUY, order_type=OrderType.LIMIT, tif=TimeInForce.GTC,
                                   price=650000, qty=300, reason=RejectReason.JOURNAL_UNAVAILABLE),
                             item(session, account, "a1"))))
    assert (report["ExecType"], report["OrdStatus"], report["OrdRejReason"]) == ("8", "8", 2)
    assert report["Text"] == "JOURNAL_UNAVAILABLE"


@pytest.mark.parametrize("kind, response_to", [(CommandKind.CANCEL, "1"), (CommandKind.CANCEL_REPLACE, "2")])
def test_a_rejected_cancel_or_replace_becomes_an_order_cancel_reject(gw, kind, response_to):
    account = gw.connect_trader()
    report = only(gw.report((event(EventKind.REJECTED, seq=15, account=account, reason=RejectReason.UNKNOWN_ORDER,
                                   client_order_id=client_order_number("x1", kind)),
                             item(gw.session_id(b"c1"), account, "x1"))))
    assert (report["MsgType"], report["CxlRejResponseTo"], report["CxlRejReason"]) == ("9", response_to, 1)
    assert (report["OrdStatus"], report["Text"], report["ClOrdID"]) == ("8", "UNKNOWN_ORDER", "x1")


def test_mass_cancel_outcomes_become_mass_cancel_reports(gw):
    account = gw.connect_trader()
    session = gw.session_id(b"c1")
    done = only(gw.report((event(EventKind.MASS_CANCELLED, seq=16, account=account, symbol=ALL_SYMBOLS, qty=3),
                           item(session, account, "m1"))))
    assert (done["MsgType"], done["MassCancelResponse"], done["TotalAffectedOrders"]) == ("r", "7", 3)
    refused = only(gw.report((event(EventKind.REJECTED, seq=17, account=account, symbol=44,
                                    reason=RejectReason.UNKNOWN_SYMBOL,
                                    client_order_id=client_order_number("m2", CommandKind.CANCEL_ALL)),
                              item(session, account, "m2"))))
    assert (refused["MassCancelResponse"], refused["MassCancelRejectReason"], refused["Text"]) == (
        "0", 1, "UNKNOWN_SYMBOL")


def test_a_resent_outcome_carries_poss_resend_and_the_same_exec_id(gw):
    account = gw.connect_trader()
    accepted = event(EventKind.ACCEPTED, seq=10, order_id=10, account=account, symbol=BTC_USDT, side=Side.BUY,
                     order_type=OrderType.LIMIT, tif=TimeInForce.GTC, price=650000, qty=300, leaves=300)
    original = only(gw.report((accepted, item(gw.session_id(b"c1"), account, "a1"))))
    again = only(gw.report((accepted, item(gw.session_id(b"c1"), account, "a1", resend=True))))
    assert again["PossResend"] is True and "PossResend" not in original
    assert again["ExecID"] == original["ExecID"]


# --- routing ------------------------------------------------------------------------------------------


def test_a_report_for_a_gone_session_goes_to_the_accounts_other_sessions(gw):
    account, key_id, secret = gw.trader()
    gw.logon(b"c1", key_id, secret)
    gw.now += 1
    gw.logon(b"c2", key_id, secret)
    gw.connect_trader(b"stranger")
    gone = gw.session_id(b"c1")
    gw.send(b"c1", "5")
    actions = gw.report((event(EventKind.ACCEPTED, seq=10, order_id=10, account=account, symbol=BTC_USDT,
                               side=Side.BUY, order_type=OrderType.LIMIT, price=650000, qty=300, leaves=300),
                         item(gone, account, "a1")))
    assert [a.identity for a in actions] == [b"c2"]


def test_each_other_session_gets_its_own_copy_of_a_report_with_its_own_seq_num(gw):
    account, key_id, secret = gw.trader()
    for identity in (b"c1", b"c2", b"c3"):
        gw.logon(identity, key_id, secret)
        gw.now += 1
    gone = gw.session_id(b"c1")
    gw.send(b"c1", "5")
    gw.send(b"c3", "1", TestReqID="t")  # c3 has been sent one message more than c2
    actions = gw.report((event(EventKind.ACCEPTED, seq=10, order_id=10, account=account, symbol=BTC_USDT,
                               side=Side.BUY, order_type=OrderType.LIMIT, price=650000, qty=300, leaves=300),
                         item(gone, account, "a1")))
    assert [a.identity for a in actions] == [b"c2", b"c3"]
    first, second = messages(actions)
    assert first is not second and (first["MsgSeqNum"], second["MsgSeqNum"]) == (2, 3)
    assert list({**first, "MsgSeqNum": 0}.items()) == list({**second, "MsgSeqNum": 0}.items())


def test_a_report_never_reaches_a_session_of_another_account(gw):
    gw.connect_trader(b"c1")
    stranger = gw.connect_trader(b"c2")
    # An item naming session c1 for an event of another account's order is not delivered to c1.
    actions = gw.report((event(EventKind.ACCEPTED, seq=10, order_id=10, account=stranger + 100, symbol=BTC_USDT,
                               side=Side.BUY, order_type=OrderType.LIMIT, price=650000, qty=300, leaves=300),
                         item(gw.session_id(b"c1"), stranger + 100, "a1")))
    assert actions == []


def test_an_unreachable_client_ends_its_session_and_its_report_goes_to_the_others(gw):
    account, key_id, secret = gw.trader()
    gw.logon(b"c1", key_id, secret)
    gw.now += 1
    gw.logon(b"c2", key_id, secret)
    report = only(gw.report((event(EventKind.ACCEPTED, seq=10, order_id=10, account=account, symbol=BTC_USDT,
                                   side=Side.BUY, order_type=OrderType.LIMIT, price=650000, qty=300, leaves=300),
                             item(gw.session_id(b"c1"), account, "a1"))))
    rerouted = gw.core.on_unreachable(b"c1", [report])
    assert gw.core.session_of(b"c1") is None
    assert [a.identity for a in rerouted] == [b"c2"] and rerouted[0].message["ExecID"] == report["ExecID"]
    assert gw.core.on_unreachable(b"c1", [report]) == []


def test_every_report_of_a_failed_send_goes_to_the_other_sessions_in_order(gw):
    account, key_id, secret = gw.trader()
    gw.logon(b"c1", key_id, secret)
    gw.now += 1
    gw.logon(b"c2", key_id, secret)
    reports = [only(gw.report((event(EventKind.ACCEPTED, seq=seq, order_id=seq, account=account, symbol=BTC_USDT,
                                     side=Side.BUY, order_type=OrderType.LIMIT, price=650000, qty=300, leaves=300),
                               item(gw.session_id(b"c1"), account, f"a{seq}")))) for seq in (10, 11)]
    rerouted = gw.core.on_unreachable(b"c1", reports)
    assert [(a.identity, a.message["ClOrdID"]) for a in rerouted] == [(b"c2", "a10"), (b"c2", "a11")]
    assert rerouted[1].message["MsgSeqNum"] == rerouted[0].message["MsgSeqNum"] + 1


# --- queries ------------------------------------------------------------------------------------------


def test_order_status_asks_the_engine_and_answers_with_exec_type_i(gw):
    account = gw.connect_trader()
    [query] = gw.send(b"c1", "H", ClOrdID="a1")
    assert isinstance(query, Query) and query.query["q"] == "order"
    assert (query.query["account"], query.query["clordid"]) == (account, "a1")
    view = {"order_id": 10, "account": account, "clordid": "a1", "symbol": BTC_USDT, "side": 2, "order_type": 2,
            "tif": 1, "price": 650000, "qty": 300, "filled": 100, "leaves": 200, "cum_quote": 650_000_000,
            "ts": T0, "status": "partially_filled"}
    report = only(gw.core.on_query_reply({"id": query.query["id"], "ok": True, "found": True, "order": view}))
    assert (report["ExecType"], report["OrdStatus"], report["OrderID"], report["ClOrdID"]) == ("I", "1", "10", "a1")
    assert (report["CumQty"], report["LeavesQty"], report["AvgPx"], report["Side"]) == ("0.01", "0.02", "65000", "2")


def test_order_status_of_an_unknown_or_foreign_order_is_unknown_order(gw):
    account = gw.connect_trader()
    [query] = gw.send(b"c1", "H", OrderID="10")
    assert query.query["order_id"] == 10
    report = only(gw.core.on_query_reply({"id": query.query["id"], "ok": True, "found": True,
                                          "order": {"order_id": 10, "account": account + 1, "status": "new"}}))
    assert (report["ExecType"], report["OrdStatus"], report["Text"], report["OrderID"]) == (
        "I", "8", "UNKNOWN_ORDER", "10")
    [query] = gw.send(b"c1", "H", ClOrdID="zz")
    report = only(gw.core.on_query_reply({"id": query.query["id"], "ok": True, "found": False}))
    assert report["OrdRejReason"] == 5 and report["ClOrdID"] == "zz"


def test_mass_status_answers_one_report_per_open_order(gw):
    account = gw.connect_trader()
    [query] = gw.send(b"c1", "AF", MassStatusReqID="s1", Symbol="BTC-USDT")
    assert query.query == {"id": query.query["id"], "q": "open_orders", "account": account, "symbol": BTC_USDT}
    views = [{"order_id": i, "account": account, "clordid": f"a{i}", "symbol": BTC_USDT, "side": 1,
              "order_type": 2, "tif": 1, "price": 650000, "qty": 100, "filled": 0, "leaves": 100, "cum_quote": 0,
              "status": "new"} for i in (3, 4)]
    reports = messages(gw.core.on_query_reply({"id": query.query["id"], "ok": True, "orders": views}))
    assert [r["OrderID"] for r in reports] == ["3", "4"]
    assert [r["TotNumReports"] for r in reports] == [2, 2]
    assert [r["LastRptRequested"] for r in reports] == [False, True]
    assert all(r["MassStatusReqID"] == "s1" and r["ExecType"] == "I" for r in reports)


def test_mass_status_with_no_open_order_says_so_in_one_report(gw):
    gw.connect_trader()
    [query] = gw.send(b"c1", "AF", MassStatusReqID="s1")
    report = only(gw.core.on_query_reply({"id": query.query["id"], "ok": True, "orders": []}))
    assert (report["TotNumReports"], report["LastRptRequested"], "OrderID" in report) == (0, True, False)


def test_balances_are_reported_as_decimal_strings(gw):
    account = gw.connect_trader()
    [query] = gw.send(b"c1", "UB", BalanceReqID="b1")
    assert query.query["q"] == "balances" and query.query["account"] == account
    reply = {"id": query.query["id"], "ok": True, "balances": [
        {"asset": 0, "available": 150_000_000, "frozen": 1}, {"asset": 1, "available": 0, "frozen": 0},
        {"asset": 2, "available": 2_500_000, "frozen": 0}]}
    report = only(gw.core.on_query_reply(reply))
    assert report["MsgType"] == "UP" and report["BalanceReqID"] == "b1" and report["Account"] == account
    assert report["Balances"] == [{"Currency": "BTC", "Available": "1.5", "Frozen": "0.00000001"},
                                  {"Currency": "ETH", "Available": "0", "Frozen": "0"},
                                  {"Currency": "USDT", "Available": "2.5", "Frozen": "0"}]


def test_an_admin_may_ask_any_accounts_balances(gw):
    gw.connect_admin()
    [query] = gw.send(b"admin", "UB", BalanceReqID="b1", Account=42, Currency="USDT")
    assert query.query["account"] == 42
    report = only(gw.core.on_query_reply({"id": query.query["id"], "ok": True, "balances": [
        {"asset": 0, "available": 1, "frozen": 0}, {"asset": 2, "available": 7, "frozen": 0}]}))
    assert report["Account"] == 42 and report["Balances"] == [{"Currency": "USDT", "Available": "0.000007",
                                                               "Frozen": "0"}]


def test_a_query_the_engine_does_not_answer_in_time_is_rejected(gw):
    gw.connect_trader()
    [query] = gw.send(b"c1", "UB", BalanceReqID="b1")
    gw.now += HEARTBEAT_S * SECOND
    reject = [m for m in messages(gw.core.on_tick()) if m["MsgType"] == "3"][0]
    assert reject["SessionRejectReason"] == 99 and reject["RefMsgType"] == "UB" and reject["RefSeqNum"] == 2
    assert gw.core.on_query_reply({"id": query.query["id"], "ok": True, "balances": []}) == []


def test_a_query_the_engine_refuses_or_cannot_take_is_rejected(gw):
    gw.connect_trader()
    [query] = gw.send(b"c1", "UB", BalanceReqID="b1")
    assert only(gw.core.on_query_reply({"id": query.query["id"], "ok": False, "error": "unknown account 7"}))[
        "SessionRejectReason"] == 99
    [query] = gw.send(b"c1", "UB", BalanceReqID="b2")
    assert "not reachable" in only(gw.core.on_query_failed(query))["Text"]


# --- report counter gaps ------------------------------------------------------------------------------


def accepted_pair(gw: Gateway, account: int, order_id: int) -> tuple[np.ndarray, dict]:
    return (event(EventKind.ACCEPTED, seq=order_id, order_id=order_id, account=account, symbol=BTC_USDT,
                  side=Side.BUY, order_type=OrderType.LIMIT, price=650000, qty=100, leaves=100),
            item(gw.session_id(b"c1"), account, f"a{order_id}"))


def test_a_gap_in_the_report_counter_asks_for_a_resend_and_delivers_in_order(gw):
    account = gw.connect_trader()
    assert len(gw.report(accepted_pair(gw, account, 1), n=1)) == 1
    [resend] = gw.report(accepted_pair(gw, account, 4), n=4)
    assert isinstance(resend, Query)
    assert resend.query == {"id": resend.query["id"], "q": "resend", "gateway": gw.instance.id, "from": 2}
    assert gw.report(accepted_pair(gw, account, 5), n=5) == []  # held until the gap is filled
    missing = [[n, accepted_pair(gw, account, n)[0].tobytes(), [accepted_pair(gw, account, n)[1]]] for n in (2, 3)]
    delivered = messages(gw.core.on_query_reply({"id": resend.query["id"], "ok": True, "messages": missing,
                                                 "more": False}))
    assert [m["OrderID"] for m in delivered] == ["2", "3", "4", "5"]
    assert gw.report(accepted_pair(gw, account, 3), n=3) == []  # already delivered
    assert len(gw.report(accepted_pair(gw, account, 6), n=6)) == 1


def test_a_gap_the_engine_cannot_fill_is_skipped_after_the_timeout(gw):
    account = gw.connect_trader()
    gw.report(accepted_pair(gw, account, 1), n=1)
    gw.report(accepted_pair(gw, account, 3), n=3)
    gw.send(b"c1", "0")
    gw.now += HEARTBEAT_S * SECOND
    gw.send(b"c1", "0")
    delivered = [m for m in messages(gw.core.on_tick()) if m["MsgType"] == "8"]
    assert [m["OrderID"] for m in delivered] == ["3"] and gw.core.lost_reports == 1


def test_a_new_epoch_means_a_restarted_engine_whose_reports_count_from_one(gw):
    account = gw.connect_trader()
    gw.report(accepted_pair(gw, account, 1), n=7, epoch=1)
    assert len(gw.report(accepted_pair(gw, account, 2), n=1, epoch=2)) == 1
    assert len(gw.report(accepted_pair(gw, account, 3), n=2, epoch=2)) == 1
    assert gw.report(accepted_pair(gw, account, 3), n=2, epoch=2) == []  # already delivered


def test_a_restarted_engine_whose_first_reports_were_missed_is_asked_for_them_from_one(gw):
    account = gw.connect_trader()
    gw.report(accepted_pair(gw, account, 1), n=7, epoch=1)
    [resend] = gw.report(accepted_pair(gw, account, 3), n=3, epoch=2)  # n=1, 2 of epoch 2 never came
    assert resend.query["from"] == 1
    stale = gw.core.on_query_reply({"id": resend.query["id"], "ok": True, "messages": [], "more": False,
                                    "epoch": 1})
    [again] = stale  # answered by the engine of before: asked again
    assert again.query["from"] == 1
    missing = [[n, accepted_pair(gw, account, n)[0].tobytes(), [accepted_pair(gw, account, n)[1]]] for n in (1, 2)]
    delivered = messages(gw.core.on_query_reply({"id": again.query["id"], "ok": True, "messages": missing,
                                                 "more": False, "epoch": 2}))
    assert [m["OrderID"] for m in delivered] == ["1", "2", "3"]


def heartbeat(gw: Gateway, n: int, epoch: int = 1) -> list:
    return gw.core.on_report(ReportMessage(gateway_topic(gw.instance.id), n, np.zeros(0, EVENT_DTYPE), [], epoch,
                                           heartbeat=True))


def test_a_heartbeat_naming_a_message_not_seen_asks_for_it(tmp_path):
    gw = Gateway(tmp_path, synced_at=4)  # a fresh gateway follows from the engine's next message
    account = gw.connect_trader()
    assert len(gw.report(accepted_pair(gw, account, 5), n=5)) == 1
    assert heartbeat(gw, 5) == []  # all seen
    [resend] = heartbeat(gw, 6)  # n=6 was published and lost
    assert resend.query["from"] == 6
    gw.close()


def test_no_session_opens_before_the_engine_has_been_heard_from(tmp_path):
    document = default_document()
    document["paths"]["data_dir"] = str(tmp_path)
    config = parse_config(document)
    with CredentialStore.open(config) as store:
        core = GatewayCore(config, config.gateway.instances[0], store, clock=lambda: T0)
        account = store.allocate_account()
        key_id, secret = store.create_key(account)
        credential = store.lookup(key_id)

        def logon(seq: int) -> list:
            return core.on_client(b"c", encode({"MsgType": "A", "MsgSeqNum": seq, "SendingTime": T0 + seq,
                                                "Username": key_id,
                                                "RawData": sign_logon(bytes.fromhex(secret), T0 + seq, seq, key_id)}))

        refused, logout = messages(logon(1))
        assert refused["MsgType"] == "3" and "the exchange is starting" in refused["Text"]
        assert logout["MsgType"] == "5" and core.open_trusted_session(b"rest", credential) is None
        core.on_report(ReportMessage(gateway_topic(config.gateway.instances[0].id), 7, np.zeros(0, EVENT_DTYPE),
                                     [], 1, heartbeat=True))
        assert only(logon(2))["MsgType"] == "A"
        assert core.open_trusted_session(b"rest", credential) is not None


def test_a_heartbeat_of_a_restarted_engine_asks_for_its_reports_from_one(gw):
    account = gw.connect_trader()
    gw.report(accepted_pair(gw, account, 1), n=3, epoch=1)
    assert heartbeat(gw, 0, epoch=2) == []  # restarted, nothing published yet
    [resend] = heartbeat(gw, 2, epoch=2)  # its first two reports never reached this gateway
    assert resend.query["from"] == 1


def test_reports_on_another_topic_are_ignored(gw):
    account = gw.connect_trader()
    pair = accepted_pair(gw, account, 1)
    assert gw.core.on_report(ReportMessage(gateway_topic(9), 1, pair[0], [pair[1]])) == []
