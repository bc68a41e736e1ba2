"""The whole exchange end to end: real processes under supervisord, real sockets, real LMDB files.

One exchange (tests/harness.py) serves the module; each test opens its own accounts through the admin
protocol, so tests do not see each other's balances.
"""

from __future__ import annotations

import os
import signal
import time
import uuid

import pytest
import zmq

from client.sync import Client
from common.protocol import Field, MsgType, encode, sign_logon
from common.records import RejectReason
from tests.harness import Exchange, poll

TIMEOUT = 15.0
VANISHING_LINGER_MS = 2000


@pytest.fixture(scope="module")
def exchange():
    with Exchange(gateways=2) as running:
        yield running


@pytest.fixture
def admin(exchange):
    client = exchange.admin_client(timeout=TIMEOUT)
    yield client
    client.close()



def new_trader(exchange, admin, funds: dict[str, str], *, gateway: int = 1) -> tuple[int, Client]:
    account = admin.admin_create_account(request_id=f"acct-{uuid.uuid4().hex}")
    for currency, amount in funds.items():
        admin.admin_deposit(account.account, currency, amount, request_id=f"dep-{uuid.uuid4().hex}")
    client = Client(exchange.fix_endpoint(gateway), account.key_id, account.secret, timeout=TIMEOUT)
    client.logon()
    return account.account, client


def reports_of(client: Client, clordid: str, count: int) -> list:
    """The first ``count`` ExecutionReports about ``clordid`` (waiting for them)."""
    seen = []
    deadline = time.monotonic() + TIMEOUT
    while len(seen) < count:
        message = client.wait_for(
            lambda m: m.is_type(MsgType.EXECUTION_REPORT) and m.clordid == clordid and m not in seen,
            timeout=max(0.1, deadline - time.monotonic()),
        )
        seen.append(message)
    return seen


def test_every_program_runs_under_supervisord(exchange):
    status = exchange.ctl("status")
    for program in ("sequencer", "engine", "gateway:gateway-0", "gateway:gateway-1"):
        assert program in status
    assert status.count("RUNNING") >= 4, status


def test_two_accounts_cross_and_both_get_execution_reports_with_exact_fees(exchange, admin):
    buyer_id, buyer = new_trader(exchange, admin, {"USDT": "100000"})
    seller_id, seller = new_trader(exchange, admin, {"BTC": "2"}, gateway=2)
    try:
        ask = seller.sell("BTC-USDT", "0.01", "65000")
        new, = reports_of(seller, ask, 1)
        assert new[Field.EXEC_TYPE] == "0" and new[Field.ORD_STATUS] == "0"

        bid = buyer.buy("BTC-USDT", "0.01", "65100")
        taker_new, taker_fill = reports_of(buyer, bid, 2)
        assert taker_new[Field.EXEC_TYPE] == "0"
        assert taker_fill[Field.EXEC_TYPE] == "F" and taker_fill[Field.ORD_STATUS] == "2"
        assert (taker_fill[Field.LAST_PX], taker_fill[Field.LAST_QTY]) == ("65000", "0.01")
        assert taker_fill[Field.LEAVES_QTY] == "0" and taker_fill[Field.CUM_QTY] == "0.01"
        assert taker_fill[Field.COMMISSION] == "0.325"  # 5 bps of 650 USDT

        maker_fill, = reports_of(seller, ask, 1)
        assert maker_fill[Field.EXEC_TYPE] == "F" and maker_fill[Field.LAST_PX] == "65000"
        assert maker_fill[Field.COMMISSION] == "0.13"  # 2 bps of 650 USDT

        buyer_balances = buyer.balances()
        seller_balances = seller.balances()
        # The buyer paid 650 + 0.325 and got its price improvement (65100 -> 65000) back.
        assert buyer_balances["USDT"].available == "99349.675" and buyer_balances["USDT"].frozen == "0"
        assert buyer_balances["BTC"].available == "0.01"
        assert seller_balances["USDT"].available == "649.87"
        assert seller_balances["BTC"].available == "1.99" and seller_balances["BTC"].frozen == "0"
    finally:
        buyer.close()
        seller.close()


def test_an_order_the_account_cannot_fund_is_rejected_with_the_engines_reason(exchange, admin):
    _, trader = new_trader(exchange, admin, {"USDT": "10"})
    try:
        clordid = trader.buy("BTC-USDT", "1", "65000")
        rejected, = reports_of(trader, clordid, 1)
        assert rejected[Field.EXEC_TYPE] == "8" and rejected[Field.ORD_STATUS] == "8"
        assert "INSUFFICIENT_FUNDS" in rejected[Field.TEXT]
        assert trader.balances()["USDT"].available == "10"
    finally:
        trader.close()


def test_a_resend_of_the_same_clordid_gives_the_original_outcome_and_no_second_order(exchange, admin):
    _, trader = new_trader(exchange, admin, {"USDT": "100000"})
    try:
        clordid = trader.buy("BTC-USDT", "0.01", "1000.1", clordid=f"resend-{uuid.uuid4().hex[:8]}")
        original, = reports_of(trader, clordid, 1)
        assert original[Field.EXEC_TYPE] == "0"

        trader.buy("BTC-USDT", "0.01", "1000.1", clordid=clordid)
        again = trader.wait_for(lambda m: m.clordid == clordid and m.get(Field.POSS_RESEND), timeout=TIMEOUT)
        assert again[Field.ORDER_ID] == original[Field.ORDER_ID]
        assert len(trader.open_orders()) == 1
        assert trader.balances()["USDT"].frozen != "0"
    finally:
        trader.close()


def test_another_accounts_order_cannot_be_cancelled_or_seen(exchange, admin):
    _, owner = new_trader(exchange, admin, {"USDT": "100000"})
    _, intruder = new_trader(exchange, admin, {"USDT": "100000"})
    try:
        clordid = owner.buy("BTC-USDT", "0.01", "1000.2")
        placed, = reports_of(owner, clordid, 1)
        order_id = placed[Field.ORDER_ID]

        cancel = intruder.cancel(order_id=order_id)
        refused = intruder.first_report(cancel)
        assert refused.is_type(MsgType.ORDER_CANCEL_REJECT)
        assert intruder.open_orders() == []
        assert len(owner.open_orders()) == 1
    finally:
        owner.close()
        intruder.close()


def _raw_dealer(exchange) -> zmq.Socket:
    socket = zmq.Context.instance().socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.RCVTIMEO, int(TIMEOUT * 1000))
    socket.connect(exchange.fix_endpoint())
    return socket


def _receive(socket: zmq.Socket) -> dict:
    import msgpack

    return msgpack.unpackb(socket.recv(), raw=False)  # a frame is one message (several may come together)


def test_a_logon_with_a_bad_signature_is_refused(exchange, admin):
    account = admin.admin_create_account(request_id=f"acct-{uuid.uuid4().hex}")
    socket = _raw_dealer(exchange)
    try:
        now = time.time_ns()
        wrong = sign_logon(os.urandom(32), now, 1, account.key_id)
        socket.send(encode({"MsgType": "A", "MsgSeqNum": 1, "SendingTime": now, "Username": account.key_id,
                            "RawData": wrong, "HeartBtInt": 30}))
        answers = [_receive(socket)]
        assert any(a["MsgType"] in ("3", "5") for a in answers)
        # And it still is not logged on: an order is refused at the session level.
        socket.send(encode({"MsgType": "D", "MsgSeqNum": 2, "SendingTime": now, "ClOrdID": "x1",
                            "Symbol": "BTC-USDT", "Side": "1", "OrdType": "2", "Price": "1", "OrderQty": "1"}))
        refused = poll(lambda: _first_of_type(socket, "3"), timeout=TIMEOUT, what="a Reject")
        assert refused["SessionRejectReason"] == 9
    finally:
        socket.close()


def _first_of_type(socket: zmq.Socket, msg_type: str) -> dict | None:
    message = _receive(socket)
    return message if message.get("MsgType") == msg_type else None


def test_a_message_before_logon_is_refused(exchange):
    socket = _raw_dealer(exchange)
    try:
        socket.send(encode({"MsgType": "H", "MsgSeqNum": 1, "SendingTime": time.time_ns(), "ClOrdID": "z"}))
        refused = _receive(socket)
        assert refused["MsgType"] == "3" and refused["SessionRejectReason"] == 9
    finally:
        socket.close()


def test_a_client_that_disconnects_mid_order_does_not_lose_the_order_or_disturb_the_gateway(exchange, admin):
    account = admin.admin_create_account(request_id=f"acct-{uuid.uuid4().hex}")
    admin.admin_deposit(account.account, "USDT", "1000", request_id=f"dep-{uuid.uuid4().hex}")
    vanishing = Client(exchange.fix_endpoint(), account.key_id, account.secret, timeout=TIMEOUT)
    vanishing.logon()
    clordid = vanishing.buy("BTC-USDT", "0.01", "1000.3")
    # Gone before any report can reach it; the linger only lets the order already sent leave (with none,
    # ZeroMQ may drop it unsent, and there would be no order to find).
    vanishing._socket.close(linger=VANISHING_LINGER_MS)

    returning = Client(exchange.fix_endpoint(), account.key_id, account.secret, timeout=TIMEOUT)
    try:
        returning.logon()
        status = poll(lambda: _status_or_none(returning, clordid), timeout=TIMEOUT, what="the order's status")
        assert status[Field.ORD_STATUS] == "0"
        assert returning.balances()["USDT"].frozen != "0"
    finally:
        returning.close()


def _status_or_none(client: Client, clordid: str):
    """The order's status once the engine knows it: a status request goes straight to the engine and can
    overtake the order, which passes through the sequencer first (the answer is then UNKNOWN_ORDER)."""
    answer = client.status(clordid)
    if answer.is_reject or answer.get(Field.TEXT) == RejectReason.UNKNOWN_ORDER.name:
        return None
    return answer


def test_a_killed_gateway_is_restarted_by_supervisord_and_takes_logons_again(exchange, admin):
    before = exchange.program_pid("gateway:gateway-1")
    os.kill(before, signal.SIGKILL)
    poll(lambda: exchange.restarted("gateway:gateway-1", before), timeout=60, what="a restarted gateway")
    _, trader = new_trader(exchange, admin, {"USDT": "100"}, gateway=2)
    try:
        assert trader.balances()["USDT"].available == "100"
    finally:
        trader.close()


def test_an_order_in_flight_when_its_gateway_dies_is_sent_again_on_reconnect_and_placed_once(exchange, admin):
    _, trader = new_trader(exchange, admin, {"USDT": "1000"}, gateway=2)  # the admin stays on gateway 1
    try:
        clordid = trader.buy("BTC-USDT", "0.01", "1000.1")
        before = exchange.program_pid("gateway:gateway-1")
        os.kill(before, signal.SIGKILL)  # whether the order got through is unknown to the client
        assert clordid in trader.session.unacknowledged
        poll(lambda: exchange.restarted("gateway:gateway-1", before), timeout=60, what="a restarted gateway")

        resent = poll(lambda: _reconnected(trader), timeout=TIMEOUT, what="a reconnect")
        assert resent == [clordid]
        first, = reports_of(trader, clordid, 1)
        assert first[Field.EXEC_TYPE] == "0"
        assert clordid not in trader.session.unacknowledged
        open_orders = [o for o in trader.open_orders() if o.clordid == clordid]
        assert len(open_orders) == 1
        _, reference = new_trader(exchange, admin, {"USDT": "1000"})  # the same order, placed once
        try:
            placed = reference.buy("BTC-USDT", "0.01", "1000.1")
            reports_of(reference, placed, 1)
            assert trader.balances()["USDT"] == reference.balances()["USDT"]
        finally:
            reference.close()
    finally:
        trader.close()


def _reconnected(client: Client) -> list[str] | None:
    try:
        return client.reconnect(timeout=2)
    except Exception:
        return None


def test_a_restarted_engine_sends_fills_again_marked_poss_resend_and_the_client_drops_what_it_had(exchange, admin):
    _, buyer = new_trader(exchange, admin, {"USDT": "100000"})
    _, seller = new_trader(exchange, admin, {"BTC": "1"})
    try:
        ask = seller.sell("BTC-USDT", "0.01", "60000")
        reports_of(seller, ask, 1)
        bid = buyer.buy("BTC-USDT", "0.01", "60000")
        _, fill = reports_of(buyer, bid, 2)
        assert fill[Field.EXEC_TYPE] == "F"

        before = exchange.program_pid("engine")
        os.kill(before, signal.SIGKILL)
        poll(lambda: exchange.restarted("engine", before), timeout=60, what="a restarted engine")
        # The restarted engine replays the journal and publishes it again: the fill comes back marked
        # PossResend, and the client, which delivered it already, does not deliver it a second time.
        poll(lambda: buyer.next_message(timeout=0.2) is None and buyer.duplicates > 0, timeout=60,
             what="the fill sent again and dropped")
        again = buyer.buy("BTC-USDT", "0.01", "59000")  # a fresh order is answered as usual
        new, = reports_of(buyer, again, 1)
        assert new[Field.EXEC_TYPE] == "0" and not new.get(Field.POSS_RESEND)
        assert buyer.balances()["BTC"].available == "0.01"  # filled once
    finally:
        buyer.close()
        seller.close()


def test_a_sequencer_restarted_while_the_engine_is_behind_loses_nothing(exchange, admin):
    _, buyer = new_trader(exchange, admin, {"USDT": "100000"})
    _, seller = new_trader(exchange, admin, {"BTC": "1"}, gateway=2)
    try:
        bid = buyer.buy("BTC-USDT", "0.01", "61000")
        reports_of(buyer, bid, 1)
        assert "stopped" in exchange.ctl("stop", "engine")
        ask = seller.sell("BTC-USDT", "0.01", "61000")  # journaled, not applied: the engine is behind
        before = exchange.program_pid("sequencer")
        os.kill(before, signal.SIGKILL)
        poll(lambda: exchange.restarted("sequencer", before), timeout=60, what="a restarted sequencer")
        assert "started" in exchange.ctl("start", "engine")

        new, fill = reports_of(seller, ask, 2)
        assert new[Field.EXEC_TYPE] == "0" and fill[Field.EXEC_TYPE] == "F"
        buyer_fill = buyer.wait_for(lambda m: m.clordid == bid and m.get(Field.EXEC_TYPE) == "F", timeout=TIMEOUT)
        assert buyer_fill[Field.LAST_QTY] == "0.01"
        assert buyer.balances()["BTC"].available == "0.01"
        assert seller.balances()["BTC"].available == "0.99"
    finally:
        buyer.close()
        seller.close()
        if "RUNNING" not in exchange.ctl("status", "engine"):
            exchange.ctl("start", "engine")
