"""Scenario tests of the engine contract (docs/engine.md), run on every engine class.

Numbers, from tests/builders.py: on BTC-USDT one lot at ``p`` ticks has the notional ``p * 1000`` USDT
units and is ``100_000`` BTC units; fees are 2 bps (maker) and 5 bps (taker), rounded down, and a buy
reserves ``notional + 5 bps``. Accounts 1 (ALICE), 2 (BOB) and 3 (CAROL) start with 1 BTC, 100 USDT and
10 ETH; account 0 collects the fees.

ACCEPTED, REPLACED and CANCELLED carry the account's balance of the order's reserve asset after the event
(``asset``, ``available``, ``frozen``); BALANCE events come only from deposits, withdrawals and fills.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.builders import (
    BTC,
    BTC_USDT,
    ETH,
    ETH_USDT,
    FEE_ACCOUNT,
    USDT,
    CommandTape,
    check,
    check_exact,
    make_config,
    of_kind,
    summary,
)
from common.records import CancelReason, CommandKind, EventKind, OrderType, RejectReason, Side, TimeInForce

ALICE, BOB, CAROL = 1, 2, 3
NOBODY = 4  # in range, never created
BTC_FUNDS = 100_000_000  # 1 BTC = 1000 lots
USDT_FUNDS = 100_000_000  # 100 USDT
ETH_FUNDS = 1_000_000_000  # 10 ETH
LOT = 100_000  # BTC units per BTC-USDT lot

GTC, IOC, FOK, POST_ONLY = TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK, TimeInForce.POST_ONLY
BUY, SELL = Side.BUY, Side.SELL
LIMIT, MARKET = OrderType.LIMIT, OrderType.MARKET
TS0 = CommandTape.TS0


def notional(price: int, qty: int) -> int:
    return price * qty * 1000


def fee(amount: int, bps: int) -> int:
    return amount * bps // 10_000


def required(price: int, qty: int) -> int:
    return notional(price, qty) + fee(notional(price, qty), 5)


def ts(seq: int) -> int:
    return TS0 + seq * 1_000


TRADE_EVENTS = ["TRADE"] + ["BALANCE"] * 5


class Market:
    """An engine, its command tape, and three funded accounts."""

    def __init__(self, engine_cls, *, fund: bool = True, **config):
        self.config = make_config(**config)
        self.engine = engine_cls(self.config)
        self.tape = CommandTape()
        if fund:
            for account in (ALICE, BOB, CAROL):
                self.tape.create_account(account)
                self.tape.deposit(account, BTC, BTC_FUNDS)
                self.tape.deposit(account, USDT, USDT_FUNDS)
                self.tape.deposit(account, ETH, ETH_FUNDS)
            self.run()

    def run(self) -> np.ndarray:
        """Apply the commands added since the last run; return their events."""
        return self.engine.apply(self.tape.flush())

    def balance(self, account: int, asset: int) -> tuple[int, int]:
        return tuple(int(x) for x in self.engine.balance(account, asset))

    def assert_rejected(self, reason: RejectReason) -> np.ndarray:
        """Run the pending command(s): a single REJECTED(reason), and the state hash did not move."""
        before = self.engine.state_hash()
        events = self.run()
        assert summary(events) == [f"REJECTED:{reason.name}"]
        assert self.engine.state_hash() == before
        return events

    def total(self, asset: int) -> int:
        return sum(sum(self.balance(a, asset)) for a in (FEE_ACCOUNT, ALICE, BOB, CAROL))

    def validate(self) -> None:
        self.engine.validate()
        assert self.total(BTC) == 3 * BTC_FUNDS
        assert self.total(USDT) == 3 * USDT_FUNDS
        assert self.total(ETH) == 3 * ETH_FUNDS


# --- accounts, deposits, withdrawals ---------------------------------------------------------------------


def test_create_account_reports_the_account_and_a_second_time_is_rejected(engine_cls):
    m = Market(engine_cls, fund=False)
    m.tape.create_account(5)
    events = m.run()
    assert summary(events) == ["ACCOUNT_CREATED"]
    check_exact(events[0], EventKind.ACCOUNT_CREATED, seq=1, ts=ts(1), account=5)

    m.tape.create_account(5)
    events = m.assert_rejected(RejectReason.ACCOUNT_EXISTS)
    check_exact(events[0], EventKind.REJECTED, seq=2, ts=ts(2), reason=RejectReason.ACCOUNT_EXISTS, account=5)
    assert m.balance(5, USDT) == (0, 0)
    m.engine.validate()


def test_account_ids_outside_the_range_are_unknown_accounts(engine_cls):
    m = Market(engine_cls, fund=False)
    m.tape.create_account(16)  # max_accounts = 16
    m.assert_rejected(RejectReason.UNKNOWN_ACCOUNT)
    m.tape.create_account(-1)
    m.assert_rejected(RejectReason.UNKNOWN_ACCOUNT)
    m.engine.validate()


def test_the_fee_account_exists_from_the_start(engine_cls):
    m = Market(engine_cls, fund=False)
    m.tape.create_account(FEE_ACCOUNT)
    m.assert_rejected(RejectReason.ACCOUNT_EXISTS)
    m.tape.deposit(FEE_ACCOUNT, USDT, 7)
    assert summary(m.run()) == ["BALANCE"]
    assert m.balance(FEE_ACCOUNT, USDT) == (7, 0)
    m.engine.validate()


def test_deposit_credits_available_and_reports_the_change(engine_cls):
    m = Market(engine_cls, fund=False)
    m.tape.create_account(ALICE)
    m.run()
    m.tape.deposit(ALICE, ETH, 250)
    events = m.run()
    check_exact(events[0], EventKind.BALANCE, seq=2, ts=ts(2), account=ALICE, asset=ETH, available=250, amount=250)
    assert m.balance(ALICE, ETH) == (250, 0)
    m.engine.validate()


def test_withdraw_debits_available_and_reports_a_negative_change(engine_cls):
    m = Market(engine_cls)
    seq = m.tape.withdraw(ALICE, USDT, 1_000)
    events = m.run()
    check_exact(
        events[0],
        EventKind.BALANCE,
        seq=seq,
        ts=ts(seq),
        account=ALICE,
        asset=USDT,
        available=USDT_FUNDS - 1_000,
        amount=-1_000,
    )
    assert m.balance(ALICE, USDT) == (USDT_FUNDS - 1_000, 0)
    m.engine.validate()
    m.tape.withdraw(ALICE, USDT, USDT_FUNDS - 1_000)
    m.run()
    assert m.balance(ALICE, USDT) == (0, 0)
    m.engine.validate()


def test_deposit_and_withdraw_rejects_change_nothing(engine_cls):
    m = Market(engine_cls)
    t = m.tape
    for kind in (CommandKind.DEPOSIT, CommandKind.WITHDRAW):
        t.add(kind, account=NOBODY, asset=USDT, amount=1)
        m.assert_rejected(RejectReason.UNKNOWN_ACCOUNT)
        t.add(kind, account=99, asset=USDT, amount=1)
        m.assert_rejected(RejectReason.UNKNOWN_ACCOUNT)
        t.add(kind, account=ALICE, asset=3, amount=1)
        m.assert_rejected(RejectReason.UNKNOWN_ASSET)
        t.add(kind, account=ALICE, asset=-1, amount=1)
        m.assert_rejected(RejectReason.UNKNOWN_ASSET)
        t.add(kind, account=ALICE, asset=USDT, amount=0)
        m.assert_rejected(RejectReason.INVALID_AMOUNT)
        t.add(kind, account=ALICE, asset=USDT, amount=-5)
        m.assert_rejected(RejectReason.INVALID_AMOUNT)
    t.withdraw(ALICE, USDT, USDT_FUNDS + 1)
    m.assert_rejected(RejectReason.INSUFFICIENT_FUNDS)
    t.deposit(ALICE, USDT, (1 << 63) - 1 - 3 * USDT_FUNDS + 1)
    m.assert_rejected(RejectReason.BALANCE_OVERFLOW)
    t.deposit(ALICE, USDT, (1 << 63) - 1 - 3 * USDT_FUNDS)  # exactly to the limit is fine
    assert summary(m.run()) == ["BALANCE"]
    m.engine.validate()


def test_frozen_funds_cannot_be_withdrawn(engine_cls):
    m = Market(engine_cls)
    m.tape.sell(ALICE, BTC_USDT, 150, 1000)  # freezes the whole BTC balance
    m.run()
    m.tape.withdraw(ALICE, BTC, 1)
    m.assert_rejected(RejectReason.INSUFFICIENT_FUNDS)
    m.validate()


def test_an_unknown_command_kind_is_rejected(engine_cls):
    m = Market(engine_cls)
    for kind in (0, 8, 255):
        seq = m.tape.add(kind, account=ALICE, price=150, qty=1)
        events = m.assert_rejected(RejectReason.UNKNOWN_COMMAND)
        check_exact(
            events[0],
            EventKind.REJECTED,
            seq=seq,
            ts=ts(seq),
            reason=RejectReason.UNKNOWN_COMMAND,
            account=ALICE,
            price=150,
            qty=1,
        )
    m.validate()


# --- limit orders ----------------------------------------------------------------------------------------


def test_gtc_buy_rests_on_the_book_and_freezes_notional_plus_the_larger_fee(engine_cls):
    m = Market(engine_cls)
    oid = m.tape.buy(ALICE, BTC_USDT, 150, 3, client_order_id=77)
    events = m.run()
    assert summary(events) == ["ACCEPTED"]
    reserve = required(150, 3)
    assert reserve == 450_000 + 225
    check_exact(
        events[0],
        EventKind.ACCEPTED,
        seq=oid,
        ts=ts(oid),
        order_id=oid,
        client_order_id=77,
        account=ALICE,
        symbol=BTC_USDT,
        side=BUY,
        order_type=LIMIT,
        tif=GTC,
        price=150,
        qty=3,
        leaves=3,
        amount=reserve,
        asset=USDT,
        available=USDT_FUNDS - reserve,
        frozen=reserve,
    )
    assert m.balance(ALICE, USDT) == (USDT_FUNDS - reserve, reserve)
    assert m.engine.order(oid) == {
        "order_id": oid,
        "client_order_id": 77,
        "account": ALICE,
        "symbol": BTC_USDT,
        "side": BUY,
        "order_type": LIMIT,
        "tif": GTC,
        "price": 150,
        "qty": 3,
        "filled": 0,
        "leaves": 3,
        "reserve": reserve,
        "ts": ts(oid),
    }
    assert [o["order_id"] for o in m.engine.open_orders(ALICE)] == [oid]
    assert m.engine.open_orders(BOB) == []
    assert m.engine.depth(BTC_USDT, 5) == ([(150, 3, 1)], [])
    m.validate()


def test_a_sell_freezes_its_base_quantity(engine_cls):
    m = Market(engine_cls)
    oid = m.tape.sell(BOB, BTC_USDT, 160, 4)
    events = m.run()
    assert summary(events) == ["ACCEPTED"]
    check(events[0], order_id=oid, side=SELL, price=160, qty=4, leaves=4, amount=4 * LOT)
    check(events[0], account=BOB, asset=BTC, available=BTC_FUNDS - 4 * LOT, frozen=4 * LOT)
    assert m.engine.depth(BTC_USDT, 5) == ([], [(160, 4, 1)])
    m.validate()


def test_crossing_orders_trade_at_the_makers_price_with_exact_fees(engine_cls):
    m = Market(engine_cls)
    maker = m.tape.sell(BOB, BTC_USDT, 150, 2, client_order_id=11)
    m.run()
    taker = m.tape.buy(ALICE, BTC_USDT, 150, 2, client_order_id=22)
    events = m.run()
    assert summary(events) == ["ACCEPTED"] + TRADE_EVENTS
    n = notional(150, 2)
    maker_fee, taker_fee = fee(n, 2), fee(n, 5)
    assert (n, maker_fee, taker_fee) == (300_000, 60, 150)
    check(events[0], order_id=taker, asset=USDT, available=USDT_FUNDS - required(150, 2), frozen=required(150, 2))
    check_exact(
        events[1],
        EventKind.TRADE,
        seq=taker,
        ts=ts(taker),
        order_id=taker,
        client_order_id=22,
        account=ALICE,
        side=BUY,
        order_type=LIMIT,
        tif=GTC,
        symbol=BTC_USDT,
        leaves=0,
        filled=2,
        maker_order_id=maker,
        maker_client_order_id=11,
        maker_account=BOB,
        maker_leaves=0,
        maker_filled=2,
        price=150,
        qty=2,
        amount=n,
        maker_fee=maker_fee,
        taker_fee=taker_fee,
    )
    alice_usdt = USDT_FUNDS - n - taker_fee
    bob_usdt = USDT_FUNDS + n - maker_fee
    balance = dict(seq=taker, ts=ts(taker))
    check_exact(events[2], EventKind.BALANCE, **balance, account=ALICE, asset=BTC, available=BTC_FUNDS + 2 * LOT)
    check_exact(events[3], EventKind.BALANCE, **balance, account=ALICE, asset=USDT, available=alice_usdt)
    check_exact(events[4], EventKind.BALANCE, **balance, account=BOB, asset=BTC, available=BTC_FUNDS - 2 * LOT)
    check_exact(events[5], EventKind.BALANCE, **balance, account=BOB, asset=USDT, available=bob_usdt)
    check_exact(events[6], EventKind.BALANCE, **balance, account=FEE_ACCOUNT, asset=USDT, available=210)
    assert m.balance(ALICE, USDT) == (alice_usdt, 0)
    assert m.balance(BOB, BTC) == (BTC_FUNDS - 2 * LOT, 0)
    assert m.balance(FEE_ACCOUNT, USDT) == (maker_fee + taker_fee, 0)
    assert m.engine.order(maker) is None and m.engine.order(taker) is None
    assert m.engine.depth(BTC_USDT, 5) == ([], [])
    m.validate()


def test_fees_are_rounded_down_and_a_selling_taker_pays_the_taker_fee(engine_cls):
    m = Market(engine_cls)
    m.tape.buy(BOB, BTC_USDT, 151, 1)
    m.run()
    m.tape.sell(ALICE, BTC_USDT, 151, 1)
    events = m.run()
    n = notional(151, 1)  # 151_000: 5 bps is 75.5, 2 bps is 30.2
    trade = of_kind(events, EventKind.TRADE)[0]
    check(trade, amount=n, maker_fee=30, taker_fee=75, account=ALICE, maker_account=BOB, side=SELL)
    assert m.balance(ALICE, USDT) == (USDT_FUNDS + n - 75, 0)
    # The maker buy reserved notional + 75 (5 bps) and paid notional + 30: the rest came back.
    assert m.balance(BOB, USDT) == (USDT_FUNDS - n - 30, 0)
    assert m.balance(BOB, BTC) == (BTC_FUNDS + LOT, 0)
    assert m.balance(FEE_ACCOUNT, USDT) == (105, 0)
    m.validate()


def test_price_improvement_is_refunded_to_the_buyer(engine_cls):
    m = Market(engine_cls)
    m.tape.sell(BOB, BTC_USDT, 140, 2)
    m.run()
    m.tape.buy(ALICE, BTC_USDT, 150, 2)
    events = m.run()
    assert summary(events) == ["ACCEPTED"] + TRADE_EVENTS
    check(events[0], asset=USDT, available=USDT_FUNDS - required(150, 2), frozen=required(150, 2))
    paid = notional(140, 2) + fee(notional(140, 2), 5)
    check(events[3], account=ALICE, asset=USDT, available=USDT_FUNDS - paid, frozen=0)
    assert m.balance(ALICE, USDT) == (USDT_FUNDS - paid, 0)
    m.validate()


def test_a_partially_filled_buy_keeps_exactly_the_reserve_of_its_remaining_lots(engine_cls):
    m = Market(engine_cls)
    m.tape.sell(BOB, BTC_USDT, 140, 1)
    m.run()
    oid = m.tape.buy(ALICE, BTC_USDT, 150, 3)
    m.run()
    paid = notional(140, 1) + fee(notional(140, 1), 5)
    assert m.balance(ALICE, USDT) == (USDT_FUNDS - paid - required(150, 2), required(150, 2))
    assert m.engine.order(oid)["reserve"] == required(150, 2)
    assert m.engine.order(oid)["filled"] == 1 and m.engine.order(oid)["leaves"] == 2
    assert m.engine.depth(BTC_USDT, 5) == ([(150, 2, 1)], [])
    m.validate()


def test_price_time_priority_and_partial_fills_across_levels(engine_cls):
    m = Market(engine_cls)
    t = m.tape
    a1 = t.sell(ALICE, BTC_USDT, 150, 2)
    b1 = t.sell(BOB, BTC_USDT, 150, 3)
    a2 = t.sell(ALICE, BTC_USDT, 152, 1)
    b2 = t.sell(BOB, BTC_USDT, 151, 4)
    m.run()
    assert m.engine.depth(BTC_USDT, 5) == ([], [(150, 5, 2), (151, 4, 1), (152, 1, 1)])
    assert m.engine.depth(BTC_USDT, 2) == ([], [(150, 5, 2), (151, 4, 1)])
    taker = t.buy(CAROL, BTC_USDT, 152, 7)
    events = m.run()
    assert summary(events) == ["ACCEPTED"] + TRADE_EVENTS * 3
    trades = of_kind(events, EventKind.TRADE)
    check(trades[0], maker_order_id=a1, price=150, qty=2, leaves=5, filled=2, maker_leaves=0, maker_filled=2)
    check(trades[1], maker_order_id=b1, price=150, qty=3, leaves=2, filled=5, maker_leaves=0, maker_filled=3)
    check(trades[2], maker_order_id=b2, price=151, qty=2, leaves=0, filled=7, maker_leaves=2, maker_filled=2)
    assert all(int(tr["order_id"]) == taker for tr in trades)
    assert m.engine.depth(BTC_USDT, 5) == ([], [(151, 2, 1), (152, 1, 1)])
    assert m.engine.order(b2)["leaves"] == 2 and m.engine.order(a2)["leaves"] == 1
    # Carol reserved at 152 and paid 150/150/151 plus the taker fee on each fill.
    paid = sum(notional(p, q) + fee(notional(p, q), 5) for p, q in ((150, 2), (150, 3), (151, 2)))
    assert m.balance(CAROL, USDT) == (USDT_FUNDS - paid, 0)
    assert m.balance(CAROL, BTC) == (BTC_FUNDS + 7 * LOT, 0)
    m.validate()


def test_gtc_remainder_rests_at_its_limit_after_a_partial_fill(engine_cls):
    m = Market(engine_cls)
    m.tape.sell(BOB, BTC_USDT, 150, 2)
    m.run()
    oid = m.tape.buy(ALICE, BTC_USDT, 155, 5)
    events = m.run()
    assert summary(events) == ["ACCEPTED"] + TRADE_EVENTS  # resting is silent
    assert m.engine.depth(BTC_USDT, 5) == ([(155, 3, 1)], [])
    assert m.engine.order(oid)["reserve"] == required(155, 3)
    m.validate()


def test_ioc_order_never_rests_on_the_book(engine_cls):
    m = Market(engine_cls)
    m.tape.sell(BOB, BTC_USDT, 150, 2)
    m.run()
    oid = m.tape.buy(ALICE, BTC_USDT, 150, 5, tif=IOC, client_order_id=9)
    events = m.run()
    assert summary(events) == ["ACCEPTED"] + TRADE_EVENTS + ["CANCELLED:IOC_REMAINDER"]
    paid = notional(150, 2) + fee(notional(150, 2), 5)
    check_exact(
        events[7],
        EventKind.CANCELLED,
        seq=oid,
        ts=ts(oid),
        reason=CancelReason.IOC_REMAINDER,
        order_id=oid,
        client_order_id=9,
        account=ALICE,
        symbol=BTC_USDT,
        side=BUY,
        order_type=LIMIT,
        tif=IOC,
        price=150,
        qty=5,
        leaves=3,
        filled=2,
        amount=required(150, 3),
        asset=USDT,
        available=USDT_FUNDS - paid,
    )
    assert m.engine.order(oid) is None
    assert m.engine.depth(BTC_USDT, 5) == ([], [])
    m.validate()


def test_ioc_with_nothing_to_match_is_cancelled_whole(engine_cls):
    m = Market(engine_cls)
    oid = m.tape.sell(ALICE, BTC_USDT, 150, 4, tif=IOC)
    events = m.run()
    assert summary(events) == ["ACCEPTED", "CANCELLED:IOC_REMAINDER"]
    check(events[0], order_id=oid, asset=BTC, available=BTC_FUNDS - 4 * LOT, frozen=4 * LOT)
    check(events[1], order_id=oid, leaves=4, filled=0, amount=4 * LOT)
    check(events[1], account=ALICE, asset=BTC, available=BTC_FUNDS, frozen=0)
    m.validate()


def test_fok_order_that_can_fill_trades_completely(engine_cls):
    m = Market(engine_cls)
    m.tape.sell(BOB, BTC_USDT, 150, 2)
    m.tape.sell(CAROL, BTC_USDT, 151, 2)
    m.run()
    m.tape.buy(ALICE, BTC_USDT, 151, 3, tif=FOK)
    events = m.run()
    assert summary(events) == ["ACCEPTED"] + TRADE_EVENTS * 2
    check(events[7], price=151, qty=1, leaves=0, filled=3, tif=FOK, maker_leaves=1)
    assert m.balance(ALICE, USDT)[1] == 0
    assert m.engine.depth(BTC_USDT, 5) == ([], [(151, 1, 1)])
    m.validate()


def test_fok_order_that_cannot_fill_is_cancelled_and_nothing_changes(engine_cls):
    m = Market(engine_cls)
    m.tape.sell(BOB, BTC_USDT, 150, 2)
    m.tape.sell(CAROL, BTC_USDT, 152, 5)  # beyond the limit: does not count
    m.run()
    before = m.engine.state_hash()
    oid = m.tape.buy(ALICE, BTC_USDT, 151, 3, tif=FOK, client_order_id=5)
    events = m.run()
    assert summary(events) == ["CANCELLED:FOK"]
    check_exact(
        events[0],
        EventKind.CANCELLED,
        seq=oid,
        ts=ts(oid),
        reason=CancelReason.FOK,
        order_id=oid,
        client_order_id=5,
        account=ALICE,
        symbol=BTC_USDT,
        side=BUY,
        order_type=LIMIT,
        tif=FOK,
        price=151,
        qty=3,
        leaves=3,
        asset=USDT,
        available=USDT_FUNDS,  # the balance, unchanged: nothing was frozen
    )
    assert m.engine.state_hash() == before
    assert m.balance(ALICE, USDT) == (USDT_FUNDS, 0)
    m.validate()


def test_fok_sell_counts_every_bid_down_to_its_limit(engine_cls):
    m = Market(engine_cls)
    m.tape.buy(BOB, BTC_USDT, 150, 2)
    m.tape.buy(CAROL, BTC_USDT, 149, 2)
    m.run()
    m.tape.sell(ALICE, BTC_USDT, 149, 4, tif=FOK)
    events = m.run()
    assert summary(events) == ["ACCEPTED"] + TRADE_EVENTS * 2
    assert m.engine.depth(BTC_USDT, 5) == ([], [])
    m.validate()


def test_post_only_order_rests_without_trading(engine_cls):
    m = Market(engine_cls)
    m.tape.sell(BOB, BTC_USDT, 151, 2)
    m.run()
    oid = m.tape.buy(ALICE, BTC_USDT, 150, 2, tif=POST_ONLY)
    events = m.run()
    assert summary(events) == ["ACCEPTED"]
    check(events[0], tif=POST_ONLY, price=150, amount=required(150, 2))
    check(events[0], asset=USDT, available=USDT_FUNDS - required(150, 2), frozen=required(150, 2))
    assert m.engine.order(oid)["tif"] == POST_ONLY
    assert m.engine.depth(BTC_USDT, 5) == ([(150, 2, 1)], [(151, 2, 1)])
    m.validate()


def test_post_only_order_that_would_cross_is_rejected(engine_cls):
    m = Market(engine_cls)
    m.tape.sell(BOB, BTC_USDT, 151, 2)
    m.tape.buy(CAROL, BTC_USDT, 149, 2)
    m.run()
    m.tape.buy(ALICE, BTC_USDT, 151, 1, tif=POST_ONLY)  # at the best ask
    m.assert_rejected(RejectReason.POST_ONLY_WOULD_CROSS)
    m.tape.buy(ALICE, BTC_USDT, 160, 1, tif=POST_ONLY)  # through it
    m.assert_rejected(RejectReason.POST_ONLY_WOULD_CROSS)
    m.tape.sell(ALICE, BTC_USDT, 149, 1, tif=POST_ONLY)  # at the best bid
    m.assert_rejected(RejectReason.POST_ONLY_WOULD_CROSS)
    m.tape.sell(ALICE, BTC_USDT, 150, 1, tif=POST_ONLY)  # inside the spread: fine
    assert summary(m.run()) == ["ACCEPTED"]
    m.validate()


# --- market orders ---------------------------------------------------------------------------------------


def test_market_buy_by_quantity_freezes_at_p_worst_and_refunds_the_rest(engine_cls):
    m = Market(engine_cls)
    m.tape.sell(BOB, BTC_USDT, 150, 2)
    m.tape.sell(BOB, BTC_USDT, 152, 3)
    m.tape.sell(CAROL, BTC_USDT, 155, 5)
    m.run()
    oid = m.tape.market_buy(ALICE, BTC_USDT, qty=4, client_order_id=3)
    events = m.run()
    assert summary(events) == ["ACCEPTED"] + TRADE_EVENTS * 2
    # The asks reach 4 lots at 152: that is p_worst.
    reserve = required(152, 4)
    check_exact(
        events[0],
        EventKind.ACCEPTED,
        seq=oid,
        ts=ts(oid),
        order_id=oid,
        client_order_id=3,
        account=ALICE,
        symbol=BTC_USDT,
        side=BUY,
        order_type=MARKET,
        tif=IOC,
        qty=4,
        leaves=4,
        amount=reserve,
        asset=USDT,
        available=USDT_FUNDS - reserve,
        frozen=reserve,
    )
    first = notional(150, 2) + fee(notional(150, 2), 5)
    # After the first fill it holds required(152, 2) for its last two lots.
    held = required(152, 2)
    check(events[3], account=ALICE, asset=USDT, available=USDT_FUNDS - first - held, frozen=held)
    check(events[7], price=152, qty=2, leaves=0, filled=4, order_type=MARKET, tif=IOC)
    second = notional(152, 2) + fee(notional(152, 2), 5)
    assert m.balance(ALICE, USDT) == (USDT_FUNDS - first - second, 0)
    assert m.balance(ALICE, BTC) == (BTC_FUNDS + 4 * LOT, 0)
    assert m.engine.depth(BTC_USDT, 5) == ([], [(152, 1, 1), (155, 5, 1)])
    m.validate()


def test_market_buy_larger_than_the_book_freezes_at_the_highest_ask_and_cancels_the_remainder(engine_cls):
    m = Market(engine_cls)
    m.tape.sell(BOB, BTC_USDT, 150, 2)
    m.tape.sell(BOB, BTC_USDT, 160, 1)
    m.run()
    oid = m.tape.market_buy(ALICE, BTC_USDT, qty=5)
    events = m.run()
    assert summary(events) == ["ACCEPTED"] + TRADE_EVENTS * 2 + ["CANCELLED:MARKET_REMAINDER"]
    check(events[0], amount=required(160, 5))
    check(
        events[13],
        order_id=oid,
        order_type=MARKET,
        tif=IOC,
        price=0,
        qty=5,
        leaves=2,
        filled=3,
        amount=required(160, 2),
    )
    paid = sum(notional(p, q) + fee(notional(p, q), 5) for p, q in ((150, 2), (160, 1)))
    check(events[13], account=ALICE, asset=USDT, available=USDT_FUNDS - paid, frozen=0)
    m.validate()


def test_market_orders_against_an_empty_book_are_accepted_then_cancelled(engine_cls):
    m = Market(engine_cls)
    buy = m.tape.market_buy(ALICE, BTC_USDT, qty=5)
    events = m.run()
    assert summary(events) == ["ACCEPTED", "CANCELLED:MARKET_REMAINDER"]
    check(events[0], order_id=buy, qty=5, leaves=5, amount=0)  # p_worst = 0: nothing frozen
    check(events[0], account=ALICE, asset=USDT, available=USDT_FUNDS, frozen=0)
    check(events[1], order_id=buy, qty=5, leaves=5, filled=0, amount=0)
    check(events[1], account=ALICE, asset=USDT, available=USDT_FUNDS, frozen=0)
    sell = m.tape.market_sell(ALICE, BTC_USDT, qty=5)
    events = m.run()
    assert summary(events) == ["ACCEPTED", "CANCELLED:MARKET_REMAINDER"]
    check(events[0], order_id=sell, side=SELL, amount=5 * LOT)
    check(events[0], account=ALICE, asset=BTC, available=BTC_FUNDS - 5 * LOT, frozen=5 * LOT)
    check(events[1], order_id=sell, leaves=5, amount=5 * LOT)
    check(events[1], account=ALICE, asset=BTC, available=BTC_FUNDS, frozen=0)
    m.validate()


def test_market_buy_by_quote_amount_buys_the_affordable_lots_and_releases_the_rest(engine_cls):
    m = Market(engine_cls)
    m.tape.sell(BOB, BTC_USDT, 150, 2)
    m.tape.sell(CAROL, BTC_USDT, 160, 10)
    m.run()
    oid = m.tape.market_buy(ALICE, BTC_USDT, amount=500_000, client_order_id=4)
    events = m.run()
    assert summary(events) == ["ACCEPTED"] + TRADE_EVENTS * 2 + ["CANCELLED:MARKET_REMAINDER"]
    check_exact(
        events[0],
        EventKind.ACCEPTED,
        seq=oid,
        ts=ts(oid),
        order_id=oid,
        client_order_id=4,
        account=ALICE,
        symbol=BTC_USDT,
        side=BUY,
        order_type=MARKET,
        tif=IOC,
        amount=500_000,
        asset=USDT,
        available=USDT_FUNDS - 500_000,
        frozen=500_000,
    )
    # 2 lots at 150 cost 300_150; the 199_850 left buy one lot at 160 (160_080), not two.
    check(events[1], price=150, qty=2, leaves=0, filled=2, taker_fee=150)
    check(events[7], price=160, qty=1, leaves=0, filled=3, taker_fee=80, maker_leaves=9)
    left = 500_000 - 300_150 - 160_080
    check(events[13], order_id=oid, qty=0, leaves=0, filled=3, amount=left, price=0)
    check(events[13], account=ALICE, asset=USDT, available=USDT_FUNDS - 500_000 + left, frozen=0)
    assert m.balance(ALICE, BTC) == (BTC_FUNDS + 3 * LOT, 0)
    m.validate()


def test_market_buy_by_quote_amount_counts_the_taker_fee_in_what_it_can_afford(engine_cls):
    m = Market(engine_cls)
    m.tape.sell(BOB, BTC_USDT, 150, 5)
    m.run()
    # One lot costs 150_000 + 75 fee: 150_074 cannot buy it.
    m.tape.market_buy(ALICE, BTC_USDT, amount=150_074)
    events = m.run()
    assert summary(events) == ["ACCEPTED", "CANCELLED:MARKET_REMAINDER"]
    check(events[1], leaves=0, filled=0, amount=150_074)
    check(events[1], asset=USDT, available=USDT_FUNDS, frozen=0)
    # 150_075 buys it exactly: nothing is left, so there is no remainder to cancel.
    m.tape.market_buy(ALICE, BTC_USDT, amount=150_075)
    events = m.run()
    assert summary(events) == ["ACCEPTED"] + TRADE_EVENTS
    check(events[1], qty=1, amount=150_000, taker_fee=75, maker_fee=30)
    assert m.balance(ALICE, USDT) == (USDT_FUNDS - 150_075, 0)
    m.validate()


def test_market_sell_sells_into_the_bids_best_first(engine_cls):
    m = Market(engine_cls)
    m.tape.buy(BOB, BTC_USDT, 149, 3)
    m.tape.buy(CAROL, BTC_USDT, 150, 2)
    m.run()
    m.tape.market_sell(ALICE, BTC_USDT, qty=4)
    events = m.run()
    assert summary(events) == ["ACCEPTED"] + TRADE_EVENTS * 2
    check(events[1], price=150, qty=2, maker_account=CAROL, leaves=2, side=SELL, order_type=MARKET)
    check(events[7], price=149, qty=2, maker_account=BOB, leaves=0, filled=4, maker_leaves=1)
    received = sum(notional(p, q) - fee(notional(p, q), 5) for p, q in ((150, 2), (149, 2)))
    assert m.balance(ALICE, USDT) == (USDT_FUNDS + received, 0)
    assert m.balance(ALICE, BTC) == (BTC_FUNDS - 4 * LOT, 0)
    assert m.engine.depth(BTC_USDT, 5) == ([(149, 1, 1)], [])
    m.validate()


def test_market_buy_by_quantity_needs_funds_for_its_worst_price(engine_cls):
    m = Market(engine_cls)
    m.tape.create_account(5)
    m.tape.deposit(5, USDT, required(150, 1) + required(170, 1) - 1)
    m.tape.sell(BOB, BTC_USDT, 150, 1)
    m.tape.sell(BOB, BTC_USDT, 170, 1)
    m.run()
    m.tape.market_buy(5, BTC_USDT, qty=2)  # reserve = required(170, 2) > what 5 has
    m.assert_rejected(RejectReason.INSUFFICIENT_FUNDS)
    m.tape.market_buy(5, BTC_USDT, qty=1)  # reserve = required(150, 1)
    assert summary(m.run()) == ["ACCEPTED"] + TRADE_EVENTS
    m.engine.validate()


# --- rejects of NEW --------------------------------------------------------------------------------------


def _limit(**fields):
    """The fields of a NEW: a GTC limit buy of 1 lot at 150 by Alice, with these changes."""
    order = dict(account=ALICE, symbol=BTC_USDT, side=BUY, order_type=LIMIT, tif=GTC, price=150, qty=1, amount=0)
    order.update(fields)
    return order


def _market(**fields):
    return _limit(**{"order_type": MARKET, "tif": IOC, "price": 0, **fields})


NEW_REJECTS = [
    ("account never created", _limit(account=NOBODY), RejectReason.UNKNOWN_ACCOUNT),
    ("account out of range", _limit(account=16), RejectReason.UNKNOWN_ACCOUNT),
    ("negative account", _limit(account=-1), RejectReason.UNKNOWN_ACCOUNT),
    ("symbol out of range", _limit(symbol=2), RejectReason.UNKNOWN_SYMBOL),
    ("negative symbol", _limit(symbol=-1), RejectReason.UNKNOWN_SYMBOL),
    ("side 0", _limit(side=0), RejectReason.INVALID_SIDE),
    ("side 3", _limit(side=3), RejectReason.INVALID_SIDE),
    ("order type 0", _limit(order_type=0), RejectReason.INVALID_ORDER_TYPE),
    ("order type 3", _limit(order_type=3), RejectReason.INVALID_ORDER_TYPE),
    ("market sell by quote amount", _market(side=SELL, qty=0, amount=10**6), RejectReason.INVALID_ORDER_TYPE),
    ("tif 0", _limit(tif=0), RejectReason.INVALID_TIME_IN_FORCE),
    ("tif 5", _limit(tif=5), RejectReason.INVALID_TIME_IN_FORCE),
    ("market GTC", _market(tif=GTC), RejectReason.INVALID_TIME_IN_FORCE),
    ("market FOK", _market(tif=FOK), RejectReason.INVALID_TIME_IN_FORCE),
    ("market POST_ONLY", _market(tif=POST_ONLY), RejectReason.INVALID_TIME_IN_FORCE),
    ("limit qty 0", _limit(qty=0), RejectReason.INVALID_QUANTITY),
    ("limit qty above max", _limit(qty=1001), RejectReason.INVALID_QUANTITY),
    ("limit with an amount", _limit(amount=10**6), RejectReason.INVALID_QUANTITY),
    ("market qty 0", _market(qty=0), RejectReason.INVALID_QUANTITY),
    ("market qty above max", _market(side=SELL, qty=1001), RejectReason.INVALID_QUANTITY),
    ("market buy with qty and amount", _market(qty=1, amount=10**6), RejectReason.INVALID_QUANTITY),
    ("market buy negative amount", _market(qty=0, amount=-1), RejectReason.INVALID_AMOUNT),
    ("price below the band", _limit(price=99), RejectReason.PRICE_OUT_OF_BAND),
    ("price above the band", _limit(price=201), RejectReason.PRICE_OUT_OF_BAND),
    ("limit below min notional", _limit(symbol=ETH_USDT, price=200, qty=49), RejectReason.BELOW_MIN_NOTIONAL),
    ("market buy amount below min notional", _market(qty=0, amount=99_999), RejectReason.BELOW_MIN_NOTIONAL),
    ("seq 0", _limit(seq=0), RejectReason.INVALID_ORDER_ID),
    ("negative seq", _limit(seq=-7), RejectReason.INVALID_ORDER_ID),
    ("buy beyond the quote balance", _limit(price=200, qty=1000), RejectReason.INSUFFICIENT_FUNDS),
]


@pytest.mark.parametrize(
    ("fields", "reason"), [(f, r) for _, f, r in NEW_REJECTS], ids=[d for d, _, _ in NEW_REJECTS]
)
def test_a_rejected_new_order_changes_nothing(engine_cls, fields, reason):
    m = Market(engine_cls)
    m.tape.sell(BOB, BTC_USDT, 160, 1)  # something on the book, so a hash change would show
    m.run()
    m.tape.add(CommandKind.NEW, **fields)
    m.assert_rejected(reason)
    m.validate()


def test_a_rejected_order_echoes_the_commands_fields(engine_cls):
    m = Market(engine_cls)
    seq = m.tape.add(
        CommandKind.NEW,
        account=ALICE,
        symbol=BTC_USDT,
        side=BUY,
        order_type=LIMIT,
        tif=GTC,
        price=250,
        qty=7,
        order_id=42,
        client_order_id=99,
        asset=2,
        origin=5,
    )
    events = m.assert_rejected(RejectReason.PRICE_OUT_OF_BAND)
    check_exact(
        events[0],
        EventKind.REJECTED,
        seq=seq,
        ts=ts(seq),
        reason=RejectReason.PRICE_OUT_OF_BAND,
        order_id=42,
        client_order_id=99,
        account=ALICE,
        symbol=BTC_USDT,
        asset=2,
        side=BUY,
        order_type=LIMIT,
        tif=GTC,
        price=250,
        qty=7,
    )


def test_checks_run_in_the_documented_order(engine_cls):
    m = Market(engine_cls)
    t = m.tape
    t.add(CommandKind.NEW, **_limit(account=NOBODY, symbol=9, side=9))
    m.assert_rejected(RejectReason.UNKNOWN_ACCOUNT)
    t.add(CommandKind.NEW, **_limit(symbol=9, side=9, order_type=9))
    m.assert_rejected(RejectReason.UNKNOWN_SYMBOL)
    t.add(CommandKind.NEW, **_limit(side=9, order_type=9, tif=9))
    m.assert_rejected(RejectReason.INVALID_SIDE)
    t.add(CommandKind.NEW, **_limit(order_type=9, tif=9))
    m.assert_rejected(RejectReason.INVALID_ORDER_TYPE)
    t.add(CommandKind.NEW, **_limit(tif=9, qty=0))
    m.assert_rejected(RejectReason.INVALID_TIME_IN_FORCE)
    t.add(CommandKind.NEW, **_limit(qty=0, price=999))
    m.assert_rejected(RejectReason.INVALID_QUANTITY)
    t.add(CommandKind.NEW, **_limit(symbol=ETH_USDT, price=999, qty=1))
    m.assert_rejected(RejectReason.PRICE_OUT_OF_BAND)
    t.add(CommandKind.NEW, **_limit(symbol=ETH_USDT, price=100, qty=1, seq=0))
    m.assert_rejected(RejectReason.BELOW_MIN_NOTIONAL)
    t.add(CommandKind.NEW, **_limit(price=200, qty=1000, seq=0))
    m.assert_rejected(RejectReason.INVALID_ORDER_ID)
    m.validate()


def test_a_new_order_cannot_reuse_an_open_orders_id(engine_cls):
    m = Market(engine_cls)
    oid = m.tape.buy(ALICE, BTC_USDT, 150, 1)
    m.run()
    m.tape.sell(BOB, BTC_USDT, 160, 1, seq=oid)
    m.assert_rejected(RejectReason.INVALID_ORDER_ID)
    m.tape.cancel(ALICE, oid)
    m.run()
    m.tape.sell(BOB, BTC_USDT, 160, 1, seq=oid)  # no longer open: the id is free again
    events = m.run()
    assert summary(events) == ["ACCEPTED"]
    check(events[0], order_id=oid, account=BOB)
    m.validate()


def test_orders_that_may_rest_are_refused_when_the_order_table_is_full(engine_cls):
    m = Market(engine_cls, max_open_orders=2)
    m.tape.buy(ALICE, BTC_USDT, 150, 1)
    m.tape.sell(BOB, BTC_USDT, 160, 1)
    m.run()
    m.tape.buy(ALICE, BTC_USDT, 151, 1)
    m.assert_rejected(RejectReason.ORDER_TABLE_FULL)
    m.tape.buy(ALICE, BTC_USDT, 151, 1, tif=POST_ONLY)
    m.assert_rejected(RejectReason.ORDER_TABLE_FULL)
    m.tape.buy(CAROL, BTC_USDT, 200, 1)  # would even trade: still refused (GTC may rest)
    m.assert_rejected(RejectReason.ORDER_TABLE_FULL)
    m.tape.buy(CAROL, BTC_USDT, 160, 1, tif=IOC)  # never rests: fine
    assert summary(m.run()) == ["ACCEPTED"] + TRADE_EVENTS
    m.tape.buy(CAROL, BTC_USDT, 151, 1)  # one slot free again
    assert summary(m.run()) == ["ACCEPTED"]
    m.validate()


def test_a_sell_beyond_the_base_balance_is_rejected(engine_cls):
    m = Market(engine_cls)
    m.tape.sell(ALICE, BTC_USDT, 150, 600)
    m.run()
    m.tape.sell(ALICE, BTC_USDT, 150, 401)  # 400 lots left available
    m.assert_rejected(RejectReason.INSUFFICIENT_FUNDS)
    m.tape.market_sell(ALICE, BTC_USDT, qty=401)
    m.assert_rejected(RejectReason.INSUFFICIENT_FUNDS)
    m.tape.market_buy(BOB, BTC_USDT, amount=USDT_FUNDS + 1)
    m.assert_rejected(RejectReason.INSUFFICIENT_FUNDS)
    m.validate()


# --- cancel ----------------------------------------------------------------------------------------------


def test_cancel_takes_the_order_off_the_book_and_releases_its_reserve(engine_cls):
    m = Market(engine_cls)
    oid = m.tape.buy(ALICE, BTC_USDT, 150, 3, client_order_id=8)
    m.run()
    seq = m.tape.cancel(ALICE, oid)
    events = m.run()
    assert summary(events) == ["CANCELLED:USER"]
    check_exact(
        events[0],
        EventKind.CANCELLED,
        seq=seq,
        ts=ts(seq),
        reason=CancelReason.USER,
        order_id=oid,
        client_order_id=8,
        account=ALICE,
        symbol=BTC_USDT,
        side=BUY,
        order_type=LIMIT,
        tif=GTC,
        price=150,
        qty=3,
        leaves=3,
        amount=required(150, 3),
        asset=USDT,
        available=USDT_FUNDS,  # the reserve released: nothing frozen any more
    )
    assert m.engine.order(oid) is None
    assert m.engine.depth(BTC_USDT, 5) == ([], [])
    m.validate()


def test_cancelling_another_accounts_order_is_an_unknown_order(engine_cls):
    m = Market(engine_cls)
    oid = m.tape.buy(ALICE, BTC_USDT, 150, 3)
    m.run()
    m.tape.cancel(BOB, oid)
    m.assert_rejected(RejectReason.UNKNOWN_ORDER)
    m.tape.cancel(ALICE, oid + 100)
    m.assert_rejected(RejectReason.UNKNOWN_ORDER)
    m.tape.cancel(NOBODY, oid)
    m.assert_rejected(RejectReason.UNKNOWN_ACCOUNT)
    m.tape.cancel(ALICE, oid)
    m.run()
    m.tape.cancel(ALICE, oid)  # already cancelled
    m.assert_rejected(RejectReason.UNKNOWN_ORDER)
    m.validate()


# --- cancel-replace --------------------------------------------------------------------------------------


def test_replace_that_decreases_quantity_keeps_priority(engine_cls):
    m = Market(engine_cls)
    a = m.tape.buy(ALICE, BTC_USDT, 150, 5)
    b = m.tape.buy(BOB, BTC_USDT, 150, 5)
    m.run()
    seq = m.tape.replace(ALICE, a, 150, 3, client_order_id=555)
    events = m.run()
    assert summary(events) == ["REPLACED"]
    check_exact(
        events[0],
        EventKind.REPLACED,
        seq=seq,
        ts=ts(seq),
        order_id=a,
        client_order_id=555,
        account=ALICE,
        symbol=BTC_USDT,
        side=BUY,
        order_type=LIMIT,
        tif=GTC,
        price=150,
        qty=3,
        leaves=3,
        amount=required(150, 3),
        asset=USDT,
        available=USDT_FUNDS - required(150, 3),
        frozen=required(150, 3),
    )
    assert m.engine.order(a)["client_order_id"] == 555
    assert m.engine.order(a)["ts"] == ts(a)
    m.tape.sell(CAROL, BTC_USDT, 150, 3)
    events = m.run()
    check(of_kind(events, EventKind.TRADE)[0], maker_order_id=a, maker_client_order_id=555, qty=3)
    assert m.engine.order(a) is None and m.engine.order(b)["leaves"] == 5
    m.validate()


def test_replace_that_changes_the_price_loses_priority(engine_cls):
    m = Market(engine_cls)
    a = m.tape.buy(ALICE, BTC_USDT, 150, 5)
    b = m.tape.buy(BOB, BTC_USDT, 151, 5)
    m.run()
    m.tape.replace(ALICE, a, 151, 5)
    events = m.run()
    assert summary(events) == ["REPLACED"]
    check(events[0], price=151, qty=5, leaves=5, amount=required(151, 5))
    assert m.engine.order(a)["ts"] == ts(a)  # the time it was placed, not of the replace
    assert m.engine.depth(BTC_USDT, 5) == ([(151, 10, 2)], [])
    m.tape.sell(CAROL, BTC_USDT, 151, 5)
    trades = of_kind(m.run(), EventKind.TRADE)
    assert [int(tr["maker_order_id"]) for tr in trades] == [b]
    m.validate()


def test_replace_that_increases_quantity_loses_priority(engine_cls):
    m = Market(engine_cls)
    a = m.tape.buy(ALICE, BTC_USDT, 150, 5)
    b = m.tape.buy(BOB, BTC_USDT, 150, 5)
    m.run()
    m.tape.replace(ALICE, a, 150, 6)
    events = m.run()
    assert summary(events) == ["REPLACED"]
    check(events[0], account=ALICE, asset=USDT, available=USDT_FUNDS - required(150, 6), frozen=required(150, 6))
    m.tape.sell(CAROL, BTC_USDT, 150, 7)
    trades = of_kind(m.run(), EventKind.TRADE)
    assert [(int(tr["maker_order_id"]), int(tr["qty"])) for tr in trades] == [(b, 5), (a, 2)]
    m.validate()


def test_replace_that_crosses_trades_as_the_aggressor_and_rests_the_rest(engine_cls):
    m = Market(engine_cls)
    a = m.tape.buy(ALICE, BTC_USDT, 150, 5)
    c = m.tape.sell(CAROL, BTC_USDT, 155, 3)
    m.run()
    seq = m.tape.replace(ALICE, a, 156, 5, client_order_id=600)
    events = m.run()
    assert summary(events) == ["REPLACED"] + TRADE_EVENTS
    check(events[0], order_id=a, price=156, qty=5, leaves=5, amount=required(156, 5))
    check(events[0], asset=USDT, available=USDT_FUNDS - required(156, 5), frozen=required(156, 5))
    n = notional(155, 3)
    check(
        events[1],
        seq=seq,
        order_id=a,
        client_order_id=600,
        account=ALICE,
        maker_order_id=c,
        price=155,
        qty=3,
        leaves=2,
        filled=3,
        taker_fee=fee(n, 5),
        maker_fee=fee(n, 2),
    )
    assert m.engine.order(a)["reserve"] == required(156, 2)
    assert m.balance(ALICE, USDT) == (USDT_FUNDS - n - fee(n, 5) - required(156, 2), required(156, 2))
    assert m.engine.depth(BTC_USDT, 5) == ([(156, 2, 1)], [])
    m.validate()


def test_replace_to_a_quantity_not_above_filled_is_rejected(engine_cls):
    m = Market(engine_cls)
    a = m.tape.buy(ALICE, BTC_USDT, 150, 5)
    m.tape.sell(BOB, BTC_USDT, 150, 3)
    m.run()
    m.tape.replace(ALICE, a, 150, 3)
    m.assert_rejected(RejectReason.INVALID_QUANTITY)
    m.tape.replace(ALICE, a, 150, 4)  # 4 total, 3 filled: 1 left
    events = m.run()
    check(events[0], qty=4, filled=3, leaves=1, amount=required(150, 1))
    assert m.engine.order(a)["leaves"] == 1
    m.validate()


def test_replace_rejects_change_nothing(engine_cls):
    m = Market(engine_cls)
    a = m.tape.buy(ALICE, BTC_USDT, 150, 5)
    p = m.tape.buy(ALICE, BTC_USDT, 140, 5, tif=POST_ONLY)
    e = m.tape.buy(ALICE, ETH_USDT, 200, 50)  # notional 10 USDT, exactly the minimum
    m.tape.sell(BOB, BTC_USDT, 160, 2)
    m.run()
    t = m.tape
    t.replace(NOBODY, a, 150, 5)
    m.assert_rejected(RejectReason.UNKNOWN_ACCOUNT)
    t.replace(BOB, a, 150, 5)
    m.assert_rejected(RejectReason.UNKNOWN_ORDER)
    t.replace(ALICE, 999, 150, 5)
    m.assert_rejected(RejectReason.UNKNOWN_ORDER)
    t.replace(ALICE, a, 201, 5)
    m.assert_rejected(RejectReason.PRICE_OUT_OF_BAND)
    t.replace(ALICE, a, 150, 0)
    m.assert_rejected(RejectReason.INVALID_QUANTITY)
    t.replace(ALICE, a, 150, 1001)
    m.assert_rejected(RejectReason.INVALID_QUANTITY)
    t.replace(ALICE, e, 200, 49)
    m.assert_rejected(RejectReason.BELOW_MIN_NOTIONAL)
    t.replace(ALICE, p, 160, 5)
    m.assert_rejected(RejectReason.POST_ONLY_WOULD_CROSS)
    t.replace(ALICE, a, 150, 1000)
    m.assert_rejected(RejectReason.INSUFFICIENT_FUNDS)
    m.validate()


def test_replace_may_use_its_own_reserve_plus_available(engine_cls):
    m = Market(engine_cls)
    m.tape.create_account(5)
    m.tape.deposit(5, USDT, required(150, 4) + required(150, 1))
    a = m.tape.buy(5, BTC_USDT, 150, 4)
    m.run()
    m.tape.replace(5, a, 150, 6)  # needs required(150, 6) > required(150, 4) + required(150, 1)
    m.assert_rejected(RejectReason.INSUFFICIENT_FUNDS)
    m.tape.replace(5, a, 150, 5)
    events = m.run()
    assert summary(events) == ["REPLACED"]
    check(events[0], account=5, asset=USDT, available=required(150, 4) + required(150, 1) - required(150, 5))
    check(events[0], frozen=required(150, 5))
    m.engine.validate()


def test_a_post_only_order_can_be_replaced_while_it_does_not_cross(engine_cls):
    m = Market(engine_cls)
    p = m.tape.sell(ALICE, BTC_USDT, 160, 5, tif=POST_ONLY)
    m.tape.buy(BOB, BTC_USDT, 150, 2)
    m.run()
    m.tape.replace(ALICE, p, 151, 4)
    events = m.run()
    assert summary(events) == ["REPLACED"]
    check(events[0], tif=POST_ONLY, price=151, qty=4, amount=4 * LOT)
    check(events[0], account=ALICE, asset=BTC, available=BTC_FUNDS - 4 * LOT, frozen=4 * LOT)
    m.validate()


# --- cancel all ------------------------------------------------------------------------------------------


def test_cancel_all_in_one_symbol_cancels_by_increasing_order_id_and_reports_the_count(engine_cls):
    m = Market(engine_cls)
    t = m.tape
    o1 = t.sell(ALICE, BTC_USDT, 170, 1)
    o2 = t.buy(ALICE, BTC_USDT, 140, 1)
    e1 = t.buy(ALICE, ETH_USDT, 200, 50)
    o3 = t.sell(ALICE, BTC_USDT, 160, 1)
    b1 = t.buy(BOB, BTC_USDT, 141, 1)
    m.run()
    seq = t.cancel_all(ALICE, BTC_USDT)
    events = m.run()
    assert summary(events) == ["CANCELLED:USER"] * 3 + ["MASS_CANCELLED"]
    assert [int(e["order_id"]) for e in of_kind(events, EventKind.CANCELLED)] == [o1, o2, o3]
    # Each CANCELLED carries the balance right after its own release: o3 still holds a lot of BTC after o1.
    check(events[0], order_id=o1, account=ALICE, asset=BTC, available=BTC_FUNDS - LOT, frozen=LOT)
    check(events[1], order_id=o2, account=ALICE, asset=USDT, available=USDT_FUNDS - required(200, 50),
          frozen=required(200, 50))
    check(events[2], order_id=o3, account=ALICE, asset=BTC, available=BTC_FUNDS, frozen=0)
    check_exact(events[3], EventKind.MASS_CANCELLED, seq=seq, ts=ts(seq), account=ALICE, symbol=BTC_USDT, qty=3)
    assert [o["order_id"] for o in m.engine.open_orders(ALICE)] == [e1]
    assert [o["order_id"] for o in m.engine.open_orders(BOB)] == [b1]
    m.validate()


def test_cancel_all_without_a_symbol_cancels_every_open_order_of_the_account(engine_cls):
    m = Market(engine_cls)
    t = m.tape
    o1 = t.sell(ALICE, BTC_USDT, 170, 1)
    o2 = t.buy(ALICE, ETH_USDT, 200, 50)
    o3 = t.buy(ALICE, BTC_USDT, 140, 1)
    m.run()
    seq = t.cancel_all(ALICE)
    events = m.run()
    assert summary(events) == ["CANCELLED:USER"] * 3 + ["MASS_CANCELLED"]
    assert [int(e["order_id"]) for e in of_kind(events, EventKind.CANCELLED)] == [o1, o2, o3]
    check_exact(events[3], EventKind.MASS_CANCELLED, seq=seq, ts=ts(seq), account=ALICE, symbol=-1, qty=3)
    assert m.engine.open_orders(ALICE) == []
    assert m.balance(ALICE, USDT) == (USDT_FUNDS, 0)
    assert m.balance(ALICE, BTC) == (BTC_FUNDS, 0)
    m.validate()


def test_cancel_all_with_nothing_open_reports_zero_and_bad_input_is_rejected(engine_cls):
    m = Market(engine_cls)
    m.tape.cancel_all(BOB, ETH_USDT)
    events = m.run()
    assert summary(events) == ["MASS_CANCELLED"]
    check(events[0], account=BOB, symbol=ETH_USDT, qty=0)
    m.tape.buy(BOB, BTC_USDT, 150, 1)
    m.run()
    m.tape.cancel_all(BOB, 2)
    m.assert_rejected(RejectReason.UNKNOWN_SYMBOL)
    m.tape.cancel_all(BOB, -2)
    m.assert_rejected(RejectReason.UNKNOWN_SYMBOL)
    m.tape.cancel_all(NOBODY)
    m.assert_rejected(RejectReason.UNKNOWN_ACCOUNT)
    m.validate()


# --- self-trade prevention -------------------------------------------------------------------------------


def test_stp_off_lets_an_account_trade_with_itself_and_pay_both_fees(engine_cls):
    m = Market(engine_cls, stp="off")
    maker = m.tape.sell(ALICE, BTC_USDT, 150, 2)
    m.run()
    taker = m.tape.buy(ALICE, BTC_USDT, 150, 2)
    events = m.run()
    assert summary(events) == ["ACCEPTED"] + TRADE_EVENTS
    n = notional(150, 2)
    check(events[1], order_id=taker, maker_order_id=maker, account=ALICE, maker_account=ALICE)
    check(events[1], maker_fee=fee(n, 2), taker_fee=fee(n, 5))
    assert m.balance(ALICE, USDT) == (USDT_FUNDS - 210, 0)
    assert m.balance(ALICE, BTC) == (BTC_FUNDS, 0)
    assert m.balance(FEE_ACCOUNT, USDT) == (fee(n, 2) + fee(n, 5), 0)
    m.validate()


def test_stp_cancel_taker_cancels_the_incoming_order_and_keeps_the_resting_one(engine_cls):
    m = Market(engine_cls, stp="cancel_taker")
    m.tape.sell(BOB, BTC_USDT, 150, 2)
    own = m.tape.sell(ALICE, BTC_USDT, 151, 3)
    m.tape.sell(CAROL, BTC_USDT, 152, 3)
    m.run()
    taker = m.tape.buy(ALICE, BTC_USDT, 152, 5)
    events = m.run()
    assert summary(events) == ["ACCEPTED"] + TRADE_EVENTS + ["CANCELLED:SELF_TRADE"]
    check(events[7], order_id=taker, tif=GTC, qty=5, leaves=3, filled=2, amount=required(152, 3))
    paid = notional(150, 2) + fee(notional(150, 2), 5)
    check(events[7], account=ALICE, asset=USDT, available=USDT_FUNDS - paid, frozen=0)
    assert m.engine.order(taker) is None  # the GTC remainder does not rest
    assert m.engine.order(own)["leaves"] == 3
    assert m.engine.depth(BTC_USDT, 5) == ([], [(151, 3, 1), (152, 3, 1)])
    m.validate()


def test_stp_cancel_maker_cancels_own_resting_orders_and_goes_on_to_the_next_maker(engine_cls):
    m = Market(engine_cls, stp="cancel_maker")
    own = m.tape.sell(ALICE, BTC_USDT, 150, 2)
    other = m.tape.sell(BOB, BTC_USDT, 150, 3)
    m.run()
    taker = m.tape.buy(ALICE, BTC_USDT, 150, 3)
    events = m.run()
    assert summary(events) == ["ACCEPTED", "CANCELLED:SELF_TRADE"] + TRADE_EVENTS
    check(events[1], order_id=own, account=ALICE, side=SELL, leaves=2, filled=0, amount=2 * LOT)
    check(events[1], account=ALICE, asset=BTC, available=BTC_FUNDS, frozen=0)
    check(events[2], order_id=taker, maker_order_id=other, qty=3, leaves=0)
    assert m.engine.order(own) is None
    assert m.engine.depth(BTC_USDT, 5) == ([], [])
    m.validate()


def test_stp_cancel_both_cancels_the_resting_order_then_the_incoming_one(engine_cls):
    m = Market(engine_cls, stp="cancel_both")
    own = m.tape.sell(ALICE, BTC_USDT, 150, 2)
    m.tape.sell(BOB, BTC_USDT, 150, 3)
    m.run()
    taker = m.tape.buy(ALICE, BTC_USDT, 150, 3)
    events = m.run()
    assert summary(events) == ["ACCEPTED"] + ["CANCELLED:SELF_TRADE"] * 2
    check(events[1], order_id=own, leaves=2, amount=2 * LOT)
    check(events[1], account=ALICE, asset=BTC, available=BTC_FUNDS, frozen=0)
    check(events[2], order_id=taker, leaves=3, amount=required(150, 3))
    check(events[2], account=ALICE, asset=USDT, available=USDT_FUNDS, frozen=0)
    assert m.engine.depth(BTC_USDT, 5) == ([], [(150, 3, 1)])
    m.validate()


def test_stp_applies_to_a_market_buy_by_quote_amount(engine_cls):
    m = Market(engine_cls, stp="cancel_taker")
    m.tape.sell(ALICE, BTC_USDT, 150, 2)
    m.run()
    oid = m.tape.market_buy(ALICE, BTC_USDT, amount=1_000_000)
    events = m.run()
    assert summary(events) == ["ACCEPTED", "CANCELLED:SELF_TRADE"]
    check(events[1], order_id=oid, qty=0, leaves=0, filled=0, amount=1_000_000)
    check(events[1], account=ALICE, asset=USDT, available=USDT_FUNDS, frozen=0)
    m.validate()


@pytest.mark.parametrize("stp", ["cancel_taker", "cancel_both"])
def test_fok_dry_run_stops_at_an_own_order_when_stp_would_cancel_the_taker(engine_cls, stp):
    m = Market(engine_cls, stp=stp)
    m.tape.sell(ALICE, BTC_USDT, 150, 2)
    m.tape.sell(BOB, BTC_USDT, 150, 5)
    m.run()
    before = m.engine.state_hash()
    m.tape.buy(ALICE, BTC_USDT, 150, 3, tif=FOK)
    assert summary(m.run()) == ["CANCELLED:FOK"]
    assert m.engine.state_hash() == before
    m.validate()


def test_fok_dry_run_skips_own_orders_under_cancel_maker(engine_cls):
    m = Market(engine_cls, stp="cancel_maker")
    own = m.tape.sell(ALICE, BTC_USDT, 150, 2)
    m.tape.sell(BOB, BTC_USDT, 150, 2)
    m.run()
    m.tape.buy(ALICE, BTC_USDT, 150, 3, tif=FOK)  # only Bob's 2 lots count
    assert summary(m.run()) == ["CANCELLED:FOK"]
    m.tape.buy(ALICE, BTC_USDT, 150, 2, tif=FOK)
    events = m.run()
    assert summary(events) == ["ACCEPTED", "CANCELLED:SELF_TRADE"] + TRADE_EVENTS
    check(events[1], order_id=own)
    m.validate()


def test_fok_counts_own_orders_when_stp_is_off(engine_cls):
    m = Market(engine_cls, stp="off")
    m.tape.sell(ALICE, BTC_USDT, 150, 2)
    m.tape.sell(BOB, BTC_USDT, 150, 2)
    m.run()
    m.tape.buy(ALICE, BTC_USDT, 150, 4, tif=FOK)
    assert summary(m.run()) == ["ACCEPTED"] + TRADE_EVENTS * 2
    m.validate()


def test_a_replace_that_meets_an_own_order_is_cancelled_under_cancel_taker(engine_cls):
    m = Market(engine_cls, stp="cancel_taker")
    a = m.tape.buy(ALICE, BTC_USDT, 150, 5)
    own = m.tape.sell(ALICE, BTC_USDT, 155, 3)
    m.run()
    m.tape.replace(ALICE, a, 155, 5)
    events = m.run()
    assert summary(events) == ["REPLACED", "CANCELLED:SELF_TRADE"]
    check(events[1], order_id=a, price=155, leaves=5, amount=required(155, 5))
    check(events[1], account=ALICE, asset=USDT, available=USDT_FUNDS, frozen=0)
    assert m.engine.order(a) is None and m.engine.order(own) is not None
    m.validate()


# --- whole sessions --------------------------------------------------------------------------------------


def _busy_session(tape: CommandTape) -> None:
    for account in (ALICE, BOB, CAROL):
        tape.create_account(account)
        tape.deposit(account, BTC, BTC_FUNDS)
        tape.deposit(account, USDT, USDT_FUNDS)
        tape.deposit(account, ETH, ETH_FUNDS)
    for i in range(6):
        tape.sell(ALICE, BTC_USDT, 150 + i, 3 + i)
        tape.buy(BOB, BTC_USDT, 149 - i, 2 + i)
    tape.buy(CAROL, BTC_USDT, 153, 13, tif=IOC)
    tape.market_sell(CAROL, BTC_USDT, qty=9)
    tape.market_buy(BOB, BTC_USDT, amount=1_234_567)
    tape.replace(ALICE, 23, 140, 8)  # Alice's sell at 155: now crosses the bids
    tape.buy(CAROL, ETH_USDT, 200, 60)
    tape.sell(BOB, ETH_USDT, 199, 70, tif=IOC)
    tape.cancel_all(BOB)
    tape.withdraw(CAROL, BTC, 1_000)


def test_balances_are_conserved_through_a_busy_session(engine_cls):
    m = Market(engine_cls, fund=False)
    _busy_session(m.tape)
    events = m.run()
    assert "TRADE" in summary(events)
    m.engine.validate()
    assert m.total(BTC) == 3 * BTC_FUNDS - 1_000
    assert m.total(USDT) == 3 * USDT_FUNDS
    assert m.total(ETH) == 3 * ETH_FUNDS
    assert m.balance(FEE_ACCOUNT, USDT)[0] > 0


def test_the_same_commands_give_the_same_events_and_state_hash(engine_cls):
    first, second = Market(engine_cls, fund=False), Market(engine_cls, fund=False)
    assert first.engine.state_hash() == second.engine.state_hash()
    _busy_session(first.tape)
    _busy_session(second.tape)
    events = first.run()
    # Each chunk is only valid until the next iteration: copy it.
    chunks = [chunk.copy() for chunk in second.engine.process(second.tape.flush())]
    assert np.concatenate(chunks).tobytes() == events.tobytes()
    assert first.engine.state_hash() == second.engine.state_hash()
    first.tape.deposit(ALICE, ETH, 1)
    first.run()
    assert first.engine.state_hash() != second.engine.state_hash()
