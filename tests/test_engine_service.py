"""The engine service (engine/service.py) driven by hand-built sequenced batches: where each event is
reported (gateway, session, role), OrigClOrdID resolution, resend answers, queries, topic counters and
the per-gateway resend window. No sockets: ``tests/test_engine_process.py`` runs the process.

Numbers, from tests/builders.py: on BTC-USDT one lot at ``p`` ticks costs ``p * 1000`` USDT units.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest

import engine.service as service_module
from common.intake import Envelope
from common.records import (
    COMMAND_DTYPE,
    CancelReason,
    EventKind,
    RejectReason,
    TimeInForce,
)
from common.reports import ReportMessage, account_topic, gateway_topic, market_topic
from common.stream import Duplicate, Refused, SequencedBatch
from engine.outcomes import OutcomeHistory
from engine.service import EngineService, StreamInconsistency
from tests.builders import BTC, BTC_USDT, ETH_USDT, USDT, CommandTape, make_config

ALICE, BOB, CAROL = 1, 2, 3
GW1, GW2 = 1, 2
ADMIN, ALICE_S, ALICE_S2, BOB_S, BOB_S_GW1 = 100, 11, 12, 21, 22
FUNDS = 1_000_000_000


def notional(price: int, qty: int) -> int:
    return price * qty * 1000


class Desk:
    """An EngineService fed from a CommandTape. Each command says which gateway and session sent it and
    its ClOrdID (and OrigClOrdID); ``send()`` applies the commands added since the last send as one batch.
    ALICE trades on gateway 1, BOB on gateway 2; the admin created and funded them (and CAROL) on gateway 1.
    """

    HOME = {ALICE: (GW1, ALICE_S), BOB: (GW2, BOB_S), CAROL: (GW1, 31)}

    def __init__(self, *, recent_reports: int | None = None, **config):
        self.config = make_config(**config)
        if recent_reports is not None:
            self.config = dataclasses.replace(
                self.config, engine=dataclasses.replace(self.config.engine, recent_reports=recent_reports))
        self.service = EngineService(self.config)
        self.tape = CommandTape()
        self.origins: list[int] = []
        self.envelopes: list[Envelope] = []
        self._sent = 0
        for account in (ALICE, BOB, CAROL):
            self.admin("create_account", account)
            self.admin("deposit", account, BTC, FUNDS)
            self.admin("deposit", account, USDT, FUNDS)
        self.setup_messages = self.send()

    def admin(self, method: str, *args, **kw) -> int:
        return self.add(method, *args, via=(GW1, ADMIN), clordid=f"admin-{self.tape.last_seq + 1}", **kw)

    def add(self, method: str, account: int, *args, via: tuple[int, int] | None = None, clordid: str = "",
            orig: str = "", **kw) -> int:
        gateway, session = via or self.HOME[account]
        seq = getattr(self.tape, method)(account, *args, **kw)
        self.tape.records[-1]["origin"] = gateway
        self.envelopes.append(Envelope(session, clordid, orig))
        return seq

    def batch(self, count: int | None = None) -> SequencedBatch:
        """The next ``count`` commands not sent yet (all of them by default) as a batch."""
        first = self._sent + 1
        last = self.tape.last_seq if count is None else first + count - 1
        self._sent = last
        return SequencedBatch(first, np.concatenate(self.tape.records[first - 1 : last]),
                              self.envelopes[first - 1 : last])

    def send(self) -> list[ReportMessage]:
        return self.service.apply(self.batch())

    def duplicate_of(self, seq: int, *, via: tuple[int, int]) -> Duplicate:
        record = self.tape.records[seq - 1].copy()
        record["origin"] = via[0]
        return Duplicate(self.tape.last_seq, seq, record, Envelope(via[1], self.envelopes[seq - 1].clordid))

    def query(self, **q) -> dict:
        """A query's reply, without the ``seq`` every reply carries (checked here: the last applied)."""
        reply = self.service.query(q)
        assert reply["ok"], reply
        assert reply.pop("seq") == self.service.last_seq
        return reply


def on(messages: list[ReportMessage], topic: bytes) -> ReportMessage | None:
    found = [m for m in messages if m.topic == topic]
    assert len(found) <= 1, f"{len(found)} messages on {topic!r} for one batch"
    return found[0] if found else None


def rows(message: ReportMessage) -> list[tuple]:
    """(event kind, session, role, ClOrdID) per event of a gateway message."""
    return [(EventKind(int(e["kind"])).name, i["session"], i["role"], i["clordid"])
            for e, i in zip(message.events, message.items)]


def kinds(message: ReportMessage) -> list[str]:
    return [EventKind(int(k)).name for k in message.events["kind"]]


@pytest.fixture
def desk() -> Desk:
    return Desk()


# --- routing -----------------------------------------------------------------------------------------


def test_account_creation_and_deposits_are_reported_to_the_admin_session(desk):
    message = on(desk.setup_messages, gateway_topic(GW1))
    assert kinds(message) == ["ACCOUNT_CREATED", "BALANCE", "BALANCE"] * 3
    assert {(i["session"], i["role"]) for i in message.items} == {(ADMIN, "order")}
    assert [i["clordid"] for i in message.items] == [f"admin-{seq}" for seq in range(1, 10)]
    assert on(desk.setup_messages, gateway_topic(GW2)) is None


def test_an_order_is_reported_to_the_session_that_placed_it(desk):
    desk.add("buy", ALICE, BTC_USDT, 150, 2, clordid="A1")
    messages = desk.send()

    message = on(messages, gateway_topic(GW1))
    assert rows(message) == [("ACCEPTED", ALICE_S, "order", "A1")]
    assert message.items[0] == {"session": ALICE_S, "account": ALICE, "role": "order", "clordid": "A1",
                                "cum_quote": 0, "resend": False}
    assert on(messages, gateway_topic(GW2)) is None


def test_a_trade_across_gateways_is_reported_once_on_each_gateway(desk):
    desk.add("sell", BOB, BTC_USDT, 150, 5, clordid="B1")
    desk.send()
    desk.add("buy", ALICE, BTC_USDT, 150, 2, clordid="A1")
    messages = desk.send()

    to_alice, to_bob = on(messages, gateway_topic(GW1)), on(messages, gateway_topic(GW2))
    assert rows(to_alice) == [("ACCEPTED", ALICE_S, "order", "A1"), ("TRADE", ALICE_S, "taker", "A1")]
    assert rows(to_bob) == [("TRADE", BOB_S, "maker", "B1")]
    assert to_alice.items[1]["cum_quote"] == to_bob.items[0]["cum_quote"] == notional(150, 2)
    assert to_alice.events[1].tobytes() == to_bob.events[0].tobytes()


def test_a_trade_between_two_sessions_of_one_gateway_is_in_its_message_twice(desk):
    desk.add("sell", BOB, BTC_USDT, 150, 5, via=(GW1, BOB_S_GW1), clordid="B1")
    desk.add("buy", ALICE, BTC_USDT, 150, 2, clordid="A1")
    messages = desk.send()

    assert rows(on(messages, gateway_topic(GW1))) == [
        ("ACCEPTED", BOB_S_GW1, "order", "B1"),
        ("ACCEPTED", ALICE_S, "order", "A1"),
        ("TRADE", ALICE_S, "taker", "A1"),
        ("TRADE", BOB_S_GW1, "maker", "B1"),
    ]
    assert on(messages, gateway_topic(GW2)) is None


def test_fills_are_reported_with_the_quote_amount_filled_so_far(desk):
    desk.add("sell", BOB, BTC_USDT, 150, 1, clordid="B1")
    desk.add("sell", BOB, BTC_USDT, 151, 1, clordid="B2")
    desk.add("buy", ALICE, BTC_USDT, 151, 2, clordid="A1")
    messages = desk.send()

    taker = [i["cum_quote"] for i in on(messages, gateway_topic(GW1)).items if i["role"] == "taker"]
    assert taker == [notional(150, 1), notional(150, 1) + notional(151, 1)]


def test_a_cancel_from_another_session_is_reported_to_the_canceller(desk):
    order = desk.add("buy", ALICE, BTC_USDT, 150, 2, clordid="A1")
    desk.send()
    desk.add("cancel", ALICE, order, via=(GW2, ALICE_S2), clordid="C1")
    messages = desk.send()

    assert rows(on(messages, gateway_topic(GW2))) == [("CANCELLED", ALICE_S2, "order", "C1")]
    assert on(messages, gateway_topic(GW1)) is None


def test_a_resting_order_cancelled_by_self_trade_prevention_is_reported_to_its_own_session():
    desk = Desk(stp="cancel_maker")
    desk.add("sell", ALICE, BTC_USDT, 150, 2, clordid="S1")
    desk.send()
    desk.add("buy", ALICE, BTC_USDT, 150, 2, via=(GW2, ALICE_S2), clordid="B1")
    messages = desk.send()

    assert rows(on(messages, gateway_topic(GW1))) == [("CANCELLED", ALICE_S, "order", "S1")]
    assert int(on(messages, gateway_topic(GW1)).events[0]["reason"]) == CancelReason.SELF_TRADE
    assert rows(on(messages, gateway_topic(GW2))) == [("ACCEPTED", ALICE_S2, "order", "B1")]


def levels(message: ReportMessage) -> list[tuple[str, int, int]]:
    """(side, price, qty) of a market message's book levels."""
    return [("buy" if int(level["side"]) == 1 else "sell", int(level["price"]), int(level["qty"]))
            for level in message.levels]


def test_the_market_topic_carries_the_trades_and_the_levels_they_changed(desk):
    desk.add("sell", BOB, BTC_USDT, 150, 5, clordid="B1")
    desk.add("sell", BOB, BTC_USDT, 151, 1, clordid="B2")
    desk.add("market_buy", ALICE, BTC_USDT, qty=2, clordid="A1")
    messages = desk.send()

    market = on(messages, market_topic(BTC_USDT))
    assert kinds(market) == ["TRADE"]  # no order events, no balances
    assert levels(market) == [("sell", 150, 3), ("sell", 151, 1)]  # read after the batch
    assert market.seq == desk.tape.last_seq and market.prev == 0
    assert on(messages, market_topic(ETH_USDT)) is None


def test_book_levels_follow_replaces_cancels_and_orders_that_never_rest(desk):
    order = desk.add("buy", ALICE, BTC_USDT, 140, 2, clordid="A1")
    desk.add("buy", BOB, BTC_USDT, 140, 3, clordid="B1")
    first = on(desk.send(), market_topic(BTC_USDT))
    assert levels(first) == [("buy", 140, 5)]

    desk.add("replace", ALICE, order, 141, 2, clordid="A2")
    second = on(desk.send(), market_topic(BTC_USDT))
    assert levels(second) == [("buy", 140, 3), ("buy", 141, 2)]  # the old level and the new
    assert second.prev == first.seq

    desk.add("sell", BOB, BTC_USDT, 160, 1, tif=TimeInForce.IOC, clordid="B2")  # never rests: no level
    assert on(desk.send(), market_topic(BTC_USDT)) is None

    desk.add("cancel", ALICE, order, clordid="A3")
    third = on(desk.send(), market_topic(BTC_USDT))
    assert levels(third) == [("buy", 141, 0)]
    assert third.prev == second.seq


def test_a_level_that_changed_side_in_one_batch_is_reported_for_both_sides(desk):
    order = desk.add("sell", BOB, BTC_USDT, 150, 1, clordid="B1")
    desk.add("cancel", BOB, order, clordid="B2")
    desk.add("buy", ALICE, BTC_USDT, 150, 2, clordid="A1")
    assert levels(on(desk.send(), market_topic(BTC_USDT))) == [("buy", 150, 2), ("sell", 150, 0)]


def test_market_catch_up_returns_the_kept_messages_and_says_when_some_are_gone():
    desk = Desk()
    desk.service.config = dataclasses.replace(
        desk.service.config, engine=dataclasses.replace(desk.service.config.engine, recent_market_messages=16))
    seqs = []
    for price in range(100, 120):
        desk.add("buy", ALICE, BTC_USDT, price, 1)
        seqs.append(on(desk.send(), market_topic(BTC_USDT)).seq)

    reply = desk.query(q="market", symbol=BTC_USDT, after=seqs[-3])
    assert [m[0] for m in reply["messages"]] == seqs[-2:] and reply["complete"] and not reply["more"]
    assert desk.query(q="market", symbol=BTC_USDT, after=seqs[-1]) == {
        "id": None, "ok": True, "messages": [], "complete": True, "last": seqs[-1], "more": False}
    assert not desk.query(q="market", symbol=BTC_USDT, after=seqs[0])["complete"]  # 16 of 20 kept
    paged = desk.query(q="market", symbol=BTC_USDT, after=seqs[-6], max=2)
    assert [m[0] for m in paged["messages"]] == seqs[-5:-3] and paged["more"]
    assert desk.service.query({"q": "market", "symbol": 99, "after": 0})["ok"] is False


def test_the_history_query_gives_an_accounts_orders_newest_first_with_their_fills(desk):
    resting = desk.add("sell", BOB, BTC_USDT, 150, 5, clordid="B1")
    taker = desk.add("buy", ALICE, BTC_USDT, 150, 2, clordid="A1")
    desk.add("buy", ALICE, BTC_USDT, 140, 1, clordid="A2")
    desk.send()
    alice = desk.query(q="history", account=ALICE)["orders"]
    assert [(o["clordid"], o["status"]) for o in alice] == [("A2", "new"), ("A1", "filled")]
    assert alice[1]["fills"] == [[taker, desk.tape.TS0 + taker * 1000, 150, 2, notional(150, 2),
                                  notional(150, 2) * 5 // 10_000, 0]]
    [bob] = desk.query(q="history", account=BOB)["orders"]
    assert bob["order_id"] == resting and bob["fills"][0][6] == 1 and bob["status"] == "partially_filled"
    assert desk.query(q="history", account=ALICE, limit=1)["orders"][0]["clordid"] == "A2"


def test_the_depth_query_gives_the_whole_book_best_first(desk):
    desk.add("buy", ALICE, BTC_USDT, 140, 2)
    desk.add("buy", ALICE, BTC_USDT, 141, 1)
    desk.add("sell", BOB, BTC_USDT, 150, 3)
    desk.send()
    reply = desk.query(q="depth", symbol=BTC_USDT)
    assert reply["bids"] == [[141, 1], [140, 2]] and reply["asks"] == [[150, 3]]
    assert reply["market_last"] == desk.tape.last_seq


def test_topic_positions_survive_a_snapshot_of_the_service_state(desk):
    desk.add("buy", ALICE, BTC_USDT, 140, 2)
    market = on(desk.send(), market_topic(BTC_USDT))
    restored = EngineService(desk.config)
    restored.engine.arrays = desk.service.engine.arrays
    restored.import_state(desk.service.export_state())
    assert restored.export_state()["market_last"] == [(BTC_USDT, market.seq)]
    assert dict(restored.export_state()["account_last"])[ALICE] == market.seq


def test_an_account_topic_carries_every_event_of_the_account_on_either_side_of_a_trade(desk):
    desk.add("sell", BOB, BTC_USDT, 150, 5, clordid="B1")
    desk.add("buy", ALICE, BTC_USDT, 150, 2, clordid="A1")
    messages = desk.send()

    assert kinds(on(messages, account_topic(BOB))) == ["ACCEPTED", "TRADE", "BALANCE", "BALANCE"]
    assert kinds(on(messages, account_topic(ALICE))) == ["ACCEPTED", "TRADE", "BALANCE", "BALANCE"]
    assert kinds(on(messages, account_topic(0))) == ["BALANCE"]  # the fees
    assert on(messages, account_topic(CAROL)) is None
    # each event names the account's own order: ALICE's buy took, BOB's sell made
    assert on(messages, account_topic(ALICE)).items[:2] == [["A1", ""], ["A1", ""]]
    assert on(messages, account_topic(BOB)).items[:2] == [["B1", ""], ["", "B1"]]
    assert on(messages, account_topic(BOB)).items[2:] == [["", ""], ["", ""]]  # balances


def test_only_listened_accounts_get_messages_and_the_others_chains_still_advance(desk):
    desk.service.account_listeners = {BOB}  # as engine/main.py sets it from the subscriptions
    desk.add("sell", BOB, BTC_USDT, 150, 5, clordid="B1")
    desk.add("buy", ALICE, BTC_USDT, 150, 2, clordid="A1")
    first = desk.send()
    assert [m.topic for m in first if m.topic[:1] == b"a"] == [account_topic(BOB)]
    assert on(first, account_topic(BOB)).items[:2] == [["B1", ""], ["", "B1"]]

    desk.service.account_listeners = {ALICE, BOB}  # ALICE subscribes
    desk.add("buy", ALICE, BTC_USDT, 150, 1, clordid="A2")
    alice = on(desk.send(), account_topic(ALICE))
    assert alice.prev == last_seq_of(first) and kinds(alice) == ["ACCEPTED", "TRADE", "BALANCE", "BALANCE"]


def last_seq_of(messages: list[ReportMessage]) -> int:
    """The seq of a batch's last event (what an account's chain points back to)."""
    return max(int(m.events["seq"].max()) for m in messages if len(m.events))


# --- OrigClOrdID ------------------------------------------------------------------------------------


def test_a_cancel_by_orig_clordid_cancels_the_order_that_had_it(desk):
    order = desk.add("buy", ALICE, BTC_USDT, 150, 2, clordid="A1")
    desk.send()
    desk.add("cancel", ALICE, 0, clordid="C1", orig="A1")
    message = on(desk.send(), gateway_topic(GW1))

    assert rows(message) == [("CANCELLED", ALICE_S, "order", "C1")]
    assert int(message.events[0]["order_id"]) == order


def test_a_cancel_by_orig_clordid_finds_an_order_of_the_same_batch(desk):
    order = desk.add("buy", ALICE, BTC_USDT, 150, 2, clordid="A1")
    desk.add("cancel", ALICE, 0, clordid="C1", orig="A1")
    message = on(desk.send(), gateway_topic(GW1))

    assert kinds(message) == ["ACCEPTED", "CANCELLED"]
    assert int(message.events[1]["order_id"]) == order


def test_a_replaced_order_answers_to_every_clordid_it_has_had(desk):
    order = desk.add("buy", ALICE, BTC_USDT, 150, 2, clordid="A1")
    desk.send()
    desk.add("replace", ALICE, 0, 151, 2, clordid="A2", orig="A1")
    desk.add("replace", ALICE, 0, 152, 3, clordid="A3", orig="A2")
    message = on(desk.send(), gateway_topic(GW1))
    assert rows(message) == [("REPLACED", ALICE_S, "order", "A2"), ("REPLACED", ALICE_S, "order", "A3")]
    assert desk.query(q="order", account=ALICE, clordid="A1")["order"]["clordid"] == "A3"

    desk.add("cancel", ALICE, 0, clordid="C1", orig="A1")
    message = on(desk.send(), gateway_topic(GW1))
    assert kinds(message) == ["CANCELLED"] and int(message.events[0]["order_id"]) == order


def test_an_orig_clordid_unknown_to_the_account_is_an_unknown_order(desk):
    desk.add("buy", ALICE, BTC_USDT, 150, 2, clordid="A1")
    desk.send()
    desk.add("cancel", BOB, 0, clordid="C1", orig="A1")
    desk.add("cancel", ALICE, 0, clordid="C2", orig="never")
    messages = desk.send()

    for gateway, clordid in ((GW2, "C1"), (GW1, "C2")):
        message = on(messages, gateway_topic(gateway))
        assert rows(message) == [("REJECTED", message.items[0]["session"], "order", clordid)]
        assert (int(message.events[0]["reason"]), int(message.events[0]["order_id"])) == (
            RejectReason.UNKNOWN_ORDER, 0)


def script(desk: Desk) -> None:
    """Orders, rejects and cancels and replaces by OrigClOrdID, some naming orders of the same batch."""
    desk.add("buy", ALICE, BTC_USDT, 150, 2, clordid="X")
    desk.add("buy", ALICE, BTC_USDT, 999, 2, clordid="X")  # rejected: "X" stays the first order's
    desk.add("cancel", ALICE, 0, clordid="c1", orig="X")
    desk.add("sell", BOB, BTC_USDT, 160, 3, clordid="Y")
    desk.add("replace", BOB, 0, 161, 3, clordid="Y2", orig="Y")
    desk.add("buy", ALICE, BTC_USDT, 161, 1, clordid="Z")
    desk.add("replace", BOB, 0, 162, 3, clordid="Y3", orig="Y2")
    desk.add("cancel", BOB, 0, clordid="c2", orig="Y")
    desk.add("cancel", ALICE, 0, clordid="c3", orig="Z")  # filled already
    desk.add("buy", ALICE, BTC_USDT, 140, 1, clordid="Y")  # ALICE's own "Y"
    desk.add("cancel", ALICE, 0, clordid="c4", orig="Y")


def reported(messages: list[ReportMessage]) -> list[tuple]:
    return sorted((int(e["seq"]), e.tobytes(), tuple(sorted(i.items())))
                  for m in messages if m.topic.startswith(b"r") for e, i in zip(m.events, m.items))


def script_whole_and_singly() -> tuple[Desk, list[ReportMessage], Desk, list[ReportMessage]]:
    """``script`` applied as one batch by one desk and a command at a time by another, with the messages."""
    whole, one_by_one = Desk(), Desk()
    script(whole)
    script(one_by_one)
    all_at_once = whole.send()
    singly = []
    while one_by_one.service.last_seq < one_by_one.tape.last_seq:
        singly += one_by_one.service.apply(one_by_one.batch(1))
    return whole, all_at_once, one_by_one, singly


def test_orig_clordid_resolution_does_not_depend_on_where_batches_end():
    whole, all_at_once, one_by_one, singly = script_whole_and_singly()

    assert reported(all_at_once) == reported(singly)
    assert whole.service.engine.state_hash() == one_by_one.service.engine.state_hash()
    events = sorted((e for m in all_at_once if m.topic.startswith(b"r") for e in m.events), key=lambda e: int(e["seq"]))
    cancels = [int(e["order_id"]) for e in events if int(e["kind"]) == EventKind.CANCELLED]
    assert cancels == [10, 13, 19]  # the first "X", BOB's "Y" (replaced twice), ALICE's own "Y"
    rejects = [(int(e["seq"]), int(e["order_id"])) for e in events if int(e["kind"]) == EventKind.REJECTED]
    assert rejects == [(11, 0), (18, 15)]  # the second "X"; the cancel of "Z", filled already


def per_topic(messages: list[ReportMessage]) -> dict[bytes, list[bytes]]:
    """Every topic's events in publication order (the messages' split into batches aside)."""
    out: dict[bytes, list[bytes]] = {}
    for message in messages:
        out.setdefault(message.topic, []).extend(e.tobytes() for e in message.events)
    return out


def test_every_topic_carries_the_same_events_in_the_same_order_however_commands_are_batched():
    _, all_at_once, _, singly = script_whole_and_singly()

    assert per_topic(all_at_once) == per_topic(singly)
    assert any(topic.startswith(b"m") for topic in per_topic(singly))
    assert any(topic.startswith(b"a") for topic in per_topic(singly))


def test_consecutive_stream_batches_merged_by_the_engine_process_apply_as_one():
    from engine.main import _merged

    merged, whole = Desk(), Desk()
    script(merged)
    script(whole)
    batches = [merged.batch(1) for _ in range(merged.tape.last_seq - merged.service.last_seq)]
    one = _merged(batches)
    assert (one.first, one.last) == (batches[0].first, batches[-1].last)
    assert [e.clordid for e in one.envelopes] == [b.envelopes[0].clordid for b in batches]

    assert reported(merged.service.apply(one)) == reported(whole.send())
    assert merged.service.engine.state_hash() == whole.service.engine.state_hash()


def test_clordids_of_orders_gone_from_the_history_are_forgotten_at_the_next_sweep(desk, monkeypatch):
    monkeypatch.setattr(service_module, "CLOSED_ORDER_HISTORY", 1)
    monkeypatch.setattr(service_module, "SWEEP_INTERVAL", 16)
    for clordid in ("A1", "A2"):
        order = desk.add("buy", ALICE, BTC_USDT, 150, 2, clordid=clordid)
        desk.add("cancel", ALICE, order, clordid=f"cancel-{clordid}")
    desk.send()  # seq 10..13: A1 left the history when A2 ended
    assert desk.query(q="order", account=ALICE, clordid="A1") == {"id": None, "ok": True, "found": False}
    desk.add("cancel", ALICE, 0, clordid="C1", orig="A1")  # seq 14: still mapped to its order
    desk.add("cancel", ALICE, 0, clordid="C2", orig="A2")  # 15
    desk.add("cancel", ALICE, 0, clordid="C3", orig="A1")  # 16: swept just before
    message = on(desk.send(), gateway_topic(GW1))

    assert [int(e["order_id"]) for e in message.events] == [10, 12, 0]



def replaced_four_times(desk) -> int:
    """ALICE's buy A0 (seq 10), replaced by ClOrdID A1..A4 (seqs 11..14), each naming the one before."""
    order = desk.add("buy", ALICE, BTC_USDT, 150, 2, clordid="A0")
    for k in range(1, 5):
        desk.add("replace", ALICE, 0, 150 + k, 2, clordid=f"A{k}", orig=f"A{k - 1}")
    return order


def test_an_order_resolves_its_last_clordids_and_forgets_older_ones_at_the_next_sweep(desk, monkeypatch):
    monkeypatch.setattr(service_module, "CLORDIDS_PER_ORDER", 3)
    monkeypatch.setattr(service_module, "SWEEP_INTERVAL", 16)
    order = replaced_four_times(desk)  # A0 and A1 were pushed out of its last three
    desk.add("cancel", ALICE, 0, clordid="C0", orig="A0")  # seq 15: not swept yet, so still resolved
    desk.add("cancel", ALICE, 0, clordid="C1", orig="A1")  # 16: swept just before
    desk.add("cancel", ALICE, 0, clordid="C2", orig="A2")  # 17: one of the last three (the order has ended)
    message = on(desk.send(), gateway_topic(GW1))

    assert [(kind, int(e["order_id"])) for kind, e in zip(kinds(message)[-3:], message.events[-3:])] == [
        ("CANCELLED", order), ("REJECTED", 0), ("REJECTED", order)]
    assert desk.query(q="order", account=ALICE, clordid="A1")["found"] is False
    assert desk.query(q="order", account=ALICE, clordid="A4")["order"]["order_id"] == order
    mapped = {clordid for account, clordid, order_id in desk.service.tracked()["by_clordid"] if order_id == order}
    assert mapped == {"A2", "A3", "A4"}


def test_clordids_pushed_out_but_not_swept_yet_survive_a_snapshot(desk, monkeypatch):
    from engine import snapshot

    monkeypatch.setattr(service_module, "CLORDIDS_PER_ORDER", 3)
    monkeypatch.setattr(service_module, "SWEEP_INTERVAL", 16)
    replaced_four_times(desk)
    desk.send()
    assert desk.service.tracked()["retired"] == [[ALICE, "A0", 10], [ALICE, "A1", 10]]
    restored = EngineService(desk.config)
    snapshot.restore(restored, snapshot.encode(desk.service, 0))
    for clordid, orig in (("C0", "A0"), ("C1", "A1"), ("C2", "A2")):  # seqs 15, 16 (after the sweep), 17
        desk.add("cancel", ALICE, 0, clordid=clordid, orig=orig)
    batch = desk.batch()

    assert reported(restored.apply(batch)) == reported(desk.service.apply(batch))
    assert restored.export_state() == desk.service.export_state()


def test_a_snapshot_state_from_before_the_bound_keeps_only_the_last_clordids_of_an_order(desk, monkeypatch):
    order = replaced_four_times(desk)
    desk.send()
    state = desk.service.export_state()
    del state["ledger"]  # the order tracking as rows, as snapshots had it before the ledger
    state.update(desk.service.tracked())
    del state["retired"]  # as a snapshot from before the bound has it: all five ClOrdIDs kept
    assert sorted(c for _, c, o in state["by_clordid"] if o == order) == ["A0", "A1", "A2", "A3", "A4"]

    from engine import snapshot

    monkeypatch.setattr(service_module, "CLORDIDS_PER_ORDER", 3)
    monkeypatch.setattr(service_module, "SWEEP_INTERVAL", 16)
    restored = EngineService(desk.config)
    snapshot.restore(restored, snapshot.encode(desk.service, 0))  # the engine's arrays, copied
    restored.import_state(state)
    assert restored.tracked()["retired"] == [[ALICE, "A0", order], [ALICE, "A1", order]]
    desk.add("buy", BOB, BTC_USDT, 100, 1, clordid="B0")  # seq 15
    desk.add("cancel", ALICE, 0, clordid="C1", orig="A1")  # 16: swept just before
    desk.add("cancel", ALICE, 0, clordid="C2", orig="A2")  # 17
    cancels = on(restored.apply(desk.batch()), gateway_topic(GW1))
    assert [(kind, int(e["order_id"])) for kind, e in zip(kinds(cancels), cancels.events)] == [
        ("REJECTED", 0), ("CANCELLED", order)]
    assert sorted(c for _, c, o in restored.tracked()["by_clordid"] if o == order) == ["A2", "A3", "A4"]

# --- resends of commands already sequenced -----------------------------------------------------------


def test_a_resent_command_gets_its_original_outcome_again_marked_as_a_resend(desk):
    order = desk.add("buy", ALICE, BTC_USDT, 150, 2, clordid="A1")
    original = on(desk.send(), gateway_topic(GW1))

    answer = desk.service.duplicate(desk.duplicate_of(order, via=(GW2, 77)))
    assert len(answer) == 1 and answer[0].topic == gateway_topic(GW2)
    assert answer[0].events.tobytes() == original.events[0].tobytes()
    assert answer[0].items == [{"session": 77, "account": ALICE, "role": "order", "clordid": "A1",
                                "cum_quote": 0, "resend": True}]


def test_commands_the_journal_refused_are_rejected_to_their_sessions_and_change_nothing(desk):
    before = desk.service.engine.state_hash()
    tape = CommandTape()
    tape.buy(ALICE, BTC_USDT, 150, 2, client_order_id=41)
    tape.sell(BOB, BTC_USDT, 150, 2, client_order_id=42)
    records = tape.array()
    records["seq"] = records["ts"] = 0
    records["origin"] = [GW1, GW2]
    notice = Refused(desk.service.last_seq, 123, "the journal is full", records,
                     [Envelope(ALICE_S, "A-full"), Envelope(BOB_S, "B-full")])

    messages = desk.service.refused(notice)
    assert [m.topic for m in messages] == [gateway_topic(GW1), gateway_topic(GW2)]
    alice = messages[0]
    assert [int(k) for k in alice.events["kind"]] == [EventKind.REJECTED]
    assert int(alice.events[0]["reason"]) == RejectReason.JOURNAL_UNAVAILABLE
    assert (int(alice.events[0]["price"]), int(alice.events[0]["client_order_id"]), int(alice.events[0]["ts"])) == (
        150, 41, 123)
    assert alice.items == [{"session": ALICE_S, "account": ALICE, "role": "order", "clordid": "A-full",
                            "cum_quote": 0, "resend": False}]
    assert desk.service.engine.state_hash() == before


def test_a_resent_rejected_command_gets_its_reject_again(desk):
    seq = desk.add("buy", ALICE, BTC_USDT, 999, 2, clordid="A1")
    desk.send()

    answer = desk.service.duplicate(desk.duplicate_of(seq, via=(GW1, ALICE_S)))
    assert kinds(answer[0]) == ["REJECTED"]
    assert int(answer[0].events[0]["reason"]) == RejectReason.PRICE_OUT_OF_BAND


def test_a_resend_whose_outcome_is_no_longer_kept_gets_no_answer(desk, caplog):
    caplog.set_level(logging.INFO, logger="engine.service")
    desk.service._outcomes = OutcomeHistory(1)
    first = desk.add("buy", ALICE, BTC_USDT, 150, 2, clordid="A1")
    desk.add("buy", ALICE, BTC_USDT, 150, 2, clordid="A2")
    desk.send()

    assert desk.service.duplicate(desk.duplicate_of(first, via=(GW1, ALICE_S))) == []
    assert "no longer kept" in caplog.text


def test_a_resend_of_an_order_whose_events_ran_over_several_chunks_gets_its_first_event():
    desk = Desk(event_buffer=64, max_open_orders=128)  # events 64 at a time: the taker's 70 trades run over
    for n in range(70):
        desk.add("sell", BOB, BTC_USDT, 150, 1, clordid=f"B{n}")
    desk.send()
    taker = desk.add("buy", ALICE, BTC_USDT, 150, 70, clordid="A1")
    desk.add("buy", ALICE, BTC_USDT, 999, 1, clordid="A2")  # rejected
    desk.send()

    answer = desk.service.duplicate(desk.duplicate_of(taker, via=(GW1, ALICE_S)))
    assert kinds(answer[0]) == ["ACCEPTED"] and int(answer[0].events[0]["seq"]) == taker
    assert answer[0].items[0]["cum_quote"] == notional(150, 70)
    assert kinds(desk.service.duplicate(desk.duplicate_of(taker + 1, via=(GW1, ALICE_S)))[0]) == ["REJECTED"]


def test_a_resend_naming_another_accounts_seq_gets_no_answer(desk):
    seq = desk.add("buy", ALICE, BTC_USDT, 150, 2, clordid="A1")
    desk.send()
    notice = desk.duplicate_of(seq, via=(GW2, BOB_S))
    notice.record["account"] = BOB
    assert desk.service.duplicate(notice) == []


def test_a_snapshot_state_with_outcomes_by_clordid_is_still_taken(desk):
    desk.add("buy", ALICE, BTC_USDT, 150, 2, clordid="A1")
    bad = desk.add("buy", ALICE, BTC_USDT, 999, 1, clordid="bad")
    desk.send()
    state = desk.service.export_state()
    # The shape of the outcomes before they were kept by seq: [account, ClOrdID, command kind, first event].
    events = np.frombuffer(state.pop("outcome_history")[0], dtype=service_module.EVENT_DTYPE)
    state.pop("unplaced")
    clordids = {int(seq): desk.envelopes[int(seq) - 1].clordid for seq in events["seq"]}
    command_kind = lambda seq: int(desk.tape.records[seq - 1]["kind"][0])  # noqa: E731
    state["outcomes"] = [[int(e["account"]), clordids[int(e["seq"])], command_kind(int(e["seq"])), e.tobytes()]
                         for e in events if clordids[int(e["seq"])]]
    restored = EngineService(desk.config)
    restored.import_state(state)
    assert restored.export_state()["unplaced"] == [[ALICE, "bad", bad]]
    assert kinds(restored.duplicate(desk.duplicate_of(bad, via=(GW1, ALICE_S)))[0]) == ["REJECTED"]
    assert restored.query({"q": "order", "account": ALICE, "clordid": "bad"})["order"]["status"] == "rejected"


# --- queries ----------------------------------------------------------------------------------------


def test_an_order_query_follows_an_order_from_new_to_filled(desk):
    sell = desk.add("sell", BOB, BTC_USDT, 150, 3, clordid="B1")
    desk.send()
    by_id = lambda: desk.query(q="order", account=BOB, order_id=sell)["order"]  # noqa: E731
    assert by_id() == {"order_id": sell, "account": BOB, "clordid": "B1", "symbol": BTC_USDT, "side": 2,
                       "order_type": 2, "tif": 1, "price": 150, "qty": 3, "filled": 0, "leaves": 3,
                       "cum_quote": 0, "status": "new", "ts": CommandTape.TS0 + sell * 1000}
    desk.add("buy", ALICE, BTC_USDT, 150, 1, clordid="A1")
    desk.send()
    assert (by_id()["status"], by_id()["filled"], by_id()["leaves"], by_id()["cum_quote"]) == (
        "partially_filled", 1, 2, notional(150, 1))
    desk.add("buy", ALICE, BTC_USDT, 150, 2, clordid="A2")
    desk.send()
    assert (by_id()["status"], by_id()["filled"], by_id()["leaves"], by_id()["cum_quote"]) == (
        "filled", 3, 0, notional(150, 3))
    assert desk.query(q="order", account=ALICE, clordid="A2")["order"]["status"] == "filled"


def test_an_order_query_tells_canceled_expired_and_rejected_orders(desk):
    desk.add("sell", BOB, BTC_USDT, 150, 1, clordid="B1")
    resting = desk.add("buy", ALICE, BTC_USDT, 140, 1, clordid="rest")
    desk.add("cancel", ALICE, resting, clordid="C1")
    desk.add("buy", ALICE, BTC_USDT, 150, 3, tif=TimeInForce.IOC, clordid="ioc")
    desk.add("buy", ALICE, BTC_USDT, 150, 3, tif=TimeInForce.FOK, clordid="fok")
    desk.add("buy", ALICE, BTC_USDT, 999, 1, clordid="bad")
    desk.send()
    status = lambda c: desk.query(q="order", account=ALICE, clordid=c)["order"]["status"]  # noqa: E731

    assert [status(c) for c in ("rest", "ioc", "fok", "bad")] == ["canceled", "expired", "expired", "rejected"]
    ioc = desk.query(q="order", account=ALICE, clordid="ioc")["order"]
    assert (ioc["filled"], ioc["leaves"], ioc["cum_quote"]) == (1, 0, notional(150, 1))
    assert desk.query(q="order", account=ALICE, clordid="C1")["found"] is False  # a cancel is no order


def test_an_order_of_another_account_is_not_found(desk):
    order = desk.add("buy", ALICE, BTC_USDT, 150, 2, clordid="A1")
    desk.send()

    assert desk.query(q="order", account=BOB, order_id=order)["found"] is False
    assert desk.query(q="order", account=BOB, clordid="A1")["found"] is False


def test_open_orders_lists_the_accounts_resting_orders_of_a_symbol_or_all(desk):
    first = desk.add("buy", ALICE, BTC_USDT, 150, 2, clordid="A1")
    second = desk.add("buy", ALICE, ETH_USDT, 200, 100, clordid="A2")
    desk.add("buy", BOB, BTC_USDT, 150, 2, clordid="B1")
    desk.send()

    assert [o["order_id"] for o in desk.query(q="open_orders", account=ALICE)["orders"]] == [first, second]
    only_btc = desk.query(q="open_orders", account=ALICE, symbol=BTC_USDT)["orders"]
    assert [(o["order_id"], o["clordid"], o["status"]) for o in only_btc] == [(first, "A1", "new")]


def test_balances_lists_every_asset_of_the_account(desk):
    desk.add("buy", ALICE, BTC_USDT, 150, 2, clordid="A1")
    desk.send()
    reserve = notional(150, 2) + notional(150, 2) * 5 // 10_000

    assert desk.query(q="balances", account=ALICE)["balances"] == [
        {"asset": BTC, "available": FUNDS, "frozen": 0},
        {"asset": USDT, "available": FUNDS - reserve, "frozen": reserve},
        {"asset": 2, "available": 0, "frozen": 0},
    ]


def test_head_is_the_last_applied_seq(desk):
    assert desk.query(q="head", id="h") == {"id": "h", "ok": True, "head": 9}
    assert desk.service.last_seq == 9


@pytest.mark.parametrize("query, error", [
    ([1, 2], "a query is a map"),
    ({"q": "launch"}, "unknown query kind"),
    ({"q": 7}, "unknown query kind"),
    ({"q": "balances"}, "account is required"),
    ({"q": "balances", "account": True}, "account must be an integer"),
    ({"q": "balances", "account": 10**6}, "unknown account"),
    ({"q": "order", "account": ALICE}, "exactly one of order_id and clordid"),
    ({"q": "order", "account": ALICE, "order_id": 1, "clordid": "x"}, "exactly one of order_id and clordid"),
    ({"q": "order", "account": ALICE, "clordid": 5}, "clordid must be a string"),
    ({"q": "open_orders", "account": ALICE, "symbol": 9}, "unknown symbol"),
    ({"q": "resend", "gateway": GW1}, "from is required"),
    ({"q": "resend", "gateway": GW1, "from": 0}, "from must be at least 1"),
])
def test_a_malformed_query_gets_a_reason(desk, query, error):
    reply = desk.service.query(query)
    assert reply["ok"] is False and error in reply["error"], reply


# --- counters and the resend window ---------------------------------------------------------------


def test_each_topic_counts_its_own_messages(desk):
    counts = []
    for price in (150, 151, 152):
        desk.add("buy", ALICE, BTC_USDT, price, 1, clordid=f"A{price}")
        if price == 152:
            desk.add("sell", BOB, BTC_USDT, 160, 1, clordid="B1")
        counts.append({m.topic: m.n for m in desk.send()})

    assert [c.get(gateway_topic(GW1)) for c in counts] == [2, 3, 4]  # 1 was the admin's set-up
    assert [c.get(gateway_topic(GW2)) for c in counts] == [None, None, 1]
    assert [c.get(market_topic(BTC_USDT)) for c in counts] == [1, 2, 3]
    assert [c.get(account_topic(ALICE)) for c in counts] == [2, 3, 4]
    assert [c.get(account_topic(BOB)) for c in counts] == [None, None, 2]


def test_a_gateway_keeps_its_last_report_messages_for_resends():
    desk = Desk(recent_reports=16)
    published = {}
    for i in range(20):
        desk.add("buy", ALICE, BTC_USDT, 150, 1, clordid=f"A{i}")
        message = on(desk.send(), gateway_topic(GW1))
        published[message.n] = message
    assert max(published) == 21

    reply = desk.query(q="resend", gateway=GW1, **{"from": 18})
    assert (reply["dropped"], reply["last"], reply["more"]) == (False, 21, False)
    assert [n for n, _, _ in reply["messages"]] == [18, 19, 20, 21]
    n, events, items = reply["messages"][0]
    assert (events, items) == (published[18].events.tobytes(), published[18].items)

    reply = desk.query(q="resend", gateway=GW1, **{"from": 1})
    assert reply["dropped"] is True and [m[0] for m in reply["messages"]] == list(range(6, 22))
    reply = desk.query(q="resend", gateway=GW1, max=2, **{"from": 10})
    assert [m[0] for m in reply["messages"]] == [10, 11] and reply["more"] is True
    assert desk.query(q="resend", gateway=GW1, **{"from": 22})["messages"] == []
    assert desk.query(q="resend", gateway=GW2, **{"from": 1}) | {"id": 0} == {
        "id": 0, "ok": True, "messages": [], "dropped": False, "last": 0, "more": False, "epoch": 0}


# --- the sequence -----------------------------------------------------------------------------------


def test_a_batch_that_does_not_continue_the_sequence_is_refused(desk):
    desk.add("buy", ALICE, BTC_USDT, 150, 1, clordid="A1")
    desk.add("buy", ALICE, BTC_USDT, 150, 1, clordid="A2")
    batch = desk.batch()

    with pytest.raises(StreamInconsistency, match="expected 10"):
        desk.service.apply(SequencedBatch(11, batch.records[1:], batch.envelopes[1:]))
    renumbered = batch.records.copy()
    renumbered["seq"][1] = 99
    with pytest.raises(StreamInconsistency, match="not numbered"):
        desk.service.apply(SequencedBatch(10, renumbered, batch.envelopes))
    with pytest.raises(StreamInconsistency, match="envelopes"):
        desk.service.apply(SequencedBatch(10, batch.records, batch.envelopes[:1]))
    assert desk.service.last_seq == 9
    assert desk.service.apply(batch) and desk.service.last_seq == 11


def test_recovery_rebuilds_the_state_without_reports_or_counting_messages():
    live, recovered = Desk(), Desk()
    for desk in (live, recovered):
        desk.add("sell", BOB, BTC_USDT, 150, 5, clordid="B1")
        desk.add("buy", ALICE, BTC_USDT, 150, 2, clordid="A1")
    live.send()
    assert recovered.service.apply(recovered.batch(), report=False) == []

    assert recovered.service.engine.state_hash() == live.service.engine.state_hash()
    for q in ({"q": "order", "account": BOB, "clordid": "B1"}, {"q": "open_orders", "account": BOB}):
        assert recovered.service.query(q) == live.service.query(q)
    recovered.add("buy", ALICE, BTC_USDT, 150, 1, clordid="A2")
    assert on(recovered.send(), gateway_topic(GW1)).n == 2  # the set-up's message was 1


def test_warm_up_changes_nothing(desk):
    before = desk.service.engine.state_hash()
    desk.service.warm_up()
    assert desk.service.engine.state_hash() == before and desk.service.last_seq == 9


def test_an_empty_batch_changes_nothing(desk):
    empty = SequencedBatch(10, np.zeros(0, dtype=COMMAND_DTYPE), [])
    assert desk.service.apply(empty) == [] and desk.service.last_seq == 9


def test_catch_up_parts_build_reports_only_for_the_journals_last_commands():
    records = np.zeros(10, dtype=COMMAND_DTYPE)
    records["seq"] = np.arange(11, 21)
    envelopes = [Envelope(seq, f"c{seq}") for seq in range(11, 21)]
    batch = SequencedBatch(11, records, envelopes, head=100)

    def shape(parts):
        return [(int(part.records["seq"][0]), int(part.records["seq"][-1]), [e.clordid for e in part.envelopes][0],
                 report) for part, report in parts]

    assert shape(service_module.catch_up_parts(batch, 100, 80)) == [(11, 20, "c11", False)]  # all before 21
    assert shape(service_module.catch_up_parts(batch, 100, 90)) == [(11, 20, "c11", True)]  # from seq 11 on
    assert shape(service_module.catch_up_parts(batch, 100, 85)) == [(11, 15, "c11", False), (16, 20, "c16", True)]
    parts = service_module.catch_up_parts(batch, 100, 85)
    assert [part.first for part, _ in parts] == [11, 16] and [part.last for part, _ in parts] == [15, 20]
    empty = SequencedBatch(21, records[:0], [], head=100)
    assert service_module.catch_up_parts(empty, 100, 0) == []


def test_a_replay_that_builds_no_reports_for_its_first_part_reaches_the_same_state(desk):
    for i in range(12):
        desk.add("buy", ALICE, BTC_USDT, 150 + i % 3, 2, clordid=f"A{i}")
        desk.add("sell", BOB, BTC_USDT, 151, 1, clordid=f"B{i}")
    desk.add("cancel", ALICE, desk.tape.last_seq - 1, clordid="A-cancel")
    desk.send()
    everything = SequencedBatch(1, np.concatenate(desk.tape.records), desk.envelopes, head=desk.tape.last_seq)

    replayed = EngineService(desk.config)
    messages = []
    for part, report in service_module.catch_up_parts(everything, everything.last, 5):
        messages.extend(replayed.apply(part, resend=True, report=report))
    assert replayed.engine.state_hash() == desk.service.engine.state_hash()
    for query in ({"q": "order", "account": ALICE, "clordid": "A0"}, {"q": "history", "account": BOB},
                  {"q": "balances", "account": ALICE}):
        assert replayed.query(query) == desk.service.query(query)
    reported = sorted({int(seq) for message in messages for seq in message.events["seq"]})
    assert reported and reported[0] > everything.last - 5


def test_pretouch_changes_nothing(desk):
    before = (desk.service.engine.state_hash(), desk.service.tracked())
    desk.service.pretouch()
    assert (desk.service.engine.state_hash(), desk.service.tracked()) == before
    desk.add("buy", ALICE, BTC_USDT, 150, 1, clordid="after-pretouch")
    assert on(desk.send(), gateway_topic(GW1)).n >= 1
