"""The pusher's core driven without sockets: client requests, quotation publications and replies, engine
account messages in; actions out. A real credential store in a temporary directory."""

from __future__ import annotations

import json
import time

import msgpack
import numpy as np
import pytest

from common.config import default_document, parse_config
from common.credentials import CredentialStore
from common.market import MarketError, decode_publication_body, decode_publications, encode_publications
from common.protocol import secret_bytes, sign_stream_auth
from common.records import EVENT_DTYPE, EventKind, Side
from common.reports import ReportMessage, account_topic
from pusher.core import AskEngine, AskQuotation, Broadcast, Listen, PusherCore, Send

NOW_MS = 1_800_000_000_000
EPOCH = 77


class Rig:
    def __init__(self, tmp_path):
        document = default_document()
        document["paths"]["data_dir"] = str(tmp_path)
        document["pusher"].update(max_subscriptions=4, auth_window_ms=5_000)
        self.config = parse_config(document)
        self.store = CredentialStore.open(self.config)
        self.now = NOW_MS
        self.core = PusherCore(self.config, self.store, clock_ms=lambda: self.now)
        self.n: dict[str, int] = {}

    def close(self) -> None:
        self.store.close()

    def connect(self, conn: int) -> int:
        self.core.connect(conn)
        return conn

    def request(self, conn: int, **request) -> list:
        return self.core.on_client_text(conn, json.dumps(request))

    def publish(self, channel: str, body: dict, *, epoch: int = EPOCH) -> list:
        self.n[channel] = self.n.get(channel, 0) + 1
        return self.core.on_publication(channel, self.n[channel], epoch, body)

    def reply(self, ask, **fields) -> list:
        return self.core.on_quotation_reply({"id": ask.query["id"], "ok": True, "epoch": EPOCH, **fields})

    def trader(self) -> tuple[int, str, str]:
        account = self.store.allocate_account()
        key_id, secret = self.store.create_key(account)
        return account, key_id, secret

    def auth(self, conn: int, key_id: str, secret: str, ts: int | None = None) -> list:
        ts = self.now if ts is None else ts
        return self.request(conn, op="auth", key=key_id, ts=ts, sig=sign_stream_auth(secret_bytes(secret), ts, key_id))


@pytest.fixture
def rig(tmp_path):
    made = Rig(tmp_path)
    yield made
    made.close()


def texts(actions: list, conn: int | None = None) -> list[dict]:
    out = []
    for action in actions:
        if isinstance(action, Send) and (conn is None or action.conn == conn):
            out.append(json.loads(action.text))
        elif isinstance(action, Broadcast) and (conn is None or conn in action.conns):
            out.append(json.loads(action.text))
    return out


def only(actions: list, kind):
    [action] = [a for a in actions if isinstance(a, kind)]
    return action


def test_bad_requests_get_an_error_with_a_reason_and_never_break_the_connection(rig):
    conn = rig.connect(1)
    cases = [
        ("not json", "not JSON"),
        ("[1, 2]", "a request is a JSON object"),
        (json.dumps({"op": "fly"}), "unknown op"),
        (json.dumps({"op": "subscribe"}), "subscribe needs a channel"),
        (json.dumps({"op": "subscribe", "channel": "trades.NOPE"}), "unknown symbol"),
        (json.dumps({"op": "subscribe", "channel": "kline.2m.BTC-USDT"}), "no public channel"),
        (json.dumps({"op": "subscribe", "channel": "depth.BTC-USDT", "from_id": 3}), "for trades channels only"),
        (json.dumps({"op": "subscribe", "channel": "trades.BTC-USDT", "from_id": -1}), "non-negative"),
        (json.dumps({"op": "unsubscribe", "channel": "ticker.BTC-USDT"}), "not subscribed"),
        (json.dumps({"op": "subscribe", "channel": "balances"}), "authenticate first"),
        ("x" * 5000, "at most"),
    ]
    for text, reason in cases:
        [answer] = texts(rig.core.on_client_text(conn, text))
        assert answer["event"] == "error" and reason in answer["reason"], (text[:40], answer)
    [answer] = texts(rig.core.on_client_text(conn, b"\x00binary"))
    assert "JSON text" in answer["reason"]
    [pong] = texts(rig.request(conn, op="ping", id=9))
    assert pong == {"event": "pong", "time": NOW_MS, "id": 9}


def test_subscriptions_per_connection_are_bounded(rig):
    conn = rig.connect(1)
    for channel in ("ticker.BTC-USDT", "ticker.ETH-USDT", "kline.1m.BTC-USDT", "kline.1h.BTC-USDT"):
        assert texts(rig.request(conn, op="subscribe", channel=channel))[0]["event"] == "subscribed"
    [refused] = texts(rig.request(conn, op="subscribe", channel="ticker.ETH-BTC"))
    assert "at most 4 subscriptions" in refused["reason"]


def test_a_depth_subscriber_gets_the_book_then_every_diff_and_a_gap_is_healed_as_one_diff(rig):
    conn = rig.connect(1)
    actions = rig.request(conn, op="subscribe", channel="depth.BTC-USDT")
    ask = only(actions, AskQuotation)
    assert ask.query["q"] == "depth"
    # a diff that arrives before the snapshot is held, and applied after it if it is newer
    assert rig.publish("depth.BTC-USDT", {"U": 11, "u": 12, "bids": [["100", "2"]], "asks": []}) == []
    out = texts(rig.reply(ask, lastUpdateId=10, bids=[["100", "1"], ["99", "5"]], asks=[["101", "3"]]), conn)
    assert out[0]["type"] == "snapshot" and out[0]["data"]["lastUpdateId"] == 12
    assert out[0]["data"]["bids"] == [["100", "2"], ["99", "5"]]

    [update] = texts(rig.publish("depth.BTC-USDT", {"U": 13, "u": 15, "bids": [["99", "0"]], "asks": []}), conn)
    assert update["type"] == "update" and update["data"]["U"] == 13

    # quotation's diffs 16..19 were lost: the next one starts at 20. The pusher asks for a snapshot and
    # sends subscribers the difference as one diff that follows on.
    actions = rig.publish("depth.BTC-USDT", {"U": 20, "u": 21, "bids": [], "asks": [["102", "1"]]})
    resync = only(actions, AskQuotation)
    out = texts(rig.reply(resync, lastUpdateId=19, bids=[["100", "2"], ["98", "4"]], asks=[["101", "3"]]), conn)
    assert [m["data"]["U"] for m in out] == [16, 20]
    assert sorted(out[0]["data"]["bids"]) == [["98", "4"]] and out[0]["data"]["u"] == 19
    assert out[1]["data"]["asks"] == [["102", "1"]]


def test_a_restarted_quotation_that_went_back_makes_subscribers_start_again_from_a_snapshot(rig):
    conn = rig.connect(1)
    ask = only(rig.request(conn, op="subscribe", channel="depth.BTC-USDT"), AskQuotation)
    rig.reply(ask, lastUpdateId=50, bids=[["100", "1"]], asks=[])
    resync = only(rig.publish("depth.BTC-USDT", {"U": 3, "u": 4, "bids": [], "asks": []}, epoch=EPOCH + 1),
                  AskQuotation)
    out = texts(rig.core.on_quotation_reply({"id": resync.query["id"], "ok": True, "epoch": EPOCH + 1,
                                             "lastUpdateId": 4, "bids": [["100", "1"]], "asks": []}), conn)
    assert [m["type"] for m in out] == ["snapshot"] and out[0]["data"]["lastUpdateId"] == 4


def trades(*ids: int) -> dict:
    return {"trades": [{"id": i, "seq": i, "time": NOW_MS, "price": "100", "qty": "1", "quote_qty": "100",
                        "side": "buy"} for i in ids]}


def test_trades_with_a_jump_in_ids_are_held_until_the_missing_ones_are_fetched(rig):
    conn = rig.connect(1)
    rig.request(conn, op="subscribe", channel="trades.BTC-USDT")
    assert [t["id"] for m in texts(rig.publish("trades.BTC-USDT", trades(1, 2)), conn) for t in m["data"]["trades"]] \
        == [1, 2]
    fetch = only(rig.publish("trades.BTC-USDT", trades(5, 6)), AskQuotation)
    assert fetch.query["after_id"] == 2
    assert rig.publish("trades.BTC-USDT", trades(7)) == []  # held behind the fetch
    out = texts(rig.reply(fetch, trades=trades(3, 4, 5)["trades"], last_id=7), conn)
    assert [t["id"] for m in out for t in m["data"]["trades"]] == [3, 4, 5, 6, 7]


def test_a_subscriber_replays_from_an_id_then_continues_live_without_a_repeat(rig):
    rig.publish("trades.BTC-USDT", trades(1, 2, 3))
    conn = rig.connect(1)
    backfill = only(rig.request(conn, op="subscribe", channel="trades.BTC-USDT", from_id=1), AskQuotation)
    assert backfill.query == {"id": backfill.query["id"], "q": "trades", "symbol": "BTC-USDT", "after_id": 1,
                              "limit": 1000}
    assert texts(rig.publish("trades.BTC-USDT", trades(4)), conn) == []  # held for the connection
    out = texts(rig.reply(backfill, trades=trades(2, 3, 4)["trades"], last_id=4), conn)
    assert [t["id"] for m in out for t in m["data"]["trades"]] == [2, 3, 4]
    assert [t["id"] for m in texts(rig.publish("trades.BTC-USDT", trades(5)), conn)
            for t in m["data"]["trades"]] == [5]


def test_kline_and_ticker_subscribers_get_the_latest_at_once(rig):
    rig.publish("ticker.BTC-USDT", {"last": "100"})
    conn = rig.connect(1)
    out = texts(rig.request(conn, op="subscribe", channel="ticker.BTC-USDT"), conn)
    assert out[1] == {"channel": "ticker.BTC-USDT", "type": "update", "data": {"last": "100"}}



def test_an_unwatched_state_channel_is_decoded_only_when_someone_subscribes(rig):
    channel = "kline.1m.BTC-USDT"
    for close in ("100", "101"):
        assert rig.publish(channel, msgpack.packb({"close": close})) == []  # as quotation encoded it
    assert rig.core.latest_encoded[channel] and channel not in rig.core.latest
    conn = rig.connect(1)
    out = texts(rig.request(conn, op="subscribe", channel=channel), conn)
    assert out[1] == {"channel": channel, "type": "update", "data": {"close": "101"}}
    # watched now: each message is decoded and goes out at once
    [update] = texts(rig.publish(channel, msgpack.packb({"close": "102"})), conn)
    assert update["data"] == {"close": "102"}
    later = rig.connect(2)
    assert texts(rig.request(later, op="subscribe", channel=channel), later)[1]["data"] == {"close": "102"}


def test_a_malformed_encoded_publication_is_dropped_with_no_harm(rig):
    conn = rig.connect(1)
    rig.request(conn, op="subscribe", channel="ticker.BTC-USDT")
    assert rig.publish("ticker.BTC-USDT", b"\xc1") == []  # not msgpack
    assert rig.publish("ticker.BTC-USDT", msgpack.packb([1, 2])) == []  # not a map
    rig.publish("ticker.ETH-USDT", b"\xc1")  # nobody watches: kept encoded
    other = rig.connect(2)
    assert texts(rig.request(other, op="subscribe", channel="ticker.ETH-USDT"), other) == [
        {"event": "subscribed", "channel": "ticker.ETH-USDT"}]
    [update] = texts(rig.publish("ticker.BTC-USDT", msgpack.packb({"last": "7"})), conn)
    assert update["data"] == {"last": "7"}

def account_message(account: int, seq: int, prev: int, *events: dict, items=None) -> ReportMessage:
    records = np.zeros(len(events), dtype=EVENT_DTYPE)
    for record, fields in zip(records, events):
        for name, value in fields.items():
            record[name] = value
        record["seq"] = seq
    return ReportMessage(account_topic(account), 1, records, items or [["", ""]] * len(events), 1, seq=seq,
                         prev=prev)


def test_auth_is_checked_and_private_data_goes_only_to_its_account(rig):
    alice, alice_key, alice_secret = rig.trader()
    bob, bob_key, bob_secret = rig.trader()
    a, b = rig.connect(1), rig.connect(2)
    [stale] = texts(rig.auth(a, alice_key, alice_secret, ts=NOW_MS - 10_000))
    assert "ts is more than 5000 ms" in stale["reason"]
    [forged] = texts(rig.auth(a, alice_key, bob_secret))
    assert "bad signature" in forged["reason"]
    assert texts(rig.auth(a, alice_key, alice_secret)) == [{"event": "authenticated", "account": alice}]
    [replayed] = texts(rig.auth(b, alice_key, alice_secret))
    assert "already used" in replayed["reason"]
    rig.now += 1
    rig.auth(b, bob_key, bob_secret)

    actions = rig.request(a, op="subscribe", channel="balances")
    assert only(actions, Listen) == Listen(alice, True)
    snapshot = only(actions, AskEngine)
    assert snapshot.query == {"id": snapshot.query["id"], "q": "balances", "account": alice}
    [first] = texts(rig.core.on_engine_reply({"id": snapshot.query["id"], "ok": True, "seq": 40, "balances": [
        {"asset": 2, "available": 5_000_000, "frozen": 0}]}), a)
    assert first == {"channel": "balances", "type": "snapshot", "seq": 40,
                     "data": [{"asset": "USDT", "available": "5", "frozen": "0"}]}
    rig.core.on_engine_reply({"id": only(rig.request(b, op="subscribe", channel="balances"), AskEngine).query["id"],
                              "ok": True, "seq": 40, "balances": []})

    balance = {"kind": int(EventKind.BALANCE), "account": alice, "asset": 2, "available": 4_000_000, "frozen": 1}
    assert rig.core.on_account(account_message(alice, 39, 0, balance)) == []  # in the snapshot already
    actions = rig.core.on_account(account_message(alice, 41, 39, balance))
    assert texts(actions, b) == []
    [update] = texts(actions, a)
    assert update["data"] == [{"asset": "USDT", "available": "4", "frozen": "0.000001"}] and update["seq"] == 41

    # a message whose prev was never seen: events were missed; a new snapshot is taken
    actions = rig.core.on_account(account_message(alice, 60, 55, balance))
    assert only(actions, AskEngine).query["q"] == "balances" and texts(actions, a) == []


def test_fills_and_order_updates_show_the_accounts_own_side_of_a_trade(rig):
    alice, key, secret = rig.trader()
    conn = rig.connect(1)
    rig.auth(conn, key, secret)
    for channel in ("orders", "fills"):
        ask = only(rig.request(conn, op="subscribe", channel=channel), AskEngine)
        rig.core.on_engine_reply({"id": ask.query["id"], "ok": True, "seq": 5, "orders": [], "head": 5})
    trade = {"kind": int(EventKind.TRADE), "account": 99, "maker_account": alice, "symbol": 0, "side": int(Side.BUY),
             "order_id": 8, "maker_order_id": 6, "price": 300_000, "qty": 10, "amount": 3_000_000_000,
             "maker_leaves": 0, "maker_filled": 10, "maker_fee": 600_000, "taker_fee": 1_500_000}
    out = texts(rig.core.on_account(account_message(alice, 8, 5, trade, items=[["", "mine"]])), conn)
    orders = next(m for m in out if m["channel"] == "orders")["data"]
    fills = next(m for m in out if m["channel"] == "fills")["data"]
    assert orders == [{"order_id": 6, "clordid": "mine", "symbol": "BTC-USDT", "side": "sell", "event": "trade",
                       "status": "filled", "filled": "0.001", "leaves": "0", "last_price": "30000",
                       "last_qty": "0.001", "time": 0, "seq": 8}]
    assert fills[0]["liquidity"] == "maker" and fills[0]["fee"] == "0.6" and fills[0]["exec_id"] == "8-3-6-10-maker"


def test_leaving_the_last_private_channel_of_an_account_stops_listening_to_it(rig):
    alice, key, secret = rig.trader()
    conn = rig.connect(1)
    rig.auth(conn, key, secret)
    rig.request(conn, op="subscribe", channel="orders")
    assert Listen(alice, False) in rig.core.disconnect(conn)
    assert time.time() > 0


# --- the bundle on the wire (common/market.py) -------------------------------------------------------


def test_a_bundle_carries_each_publication_with_its_channel_counter_and_body():
    bodies = [{"trades": [{"id": 1}]}, {"U": 3, "u": 4, "bids": [], "asks": []}]
    frames = encode_publications(77, [("trades.BTC-USDT", 5, bodies[0]), ("depth.BTC-USDT", 9, bodies[1])])
    decoded = decode_publications(frames)
    assert [(channel, n, epoch) for channel, n, epoch, _ in decoded] == [("trades.BTC-USDT", 5, 77),
                                                                        ("depth.BTC-USDT", 9, 77)]
    assert [decode_publication_body(raw) for *_, raw in decoded] == bodies


@pytest.mark.parametrize("frames", [
    [b"X", b"\x81\xa5epoch\x01", b"\x90"],  # another topic
    [b"Q", b"\x81\xa5epoch\x01", b"\x91\x92\xa1a\x01"],  # an index entry without its body
    [b"Q", b"\xc1", b"\x90"],  # a header that does not decode
    [b"Q", b"\x80", b"\x90"],  # no epoch
    [b"Q"],
])
def test_a_malformed_bundle_is_a_market_error(frames):
    with pytest.raises(MarketError):
        decode_publications(frames)
