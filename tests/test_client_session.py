"""The client's protocol state, with plain dicts: no sockets."""

from __future__ import annotations

from decimal import Decimal

import pytest

from client.session import (
    AdminAnswer,
    BalanceAnswer,
    ClientSession,
    Incoming,
    LogonAnswer,
    LogonRefused,
    MassStatusAnswer,
    ReportAnswer,
    RequestRejected,
    SessionUsageError,
    StatusAnswer,
    describe,
    new_account,
)
from common.protocol import (
    MASS_CANCEL_ALL,
    MASS_CANCEL_SYMBOL,
    MASS_STATUS_ALL,
    POST_ONLY_EXEC_INST,
    DecodeError,
    ExecType,
    Field,
    MsgType,
    OrdStatus,
    decode,
    encode,
    sign_logon,
)

KEY_ID = "0123456789abcdef"
SECRET = "ab" * 32
NOW = 1_700_000_000_000_000_000


def session(**kwargs) -> ClientSession:
    return ClientSession(KEY_ID, SECRET, clordid_prefix="p", clock=lambda: NOW, **kwargs)


def execution_report(clordid: str, exec_type: ExecType = ExecType.NEW, status: OrdStatus = OrdStatus.NEW,
                     **fields) -> dict:
    return {"MsgType": "8", "MsgSeqNum": 9, "ClOrdID": clordid, "OrderID": "17", "ExecID": "e1",
            "ExecType": exec_type.value, "OrdStatus": status.value, **fields}


# --- building messages -----------------------------------------------------------------------------


def test_logon_is_signed_over_sending_time_seq_num_and_key_id_with_the_secret_bytes():
    logon = session().logon()
    assert logon["MsgType"] == MsgType.LOGON.value
    assert logon["Username"] == KEY_ID
    assert logon["SendingTime"] == NOW and logon["MsgSeqNum"] == 1
    assert logon["RawData"] == sign_logon(bytes.fromhex(SECRET), NOW, 1, KEY_ID)


def test_logon_asks_for_a_heartbeat_interval_only_when_given_one():
    assert "HeartBtInt" not in session().logon()
    assert session().logon(heartbeat_s=7)["HeartBtInt"] == 7


def test_secret_may_be_given_as_bytes():
    logon = ClientSession(KEY_ID, bytes.fromhex(SECRET), clock=lambda: NOW).logon()
    assert logon["RawData"] == sign_logon(bytes.fromhex(SECRET), NOW, 1, KEY_ID)


def test_a_secret_that_is_not_hex_or_a_missing_key_is_refused():
    with pytest.raises(SessionUsageError):
        ClientSession(KEY_ID, "not hex")
    with pytest.raises(SessionUsageError):
        ClientSession("", SECRET)


def test_sending_time_is_wall_clock_nanoseconds_by_default():
    import time

    before = time.time_ns()
    logon = ClientSession(KEY_ID, SECRET).logon()
    assert before <= logon["SendingTime"] <= time.time_ns()


def test_every_message_gets_the_next_sequence_number():
    s = session()
    messages = [s.logon(), s.new_order("BTC-USDT", "buy", qty="1", price="2"), s.balance_request(), s.heartbeat()]
    assert [m["MsgSeqNum"] for m in messages] == [1, 2, 3, 4]
    assert s.last_seq_num == 4


def test_clordids_are_unique_within_a_session_and_between_sessions():
    first, second = ClientSession(KEY_ID, SECRET), ClientSession(KEY_ID, SECRET)
    ids = [first.next_clordid() for _ in range(1000)] + [second.next_clordid() for _ in range(1000)]
    assert len(set(ids)) == len(ids)
    assert first.clordid_prefix != second.clordid_prefix


def test_limit_order_carries_symbol_side_type_price_quantity_and_gtc():
    order = session().new_order("BTC-USDT", "buy", qty="0.5", price="65000.1")
    assert order == {"MsgType": "D", "MsgSeqNum": 1, "SendingTime": NOW, "ClOrdID": "p-1", "Symbol": "BTC-USDT",
                     "Side": "1", "OrdType": "2", "TimeInForce": "1", "Price": "65000.1", "OrderQty": "0.5"}


def test_market_order_has_no_price_and_defaults_to_ioc():
    order = session().new_order("BTC-USDT", "sell", qty="0.5")
    assert order["OrdType"] == "1" and order["TimeInForce"] == "3" and order["Side"] == "2"
    assert "Price" not in order


def test_market_buy_by_quote_amount_sends_cash_order_qty_instead_of_a_quantity():
    order = session().new_order("BTC-USDT", "buy", cash_qty="1000")
    assert order["CashOrderQty"] == "1000" and "OrderQty" not in order and order["OrdType"] == "1"


def test_post_only_is_exec_inst_6_and_fok_is_time_in_force_4():
    order = session().new_order("BTC-USDT", "buy", qty="1", price="2", post_only=True)
    assert order["ExecInst"] == POST_ONLY_EXEC_INST
    assert session().new_order("BTC-USDT", "buy", qty="1", price="2", tif="fok")["TimeInForce"] == "4"


def test_decimal_and_integer_values_become_decimal_strings():
    order = session().new_order("BTC-USDT", "buy", qty=Decimal("0.10"), price=65000)
    assert order["OrderQty"] == "0.10" and order["Price"] == "65000"


@pytest.mark.parametrize(
    "arguments, reason",
    [
        (dict(side="hold", qty="1", price="1"), "side"),
        (dict(side="buy", price="1"), "exactly one of qty and cash_qty"),
        (dict(side="buy", qty="1", cash_qty="1"), "exactly one of qty and cash_qty"),
        (dict(side="sell", cash_qty="1"), "market buys only"),
        (dict(side="buy", cash_qty="1", price="1"), "market buys only"),
        (dict(side="buy", qty="1", post_only=True), "needs a price"),
        (dict(side="buy", qty="1", price="1", tif="day"), "tif"),
        (dict(side="buy", qty=0.1, price="1"), "decimal string"),
        (dict(side="buy", qty="1", price=Decimal("NaN")), "decimal string"),
    ],
)
def test_an_order_the_caller_got_wrong_is_refused_before_it_is_sent(arguments, reason):
    s = session()
    with pytest.raises(SessionUsageError, match=reason):
        s.new_order("BTC-USDT", **arguments)
    assert s.last_seq_num == 0 and not s.unacknowledged


def test_cancel_names_the_order_by_its_clordid_or_its_order_id():
    s = session()
    placed = s.new_order("ETH-USDT", "sell", qty="1", price="3000")
    by_clordid = s.cancel(placed["ClOrdID"])
    assert by_clordid["MsgType"] == "F" and by_clordid["OrigClOrdID"] == "p-1" and by_clordid["ClOrdID"] == "p-2"
    assert by_clordid["Symbol"] == "ETH-USDT"
    by_order_id = s.cancel(order_id=42, symbol="ETH-USDT")
    assert by_order_id["OrderID"] == "42" and "OrigClOrdID" not in by_order_id
    with pytest.raises(SessionUsageError):
        s.cancel()
    with pytest.raises(SessionUsageError):
        s.cancel("p-1", order_id=42)


def test_amend_repeats_what_it_does_not_change_from_the_order_as_placed():
    s = session()
    placed = s.new_order("BTC-USDT", "buy", qty="0.5", price="65000")
    amend = s.replace(placed["ClOrdID"], price="64000")
    assert amend["MsgType"] == "G" and amend["OrigClOrdID"] == placed["ClOrdID"]
    assert (amend["Symbol"], amend["Side"], amend["OrdType"], amend["Price"], amend["OrderQty"]) == (
        "BTC-USDT", "1", "2", "64000", "0.5")
    again = s.replace(amend["ClOrdID"], qty="0.25")
    assert (again["Price"], again["OrderQty"]) == ("64000", "0.25")


def test_amend_of_an_order_this_session_did_not_place_needs_symbol_price_and_quantity():
    s = session()
    with pytest.raises(SessionUsageError, match="symbol, price and qty"):
        s.replace("elsewhere-1", price="1")
    amend = s.replace(order_id=7, symbol="BTC-USDT", price="1", qty="2", side="sell")
    assert amend["OrderID"] == "7" and amend["Side"] == "2"
    with pytest.raises(SessionUsageError, match="price, the quantity"):
        s.replace("elsewhere-1")


def test_mass_cancel_covers_all_symbols_or_one():
    s = session()
    everything = s.mass_cancel()
    assert everything["MsgType"] == "q" and everything["MassCancelRequestType"] == MASS_CANCEL_ALL
    one = s.mass_cancel(symbol="BTC-USDT")
    assert one["MassCancelRequestType"] == MASS_CANCEL_SYMBOL and one["Symbol"] == "BTC-USDT"


def test_queries_carry_their_request_ids():
    s = session()
    status = s.order_status("p-9")
    assert status["MsgType"] == "H" and status["ClOrdID"] == "p-9"
    assert s.order_status(order_id=5)["OrderID"] == "5"
    mass = s.mass_status()
    assert mass["MsgType"] == "AF" and mass["MassStatusReqType"] == MASS_STATUS_ALL and mass["MassStatusReqID"]
    balance = s.balance_request()
    assert balance["MsgType"] == "UB" and balance["BalanceReqID"]
    assert len({mass["MassStatusReqID"], balance["BalanceReqID"]}) == 2


def test_admin_requests_name_the_action_and_for_money_the_account_currency_and_amount():
    s = session()
    create = s.admin_request("create_account", request_id="r1")
    assert create == {"MsgType": "UA", "MsgSeqNum": 1, "SendingTime": NOW, "AdminAction": "create_account",
                      "AdminReqID": "r1"}
    deposit = s.admin_request("deposit", account=3, currency="USDT", amount="100")
    assert (deposit["Account"], deposit["Currency"], deposit["Amount"]) == (3, "USDT", "100")
    with pytest.raises(SessionUsageError):
        s.admin_request("withdraw", account=3, currency="USDT")
    with pytest.raises(SessionUsageError):
        s.admin_request("mint")


def test_every_message_survives_the_wire_encoding():
    s = session()
    for message in (s.logon(), s.new_order("BTC-USDT", "buy", qty="1", price="2"), s.cancel("p-2"),
                    s.mass_cancel(), s.order_status("p-2"), s.mass_status(), s.balance_request(),
                    s.admin_request("create_account"), s.heartbeat(), s.test_request(), s.logout()):
        assert decode(encode(message), max_bytes=4096) == message


# --- receiving ---------------------------------------------------------------------------------------


def test_the_gateways_logon_starts_the_session_and_sets_the_heartbeat_interval():
    s = session()
    s.receive({"MsgType": "A", "MsgSeqNum": 1, "HeartBtInt": 30, "Account": 4})
    assert s.logged_on and s.heartbeat_s == 30 and s.account == 4


def test_a_logout_ends_the_session_and_keeps_its_reason():
    s = session()
    s.receive({"MsgType": "A", "MsgSeqNum": 1, "HeartBtInt": 30})
    s.receive({"MsgType": "5", "MsgSeqNum": 2, "Text": "idle"})
    assert not s.logged_on and s.logout_text == "idle"


def test_a_test_request_is_answered_with_a_heartbeat_carrying_its_id():
    s = session()
    s.receive({"MsgType": "1", "MsgSeqNum": 3, "TestReqID": "ping-7"})
    owed = s.data_to_send()
    assert len(owed) == 1 and owed[0]["MsgType"] == "0" and owed[0]["TestReqID"] == "ping-7"
    assert s.data_to_send() == []


def test_an_order_stays_unacknowledged_until_its_first_report():
    s = session()
    order = s.new_order("BTC-USDT", "buy", qty="1", price="2")
    assert list(s.unacknowledged) == [order["ClOrdID"]]
    s.receive(execution_report("someone-else"))
    assert order["ClOrdID"] in s.unacknowledged
    incoming = s.receive(execution_report(order["ClOrdID"]))
    assert incoming.clordid == order["ClOrdID"] and not s.unacknowledged


def test_a_session_reject_acknowledges_the_message_it_refers_to_and_names_its_clordid():
    s = session()
    order = s.new_order("NOPE", "buy", qty="1", price="2")
    incoming = s.receive({"MsgType": "3", "MsgSeqNum": 2, "RefSeqNum": order["MsgSeqNum"], "RefMsgType": "D",
                          "SessionRejectReason": 5, "Text": "unknown symbol"})
    assert incoming.clordid == order["ClOrdID"] and incoming.is_reject and incoming.text == "unknown symbol"
    assert not s.unacknowledged


def test_cancel_rejects_and_mass_cancel_reports_acknowledge_too():
    s = session()
    cancel = s.cancel("gone-1", symbol="BTC-USDT")
    mass = s.mass_cancel()
    s.receive({"MsgType": "9", "ClOrdID": cancel["ClOrdID"], "OrigClOrdID": "gone-1", "CxlRejReason": 1})
    s.receive({"MsgType": "r", "ClOrdID": mass["ClOrdID"], "MassCancelResponse": "7", "TotalAffectedOrders": 0})
    assert not s.unacknowledged


def test_after_a_restart_unacknowledged_orders_are_resent_with_their_clordids_and_new_sequence_numbers():
    s = session()
    s.logon()
    first = s.new_order("BTC-USDT", "buy", qty="1", price="2")
    second = s.new_order("BTC-USDT", "sell", qty="1", price="3")
    s.receive(execution_report(first["ClOrdID"]))
    s.restart()
    assert s.logon()["MsgSeqNum"] == 1
    [again] = s.resend()
    assert again["ClOrdID"] == second["ClOrdID"] and again["MsgSeqNum"] == 2
    assert {k: v for k, v in again.items() if k != "MsgSeqNum"} == {k: v for k, v in second.items() if k != "MsgSeqNum"}
    s.receive({"MsgType": "3", "RefSeqNum": 2, "Text": "x"})
    assert not s.unacknowledged


def test_a_frame_that_is_not_a_message_is_refused():
    with pytest.raises(DecodeError):
        session().receive_frame(b"\xc1garbage", max_bytes=1024)
    assert session().receive_frame(encode({"MsgType": "0"}), max_bytes=1024).msg_type == "0"


def test_incoming_reads_fields_by_name_or_field_and_describes_itself():
    incoming = Incoming({"MsgType": "8", "ExecType": "F", "OrdStatus": "2", "Side": "1", "Text": "a b"})
    assert incoming[Field.EXEC_TYPE] == "F" and incoming["Side"] == "1" and Field.SIDE in incoming
    assert incoming.get("Nope", 3) == 3
    assert describe(incoming.fields) == "EXECUTION_REPORT ExecType=TRADE OrdStatus=FILLED Side=buy Text='a b'"
    assert Incoming({"MsgType": "UP", "Balances": [{"Currency": "BTC", "Available": "1", "Frozen": "0"}]}
                    ).describe() == "BALANCE_REPORT Balances=[BTC available 1 frozen 0]"


@pytest.mark.parametrize(
    "fields, refusal",
    [
        ({"MsgType": "3"}, True),
        ({"MsgType": "9"}, True),
        ({"MsgType": "8", "ExecType": "8"}, True),
        ({"MsgType": "8", "ExecType": "0"}, False),
        ({"MsgType": "UR", "Status": "rejected"}, True),
        ({"MsgType": "UR", "Status": "ok"}, False),
        ({"MsgType": "r", "MassCancelResponse": "0"}, True),
        ({"MsgType": "r", "MassCancelResponse": "7"}, False),
        ({"MsgType": "0"}, False),
    ],
)
def test_refusals_are_recognised_whatever_their_message_type(fields, refusal):
    assert Incoming(fields).is_reject is refusal


# --- answers -----------------------------------------------------------------------------------------


def test_logon_answer_is_the_gateways_logon_or_a_refusal_with_its_reason():
    s = session()
    logon = s.logon()
    answer = LogonAnswer(logon)
    assert not answer.offer(s.receive({"MsgType": "0"}))
    assert answer.offer(s.receive({"MsgType": "A", "HeartBtInt": 5}))
    assert answer.result().is_type(MsgType.LOGON)
    refused = LogonAnswer(logon)
    refused.offer(s.receive({"MsgType": "5", "Text": "bad signature"}))
    with pytest.raises(LogonRefused, match="bad signature"):
        refused.result()


def test_report_answer_is_the_first_report_about_the_clordid_even_a_refusal():
    s = session()
    order = s.new_order("BTC-USDT", "buy", qty="1", price="2")
    answer = ReportAnswer(order["ClOrdID"])
    assert not answer.offer(s.receive(execution_report("other")))
    assert not answer.offer(s.receive({"MsgType": "3", "RefSeqNum": 99}))
    assert answer.offer(s.receive(execution_report(order["ClOrdID"], ExecType.REJECTED, OrdStatus.REJECTED)))
    assert answer.done and answer.result().is_reject


def test_status_answer_matches_the_order_status_report_not_a_fill_of_the_same_order():
    s = session()
    request = s.order_status("p-1")
    answer = StatusAnswer(request)
    assert not answer.offer(s.receive(execution_report("p-1", ExecType.TRADE)))
    assert answer.offer(s.receive(execution_report("p-1", ExecType.ORDER_STATUS)))
    by_id = StatusAnswer(s.order_status(order_id=17))
    assert by_id.offer(s.receive(execution_report("x", ExecType.ORDER_STATUS)))


def test_mass_status_answer_collects_reports_up_to_the_last_requested():
    s = session()
    request = s.mass_status()
    rid = request["MassStatusReqID"]
    answer = MassStatusAnswer(request)
    answer.offer(s.receive(execution_report("a", ExecType.ORDER_STATUS, MassStatusReqID=rid, TotNumReports=2)))
    assert not answer.done
    assert not answer.offer(s.receive(execution_report("b", ExecType.ORDER_STATUS, MassStatusReqID="other")))
    answer.offer(s.receive(execution_report("c", ExecType.ORDER_STATUS, MassStatusReqID=rid, TotNumReports=2,
                                            LastRptRequested=True)))
    assert answer.done and [m.clordid for m in answer.result()] == ["a", "c"]
    empty = MassStatusAnswer(s.mass_status(request_id="e"))
    empty.offer(s.receive({"MsgType": "8", "MassStatusReqID": "e", "TotNumReports": 0, "LastRptRequested": True,
                           "ExecType": "I", "OrdStatus": "8"}))
    assert empty.result() == []


def test_a_session_reject_of_a_query_completes_its_answer_as_a_refusal():
    s = session()
    request = s.balance_request()
    answer = BalanceAnswer(request)
    assert answer.offer(s.receive({"MsgType": "3", "RefSeqNum": request["MsgSeqNum"], "Text": "not logged on"}))
    with pytest.raises(RequestRejected, match="not logged on"):
        answer.result()


def test_balance_answer_maps_each_currency_to_its_available_and_frozen_amounts():
    s = session()
    request = s.balance_request()
    answer = BalanceAnswer(request)
    answer.offer(s.receive({"MsgType": "UP", "BalanceReqID": request["BalanceReqID"], "Balances": [
        {"Currency": "BTC", "Available": "1.5", "Frozen": "0.5"}, {"Currency": "USDT", "Available": "0", "Frozen": "0"}]}))
    balances = answer.result()
    assert balances["BTC"].available == "1.5" and balances["BTC"].frozen == "0.5" and set(balances) == {"BTC", "USDT"}


def test_admin_answer_gives_the_new_account_or_raises_the_refusal():
    s = session()
    request = s.admin_request("create_account")
    answer = AdminAnswer(request)
    answer.offer(s.receive({"MsgType": "UR", "AdminReqID": request["AdminReqID"], "Status": "ok", "Account": 5,
                            "KeyID": "k", "Secret": "s"}))
    created = new_account(answer.result())
    assert (created.account, created.key_id, created.secret) == (5, "k", "s")
    refused = AdminAnswer(request)
    refused.offer(s.receive({"MsgType": "UR", "AdminReqID": request["AdminReqID"], "Status": "rejected",
                             "Text": "not an admin"}))
    with pytest.raises(RequestRejected, match="not an admin"):
        refused.result()


# --- reports the exchange sends again -------------------------------------------------------------


def test_a_report_sent_again_with_poss_resend_is_marked_a_duplicate_only_if_it_was_seen():
    s = session()
    fill = execution_report("c1", ExecType.TRADE, OrdStatus.FILLED, ExecID="5-3-5-1-taker")
    assert not s.receive(fill).duplicate
    assert s.receive({**fill, "PossResend": True}).duplicate
    assert not s.receive({**fill, "ExecID": "9-3-5-2-taker", "PossResend": True}).duplicate  # never seen
    assert not s.receive(fill).duplicate  # not flagged PossResend: delivered as the exchange sent it


def test_the_exec_ids_remembered_are_bounded(monkeypatch):
    import client.session as session_module

    monkeypatch.setattr(session_module, "EXEC_ID_MEMORY", 3)
    s = session()
    for n in range(5):
        s.receive(execution_report("c1", ExecType.TRADE, ExecID=f"e{n}"))
    assert not s.receive(execution_report("c1", ExecType.TRADE, ExecID="e0", PossResend=True)).duplicate
    assert s.receive(execution_report("c1", ExecType.TRADE, ExecID="e4", PossResend=True)).duplicate


def test_an_order_outcome_sent_again_is_delivered_marked_poss_resend():
    s = session()
    new = execution_report("c1", ExecID="7-1-7-0-order")
    s.receive(new)
    again = s.receive({**new, "PossResend": True})
    assert not again.duplicate and again.get("PossResend")


def test_after_a_restart_the_unacknowledged_orders_are_sent_again_with_their_clordids():
    s = session()
    s.receive({"MsgType": "A", "MsgSeqNum": 1})
    acknowledged = s.new_order("BTC-USDT", "buy", qty="0.01", price="100")
    lost = s.new_order("BTC-USDT", "sell", qty="0.01", price="200")
    s.receive(execution_report(acknowledged["ClOrdID"]))
    s.restart()
    assert s.logon()["MsgSeqNum"] == 1
    [again] = s.resend()
    assert again["ClOrdID"] == lost["ClOrdID"] and again["MsgSeqNum"] == 2
    assert (again["Side"], again["Price"]) == (lost["Side"], lost["Price"])


def test_an_order_refused_for_want_of_a_session_stays_unacknowledged_for_the_next_logon():
    s = session()
    s.receive({"MsgType": "A", "MsgSeqNum": 1})
    sent = s.new_order("BTC-USDT", "buy", qty="0.01", price="100")
    answer = s.receive({"MsgType": "3", "MsgSeqNum": 0, "RefSeqNum": sent["MsgSeqNum"], "SessionRejectReason": 9,
                        "Text": "not logged on: send a Logon first"})
    assert answer.clordid == sent["ClOrdID"]
    assert sent["ClOrdID"] in s.unacknowledged and not s.logged_on


def test_an_order_refused_by_validation_is_acknowledged_by_the_reject():
    s = session()
    s.receive({"MsgType": "A", "MsgSeqNum": 1})
    sent = s.new_order("BTC-USDT", "buy", qty="0.01", price="100")
    s.receive({"MsgType": "3", "MsgSeqNum": 2, "RefSeqNum": sent["MsgSeqNum"], "SessionRejectReason": 5})
    assert sent["ClOrdID"] not in s.unacknowledged
