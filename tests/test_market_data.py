"""Market data end to end: the real exchange under supervisord (sequencer, engine, gateway, quotation,
pusher), FIX clients trading, real WebSocket clients (client/market.py) watching.

- a client that rebuilt the book from the snapshot and the diffs holds exactly the engine's book;
- bars and the ticker equal a recomputation from every trade;
- private channels need authentication and never show one account another's data;
- quotation or the pusher restarted mid-stream: clients resync with no gap and no double count.
"""

from __future__ import annotations

import os
import random
import signal
import time
from decimal import Decimal

import msgpack
import pytest
import zmq

from client.market import DepthBook, MarketStream, StreamError
from client.sync import Client
from common.market import INTERVALS
from tests.harness import Exchange, poll

TIMEOUT = 20.0
SYMBOL = "BTC-USDT"


@pytest.fixture(scope="module")
def exchange():
    with Exchange() as running:
        yield running





class Trader:
    def __init__(self, exchange):
        account = exchange.open_account({"USDT": "10000000", "BTC": "100", "ETH": "1000"})
        self.account, self.key_id, self.secret = account.account, account.key_id, account.secret
        self.client = Client(exchange.fix_endpoint(), account.key_id, account.secret, timeout=TIMEOUT)
        self.client.logon()
        self.clordids: list[str] = []

    def close(self) -> None:
        self.client.close()


@pytest.fixture(scope="module")
def traders(exchange):
    made = [Trader(exchange) for _ in range(3)]
    yield made
    for trader in made:
        trader.close()


def query(endpoint: str, request: dict) -> dict:
    """One query to a ROUTER of the exchange (the engine's or quotation's), as their own peers ask."""
    context = zmq.Context.instance()
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    try:
        sock.send(msgpack.packb({"id": 1, **request}, use_bin_type=True))
        if not sock.poll(int(TIMEOUT * 1000)):
            raise TimeoutError(f"no answer to {request}")
        reply = msgpack.unpackb(sock.recv(), raw=False)
    finally:
        sock.close()
    assert reply["ok"], reply
    return reply


def engine_book(exchange) -> tuple[dict, dict]:
    """The engine's BTC-USDT book as decimal strings."""
    symbol = next(s for s in exchange_config(exchange).symbols if s.name == SYMBOL)
    reply = query(exchange.document["engine"]["queries"], {"q": "depth", "symbol": symbol.id})
    as_text = lambda levels: {symbol.tick.format(p): symbol.lot.format(q) for p, q in levels}  # noqa: E731
    return as_text(reply["bids"]), as_text(reply["asks"])


def exchange_config(exchange):
    from common.config import load_config
    return load_config(exchange.config_path)


def quotation(exchange, **request) -> dict:
    return query(exchange.document["quotation"]["queries"], request)


def trade_randomly(traders: list[Trader], rnd: random.Random, count: int) -> None:
    """Limit orders around 30000, some cancels, some market orders; every one acknowledged."""
    for i in range(count):
        trader = rnd.choice(traders)
        roll = rnd.random()
        if roll < 0.15 and trader.clordids:
            clordid = trader.client.cancel(trader.clordids.pop(rnd.randrange(len(trader.clordids))))
        elif roll < 0.25:
            clordid = trader.client.market_sell(SYMBOL, f"0.00{rnd.randint(1, 5)}")
        else:
            price = f"{30000 + rnd.randint(-20, 20)}.{rnd.randint(0, 9)}"
            qty = f"0.00{rnd.randint(1, 9)}"
            side = trader.client.buy if rnd.random() < 0.5 else trader.client.sell
            clordid = side(SYMBOL, qty, price)
            trader.clordids.append(clordid)
        trader.client.first_report(clordid)


def watch(stream: MarketStream, book: DepthBook, trades: list[dict], until, timeout: float = TIMEOUT) -> None:
    """Read the stream into the book and the trades until ``until()`` holds."""
    deadline = time.monotonic() + timeout
    while not until():
        if time.monotonic() > deadline:
            raise TimeoutError("the stream did not reach the expected state")
        try:
            message = stream.recv(timeout=0.2)
        except TimeoutError:
            continue
        if message.get("channel") == f"depth.{SYMBOL}":
            book.apply(message)
        elif message.get("channel") == f"trades.{SYMBOL}":
            trades.extend(message["data"]["trades"])


def assert_contiguous(trades: list[dict], first_id: int = 1) -> None:
    ids = [t["id"] for t in trades]
    assert ids == list(range(first_id, first_id + len(ids))), "trade ids with a gap or a repeat"


def test_a_client_rebuilds_the_engines_book_from_the_snapshot_and_the_diffs(exchange, traders):
    rnd = random.Random(5)
    with MarketStream(exchange.pusher_url) as stream:
        stream.subscribe(f"depth.{SYMBOL}")
        stream.subscribe(f"trades.{SYMBOL}")
        book, trades = DepthBook(), []
        trade_randomly(traders, rnd, 150)
        watch(stream, book, trades, lambda: (book.bids, book.asks) == engine_book(exchange))
    assert trades, "the workload traded"
    assert_contiguous(trades, trades[0]["id"])


def test_bars_and_the_ticker_equal_a_recomputation_from_the_trades(exchange, traders):
    trade_randomly(traders, random.Random(6), 60)
    with MarketStream(exchange.pusher_url) as stream:
        stream.subscribe(f"trades.{SYMBOL}", from_id=0)  # every trade since the start
        trades: list[dict] = []
        last_id = lambda: quotation(exchange, q="trades", symbol=SYMBOL, limit=1)["last_id"]  # noqa: E731
        watch(stream, DepthBook(), trades, lambda: trades and trades[-1]["id"] == last_id())
    assert_contiguous(trades)
    now = int(time.time() * 1000)
    for interval, length in INTERVALS[1:]:  # (1s bars: the same code, and too many for one reply)
        reply = quotation(exchange, q="bars", symbol=SYMBOL, interval=interval, start=trades[0]["time"], end=now)
        bars = {b["open_time"]: b for b in reply["bars"] if b["trades"]}
        expected: dict[int, list[dict]] = {}
        for t in trades:
            expected.setdefault(t["time"] - t["time"] % length, []).append(t)
        assert set(bars) == set(expected), interval
        for open_time, group in expected.items():
            bar = bars[open_time]
            prices = [Decimal(t["price"]) for t in group]
            assert Decimal(bar["open"]) == prices[0] and Decimal(bar["close"]) == prices[-1]
            assert Decimal(bar["high"]) == max(prices) and Decimal(bar["low"]) == min(prices)
            assert Decimal(bar["volume"]) == sum(Decimal(t["qty"]) for t in group)
            assert Decimal(bar["quote_volume"]) == sum(Decimal(t["quote_qty"]) for t in group)
            assert bar["trades"] == len(group)
    ticker = quotation(exchange, q="ticker", symbol=SYMBOL)["ticker"]
    window = [t for t in trades if t["time"] >= ticker["open_time"]]
    assert ticker["trades"] == len(window) and ticker["last"] == trades[-1]["price"]
    assert Decimal(ticker["volume"]) == sum(Decimal(t["qty"]) for t in window)
    assert Decimal(ticker["high"]) == max(Decimal(t["price"]) for t in window)


def test_private_channels_need_auth_and_show_each_account_only_its_own(exchange, traders):
    alice, bob = traders[0], traders[1]
    with MarketStream(exchange.pusher_url) as anonymous:
        with pytest.raises(StreamError, match="authenticate first"):
            anonymous.subscribe("orders")
        with pytest.raises(StreamError, match="bad signature"):
            anonymous.request("auth", key=alice.key_id, ts=int(time.time() * 1000), sig="00" * 32)
        with pytest.raises(StreamError, match="unknown op"):
            anonymous.request("dance")
    with MarketStream(exchange.pusher_url) as alice_stream, MarketStream(exchange.pusher_url) as bob_stream:
        assert alice_stream.auth(alice.key_id, alice.secret)["account"] == alice.account
        bob_stream.auth(bob.key_id, bob.secret)
        for stream in (alice_stream, bob_stream):
            for channel in ("orders", "fills", "balances"):
                stream.subscribe(channel)
        seen = {"alice": [], "bob": []}

        def snapshots(stream, into) -> bool:
            while True:
                try:
                    into.append(stream.recv(timeout=0.1))
                except TimeoutError:
                    return {m.get("type") for m in into if m.get("channel") in ("orders", "balances")} == {"snapshot"}

        poll(lambda: snapshots(alice_stream, seen["alice"]), timeout=TIMEOUT, what="alice's snapshots")
        poll(lambda: snapshots(bob_stream, seen["bob"]), timeout=TIMEOUT, what="bob's snapshots")
        ask = bob.client.sell("ETH-USDT", "0.01", "2000")  # a market nobody else trades here
        bob.client.first_report(ask)
        take = alice.client.buy("ETH-USDT", "0.01", "2100")
        alice.client.first_report(take)

        def fill_of(stream, into, clordid) -> bool:
            try:
                into.append(stream.recv(timeout=0.1))
            except TimeoutError:
                pass
            return any(m.get("channel") == "fills" and any(f["clordid"] == clordid for f in m["data"]) for m in into)

        poll(lambda: fill_of(alice_stream, seen["alice"], take), timeout=TIMEOUT, what="alice's fill")
        poll(lambda: fill_of(bob_stream, seen["bob"], ask), timeout=TIMEOUT, what="bob's fill")

        def balance_update(stream, into) -> bool:
            fill_of(stream, into, "")
            return any(m.get("channel") == "balances" and m["type"] == "update" for m in into)

        poll(lambda: balance_update(alice_stream, seen["alice"]), timeout=TIMEOUT, what="alice's balances")
    alice_text, bob_text = str(seen["alice"]), str(seen["bob"])
    assert ask not in alice_text and take not in bob_text
    alice_fill = next(f for m in seen["alice"] if m.get("channel") == "fills" for f in m["data"] if f["clordid"] == take)
    assert alice_fill["liquidity"] == "taker" and alice_fill["side"] == "buy"
    assert alice_fill["price"] == "2000" and alice_fill["qty"] == "0.01" and alice_fill["fee_asset"] == "USDT"
    bob_order = [u for m in seen["bob"] if m.get("channel") == "orders" and m["type"] == "update" for u in m["data"]]
    assert [u["status"] for u in bob_order if u["clordid"] == ask] == ["new", "filled"]


@pytest.mark.parametrize("program", ["quotation", "pusher"])
def test_a_restart_mid_stream_leaves_no_gap_and_no_double_count(exchange, traders, program):
    rnd = random.Random(7 if program == "quotation" else 8)
    stream = MarketStream(exchange.pusher_url)
    try:
        stream.subscribe(f"depth.{SYMBOL}")
        last = quotation(exchange, q="trades", symbol=SYMBOL, limit=1)["last_id"]
        stream.subscribe(f"trades.{SYMBOL}", from_id=last)
        book, trades = DepthBook(), []
        trade_randomly(traders, rnd, 40)
        before = exchange.program_pid(program)
        os.kill(before, signal.SIGKILL)
        trade_randomly(traders, rnd, 40)  # while it is down or starting again
        poll(lambda: exchange.restarted(program, before), timeout=60, what=f"{program} restarted")
        if program == "pusher":  # the connection is gone: connect again, resubscribe from the last trade seen
            watch_until_closed(stream, book, trades)
            stream.close()
            stream = MarketStream(exchange.pusher_url, open_timeout=30)
            stream.subscribe(f"trades.{SYMBOL}", from_id=trades[-1]["id"] if trades else last)
            stream.subscribe(f"depth.{SYMBOL}")
        trade_randomly(traders, rnd, 40)
        final = lambda: quotation(exchange, q="trades", symbol=SYMBOL, limit=1)["last_id"]  # noqa: E731
        watch(stream, book, trades, lambda: trades and trades[-1]["id"] == final()
              and (book.bids, book.asks) == engine_book(exchange), timeout=60)
    finally:
        stream.close()
    assert_contiguous(trades, last + 1)


def watch_until_closed(stream: MarketStream, book: DepthBook, trades: list[dict]) -> None:
    """What the connection delivered before the pusher died."""
    try:
        watch(stream, book, trades, lambda: False, timeout=TIMEOUT)
    except Exception:  # the connection closed (or stayed silent): that is the point
        return
