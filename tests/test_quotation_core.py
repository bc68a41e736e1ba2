"""Quotation's core and store, fed with the market messages of a real EngineService (no sockets): the book
a client rebuilds from a snapshot and diffs, bars and tickers against a recomputation from the trades,
idempotence under replays, gaps filled from the engine's kept messages or from its depth, restarts from
the LMDB store.

Configuration: tests/builders.py (BTC-USDT 100..200 USDT, 1 USDT ticks, 0.001 BTC lots).
"""

from __future__ import annotations

import random
import numpy as np
import pytest

from common.intake import Envelope
from common.market import INTERVALS, depth_channel, kline_channel, trades_channel
from common.reports import market_topic
from common.stream import SequencedBatch
from engine.service import EngineService
from quotation import queries
from quotation.core import Bar, QuotationCore, fill_flat
from quotation.store import QuotationStore
from tests.builders import BTC, BTC_USDT, USDT, CommandTape, make_config

T0_MS = 1_700_000_000_000  # a multiple of a day: 2023-11-14 22:13:20 UTC is not; bars are aligned anyway
ACCOUNTS = range(1, 7)


class Market:
    """An engine service and a tape of commands whose timestamps the test sets; ``step()`` applies what was
    added and returns the market messages of BTC-USDT."""

    def __init__(self, seed: int = 1):
        self.config = make_config(max_open_orders=4096, max_accounts=16)
        self.service = EngineService(self.config)
        self.tape = CommandTape()
        self.sent = 0
        self.now_ms = T0_MS
        self.random = random.Random(seed)
        for account in ACCOUNTS:
            self.tape.create_account(account)
            self.tape.deposit(account, BTC, 10**12)
            self.tape.deposit(account, USDT, 10**14)
        self.step()

    def step(self) -> list:
        first = self.sent + 1
        records = np.concatenate(self.tape.records[first - 1:])
        records["ts"] = self.now_ms * 1_000_000
        self.sent = self.tape.last_seq
        batch = SequencedBatch(first, records, [Envelope(0, "")] * len(records))
        return [m for m in self.service.apply(batch) if m.topic == market_topic(BTC_USDT)]

    def random_commands(self, count: int) -> None:
        rnd = self.random
        for _ in range(count):
            account = rnd.choice(ACCOUNTS)
            roll = rnd.random()
            open_orders = self.service.engine.open_orders(account)
            if roll < 0.15 and open_orders:
                self.tape.cancel(account, rnd.choice(open_orders)["order_id"])
            elif roll < 0.25 and open_orders:
                order = rnd.choice(open_orders)
                self.tape.replace(account, order["order_id"], rnd.randint(140, 160), rnd.randint(1, 5))
            elif roll < 0.35:
                self.tape.market_sell(account, BTC_USDT, qty=rnd.randint(1, 4))
            else:
                side = rnd.choice((self.tape.buy, self.tape.sell))
                side(account, BTC_USDT, rnd.randint(140, 160), rnd.randint(1, 5))

    def engine_book(self) -> tuple[dict, dict]:
        bids, asks = self.service.engine.depth(BTC_USDT, 10_000)
        return {p: q for p, q, _ in bids}, {p: q for p, q, _ in asks}


class BookClient:
    """A client rebuilding the book by the diff-depth rule: drop diffs with u <= lastUpdateId; the first
    kept one has U <= lastUpdateId + 1 <= u; each next one starts at the previous u + 1."""

    def __init__(self, snapshot: dict):
        self.last = snapshot["lastUpdateId"]
        self.bids = {p: q for p, q in snapshot["bids"]}
        self.asks = {p: q for p, q in snapshot["asks"]}
        self.first = True

    def apply(self, diff: dict) -> None:
        if diff["u"] <= self.last:
            return
        if self.first:
            assert diff["U"] <= self.last + 1 <= diff["u"], (diff["U"], diff["u"], self.last)
            self.first = False
        else:
            assert diff["U"] == self.last + 1, (diff["U"], self.last)
        for side, levels in ((self.bids, diff["bids"]), (self.asks, diff["asks"])):
            for price, qty in levels:
                if qty == "0":
                    side.pop(price, None)
                else:
                    side[price] = qty
        self.last = diff["u"]


def as_text(market: Market, book: dict) -> dict:
    symbol = market.config.symbols[BTC_USDT]
    return {symbol.tick.format(p): symbol.lot.format(q) for p, q in book.items()}


def published(core: QuotationCore) -> list[tuple[str, dict]]:
    out, _ = core.take_output()
    return out


def test_a_client_rebuilds_the_engines_book_from_a_snapshot_taken_midway_and_the_diffs():
    market = Market()
    core = QuotationCore(market.config)
    client = None
    for step in range(60):
        market.random_commands(8)
        for message in market.step():
            assert core.on_market(message) is None
        for channel, body in published(core):
            if channel == depth_channel("BTC-USDT") and client is not None:
                client.apply(body)
        if step == 20:
            client = BookClient(core.depth(BTC_USDT))
    bids, asks = market.engine_book()
    assert client.bids == as_text(market, bids) and client.asks == as_text(market, asks)
    assert core.depth(BTC_USDT)["lastUpdateId"] == core.position(BTC_USDT)


def recompute_bars(trades: list[dict], length: int) -> dict[int, tuple]:
    bars: dict[int, list] = {}
    for t in trades:
        open_time = t["time"] - t["time"] % length
        bar = bars.get(open_time)
        price = t["price"]
        if bar is None:
            bars[open_time] = [price, price, price, price, t["qty"], t["quote_qty"], 1]
        else:
            bar[1] = max(bar[1], price, key=float)
            bar[2] = min(bar[2], price, key=float)
            bar[3] = price
            bar[4] = str(round(float(bar[4]) + float(t["qty"]), 8))
            bar[5] = str(round(float(bar[5]) + float(t["quote_qty"]), 8))
            bar[6] += 1
    return bars


def test_bars_tickers_and_trade_numbers_equal_a_recomputation_from_the_trades(tmp_path):
    market = Market(seed=2)
    core = QuotationCore(market.config)
    store = QuotationStore(tmp_path, map_bytes=1 << 24, recent_trades=100_000, second_bars_kept_ms=10**12)
    trades: list[dict] = []
    for step in range(120):
        market.now_ms += market.random.choice((0, 300, 2_000, 45_000, 700_000))
        market.random_commands(6)
        for message in market.step():
            core.on_market(message)
        out, changes = core.take_output()
        store.commit(changes, {s: core.saved(s) for s in changes.symbols}, market.now_ms)
        for channel, body in out:
            if channel == trades_channel("BTC-USDT"):
                trades.extend(body["trades"])
    assert len(trades) > 100
    assert [t["id"] for t in trades] == list(range(1, len(trades) + 1))
    now = market.now_ms
    assert queries.answer(core, store, {"q": "trades", "symbol": "BTC-USDT", "limit": 1000}, now)["trades"] == (
        trades[-1000:])
    for interval, length in INTERVALS:
        expected = recompute_bars(trades, length)
        reply = queries.answer(core, store, {"q": "bars", "symbol": "BTC-USDT", "interval": interval,
                                             "start": T0_MS - T0_MS % length, "end": now, "limit": 1000}, now)
        assert reply["ok"], reply
        got = {b["open_time"]: b for b in reply["bars"] if b["trades"]}
        if len(reply["bars"]) < 1000:  # the whole range fitted: every bar with trades is there
            assert set(got) == set(expected), interval
        for open_time, bar in got.items():
            want = expected[open_time]
            assert (bar["open"], bar["high"], bar["low"], bar["close"], bar["trades"]) == (
                want[0], want[1], want[2], want[3], want[6]), (interval, open_time)
            assert float(bar["volume"]) == pytest.approx(float(want[4]))
            assert float(bar["quote_volume"]) == pytest.approx(float(want[5]))
        flats = [b for b in reply["bars"] if not b["trades"]]
        assert all(b["open"] == b["close"] == b["high"] == b["low"] and b["volume"] == "0" for b in flats)

    ticker = core.ticker(BTC_USDT)
    window = [t for t in trades if t["time"] >= ticker["open_time"]]
    assert ticker["trades"] == len(window)
    assert ticker["last"] == trades[-1]["price"] and ticker["open"] == window[0]["price"]
    assert ticker["high"] == max((t["price"] for t in window), key=float)
    assert ticker["low"] == min((t["price"] for t in window), key=float)
    assert float(ticker["volume"]) == pytest.approx(sum(float(t["qty"]) for t in window))
    assert ticker["open_time"] == now - now % 60_000 - 86_400_000 + 60_000
    store.close()


def test_replayed_messages_change_nothing_and_a_message_spanning_old_and_new_counts_only_the_new():
    market = Market(seed=3)
    core = QuotationCore(market.config)
    history = []
    for _ in range(30):
        market.random_commands(5)
        history.extend(market.step())
    for message in history:
        core.on_market(message)
    out = published(core)
    count = sum(len(body["trades"]) for channel, body in out if channel == trades_channel("BTC-USDT"))
    for message in history:  # the engine restarted and published them again
        assert core.on_market(message) is None
    assert published(core) == []
    assert core.symbols[BTC_USDT].trade_id == count


def test_a_gap_is_reported_and_filled_from_the_engines_kept_messages():
    market = Market(seed=4)
    core = QuotationCore(market.config)
    messages = []
    for _ in range(20):
        market.random_commands(5)
        messages.extend(market.step())
    for message in messages[:5]:
        core.on_market(message)
    gap = core.on_market(messages[-1])
    assert gap is not None and gap.after == messages[4].seq
    reply = market.service.query({"q": "market", "symbol": BTC_USDT, "after": gap.after})
    assert reply["complete"]
    core.catch_up(BTC_USDT, reply["messages"], complete=True)
    assert core.position(BTC_USDT) == messages[-1].seq
    bids, asks = market.engine_book()
    assert core.depth(BTC_USDT)["bids"] == [[f"{p}", market.config.symbols[0].lot.format(q)]
                                            for p, q in sorted(bids.items(), reverse=True)]


def test_a_gap_the_engine_no_longer_keeps_resynchronises_the_book_and_says_so(caplog):
    market = Market(seed=5)
    core = QuotationCore(market.config)
    market.random_commands(5)
    for message in market.step():
        core.on_market(message)
    client = BookClient(core.depth(BTC_USDT))
    published(core)
    for _ in range(5):  # missed by quotation, and then no longer kept by the engine
        market.random_commands(5)
        market.step()
    market.service._market_recent.clear()
    for _ in range(10):
        market.random_commands(5)
        market.step()
    reply = market.service.query({"q": "market", "symbol": BTC_USDT, "after": core.position(BTC_USDT)})
    assert not reply["complete"]
    depth = market.service.query({"q": "depth", "symbol": BTC_USDT})
    core.catch_up(BTC_USDT, reply["messages"], complete=False, depth=(depth["bids"], depth["asks"], depth["seq"]))
    assert "not counted" in caplog.text and core.lost_trades_ranges == 1
    for channel, body in published(core):
        if channel == depth_channel("BTC-USDT"):
            client.apply(body)  # the resynchronisation reaches clients as one ordinary diff
    bids, asks = market.engine_book()
    assert client.bids == as_text(market, bids) and client.asks == as_text(market, asks)
    assert core.position(BTC_USDT) == depth["seq"]


def test_a_restart_from_the_store_resumes_where_the_last_commit_stood(tmp_path):
    market = Market(seed=6)
    config = market.config
    store = QuotationStore(tmp_path, map_bytes=1 << 24, recent_trades=1_000, second_bars_kept_ms=10**12)
    core = QuotationCore(config)
    messages = []
    for _ in range(40):
        market.now_ms += 20_000
        market.random_commands(5)
        messages.extend(market.step())
    for message in messages[:25]:
        core.on_market(message)
    _, changes = core.take_output()
    store.commit(changes, {s: core.saved(s) for s in changes.symbols}, market.now_ms)
    store.close()

    store = QuotationStore(tmp_path, map_bytes=1 << 24, recent_trades=1_000, second_bars_kept_ms=10**12)
    restarted = QuotationCore(config)
    restarted.restore(store.load(len(config.symbols)))
    for message in messages:  # the engine's catch-up repeats some; the rest is new
        assert restarted.on_market(message) is None
    straight = QuotationCore(config)
    for message in messages:
        straight.on_market(message)
    assert restarted.depth(BTC_USDT) == straight.depth(BTC_USDT)
    assert restarted.ticker(BTC_USDT) == straight.ticker(BTC_USDT)
    assert restarted.symbols[BTC_USDT].trade_id == straight.symbols[BTC_USDT].trade_id
    assert [b.row() if b else None for b in restarted.symbols[BTC_USDT].bars] == [
        b.row() if b else None for b in straight.symbols[BTC_USDT].bars]
    store.close()


def test_bars_close_on_the_tick_and_a_flat_bar_follows_at_the_close():
    market = Market(seed=7)
    core = QuotationCore(market.config)
    market.tape.sell(1, BTC_USDT, 150, 1)
    market.tape.buy(2, BTC_USDT, 150, 1)
    for message in market.step():
        core.on_market(message)
    published(core)
    core.on_tick(market.now_ms + 1_000)
    bars = [body for channel, body in published(core) if channel == kline_channel("1s", "BTC-USDT")]
    assert [(b["closed"], b["trades"], b["close"]) for b in bars] == [(True, 1, "150"), (False, 0, "150")]


def test_trades_of_one_message_on_both_sides_of_a_bar_boundary_each_count_in_their_own_bar():
    """The engine merges consecutive batches into one message: its trades may carry two timestamps."""
    market = Market(seed=11)
    core = QuotationCore(market.config)
    for price, qty in ((150, 1), (152, 2), (149, 1)):
        market.tape.sell(1, BTC_USDT, price, qty)
        market.tape.buy(2, BTC_USDT, price, qty)
    first = market.sent + 1
    records = np.concatenate(market.tape.records[first - 1:])
    minute = T0_MS - T0_MS % 60_000 + 60_000
    records["ts"] = np.array([minute - 1] * 4 + [minute] * 2) * 1_000_000  # the last trade in the next minute
    market.sent = market.tape.last_seq
    for message in market.service.apply(SequencedBatch(first, records, [Envelope(0, "")] * len(records))):
        if message.topic == market_topic(BTC_USDT):
            core.on_market(message)
    bars = {b["open_time"]: b for channel, b in published(core) if channel == kline_channel("1m", "BTC-USDT")}
    before, after = bars[minute - 60_000], bars[minute]
    assert (before["open"], before["high"], before["low"], before["close"], before["trades"], before["volume"]) == (
        "150", "152", "150", "152", 2, "0.003")
    assert before["closed"] and not after["closed"]
    assert (after["open"], after["high"], after["low"], after["close"], after["trades"], after["volume"]) == (
        "149", "149", "149", "149", 1, "0.001")

def test_flat_bars_fill_the_intervals_without_trades():
    bars = [Bar(0, 5, 6, 4, 6, 1, 5, 1), Bar(3_000, 7, 7, 7, 7, 1, 7, 1)]
    filled = fill_flat(bars, 1_000, start=0, end=4_000, before=None)
    assert [(b.open_time, b.open, b.close, b.trades) for b in filled] == [
        (0, 5, 6, 1), (1_000, 6, 6, 0), (2_000, 6, 6, 0), (3_000, 7, 7, 1), (4_000, 7, 7, 0)]
    assert fill_flat([], 1_000, start=5_000, end=6_500, before=bars[1])[0].close == 7
    assert fill_flat([], 1_000, start=5_000, end=6_500, before=None) == []


def test_queries_refuse_bad_input_with_a_reason(tmp_path):
    config = make_config()
    core = QuotationCore(config)
    store = QuotationStore(tmp_path, map_bytes=1 << 20, recent_trades=100, second_bars_kept_ms=60_000)
    for query, reason in [
        ({"q": "bars", "symbol": "NOPE", "interval": "1m"}, "unknown symbol"),
        ({"q": "bars", "symbol": "BTC-USDT", "interval": "2m"}, "interval must be one of"),
        ({"q": "bars", "symbol": "BTC-USDT", "interval": "1m", "limit": 0}, "limit must be between"),
        ({"q": "bars", "symbol": "BTC-USDT", "interval": "1m", "start": 10, "end": 5}, "start is after end"),
        ({"q": "trades", "symbol": "BTC-USDT", "after_id": "x"}, "after_id must be an integer"),
        ({"q": "trades", "symbol": "BTC-USDT", "after_id": -1}, "after_id must be at least 0"),
        ({"q": "what"}, "unknown query kind"),
        ({"symbol": 3}, "unknown query kind"),
    ]:
        reply = queries.answer(core, store, query, T0_MS)
        assert reply["ok"] is False and reason in reply["error"], (query, reply)
    assert queries.answer(core, store, ["not", "a", "map"], T0_MS)["ok"] is False
    early = queries.answer(core, store, {"q": "bars", "symbol": "BTC-USDT", "interval": "1m", "end": 0}, T0_MS)
    assert early["ok"] and early["bars"] == []  # nothing before the epoch, and no failure either
    assert queries.answer(core, store, {"q": "ticker", "symbol": "BTC-USDT"}, T0_MS) == {
        "id": None, "ticker": None, "ok": True}
    store.close()
