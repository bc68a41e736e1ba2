"""The gateway as a real process (``python -m gateway.main``) between a test client (DEALER) and a fake
sequencer (PULL) and fake engine (XPUB for reports, so the test sees the gateway subscribe; ROUTER for
queries), all on ipc sockets in a temporary directory.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import msgpack
import numpy as np
import pytest
import zmq

from common.config import CONFIG_ENV_VAR, default_document, parse_config
from common.credentials import CredentialStore
from common.intake import decode_submissions
from common.protocol import decode, encode, sign_logon
from common.records import EVENT_DTYPE, CommandKind, EventKind, OrderType, Side, TimeInForce
from common.reports import ReportMessage, encode_report, gateway_topic
from tests.harness import to_toml

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT_S = 10.0
MAX_MESSAGE_BYTES = 4096


class FakeExchange:
    """The configuration, credentials, fake sequencer and fake engine around gateway processes."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="gw-", dir="/tmp"))  # short: ipc paths are limited
        document = default_document()
        document["paths"] = {"data_dir": str(self.dir / "data"), "log_dir": str(self.dir / "log")}
        document["sequencer"].update(intake=f"ipc://{self.dir}/intake", stream=f"ipc://{self.dir}/stream",
                                     replay=f"ipc://{self.dir}/replay")
        document["engine"].update(reports=f"ipc://{self.dir}/reports", queries=f"ipc://{self.dir}/queries")
        document["gateway"].update(heartbeat_s=5, logon_window_ms=5000, max_message_bytes=MAX_MESSAGE_BYTES)
        document["gateway"]["instances"] = [{"id": 1, "name": "gw-1", "fix": f"ipc://{self.dir}/fix1"},
                                            {"id": 2, "name": "gw-2", "fix": f"ipc://{self.dir}/fix2"}]
        self.config_path = self.dir / "exchange.toml"
        self.config_path.write_text(to_toml(document))
        self.config = parse_config(document)
        with CredentialStore.open(self.config) as store:
            self.account = store.allocate_account()
            self.key_id, self.secret = store.create_key(self.account)
            self.other_key_id, self.other_secret = store.create_key(self.account)

        self.context = zmq.Context()
        self.sockets: list[zmq.Socket] = []
        self.intake = self._socket(zmq.PULL, self.config.sequencer.intake)
        self.pending: list[tuple[np.void, Any]] = []  # commands received, not yet looked at
        self.reports = self._socket(zmq.XPUB, self.config.engine.reports)
        self.queries = self._socket(zmq.ROUTER, self.config.engine.queries)
        self.processes: list[subprocess.Popen] = []
        self.n: dict[int, int] = {}

    def _socket(self, kind: int, endpoint: str) -> zmq.Socket:
        sock = self.context.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        sock.bind(endpoint)
        self.sockets.append(sock)
        return sock

    def start_gateway(self, name: str = "gw-1") -> subprocess.Popen:
        environment = dict(os.environ, **{CONFIG_ENV_VAR: str(self.config_path)})
        process = subprocess.Popen([sys.executable, "-m", "gateway.main", "--name", name], cwd=ROOT,
                                   env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.processes.append(process)
        topic = gateway_topic(self.config.gateway.instance(name).id)
        # The gateway subscribes last: once the XPUB sees it, the gateway is up.
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0 and process.poll() is None, f"gateway {name} did not start"
            if self.reports.poll(int(remaining * 1000)) and self.reports.recv() == b"\x01" + topic:
                # as the engine does when it goes live: the gateway takes sessions once it has heard it
                self.reports.send_multipart(encode_report(ReportMessage(
                    topic, 0, np.zeros(0, dtype=EVENT_DTYPE), [], heartbeat=True)))
                return process

    def client(self, name: str = "gw-1") -> "Client":
        client = Client(self.context, self.config.gateway.instance(name).fix)
        self.sockets.append(client.socket)
        return client

    def submission(self) -> tuple[np.void, Any]:
        """The next command the gateway sent (it sends those of a loop turn in one message)."""
        if not self.pending:
            assert self.intake.poll(int(TIMEOUT_S * 1000)), "nothing reached the sequencer"
            records, envelopes = decode_submissions(self.intake.recv_multipart())
            self.pending.extend(zip(records, envelopes))
        return self.pending.pop(0)

    def publish(self, gateway: int, events: np.ndarray, items: list[dict]) -> None:
        n = self.n[gateway] = self.n.get(gateway, 0) + 1
        self.reports.send_multipart(encode_report(ReportMessage(gateway_topic(gateway), n, events, items)))

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            if process.stderr is not None:
                process.stderr.close()
        for sock in self.sockets:
            sock.close(linger=0)
        self.context.term()
        shutil.rmtree(self.dir, ignore_errors=True)


class Client:
    """A DEALER speaking the protocol, numbering its messages."""

    def __init__(self, context: zmq.Context, endpoint: str):
        self.socket = context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.connect(endpoint)
        self.seq = 0

    def send(self, msg_type: str, **fields: Any) -> None:
        self.seq += 1
        self.socket.send(encode({"MsgType": msg_type, "MsgSeqNum": self.seq, **fields}))

    def logon(self, key_id: str, secret: str) -> dict:
        """The gateway's answer to a Logon; sent again (bounded) while the gateway says it is starting."""
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            self.seq += 1
            now = time.time_ns()
            self.socket.send(encode({"MsgType": "A", "MsgSeqNum": self.seq, "SendingTime": now, "Username": key_id,
                                     "RawData": sign_logon(bytes.fromhex(secret), now, self.seq, key_id)}))
            answer = self.receive()
            if "the exchange is starting" not in answer.get("Text", "") or time.monotonic() > deadline:
                return answer
            self.receive()  # its Logout

    def receive(self, timeout: float = TIMEOUT_S) -> dict:
        assert self.socket.poll(int(timeout * 1000)), "no message from the gateway"
        return decode(self.socket.recv(), max_bytes=1 << 20)

    def receive_until(self, wanted: Callable[[dict], bool], timeout: float = TIMEOUT_S) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            message = self.receive(max(deadline - time.monotonic(), 0.001))
            if wanted(message):
                return message


@pytest.fixture
def exchange():
    fake = FakeExchange()
    yield fake
    fake.close()


def accepted(record: np.void, envelope: Any, account: int, seq: int) -> tuple[np.ndarray, list[dict]]:
    events = np.zeros(1, dtype=EVENT_DTYPE)
    for name in ("client_order_id", "price", "qty", "symbol", "side", "order_type", "tif"):
        events[name] = record[name]
    events["kind"] = EventKind.ACCEPTED
    events["seq"] = events["order_id"] = seq
    events["account"] = account
    events["leaves"] = record["qty"]
    return events, [{"session": envelope.session, "account": account, "role": "order",
                     "clordid": envelope.clordid, "cum_quote": 0, "resend": False}]


ORDER = dict(Symbol="BTC-USDT", Side="1", OrdType="2", Price="65000.5", OrderQty="0.01")


def test_an_order_goes_to_the_sequencer_and_its_report_comes_back(exchange):
    exchange.start_gateway()
    client = exchange.client()
    assert client.logon(exchange.key_id, exchange.secret)["Account"] == exchange.account
    client.send("D", ClOrdID="a1", **ORDER)
    record, envelope = exchange.submission()
    assert (record["kind"], record["account"], record["origin"], record["price"], record["qty"]) == (
        CommandKind.NEW, exchange.account, 1, 650005, 100)
    assert (record["side"], record["order_type"], record["tif"]) == (Side.BUY, OrderType.LIMIT, TimeInForce.GTC)
    assert envelope.clordid == "a1" and envelope.orig == "" and envelope.session >> 32 > 0

    exchange.publish(1, *accepted(record, envelope, exchange.account, seq=41))
    report = client.receive()
    assert (report["MsgType"], report["ExecType"], report["OrdStatus"]) == ("8", "0", "0")
    assert (report["OrderID"], report["ClOrdID"], report["Price"], report["OrderQty"]) == ("41", "a1", "65000.5",
                                                                                         "0.01")


def test_what_one_report_message_owes_a_connection_leaves_in_one_multipart_message(exchange):
    exchange.start_gateway()
    client = exchange.client()
    client.logon(exchange.key_id, exchange.secret)
    client.send("D", ClOrdID="a1", **ORDER)
    first_record, first_envelope = exchange.submission()
    client.send("D", ClOrdID="a2", **ORDER)
    second_record, second_envelope = exchange.submission()
    first, first_items = accepted(first_record, first_envelope, exchange.account, seq=41)
    second, second_items = accepted(second_record, second_envelope, exchange.account, seq=42)
    exchange.publish(1, np.concatenate([first, second]), first_items + second_items)

    assert client.socket.poll(int(TIMEOUT_S * 1000))
    frames = client.socket.recv_multipart()  # docs/protocol.md: a frame each, in MsgSeqNum order
    reports = [decode(frame, max_bytes=1 << 20) for frame in frames]
    assert [(r["MsgType"], r["ClOrdID"]) for r in reports] == [("8", "a1"), ("8", "a2")]
    assert reports[1]["MsgSeqNum"] == reports[0]["MsgSeqNum"] + 1


def test_malformed_messages_are_rejected_and_never_forwarded(exchange):
    exchange.start_gateway()
    client = exchange.client()
    client.socket.send(b"not msgpack")
    assert client.receive()["SessionRejectReason"] == 6
    client.send("D", ClOrdID="a1", **ORDER)
    assert client.receive()["SessionRejectReason"] == 9  # not logged on
    client.logon(exchange.key_id, exchange.secret)
    client.send("D", ClOrdID="a1", **{**ORDER, "Price": "1e5"})
    reject = client.receive()
    assert (reject["MsgType"], reject["SessionRejectReason"], reject["RefTagID"]) == ("3", 6, "Price")
    client.send("D", ClOrdID="a2", **{**ORDER, "Price": "1"})
    assert client.receive()["Text"].startswith("PRICE_OUT_OF_BAND")
    client.socket.send(b"\x80" * (MAX_MESSAGE_BYTES + 1))
    assert "exceeds" in client.receive()["Text"]
    client.socket.send_multipart([b"", encode({"MsgType": "0", "MsgSeqNum": 99})])
    assert "one frame" in client.receive()["Text"]
    assert not exchange.intake.poll(100)


def test_a_balance_request_is_answered_from_the_engines_query_socket(exchange):
    exchange.start_gateway()
    client = exchange.client()
    client.logon(exchange.key_id, exchange.secret)
    client.send("UB", BalanceReqID="b1")
    assert exchange.queries.poll(int(TIMEOUT_S * 1000))
    route, body = exchange.queries.recv_multipart()
    query = msgpack.unpackb(body)
    assert (query["q"], query["account"]) == ("balances", exchange.account)
    reply = {"id": query["id"], "ok": True, "balances": [{"asset": 2, "available": 12_500_000, "frozen": 0}]}
    exchange.queries.send_multipart([route, msgpack.packb(reply)])
    report = client.receive()
    assert report["MsgType"] == "UP" and report["Balances"] == [{"Currency": "USDT", "Available": "12.5",
                                                                 "Frozen": "0"}]


def test_a_client_that_disconnects_mid_order_does_not_disturb_the_gateway(exchange):
    process = exchange.start_gateway()
    staying = exchange.client()
    staying.logon(exchange.key_id, exchange.secret)
    leaving = exchange.client()
    leaving.logon(exchange.other_key_id, exchange.other_secret)
    leaving.send("D", ClOrdID="gone-1", **ORDER)
    leaving.socket.close(linger=0)
    record, envelope = exchange.submission()
    # The report for the gone session reaches the account's other session once the gateway has seen
    # the connection close (until then a send to it is dropped by ZeroMQ): publish until it does.
    deadline = time.monotonic() + TIMEOUT_S
    seq = 100
    while True:
        seq += 1
        exchange.publish(1, *accepted(record, envelope, exchange.account, seq=seq))
        if staying.socket.poll(200):
            report = staying.receive()
            break
        assert time.monotonic() < deadline, "the report never reached the other session"
    assert (report["ClOrdID"], report["ExecType"]) == ("gone-1", "0")
    staying.send("1", TestReqID="still-there")
    assert staying.receive_until(lambda m: m.get("TestReqID") == "still-there")["MsgType"] == "0"
    assert process.poll() is None


def test_a_connection_sending_a_huge_frame_is_dropped_and_the_gateway_goes_on(exchange):
    process = exchange.start_gateway()
    rude = exchange.client()
    rude.socket.send(b"\x80" * (MAX_MESSAGE_BYTES * 8))
    polite = exchange.client()
    assert polite.logon(exchange.key_id, exchange.secret)["MsgType"] == "A"
    assert process.poll() is None


def test_two_gateways_run_at_once_each_with_its_topic(exchange):
    exchange.start_gateway("gw-1")
    exchange.start_gateway("gw-2")
    first, second = exchange.client("gw-1"), exchange.client("gw-2")
    assert first.logon(exchange.key_id, exchange.secret)["MsgType"] == "A"
    assert second.logon(exchange.other_key_id, exchange.other_secret)["MsgType"] == "A"
    second.send("D", ClOrdID="b1", **ORDER)
    record, envelope = exchange.submission()
    assert record["origin"] == 2
    exchange.publish(2, *accepted(record, envelope, exchange.account, seq=7))
    assert second.receive()["ClOrdID"] == "b1"
    assert not first.socket.poll(200)


def test_sigterm_logs_sessions_out_and_exits_zero(exchange):
    process = exchange.start_gateway()
    client = exchange.client()
    client.logon(exchange.key_id, exchange.secret)
    process.send_signal(signal.SIGTERM)
    logout = client.receive()
    assert logout["MsgType"] == "5" and "shutting down" in logout["Text"]
    assert process.wait(timeout=TIMEOUT_S) == 0


def test_a_gateway_refuses_to_start_under_an_unknown_name(exchange):
    environment = dict(os.environ, **{CONFIG_ENV_VAR: str(exchange.config_path)})
    result = subprocess.run([sys.executable, "-m", "gateway.main", "--name", "gw-9"], cwd=ROOT, env=environment,
                            capture_output=True, text=True, timeout=TIMEOUT_S)
    assert result.returncode == 2 and "unknown gateway" in result.stderr
