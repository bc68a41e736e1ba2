"""Every reject path of docs/protocol.md section 5 that validation decides, table-driven, and what good
messages become. (Frame, logon, sequence number and role checks are in test_gateway_core.py.)

The configuration is the packaged default: BTC-USDT has tick 0.1, lot 0.0001, quantity 0.0001..1000,
price band 1000..300000 and a minimum notional of 5 USDT; USDT has 6 decimals.
"""

from __future__ import annotations

from typing import Any

import pytest

from common.config import default_config
from common.protocol import SessionRejectReason as R
from common.records import OrderType, Side, TimeInForce
from gateway import validation
from gateway.validation import BusinessReject, Context, SessionReject

CONFIG = default_config()
BTC_USDT = CONFIG.symbol("BTC-USDT")
ACCOUNT = 7
TRADER = Context.of(CONFIG, account=ACCOUNT)
ADMIN = Context.of(CONFIG, account=None, admin=True)


def outcome(message: dict[str, Any], context: Context = TRADER) -> tuple:
    """("ok", request), ("reject", reason, tag) or ("refuse", reason name)."""
    try:
        msg_type = validation.read_msg_type(message)
        validation.read_msg_seq_num(message)
        return ("ok", validation.validate(message, context, msg_type))
    except SessionReject as reject:
        return ("reject", reject.reason, reject.tag)
    except BusinessReject as refusal:
        return ("refuse", refusal.reason)


def limit(**fields: Any) -> dict[str, Any]:
    message = {"MsgType": "D", "MsgSeqNum": 2, "ClOrdID": "c1", "Symbol": "BTC-USDT", "Side": "1",
               "OrdType": "2", "Price": "65000.5", "OrderQty": "0.01"}
    message.update(fields)
    return {k: v for k, v in message.items() if v is not None}


def market(**fields: Any) -> dict[str, Any]:
    return limit(**{"OrdType": "1", "Price": None, **fields})


def cancel(**fields: Any) -> dict[str, Any]:
    message = {"MsgType": "F", "MsgSeqNum": 2, "ClOrdID": "x1", "OrigClOrdID": "c1"}
    message.update(fields)
    return {k: v for k, v in message.items() if v is not None}


def replace(**fields: Any) -> dict[str, Any]:
    message = {"MsgType": "G", "MsgSeqNum": 2, "ClOrdID": "c2", "OrigClOrdID": "c1", "Symbol": "BTC-USDT",
               "Price": "65000", "OrderQty": "0.02"}
    message.update(fields)
    return {k: v for k, v in message.items() if v is not None}


def message(msg_type: str, **fields: Any) -> dict[str, Any]:
    return {"MsgType": msg_type, "MsgSeqNum": 2, **fields}


def admin(action: str, **fields: Any) -> dict[str, Any]:
    return message("UA", AdminReqID="a1", AdminAction=action, **fields)


DEPOSIT = dict(Account=3, Currency="USDT", Amount="100")

SESSION_REJECTS = [
    # (case, message, reason, RefTagID)
    ("MsgType missing", {"MsgSeqNum": 2}, R.REQUIRED_TAG_MISSING, "MsgType"),
    ("MsgType not a string", {"MsgType": 68, "MsgSeqNum": 2}, R.INCORRECT_DATA_FORMAT, "MsgType"),
    ("MsgType unknown", message("Z"), R.INVALID_MSG_TYPE, "MsgType"),
    ("MsgType the gateway sends", message("8"), R.INVALID_MSG_TYPE, "MsgType"),
    ("MsgSeqNum missing", {"MsgType": "0"}, R.REQUIRED_TAG_MISSING, "MsgSeqNum"),
    ("MsgSeqNum a string", message("0", MsgSeqNum="2"), R.INCORRECT_DATA_FORMAT, "MsgSeqNum"),
    ("MsgSeqNum zero", message("0", MsgSeqNum=0), R.VALUE_INCORRECT, "MsgSeqNum"),
    ("MsgSeqNum a bool", message("0", MsgSeqNum=True), R.INCORRECT_DATA_FORMAT, "MsgSeqNum"),
    ("a field the type does not have", limit(Foo=1), R.INVALID_TAG, "Foo"),
    ("a field of another type", message("0", ClOrdID="x"), R.INVALID_TAG, "ClOrdID"),
    ("ClOrdID missing", limit(ClOrdID=None), R.REQUIRED_TAG_MISSING, "ClOrdID"),
    ("Symbol missing", limit(Symbol=None), R.REQUIRED_TAG_MISSING, "Symbol"),
    ("Side missing", limit(Side=None), R.REQUIRED_TAG_MISSING, "Side"),
    ("OrdType missing", limit(OrdType=None), R.REQUIRED_TAG_MISSING, "OrdType"),
    ("ClOrdID a number", limit(ClOrdID=5), R.INCORRECT_DATA_FORMAT, "ClOrdID"),
    ("ClOrdID empty", limit(ClOrdID=""), R.VALUE_INCORRECT, "ClOrdID"),
    ("ClOrdID with a blank", limit(ClOrdID="a b"), R.VALUE_INCORRECT, "ClOrdID"),
    ("ClOrdID over 64", limit(ClOrdID="x" * 65), R.VALUE_INCORRECT, "ClOrdID"),
    ("ClOrdID not ASCII", limit(ClOrdID="ordré"), R.VALUE_INCORRECT, "ClOrdID"),
    ("Symbol a number", limit(Symbol=1), R.INCORRECT_DATA_FORMAT, "Symbol"),
    ("Symbol empty", limit(Symbol=""), R.VALUE_INCORRECT, "Symbol"),
    ("Symbol too long", limit(Symbol="X" * 33), R.VALUE_INCORRECT, "Symbol"),
    ("Side unknown code", limit(Side="3"), R.VALUE_INCORRECT, "Side"),
    ("Side as a number", limit(Side=1), R.INCORRECT_DATA_FORMAT, "Side"),
    ("OrdType unknown code", limit(OrdType="3"), R.VALUE_INCORRECT, "OrdType"),
    ("TimeInForce Day", limit(TimeInForce="0"), R.VALUE_INCORRECT, "TimeInForce"),
    ("ExecInst other than post only", limit(ExecInst="P"), R.VALUE_INCORRECT, "ExecInst"),
    ("Price as a float", limit(Price=65000.5), R.INCORRECT_DATA_FORMAT, "Price"),
    ("Price as an int", limit(Price=65000), R.INCORRECT_DATA_FORMAT, "Price"),
    ("Price empty", limit(Price=""), R.INCORRECT_DATA_FORMAT, "Price"),
    ("Price not a number", limit(Price="abc"), R.INCORRECT_DATA_FORMAT, "Price"),
    ("Price with a comma", limit(Price="1,5"), R.INCORRECT_DATA_FORMAT, "Price"),
    ("Price with a blank", limit(Price=" 1"), R.INCORRECT_DATA_FORMAT, "Price"),
    ("Price with a plus sign", limit(Price="+1"), R.INCORRECT_DATA_FORMAT, "Price"),
    ("Price NaN", limit(Price="NaN"), R.INCORRECT_DATA_FORMAT, "Price"),
    ("Price Infinity", limit(Price="Infinity"), R.INCORRECT_DATA_FORMAT, "Price"),
    ("Price with an exponent", limit(Price="6.5e4"), R.INCORRECT_DATA_FORMAT, "Price"),
    ("Price negative", limit(Price="-1"), R.VALUE_INCORRECT, "Price"),
    ("Price zero", limit(Price="0"), R.VALUE_INCORRECT, "Price"),
    ("Price zero with decimals", limit(Price="0.000"), R.VALUE_INCORRECT, "Price"),
    ("Price beyond 64 bits", limit(Price="99999999999999999999"), R.VALUE_INCORRECT, "Price"),
    ("Price over 48 characters", limit(Price="1" + "0" * 48), R.VALUE_INCORRECT, "Price"),
    ("OrderQty negative", limit(OrderQty="-0.01"), R.VALUE_INCORRECT, "OrderQty"),
    ("OrderQty zero", limit(OrderQty="0"), R.VALUE_INCORRECT, "OrderQty"),
    ("OrderQty not a number", limit(OrderQty="lots"), R.INCORRECT_DATA_FORMAT, "OrderQty"),
    ("CashOrderQty NaN", market(OrderQty=None, CashOrderQty="nan"), R.INCORRECT_DATA_FORMAT, "CashOrderQty"),
    ("TransactTime a string", limit(TransactTime="now"), R.INCORRECT_DATA_FORMAT, "TransactTime"),
    ("Account of another account", limit(Account=8), R.COMP_ID_PROBLEM, "Account"),
    ("Account not a number", limit(Account="seven"), R.INCORRECT_DATA_FORMAT, "Account"),
    ("limit without Price", limit(Price=None), R.REQUIRED_TAG_MISSING, "Price"),
    ("market with Price", market(Price="65000"), R.VALUE_INCORRECT, "Price"),
    ("neither OrderQty nor CashOrderQty", limit(OrderQty=None), R.REQUIRED_TAG_MISSING, "OrderQty"),
    ("both OrderQty and CashOrderQty", market(CashOrderQty="100"), R.VALUE_INCORRECT, "CashOrderQty"),
    ("cancel naming no order", cancel(OrigClOrdID=None), R.REQUIRED_TAG_MISSING, "OrigClOrdID"),
    ("cancel with OrderID not digits", cancel(OrderID="x1"), R.INCORRECT_DATA_FORMAT, "OrderID"),
    ("cancel with OrderID zero", cancel(OrigClOrdID=None, OrderID="0"), R.VALUE_INCORRECT, "OrderID"),
    ("cancel with OrderID a float", cancel(OrderID=1.5), R.INCORRECT_DATA_FORMAT, "OrderID"),
    ("replace without Symbol", replace(Symbol=None), R.REQUIRED_TAG_MISSING, "Symbol"),
    ("replace without Price", replace(Price=None), R.REQUIRED_TAG_MISSING, "Price"),
    ("replace without OrderQty", replace(OrderQty=None), R.REQUIRED_TAG_MISSING, "OrderQty"),
    ("replace naming no order", replace(OrigClOrdID=None), R.REQUIRED_TAG_MISSING, "OrigClOrdID"),
    ("replace keeping its ClOrdID", replace(ClOrdID="c1"), R.VALUE_INCORRECT, "ClOrdID"),
    ("replace with CashOrderQty", replace(CashOrderQty="5"), R.INVALID_TAG, "CashOrderQty"),
    ("mass cancel without type", message("q", ClOrdID="m1"), R.REQUIRED_TAG_MISSING, "MassCancelRequestType"),
    ("mass cancel unknown type", message("q", ClOrdID="m1", MassCancelRequestType="2"), R.VALUE_INCORRECT,
     "MassCancelRequestType"),
    ("mass cancel of a symbol without Symbol", message("q", ClOrdID="m1", MassCancelRequestType="1"),
     R.REQUIRED_TAG_MISSING, "Symbol"),
    ("mass cancel of all with a Symbol", message("q", ClOrdID="m1", MassCancelRequestType="7",
                                                 Symbol="BTC-USDT"), R.VALUE_INCORRECT, "Symbol"),
    ("status naming no order", message("H"), R.REQUIRED_TAG_MISSING, "ClOrdID"),
    ("status of an unknown symbol", message("H", ClOrdID="c1", Symbol="DOGE-USDT"), R.VALUE_INCORRECT, "Symbol"),
    ("mass status without id", message("AF"), R.REQUIRED_TAG_MISSING, "MassStatusReqID"),
    ("mass status of a symbol without Symbol", message("AF", MassStatusReqID="s1", MassStatusReqType="1"),
     R.REQUIRED_TAG_MISSING, "Symbol"),
    ("mass status of all with a Symbol", message("AF", MassStatusReqID="s1", MassStatusReqType="7",
                                                 Symbol="BTC-USDT"), R.VALUE_INCORRECT, "Symbol"),
    ("mass status of an unknown symbol", message("AF", MassStatusReqID="s1", Symbol="DOGE-USDT"),
     R.VALUE_INCORRECT, "Symbol"),
    ("balances without id", message("UB"), R.REQUIRED_TAG_MISSING, "BalanceReqID"),
    ("balances of an unknown currency", message("UB", BalanceReqID="b1", Currency="DOGE"), R.VALUE_INCORRECT,
     "Currency"),
    ("balances of another account", message("UB", BalanceReqID="b1", Account=8), R.COMP_ID_PROBLEM, "Account"),
    ("test request without id", message("1"), R.REQUIRED_TAG_MISSING, "TestReqID"),
    ("logout with a long text", message("5", Text="x" * 2000), R.VALUE_INCORRECT, "Text"),
    ("logon without Username", message("A", SendingTime=1, RawData="a" * 64), R.REQUIRED_TAG_MISSING, "Username"),
    ("logon without SendingTime", message("A", Username="k", RawData="a" * 64), R.REQUIRED_TAG_MISSING,
     "SendingTime"),
    ("logon signature not hex", message("A", SendingTime=1, Username="k", RawData="z" * 64), R.SIGNATURE_PROBLEM,
     "RawData"),
    ("logon signature too short", message("A", SendingTime=1, Username="k", RawData="ab"), R.SIGNATURE_PROBLEM,
     "RawData"),
    ("logon HeartBtInt a string", message("A", SendingTime=1, Username="k", RawData="a" * 64, HeartBtInt="30"),
     R.INCORRECT_DATA_FORMAT, "HeartBtInt"),
    ("logon HeartBtInt zero", message("A", SendingTime=1, Username="k", RawData="a" * 64, HeartBtInt=0),
     R.VALUE_INCORRECT, "HeartBtInt"),
    ("logon encrypted", message("A", SendingTime=1, Username="k", RawData="a" * 64, EncryptMethod=1),
     R.VALUE_INCORRECT, "EncryptMethod"),
]

ADMIN_SESSION_REJECTS = [
    ("admin balances without Account", message("UB", BalanceReqID="b1"), R.REQUIRED_TAG_MISSING, "Account"),
    ("admin balances beyond the accounts", message("UB", BalanceReqID="b1", Account=10**9), R.VALUE_INCORRECT,
     "Account"),
    ("admin request without action", message("UA", AdminReqID="a1"), R.REQUIRED_TAG_MISSING, "AdminAction"),
    ("admin request without id", message("UA", AdminAction="deposit"), R.REQUIRED_TAG_MISSING, "AdminReqID"),
    ("admin request unknown action", admin("delete_account"), R.VALUE_INCORRECT, "AdminAction"),
    ("create_account with an Account", admin("create_account", Account=3), R.VALUE_INCORRECT, "Account"),
    ("deposit without Account", admin("deposit", Currency="USDT", Amount="1"), R.REQUIRED_TAG_MISSING, "Account"),
    ("deposit without Currency", admin("deposit", Account=3, Amount="1"), R.REQUIRED_TAG_MISSING, "Currency"),
    ("withdraw without Amount", admin("withdraw", Account=3, Currency="USDT"), R.REQUIRED_TAG_MISSING, "Amount"),
    ("deposit of a negative amount", admin("deposit", **{**DEPOSIT, "Amount": "-5"}), R.VALUE_INCORRECT, "Amount"),
    ("deposit of zero", admin("deposit", **{**DEPOSIT, "Amount": "0"}), R.VALUE_INCORRECT, "Amount"),
    ("deposit amount as a number", admin("deposit", **{**DEPOSIT, "Amount": 5}), R.INCORRECT_DATA_FORMAT,
     "Amount"),
    ("deposit beyond the accounts", admin("deposit", **{**DEPOSIT, "Account": 10**9}), R.VALUE_INCORRECT,
     "Account"),
]

BUSINESS_REJECTS = [
    # (case, message, reason name)
    ("unknown symbol", limit(Symbol="DOGE-USDT"), "UNKNOWN_SYMBOL"),
    ("market order GTC", market(TimeInForce="1"), "INVALID_TIME_IN_FORCE"),
    ("market order FOK", market(TimeInForce="4"), "INVALID_TIME_IN_FORCE"),
    ("market order post only", market(ExecInst="6"), "INVALID_TIME_IN_FORCE"),
    ("post only IOC", limit(ExecInst="6", TimeInForce="3"), "INVALID_TIME_IN_FORCE"),
    ("post only FOK", limit(ExecInst="6", TimeInForce="4"), "INVALID_TIME_IN_FORCE"),
    ("cash quantity on a market sell", market(Side="2", OrderQty=None, CashOrderQty="100"), "INVALID_ORDER_TYPE"),
    ("cash quantity on a limit buy", limit(OrderQty=None, CashOrderQty="100"), "INVALID_QUANTITY"),
    ("cash quantity with too many decimals", market(OrderQty=None, CashOrderQty="10.1234567"), "INVALID_AMOUNT"),
    ("cash quantity under the minimum notional", market(OrderQty=None, CashOrderQty="4.99"), "BELOW_MIN_NOTIONAL"),
    ("quantity not a multiple of the lot", limit(OrderQty="0.00005"), "INVALID_QUANTITY"),
    ("quantity above the maximum", limit(OrderQty="1000.0001"), "INVALID_QUANTITY"),
    ("quantity far beyond 64 bits of lots", limit(OrderQty="9999999999999999"), "INVALID_QUANTITY"),
    ("price not a multiple of the tick", limit(Price="65000.55"), "INVALID_PRICE_INCREMENT"),
    ("price below the band", limit(Price="999.9"), "PRICE_OUT_OF_BAND"),
    ("price above the band", limit(Price="300000.1"), "PRICE_OUT_OF_BAND"),
    ("notional under the minimum", limit(Price="1000", OrderQty="0.0049"), "BELOW_MIN_NOTIONAL"),
    ("cancel of an unknown symbol", cancel(Symbol="DOGE-USDT"), "UNKNOWN_SYMBOL"),
    ("replace of an unknown symbol", replace(Symbol="DOGE-USDT"), "UNKNOWN_SYMBOL"),
    ("replace to a market order", replace(OrdType="1"), "INVALID_ORDER_TYPE"),
    ("replace price off the tick", replace(Price="65000.01"), "INVALID_PRICE_INCREMENT"),
    ("replace price out of band", replace(Price="500000"), "PRICE_OUT_OF_BAND"),
    ("replace quantity off the lot", replace(OrderQty="0.00001"), "INVALID_QUANTITY"),
    ("replace under the minimum notional", replace(Price="1000", OrderQty="0.001"), "BELOW_MIN_NOTIONAL"),
    ("mass cancel of an unknown symbol", message("q", ClOrdID="m1", MassCancelRequestType="1", Symbol="DOGE"),
     "UNKNOWN_SYMBOL"),
]

ADMIN_BUSINESS_REJECTS = [
    ("deposit of an unknown currency", admin("deposit", **{**DEPOSIT, "Currency": "DOGE"}), "UNKNOWN_ASSET"),
    ("deposit with too many decimals", admin("deposit", **{**DEPOSIT, "Amount": "1.0000001"}), "INVALID_AMOUNT"),
]


@pytest.mark.parametrize("case, msg, reason, tag", SESSION_REJECTS, ids=[c[0] for c in SESSION_REJECTS])
def test_a_malformed_message_gets_a_session_reject_naming_the_field(case, msg, reason, tag):
    assert outcome(msg) == ("reject", reason, tag)


@pytest.mark.parametrize("case, msg, reason, tag", ADMIN_SESSION_REJECTS, ids=[c[0] for c in ADMIN_SESSION_REJECTS])
def test_a_malformed_admin_message_gets_a_session_reject_naming_the_field(case, msg, reason, tag):
    assert outcome(msg, ADMIN) == ("reject", reason, tag)


@pytest.mark.parametrize("case, msg, reason", BUSINESS_REJECTS, ids=[c[0] for c in BUSINESS_REJECTS])
def test_a_well_formed_request_breaking_a_rule_is_refused_with_the_engines_reason(case, msg, reason):
    assert outcome(msg) == ("refuse", reason)


@pytest.mark.parametrize("case, msg, reason", ADMIN_BUSINESS_REJECTS, ids=[c[0] for c in ADMIN_BUSINESS_REJECTS])
def test_an_admin_request_breaking_a_rule_is_refused(case, msg, reason):
    assert outcome(msg, ADMIN) == ("refuse", reason)


def test_a_refusal_names_the_reason_first_in_its_text_and_maps_to_fix_codes():
    with pytest.raises(BusinessReject) as caught:
        validation.validate(limit(Price="999.9"), TRADER)
    assert caught.value.text.startswith("PRICE_OUT_OF_BAND: ")
    assert caught.value.ord_rej_reason == 16
    assert validation.ord_rej_reason("INVALID_PRICE_INCREMENT") == 18
    assert validation.ord_rej_reason("UNKNOWN_SYMBOL") == 1
    assert validation.ord_rej_reason("INSUFFICIENT_FUNDS") == 3
    assert validation.ord_rej_reason("POST_ONLY_WOULD_CROSS") == 99


def test_a_limit_order_becomes_ticks_and_lots():
    kind, order = outcome(limit())
    assert kind == "ok" and isinstance(order, validation.NewOrder)
    assert (order.symbol, order.side, order.order_type, order.tif) == (BTC_USDT, Side.BUY, OrderType.LIMIT,
                                                                       TimeInForce.GTC)
    assert (order.price, order.qty, order.amount) == (650005, 100, 0)


def test_the_sessions_own_account_may_be_repeated():
    assert outcome(limit(Account=ACCOUNT))[0] == "ok"
    assert outcome(limit(Account=str(ACCOUNT)))[0] == "ok"


def test_a_post_only_order_is_gtc_with_the_post_only_time_in_force():
    assert outcome(limit(ExecInst="6"))[1].tif is TimeInForce.POST_ONLY
    assert outcome(limit(ExecInst="6", TimeInForce="1"))[1].tif is TimeInForce.POST_ONLY


def test_a_market_order_is_ioc_by_default():
    order = outcome(market(Side="2"))[1]
    assert (order.order_type, order.tif, order.price, order.qty) == (OrderType.MARKET, TimeInForce.IOC, 0, 100)


def test_a_market_buy_by_cash_quantity_carries_quote_units():
    order = outcome(market(OrderQty=None, CashOrderQty="100.5"))[1]
    assert (order.qty, order.amount, order.by_quote) == (0, 100_500_000, True)


@pytest.mark.parametrize("code, tif", [("1", TimeInForce.GTC), ("3", TimeInForce.IOC), ("4", TimeInForce.FOK)])
def test_times_in_force_of_a_limit_order(code, tif):
    assert outcome(limit(TimeInForce=code))[1].tif is tif


def test_a_cancel_names_its_order_by_orig_clordid_or_order_id():
    by_orig = outcome(cancel())[1]
    assert (by_orig.clordid, by_orig.orig_clordid, by_orig.order_id, by_orig.symbol) == ("x1", "c1", 0, None)
    by_id = outcome(cancel(OrigClOrdID=None, OrderID="42", Symbol="BTC-USDT"))[1]
    assert (by_id.orig_clordid, by_id.order_id, by_id.symbol) == ("", 42, BTC_USDT)
    assert outcome(cancel(OrigClOrdID=None, OrderID=42))[1].order_id == 42


def test_a_replace_carries_the_new_price_and_total_quantity():
    request = outcome(replace(Side="1", OrdType="2", TimeInForce="1"))[1]
    assert (request.clordid, request.orig_clordid, request.price, request.qty) == ("c2", "c1", 650000, 200)


def test_a_mass_cancel_covers_one_symbol_or_all():
    assert outcome(message("q", ClOrdID="m1", MassCancelRequestType="1", Symbol="BTC-USDT"))[1].symbol == BTC_USDT
    assert outcome(message("q", ClOrdID="m1", MassCancelRequestType="7"))[1].symbol is None


def test_queries_become_requests():
    assert outcome(message("H", OrderID="9"))[1] == validation.OrderStatus(None, 9, None)
    assert outcome(message("AF", MassStatusReqID="s1", Symbol="BTC-USDT"))[1] == validation.MassStatus("s1", BTC_USDT)
    assert outcome(message("UB", BalanceReqID="b1", Currency="USDT"))[1].currency == CONFIG.asset("USDT")
    assert outcome(message("UB", BalanceReqID="b1", Account=42), ADMIN)[1].account == 42


def test_admin_requests_become_requests():
    assert outcome(admin("create_account"), ADMIN)[1] == validation.AdminRequest("a1", "create_account", -1, None, 0)
    request = outcome(admin("withdraw", **DEPOSIT), ADMIN)[1]
    assert (request.action, request.account, request.asset.name, request.amount) == ("withdraw", 3, "USDT",
                                                                                       100_000_000)


def test_session_messages_become_requests():
    assert outcome(message("0"))[1] == validation.Heartbeat(None)
    assert outcome(message("0", TestReqID="t"))[1] == validation.Heartbeat("t")
    assert outcome(message("1", TestReqID="t"))[1] == validation.TestRequest("t")
    assert outcome(message("5", Text="bye"))[1] == validation.Logout("bye")
    logon = outcome(message("A", SendingTime=5, Username="k1", RawData="AB" * 32, HeartBtInt=10))[1]
    assert logon == validation.Logon("k1", "ab" * 32, 5, 2, 10)


def test_every_client_message_type_has_a_spec_and_a_builder():
    assert set(validation.SPECS) == set(validation._BUILDERS)
