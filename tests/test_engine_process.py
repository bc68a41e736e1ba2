"""The engine as a process: ``python -m engine.main`` against a fake sequencer made of real sockets.

The fake sequencer is this test: an XPUB bound at ``sequencer.stream`` (an XPUB tells when the engine's
SUB has subscribed) and a ROUTER bound at ``sequencer.replay`` that answers replay requests from an
in-memory journal. The test also holds a SUB on the engine's reports and a DEALER on its queries. One
``pump`` polls all four sockets, so the test waits on sockets (never a fixed sleep) and the fake
sequencer answers replays while the test waits.

The first engine start after a change under engine/ compiles the Numba kernels for about a minute.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any, Callable

import msgpack
import numpy as np
import pytest
import zmq

from common.config import default_document
from common.intake import Envelope
from common.records import COMMAND_DTYPE, EVENT_DTYPE, CommandKind, EventKind, OrderType, Side, TimeInForce
from common.reports import ReportMessage, account_topic, decode_report, gateway_topic, market_topic
from common.stream import (
    Duplicate,
    SequencedBatch,
    decode_replay_request,
    encode_batch,
    encode_duplicate,
    encode_heartbeat,
)
from common.snapshot_store import SnapshotStore
from tests.harness import to_toml

ROOT = Path(__file__).resolve().parent.parent
FIRST_READY_TIMEOUT_S = 180.0  # a cold Numba cache compiles the kernels for about a minute
TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 20.0

BTC, USDT = 0, 1
BTC_USDT = 0
ALICE, BOB = 1, 2
GW1, GW2 = 1, 2
ADMIN_SESSION, ALICE_SESSION, BOB_SESSION = 100, 11, 21
PROBE_SESSION = 1000
PROBE_INTERVAL_S = 0.5


def engine_document(home: Path) -> dict[str, Any]:
    """The default configuration with ipc endpoints in ``home``, two gateways and a small market."""
    document = default_document()
    ipc = lambda name: f"ipc://{home}/{name}.sock"  # noqa: E731
    document["engine"].update(reports=ipc("reports"), queries=ipc("queries"), event_buffer=256)
    document["sequencer"].update(intake=ipc("intake"), stream=ipc("stream"), replay=ipc("replay"))
    document["gateway"]["instances"] = [
        {"id": GW1, "name": "gw-1", "fix": ipc("fix-1")},
        {"id": GW2, "name": "gw-2", "fix": ipc("fix-2")},
    ]
    document["paths"] = {"data_dir": str(home / "data"), "log_dir": str(home / "log")}
    document["capacity"] = {"max_open_orders": 1024, "max_accounts": 16}
    document["assets"] = [{"name": "BTC", "decimals": 8}, {"name": "USDT", "decimals": 6}]
    document["symbols"] = [{
        "name": "BTC-USDT", "base": "BTC", "quote": "USDT", "tick_size": "1", "lot_size": "0.001",
        "min_qty": "0.001", "max_qty": "1", "min_notional": "0.1", "price_min": "100", "price_max": "200",
    }]
    return document


class Journal:
    """The fake sequencer's journal: commands with seq 1, 2, 3... and their envelopes."""

    TS0 = 1_700_000_000_000_000_000

    def __init__(self) -> None:
        self.records: list[np.ndarray] = []
        self.envelopes: list[Envelope] = []

    @property
    def head(self) -> int:
        return len(self.records)

    def add(self, kind: CommandKind, *, gateway: int, session: int, clordid: str, **fields: int) -> int:
        seq = len(self.records) + 1
        record = np.zeros(1, dtype=COMMAND_DTYPE)
        record["seq"], record["ts"], record["kind"], record["origin"] = seq, self.TS0 + seq, kind, gateway
        for name, value in fields.items():
            record[name] = value
        self.records.append(record)
        self.envelopes.append(Envelope(session, clordid))
        return seq

    def limit(self, account: int, side: Side, price: int, qty: int, *, gateway: int, session: int,
              clordid: str) -> int:
        return self.add(CommandKind.NEW, gateway=gateway, session=session, clordid=clordid, account=account,
                        symbol=BTC_USDT, side=side, order_type=OrderType.LIMIT, tif=TimeInForce.GTC,
                        price=price, qty=qty, client_order_id=len(self.records) + 1)

    def batch(self, first: int, last: int, head: int | None = None) -> SequencedBatch:
        records = np.concatenate(self.records[first - 1 : last]) if last >= first else np.zeros(0, COMMAND_DTYPE)
        return SequencedBatch(first, records, self.envelopes[first - 1 : last], head)


class Rig:
    """The fake sequencer, a reports subscriber and a query client around one engine process."""

    def __init__(self, home: Path, journal: Journal, subscriptions: tuple[bytes, ...] = (b"",)):
        self.home = home
        self.journal = journal
        self.document = engine_document(home)
        self.config_path = home / "engine.toml"
        self.config_path.write_text(to_toml(self.document))
        tomllib.loads(self.config_path.read_text())
        self.context = zmq.Context()
        self.stream = self._socket(zmq.XPUB, bind=self.document["sequencer"]["stream"])
        self.replay = self._socket(zmq.ROUTER, bind=self.document["sequencer"]["replay"])
        self.reports = self._socket(zmq.SUB, connect=self.document["engine"]["reports"])
        for prefix in subscriptions:
            self.reports.setsockopt(zmq.SUBSCRIBE, prefix)
        self.queries = self._socket(zmq.DEALER, connect=self.document["engine"]["queries"])
        self.poller = zmq.Poller()
        for sock in (self.stream, self.replay, self.reports, self.queries):
            self.poller.register(sock, zmq.POLLIN)
        self.replay_requests: list[tuple[int, int]] = []
        self.replay_answer: Callable[[int, int], SequencedBatch] | None = None  # to answer wrongly
        self.received: list[ReportMessage] = []
        self.replies: dict[int, dict] = {}
        self.engine_subscribed = False
        self._next_query_id = 0
        self.log_path = home / "engine.log"
        self._log = open(self.log_path, "wb")
        self.process: subprocess.Popen | None = None

    def _socket(self, kind: int, *, bind: str | None = None, connect: str | None = None) -> zmq.Socket:
        sock = self.context.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        if bind:
            sock.bind(bind)
        else:
            sock.connect(connect)
        return sock

    # --- the engine process ------------------------------------------------------------------------

    def start(self) -> None:
        environment = {**os.environ, "EXCHANGE_CONFIG": str(self.config_path)}
        self.process = subprocess.Popen([sys.executable, "-m", "engine.main"], cwd=ROOT, env=environment,
                                        stdout=self._log, stderr=subprocess.STDOUT)

    def stop(self) -> int | None:
        """SIGTERM, wait; SIGKILL on timeout. Returns the exit status."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_TIMEOUT_S)
        return self.process.returncode

    def wait_for_exit(self, timeout: float) -> int | None:
        """Serve the fake sequencer until the engine exits; its exit status (None on timeout)."""
        deadline = time.monotonic() + timeout
        while self.process.poll() is None and time.monotonic() < deadline:
            self.pump(100)
        return self.process.poll()

    def close(self) -> None:
        self.stop()
        for sock in (self.stream, self.replay, self.reports, self.queries):
            sock.close(linger=0)
        self.context.term()
        self._log.close()

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-6000:]

    # --- the sockets --------------------------------------------------------------------------------

    def pump(self, timeout_ms: int) -> None:
        """Wait up to ``timeout_ms`` for any socket, then handle everything that is ready."""
        ready = dict(self.poller.poll(timeout_ms))
        if self.stream in ready:
            while self.stream.poll(0):
                if self.stream.recv() == b"\x01":  # a subscription to everything: the engine's SUB
                    self.engine_subscribed = True
        if self.replay in ready:
            while self.replay.poll(0):
                identity, *frames = self.replay.recv_multipart()
                first, count = decode_replay_request(frames)
                self.replay_requests.append((first, count))
                answer = self.replay_answer or self._answer
                self.replay.send_multipart([identity, *encode_batch(answer(first, count))])
        if self.reports in ready:
            while self.reports.poll(0):
                self.received.append(decode_report(self.reports.recv_multipart()))
        if self.queries in ready:
            while self.queries.poll(0):
                reply = msgpack.unpackb(self.queries.recv(), raw=False)
                self.replies[reply["id"]] = reply

    def _answer(self, first: int, count: int) -> SequencedBatch:
        last = min(first + count - 1, self.journal.head)
        return self.journal.batch(first, last, head=self.journal.head)

    def wait(self, condition: Callable[[], Any], what: str, timeout: float = TIMEOUT_S) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            result = condition()
            if result:
                return result
            if self.process is not None and self.process.poll() is not None:
                pytest.fail(f"the engine exited ({self.process.returncode}) while waiting for {what}:\n"
                            f"{self.output()}")
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {timeout} s waiting for {what}:\n{self.output()}")
            self.pump(50)

    def query(self, timeout: float = TIMEOUT_S, **query: Any) -> dict:
        self._next_query_id += 1
        query_id = self._next_query_id
        self.queries.send(msgpack.packb({"id": query_id, **query}, use_bin_type=True))
        return self.wait(lambda: self.replies.pop(query_id, None), f"an answer to {query}", timeout)

    def wait_until_ready(self) -> None:
        """Caught up: the engine answers queries once it has replayed the journal."""
        reply = self.query(timeout=FIRST_READY_TIMEOUT_S, q="head")
        assert reply == {"id": reply["id"], "ok": True, "head": self.journal.head, "seq": self.journal.head}
        self.wait(lambda: self.engine_subscribed, "the engine's subscription to the stream")

    def publish(self, first: int, last: int) -> None:
        self.stream.send_multipart(encode_batch(self.journal.batch(first, last)))

    def wait_for_head(self, seq: int) -> None:
        self.wait(lambda: self.query(q="head")["head"] >= seq, f"the engine to apply seq {seq}")

    def on(self, topic: bytes) -> list[ReportMessage]:
        """The report messages received on ``topic`` (heartbeats aside)."""
        return [m for m in self.received if m.topic == topic and not m.heartbeat]

    def heartbeats(self, topic: bytes) -> list[ReportMessage]:
        return [m for m in self.received if m.topic == topic and m.heartbeat]

    def sync_reports(self) -> int:
        """Make sure the reports SUB is connected: resend a known outcome until the answer arrives (a PUB
        drops what it publishes before a subscription reaches it). Each probe comes from its own session,
        so the wait ends at the answer to the last probe sent, after which no answer is outstanding.
        Returns that answer's ``n`` on gateway 1."""
        record = self.journal.records[0].copy()  # CREATE_ACCOUNT of ALICE by the admin, on gateway 1
        clordid = self.journal.envelopes[0].clordid
        probes: list[float] = []  # when each probe was sent; probe k comes from session PROBE_SESSION + k

        def answer_to_last_probe() -> ReportMessage | None:
            for message in self.on(gateway_topic(GW1)):
                if message.items[0]["resend"] and message.items[0]["session"] == PROBE_SESSION + len(probes):
                    return message
            if not probes or time.monotonic() - probes[-1] > PROBE_INTERVAL_S:
                probes.append(time.monotonic())
                notice = Duplicate(self.journal.head, 1, record, Envelope(PROBE_SESSION + len(probes), clordid))
                self.stream.send_multipart(encode_duplicate(notice))
            return None

        return self.wait(answer_to_last_probe, "a resend answer on the reports socket").n


def funded_journal() -> Journal:
    """Seqs 1-4: ALICE and BOB exist (created and funded by the admin on gateway 1)."""
    journal = Journal()
    admin = dict(gateway=GW1, session=ADMIN_SESSION)
    journal.add(CommandKind.CREATE_ACCOUNT, clordid="create-alice", account=ALICE, **admin)
    journal.add(CommandKind.CREATE_ACCOUNT, clordid="create-bob", account=BOB, **admin)
    journal.add(CommandKind.DEPOSIT, clordid="fund-alice", account=ALICE, asset=USDT, amount=10**9, **admin)
    journal.add(CommandKind.DEPOSIT, clordid="fund-bob", account=BOB, asset=BTC, amount=10**8, **admin)
    return journal


@pytest.fixture
def rig(tmp_path):
    rigs: list[Rig] = []

    def make(journal: Journal, **kwargs: Any) -> Rig:
        made = Rig(tmp_path, journal, **kwargs)
        rigs.append(made)
        return made

    yield make
    for made in rigs:
        made.close()


def test_engine_replays_the_journal_at_start_and_then_answers_queries(rig):
    journal = funded_journal()
    journal.limit(BOB, Side.SELL, 150, 5, gateway=GW2, session=BOB_SESSION, clordid="bob-sell")
    r = rig(journal)
    r.start()
    r.wait_until_ready()

    assert r.replay_requests[0][0] == 1
    order = r.query(q="order", account=BOB, clordid="bob-sell")["order"]
    assert (order["order_id"], order["status"], order["leaves"]) == (5, "new", 5)
    assert r.query(q="order", account=ALICE, order_id=5) == {"id": 3, "ok": True, "found": False, "seq": 5}
    balances = r.query(q="balances", account=ALICE)["balances"]
    assert balances[USDT] == {"asset": USDT, "available": 10**9, "frozen": 0}
    assert r.query(q="no such thing")["ok"] is False
    assert r.stop() == 0


def test_engine_publishes_a_live_trade_to_both_gateways_the_market_and_both_accounts(rig):
    journal = funded_journal()
    sell = journal.limit(BOB, Side.SELL, 150, 5, gateway=GW2, session=BOB_SESSION, clordid="bob-sell")
    r = rig(journal)
    r.start()
    r.wait_until_ready()
    gateway_n = r.sync_reports()

    buy = journal.limit(ALICE, Side.BUY, 150, 2, gateway=GW1, session=ALICE_SESSION, clordid="alice-buy")
    r.publish(buy, buy)
    r.wait(lambda: r.on(account_topic(BOB)), "BOB's account events")
    r.wait(lambda: r.on(gateway_topic(GW1))[-1].n > gateway_n and r.on(gateway_topic(GW2))
           and r.on(market_topic(BTC_USDT)) and r.on(account_topic(ALICE)), "every topic of the trade")

    assert [first for first, _ in r.replay_requests] == [1], "only the catch-up replayed: the trade came live"
    to_alice = r.on(gateway_topic(GW1))[-1]
    assert to_alice.n == gateway_n + 1
    assert [int(k) for k in to_alice.events["kind"]] == [EventKind.ACCEPTED, EventKind.TRADE]
    assert [(i["session"], i["role"], i["clordid"]) for i in to_alice.items] == [
        (ALICE_SESSION, "order", "alice-buy"), (ALICE_SESSION, "taker", "alice-buy")]
    to_bob = r.on(gateway_topic(GW2))[-1]
    assert [int(k) for k in to_bob.events["kind"]] == [EventKind.TRADE]
    assert to_bob.items[0] | {"cum_quote": None} == {"session": BOB_SESSION, "account": BOB, "role": "maker",
                                                      "clordid": "bob-sell", "cum_quote": None, "resend": False}
    assert int(to_bob.events[0]["maker_order_id"]) == sell
    market = r.on(market_topic(BTC_USDT))
    assert [int(k) for k in market[-1].events["kind"]] == [EventKind.TRADE]
    assert [(int(v["side"]), int(v["price"]), int(v["qty"])) for v in market[-1].levels] == [
        (Side.BUY, 150, 0), (Side.SELL, 150, 3)]  # the buy's own level (it filled at once), the maker's
    assert (market[-1].seq, market[-1].prev) == (buy, sell)  # prev chains to the sell's message
    assert EventKind.TRADE in r.on(account_topic(BOB))[-1].events["kind"]
    assert r.on(account_topic(BOB))[-1].items[0] == ["", "bob-sell"]
    assert r.stop() == 0


def test_engine_fills_a_gap_by_replay_and_skips_a_batch_it_already_has(rig):
    journal = funded_journal()
    r = rig(journal)
    r.start()
    r.wait_until_ready()
    gateway_n = r.sync_reports()
    head = journal.head
    first = journal.limit(ALICE, Side.BUY, 120, 1, gateway=GW1, session=ALICE_SESSION, clordid="a1")
    second = journal.limit(ALICE, Side.BUY, 121, 1, gateway=GW1, session=ALICE_SESSION, clordid="a2")
    third = journal.limit(ALICE, Side.BUY, 122, 1, gateway=GW1, session=ALICE_SESSION, clordid="a3")

    r.publish(second, second)  # `first` is never published: a gap
    r.wait_for_head(second)
    assert (first, 1) in r.replay_requests
    r.publish(first, second)  # already applied: skipped, nothing reported
    r.publish(third, third)
    r.wait_for_head(third)
    r.wait(lambda: any(int(m.events[0]["seq"]) == third for m in r.on(gateway_topic(GW1))), "the third order's report")

    reports = [m for m in r.on(gateway_topic(GW1)) if m.n > gateway_n]
    assert [m.n for m in reports] == list(range(gateway_n + 1, gateway_n + 1 + len(reports)))
    assert [int(e["seq"]) for m in reports for e in m.events] == [first, second, third]
    assert head < first
    assert r.stop() == 0


def test_engine_applies_a_missed_last_batch_when_a_heartbeat_names_it(rig):
    journal = funded_journal()
    r = rig(journal)
    r.start()
    r.wait_until_ready()
    missed = journal.limit(ALICE, Side.BUY, 120, 1, gateway=GW1, session=ALICE_SESSION, clordid="a1")

    r.stream.send_multipart(encode_heartbeat(missed))
    r.wait_for_head(missed)
    assert (missed, 1) in r.replay_requests
    order = r.query(q="order", account=ALICE, clordid="a1")["order"]
    assert order["status"] == "new"
    assert r.stop() == 0


def test_engine_exits_non_zero_when_a_replay_answers_from_elsewhere(rig):
    journal = funded_journal()
    r = rig(journal)
    r.replay_answer = lambda first, count: journal.batch(first + 1, journal.head, head=journal.head)
    r.start()

    assert r.wait_for_exit(FIRST_READY_TIMEOUT_S) == 1, r.output()
    assert "answered from seq 2" in r.output()


def test_engine_snapshots_as_it_runs_and_a_killed_engine_starts_from_the_newest_snapshot(rig):
    journal = funded_journal()
    r = rig(journal)
    r.document["engine"].update(snapshot_every_commands=3, snapshot_every_s=1, snapshots_kept=2)
    r.config_path.write_text(to_toml(r.document))
    snapshot_dir = r.home / "data" / "snapshots"
    r.start()
    r.wait_until_ready()
    for price in (120, 121, 122, 123):
        seq = journal.limit(ALICE, Side.BUY, price, 1, gateway=GW1, session=ALICE_SESSION, clordid=f"a{price}")
        r.publish(seq, seq)
    r.wait_for_head(journal.head)

    def snapshot_of_head() -> bool:
        if not (snapshot_dir / "data.mdb").exists():
            return False
        with SnapshotStore(snapshot_dir, map_bytes=1 << 20, readonly=True) as store:
            return journal.head in store.seqs()

    r.wait(snapshot_of_head, "a snapshot of the head")
    with SnapshotStore(snapshot_dir, map_bytes=1 << 20, readonly=True) as store:
        assert len(store.seqs()) <= 2
    assert "forked in" in r.output()
    balances_before = r.query(q="balances", account=ALICE)["balances"]

    r.process.kill()  # kill -9: no clean-up at all
    r.process.wait(STOP_TIMEOUT_S)
    snapshotted = journal.head
    after = journal.limit(BOB, Side.SELL, 123, 1, gateway=GW2, session=BOB_SESSION, clordid="b1")  # fills a123
    r.replay_requests.clear()
    r.start()
    r.wait_until_ready()

    assert r.replay_requests[0][0] == snapshotted + 1, "only the journal after the snapshot is replayed"
    assert f"restored the snapshot of seq {snapshotted}" in r.output()
    assert r.query(q="order", account=ALICE, clordid="a123")["order"]["status"] == "filled"
    assert r.query(q="order", account=BOB, order_id=after)["order"]["status"] == "filled"
    balances_after = r.query(q="balances", account=ALICE)["balances"]
    assert balances_after[BTC]["available"] > balances_before[BTC]["available"]
    assert r.stop() == 0


def test_at_start_reports_are_built_again_only_for_the_journals_last_catch_up_reports_commands(rig):
    journal = funded_journal()
    for price in (120, 121, 122):
        journal.limit(ALICE, Side.BUY, price, 1, gateway=GW1, session=ALICE_SESSION, clordid=f"a{price}")
    r = rig(journal)
    r.document["engine"].update(catch_up_reports=2)
    r.config_path.write_text(to_toml(r.document))
    r.start()
    r.wait_until_ready()

    resent = r.query(q="resend", gateway=GW1, **{"from": 1})
    chunks = [np.frombuffer(raw, dtype=EVENT_DTYPE) for _, raw, _ in resent["messages"]]
    assert sorted(int(seq) for chunk in chunks for seq in chunk["seq"]) == [journal.head - 1, journal.head]
    assert all(item["resend"] for _, _, items in resent["messages"] for item in items)
    # The commands before them rebuilt the state all the same.
    assert r.query(q="order", account=ALICE, clordid="a120")["order"]["status"] == "new"
    assert r.query(q="balances", account=BOB)["balances"][BTC]["available"] == 10**8
    assert r.stop() == 0


def test_a_quiet_engine_repeats_each_gateway_topics_last_n_in_heartbeats(rig):
    journal = funded_journal()
    r = rig(journal)
    r.start()
    r.wait_until_ready()
    gateway_n = r.sync_reports()
    r.wait(lambda: [m for m in r.heartbeats(gateway_topic(GW1)) if m.n == gateway_n], "a heartbeat on gateway 1")
    r.wait(lambda: r.heartbeats(gateway_topic(GW2)), "a heartbeat on gateway 2")
    beat = r.heartbeats(gateway_topic(GW1))[-1]
    assert len(beat.events) == 0 and beat.items == [] and beat.epoch == r.on(gateway_topic(GW1))[-1].epoch != 0
    assert r.stop() == 0


def test_account_messages_are_built_only_for_the_accounts_someone_subscribes_to(rig):
    journal = funded_journal()
    r = rig(journal, subscriptions=(b"r", account_topic(ALICE)))
    r.start()
    r.wait_until_ready()
    r.wait(lambda: r.heartbeats(gateway_topic(GW2)), "a heartbeat: the subscriptions have reached the engine")
    sell = journal.limit(BOB, Side.SELL, 150, 50, gateway=GW2, session=BOB_SESSION, clordid="bob-sell")
    r.publish(sell, sell)

    def until_heard(account: int, session: int, gateway: int, side: Side, price: int) -> ReportMessage:
        """Orders of ``account`` until one shows on its account topic (a subscription takes effect
        asynchronously); that first account message."""
        for attempt in range(100):
            order = journal.limit(account, side, price, 1, gateway=gateway, session=session, clordid=f"o-{attempt}")
            r.publish(order, order)
            r.wait(lambda: any(order in m.events["seq"] for m in r.on(gateway_topic(gateway))), "the order's report")
            if r.on(account_topic(account)):
                return r.on(account_topic(account))[0]
        pytest.fail(f"account {account}'s topic stayed silent")

    alice = until_heard(ALICE, ALICE_SESSION, GW1, Side.BUY, 150)  # each buy trades with BOB's sell
    assert alice.n == 1 and alice.items[:2] == [["o-%d" % (alice.seq - sell - 1), ""]] * 2
    assert not r.on(account_topic(BOB))

    # BOB had events all along; once someone listens, his topic's first message is n = 1, and its prev
    # names the last seq that concerned him all the same.
    r.reports.setsockopt(zmq.SUBSCRIBE, account_topic(BOB))
    bob = until_heard(BOB, BOB_SESSION, GW2, Side.SELL, 170)
    assert bob.n == 1 and bob.prev >= alice.seq
    assert r.stop() == 0


def test_live_market_messages_within_the_interval_wait_and_all_leave_at_a_stop(rig):
    journal = funded_journal()
    r = rig(journal)
    r.document["engine"]["market_interval_us"] = 10_000_000  # longer than the test: nothing leaves on time
    r.config_path.write_text(to_toml(r.document))
    r.start()
    r.wait_until_ready()
    r.sync_reports()
    market = lambda: r.on(market_topic(BTC_USDT))  # noqa: E731

    first = journal.limit(BOB, Side.SELL, 150, 5, gateway=GW2, session=BOB_SESSION, clordid="sell-1")
    r.publish(first, first)
    r.wait(market, "the first live market message (none went out before it: it leaves at once)")
    second = journal.limit(BOB, Side.SELL, 160, 5, gateway=GW2, session=BOB_SESSION, clordid="sell-2")
    third = journal.limit(ALICE, Side.BUY, 150, 2, gateway=GW1, session=ALICE_SESSION, clordid="buy-1")
    r.publish(second, second)
    r.publish(third, third)
    r.wait(lambda: any(third in m.events["seq"] for m in r.on(gateway_topic(GW1))), "the buy's execution report")
    assert [m.seq for m in market()] == [first], "the reports left at once, the market messages wait"

    assert r.stop() == 0  # SIGTERM: what waits is sent before the sockets close
    deadline = time.monotonic() + TIMEOUT_S
    while market()[-1].seq != third and time.monotonic() < deadline:
        r.pump(50)
    messages = market()
    assert messages[-1].seq == third, "the held market messages left at the stop"
    assert [m.n for m in messages] == list(range(messages[0].n, messages[0].n + len(messages)))
    assert [m.prev for m in messages[1:]] == [m.seq for m in messages[:-1]]
    assert [int(e["seq"]) for m in messages for e in m.events if e["kind"] == EventKind.TRADE] == [third]
