"""The sequencer: the pure core with a fake clock, then the whole process through real sockets."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest
import zmq

from common.config import Durability, default_document, parse_config_text
from common.intake import (
    Envelope,
    Envelopes,
    IntakeError,
    decode_submissions,
    encode_submissions,
    pack_envelopes,
    unpack_envelopes,
)
from common.journal import Journal
from common.records import COMMAND_DTYPE, CommandKind, command
from common.stream import Duplicate, Heartbeat, Refused, SequencedBatch, decode, encode_batch, encode_replay_request
from sequencer.core import Sequencer
from tests.harness import to_toml

REPO = Path(__file__).resolve().parent.parent
MAP_BYTES = 1 << 20


def order(account: int, client_order_id: int = 0, **fields: int) -> np.ndarray:
    return command(CommandKind.NEW, account=account, client_order_id=client_order_id, symbol=0, price=100, qty=1, **fields)


class FakeClock:
    """Returns ``now``; a test moves it (backwards too)."""

    def __init__(self, now: int = 1_000_000):
        self.now = now

    def __call__(self) -> int:
        return self.now


# --- the core ----------------------------------------------------------------------------------------


@pytest.fixture
def journal_path(tmp_path):
    return tmp_path / "journal"


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def open_core(journal_path, clock):
    """``open_core(max_batch=...)``: a Sequencer over the journal at ``journal_path``; closed at the end."""
    journals: list[Journal] = []

    def open_core(*, max_batch: int = 100) -> Sequencer:
        for journal in journals:
            journal.close()
        journal = Journal(journal_path, map_bytes=MAP_BYTES, durability=Durability.PROCESS)
        journals.append(journal)
        return Sequencer(journal, clock, max_batch=max_batch)

    yield open_core
    for journal in journals:
        journal.close()


@pytest.fixture
def core(open_core):
    return open_core()


class TestSequencing:
    def test_sealing_with_nothing_queued_gives_nothing(self, core):
        assert core.seal() == (None, [])

    def test_batches_continue_the_sequence_without_a_gap(self, core):
        for account in range(3):
            core.submit(order(account), Envelope(1, ""))
        first, _ = core.seal()
        core.submit(order(9), Envelope(1, ""))
        second, _ = core.seal()
        assert first.records["seq"].tolist() == [1, 2, 3]
        assert first.records["account"].tolist() == [0, 1, 2]
        assert (second.first, second.last) == (4, 4)
        assert core.last_seq == 4

    def test_a_sealed_batch_is_already_in_the_journal(self, core):
        core.submit(order(5, 77), Envelope(3, "a"))
        batch, _ = core.seal()
        journaled = core.journal.read(1, 10)
        assert journaled.records.tobytes() == batch.records.tobytes()
        assert journaled.envelopes == [Envelope(3, "a")]
        # The envelopes were packed once, for the journal and for the stream alike.
        assert batch.packed_envelopes == pack_envelopes([Envelope(3, "a")])
        assert decode(encode_batch(batch)).envelopes == [Envelope(3, "a")]

    def test_every_command_of_a_batch_gets_the_clock_time(self, core, clock):
        clock.now = 5_000
        core.submit(order(1), Envelope(1, ""))
        core.submit(order(2), Envelope(1, ""))
        batch, _ = core.seal()
        assert batch.records["ts"].tolist() == [5_000, 5_000]

    def test_ts_never_decreases_even_when_the_clock_steps_back(self, core, clock):
        stamps = []
        for now in (5_000, 3_000, 7_000, 6_000):
            clock.now = now
            core.submit(order(1), Envelope(1, ""))
            stamps.append(int(core.seal()[0].records["ts"][0]))
        assert stamps == [5_000, 5_000, 7_000, 7_000]

    def test_a_batch_holds_at_most_max_batch_commands(self, open_core):
        core = open_core(max_batch=4)
        for account in range(10):
            core.submit(order(account), Envelope(1, ""))
        sizes = []
        while core.pending:
            sizes.append(len(core.seal()[0].records))
        assert sizes == [4, 4, 2]
        assert core.journal.read(1, 100).records["account"].tolist() == list(range(10))

    def test_a_failed_journal_write_consumes_and_remembers_nothing(self, core, monkeypatch):
        core.submit(order(1), Envelope(1, "x"))

        def disk_full(records, envelopes, **options):
            raise OSError("disk full")

        monkeypatch.setattr(core.journal, "append", disk_full)
        with pytest.raises(OSError):
            core.seal()
        monkeypatch.undo()
        assert core.pending == 1 and core.last_seq == 0
        batch, duplicates = core.seal()
        assert batch.records["seq"].tolist() == [1] and duplicates == []

    def test_submit_refuses_anything_but_one_command_record(self, core):
        with pytest.raises(ValueError):
            core.submit(np.zeros(2, dtype=COMMAND_DTYPE), Envelope(1, ""))

    def test_a_submission_is_queued_in_its_order_as_single_submits_would_be(self, core):
        core.submit(order(1, 10), Envelope(1, "A"))
        core.seal()
        records = np.concatenate([order(1, 11), order(2, 12), order(1, 13), order(1, 14)])
        core.submit_many(records, [Envelope(1, "B"), Envelope(2, "C"), Envelope(3, "A"), Envelope(1, "B")])
        batch, duplicates = core.seal()
        assert batch.records["seq"].tolist() == [2, 3] and batch.envelopes == [Envelope(1, "B"), Envelope(2, "C")]
        assert batch.records["client_order_id"].tolist() == [11, 12]
        assert [(d.original, d.envelope) for d in duplicates] == [(1, Envelope(3, "A")), (2, Envelope(1, "B"))]
        assert [int(d.record["client_order_id"][0]) for d in duplicates] == [13, 14]

    def test_submit_many_refuses_records_without_an_envelope_each(self, core):
        with pytest.raises(ValueError):
            core.submit_many(np.concatenate([order(1), order(1)]), [Envelope(1, "A")])
        with pytest.raises(ValueError):
            core.submit_many(np.zeros(1, dtype=np.int64), [Envelope(1, "A")])
        assert core.pending == 0

    def test_replay_reads_the_journal_capped_at_max_batch_with_the_head(self, open_core):
        core = open_core(max_batch=3)
        for account in range(5):
            core.submit(order(account), Envelope(1, ""))
        while core.pending:
            core.seal()
        batch = core.replay(2, 100)
        assert batch.records["seq"].tolist() == [2, 3, 4] and batch.head == 5
        past = core.replay(6, 10)
        assert len(past.records) == 0 and past.head == 5


class TestIntakeFormat:
    def test_several_commands_round_trip_in_order(self):
        records = [order(a, 10 + a) for a in range(3)]
        envelopes = [Envelope(a, f"c{a}", "o" if a == 1 else "") for a in range(3)]
        decoded, got = decode_submissions(encode_submissions([r.tobytes() for r in records], envelopes))
        assert decoded.tobytes() == b"".join(r.tobytes() for r in records) and got == envelopes
        assert decoded.flags.writeable

    @pytest.mark.parametrize("frames", [
        [b""], [b"", b"\x90"], [b"x" * 81, b"\x91\x80"], [b"x" * 80, b"\x92\x80\x80"], [b"x" * 80, b"\x80"],
        [b"x" * 80, b"\x91\x01"], [b"x" * 80, b"\xc1"],
        [b"x" * 80, msgpack.packb([[1], ["a", "b"], None])],  # columns of different lengths
        [b"x" * 80, msgpack.packb([["1"], ["a"], None])],  # a session that is not an integer
        [b"x" * 80, msgpack.packb([[1], [2], None])],  # a ClOrdID that is not a string
        [b"x" * 80, msgpack.packb([[1], ["a"], [None]])],  # nor an OrigClOrdID
        [b"x" * 80, msgpack.packb([[1], ["a"]])],  # a column missing
        [b"x" * 80, msgpack.packb([[1], "a", None])],
    ])
    def test_malformed_frames_are_refused(self, frames):
        with pytest.raises(IntakeError):
            decode_submissions(frames)

    def test_encoding_needs_an_envelope_per_whole_record(self):
        with pytest.raises(ValueError):
            encode_submissions([], [])
        with pytest.raises(ValueError):
            encode_submissions([order(1).tobytes()], [])
        with pytest.raises(ValueError):
            encode_submissions([b"short"], [Envelope(1, "x")])


class TestEnvelopeColumns:
    ENVELOPES = [Envelope(1, "a"), Envelope(2, "b", "a"), Envelope(1, "", ""), Envelope(3, "c")]

    def test_decoded_envelopes_are_columns_equal_to_the_list_packed(self):
        columns = unpack_envelopes(pack_envelopes(self.ENVELOPES), 4)
        assert isinstance(columns, Envelopes)
        assert columns == self.ENVELOPES and self.ENVELOPES == columns and list(columns) == self.ENVELOPES
        assert columns.sessions == [1, 2, 1, 3] and columns.clordids == ["a", "b", "", "c"]
        assert columns.origs == ["", "a", "", ""]
        assert columns[1] == Envelope(2, "b", "a") and columns[-1] == Envelope(3, "c")
        assert columns[1:3] == self.ENVELOPES[1:3] and isinstance(columns[1:3], Envelopes)
        assert len(columns) == 4 and Envelope(3, "c") in columns
        assert pack_envelopes(columns) == pack_envelopes(self.ENVELOPES)  # packed from the columns alike

    def test_columns_join_and_convert(self):
        no_origs = unpack_envelopes(pack_envelopes(self.ENVELOPES[:1]), 1)
        assert no_origs.origs == [""]  # packed as nil: every one is ""
        joined = Envelopes.join([no_origs, self.ENVELOPES[1:3], Envelopes.of(self.ENVELOPES[3:])])
        assert joined == self.ENVELOPES
        assert Envelopes.of(joined) is joined and Envelopes.of([]) == [] and len(Envelopes.join([])) == 0
        assert joined != self.ENVELOPES[:3] and joined != "abcd"


class TestRefusals:
    def test_what_the_journal_cannot_take_is_refused_unsequenced_but_resends_keep_their_outcome(self, core):
        core.submit(order(1, 11), Envelope(1, "A"))
        core.seal()
        core.submit(order(1, 12), Envelope(1, "B"))
        core.submit(order(1, 11), Envelope(2, "A"))  # a resend of seq 1
        refused, duplicates = core.refuse_pending("the journal is full")
        assert refused.records["client_order_id"].tolist() == [12] and refused.envelopes == [Envelope(1, "B")]
        assert (refused.last, refused.reason) == (1, "the journal is full")
        assert [(d.original, d.envelope) for d in duplicates] == [(1, Envelope(2, "A"))]
        assert core.pending == 0 and core.last_seq == 1
        core.submit(order(1, 12), Envelope(1, "B"))  # refused before: a later try is sequenced
        batch, _ = core.seal()
        assert batch.records["seq"].tolist() == [2]


class TestDuplicates:
    def test_a_resend_of_an_earlier_clordid_is_a_duplicate_naming_the_original(self, core):
        core.submit(order(1, 11), Envelope(1, "A"))
        core.submit(order(1, 12), Envelope(1, "B"))
        core.seal()
        core.submit(order(1, 12), Envelope(2, "B"))
        core.submit(order(1, 13), Envelope(2, "C"))
        batch, duplicates = core.seal()
        assert batch.records["seq"].tolist() == [3] and batch.envelopes == [Envelope(2, "C")]
        assert [(d.original, d.last, d.envelope) for d in duplicates] == [(2, 3, Envelope(2, "B"))]
        assert int(duplicates[0].record["client_order_id"][0]) == 12

    def test_a_resend_within_the_same_batch_is_a_duplicate(self, core):
        core.submit(order(1), Envelope(1, "A"))
        core.submit(order(1), Envelope(1, "A"))
        batch, duplicates = core.seal()
        assert batch.records["seq"].tolist() == [1]
        assert [(d.original, d.last) for d in duplicates] == [(1, 1)]

    def test_a_batch_of_only_duplicates_journals_nothing(self, core):
        core.submit(order(1), Envelope(1, "A"))
        core.seal()
        core.submit(order(1), Envelope(1, "A"))
        batch, duplicates = core.seal()
        assert batch is None and len(duplicates) == 1
        assert core.journal.last_seq() == 1 and core.last_seq == 1

    def test_the_same_clordid_on_another_account_is_not_a_duplicate(self, core):
        core.submit(order(1), Envelope(1, "A"))
        core.submit(order(2), Envelope(1, "A"))
        batch, duplicates = core.seal()
        assert len(batch.records) == 2 and duplicates == []

    def test_an_empty_clordid_is_never_deduplicated(self, core):
        for _ in range(3):
            core.submit(order(1), Envelope(1, ""))
        core.seal()
        core.submit(order(1), Envelope(1, ""))
        batch, duplicates = core.seal()
        assert batch.first == 4 and duplicates == []

    def test_a_reopened_journal_continues_the_sequence_and_still_knows_every_clordid(self, open_core, clock):
        core = open_core(max_batch=2)
        for index in range(5):
            core.submit(order(1), Envelope(1, f"c{index}"))
        while core.pending:
            core.seal()
        clock.now = 1  # far behind what was journaled
        core = open_core(max_batch=2)
        assert (core.last_seq, core.last_ts, core.known_clordids) == (5, 1_000_000, 5)
        core.submit(order(1), Envelope(1, "c3"))
        core.submit(order(1), Envelope(1, "new"))
        batch, duplicates = core.seal()
        assert batch.records["seq"].tolist() == [6] and batch.records["ts"].tolist() == [1_000_000]
        assert [d.original for d in duplicates] == [4]


# --- the process -------------------------------------------------------------------------------------

TIMEOUT_S = 10.0


class SequencerProcess:
    """``python -m sequencer.main`` on ipc endpoints in a temporary directory, with test sockets."""

    def __init__(self, directory: Path, *, max_batch: int = 64, heartbeat_ms: int = 50,
                 journal_max_bytes: int | None = None):
        self.directory = directory
        document = default_document()
        document["sequencer"].update(
            intake=f"ipc://{directory}/in",
            stream=f"ipc://{directory}/st",
            replay=f"ipc://{directory}/rp",
            max_batch=max_batch,
            heartbeat_ms=heartbeat_ms,
        )
        if journal_max_bytes is not None:
            document["sequencer"].update(journal_map_bytes=journal_max_bytes, journal_max_bytes=journal_max_bytes)
        document["paths"] = {"data_dir": str(directory / "data"), "log_dir": str(directory / "log")}
        self.config_path = directory / "exchange.toml"
        self.config_path.write_text(to_toml(document), encoding="utf-8")
        self.config = parse_config_text(self.config_path.read_text(encoding="utf-8"))
        self.log_path = directory / "sequencer.log"
        self.proc: subprocess.Popen | None = None
        self.context = zmq.Context()
        self.sockets: list[zmq.Socket] = []

    def socket(self, kind: int, endpoint: str) -> zmq.Socket:
        sock = self.context.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        self.sockets.append(sock)
        sock.connect(endpoint)
        return sock

    def start(self, *, await_heartbeat: bool = True) -> "SequencerProcess":
        """Start the process and connect a PUSH, a SUB and a DEALER; return once the SUB hears it (or,
        without ``await_heartbeat``, once it answers a replay request)."""
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "sequencer.main", "--config", str(self.config_path)],
                cwd=REPO, stdout=subprocess.DEVNULL, stderr=log,
            )
        self.push = self.socket(zmq.PUSH, self.config.sequencer.intake)
        self.sub = self.socket(zmq.SUB, self.config.sequencer.stream)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"")
        self.dealer = self.socket(zmq.DEALER, self.config.sequencer.replay)
        if await_heartbeat:
            self.next_message(Heartbeat)  # the subscription is live from here on
        else:
            self.replay(*encode_replay_request(1, 1))  # the loop runs from here on
        return self

    def close_sockets(self) -> None:
        for sock in self.sockets:
            sock.close(linger=0)
        self.sockets.clear()

    def stop(self, *, timeout: float = TIMEOUT_S) -> int:
        """SIGTERM, then the exit status (killed if it does not stop in time)."""
        self.close_sockets()
        if self.proc is None:
            return 0
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError("the sequencer did not stop on SIGTERM")

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    # --- talking to it --------------------------------------------------------------------------------

    def submit(self, record: np.ndarray, envelope: Envelope) -> None:
        self.push.send_multipart(encode_submissions([record.tobytes()], [envelope]))

    def receive(self, sock: zmq.Socket, timeout: float = TIMEOUT_S) -> list[bytes]:
        if not sock.poll(timeout * 1000):
            alive = self.proc is not None and self.proc.poll() is None
            raise AssertionError(f"nothing received in {timeout}s (process alive: {alive}); log:\n{self.log()}")
        return sock.recv_multipart()

    def next_message(self, *kinds: type, timeout: float = TIMEOUT_S):
        """The next stream message of one of ``kinds`` (others are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            message = decode(self.receive(self.sub, max(0.0, deadline - time.monotonic())))
            if isinstance(message, kinds):
                return message

    def sequenced(self, last: int) -> list[SequencedBatch]:
        """The batches published until ``last`` is sequenced (duplicates and heartbeats skipped)."""
        batches = []
        while not batches or batches[-1].last < last:
            batches.append(self.next_message(SequencedBatch))
        return batches

    def replay(self, *frames: bytes) -> SequencedBatch:
        self.dealer.send_multipart(list(frames))
        return decode(self.receive(self.dealer))


@pytest.fixture
def sequencer_process(tmp_path):
    """``sequencer_process(**options)`` starts one; every one started is stopped at the end."""
    started: list[SequencerProcess] = []

    def start(*, await_heartbeat: bool = True, **options: Any) -> SequencerProcess:
        process = SequencerProcess(tmp_path, **options)
        started.append(process)
        return process.start(await_heartbeat=await_heartbeat)

    yield start
    for process in started:
        try:
            process.stop()
        finally:
            process.context.term()


def test_submissions_come_out_as_journaled_batches_in_order(sequencer_process):
    sequencer = sequencer_process()
    before = time.time_ns()
    sent = [(order(account, 100 + account), Envelope(session=50 + account, clordid=f"o{account}")) for account in range(10)]
    for record, envelope in sent:
        sequencer.submit(record, envelope)
    batches = sequencer.sequenced(10)
    records = np.concatenate([b.records for b in batches])
    envelopes = [e for b in batches for e in b.envelopes]
    assert records["seq"].tolist() == list(range(1, 11))
    assert [b.first for b in batches] == [1] + [b.last + 1 for b in batches[:-1]]
    assert np.all(np.diff(records["ts"]) >= 0) and before <= records["ts"][0] <= time.time_ns()
    assert records["account"].tolist() == list(range(10))
    assert records["client_order_id"].tolist() == [100 + a for a in range(10)]
    assert envelopes == [e for _, e in sent]
    with Journal(sequencer.config.paths.journal_dir, map_bytes=MAP_BYTES, durability=Durability.PROCESS,
                 readonly=True) as journal:
        assert journal.read(1, 100).records.tobytes() == records.tobytes()
    assert "sequencer started" in sequencer.log() and "last seq 0" in sequencer.log()


def test_a_submission_of_several_commands_is_sequenced_in_its_order_with_the_others(sequencer_process):
    sequencer = sequencer_process()
    sequencer.submit(order(1, 1), Envelope(1, "a"))
    several = [(order(account, 10 + account), Envelope(2, f"m{account}")) for account in range(2, 7)]
    sequencer.push.send_multipart(encode_submissions([record.tobytes() for record, _ in several],
                                                     [envelope for _, envelope in several]))
    sequencer.submit(order(7, 7), Envelope(1, "z"))
    batches = sequencer.sequenced(7)
    envelopes = [e for b in batches for e in b.envelopes]
    records = np.concatenate([b.records for b in batches])
    assert envelopes == [Envelope(1, "a"), *[e for _, e in several], Envelope(1, "z")]
    assert records["seq"].tolist() == list(range(1, 8))
    assert records["account"].tolist() == list(range(1, 8))


def test_a_submission_whose_envelopes_do_not_match_its_records_is_dropped_whole(sequencer_process):
    sequencer = sequencer_process()
    frames = encode_submissions([order(1).tobytes(), order(2).tobytes()], [Envelope(1, "x"), Envelope(1, "y")])
    sequencer.push.send_multipart([frames[0], encode_submissions([order(3).tobytes()], [Envelope(1, "w")])[1]])
    sequencer.submit(order(4), Envelope(1, "ok"))
    batch = sequencer.sequenced(1)[0]
    assert (batch.first, batch.last, batch.envelopes) == (1, 1, [Envelope(1, "ok")])


def test_a_resend_gives_a_duplicate_notice_and_no_new_seq(sequencer_process):
    sequencer = sequencer_process()
    sequencer.submit(order(3, 1), Envelope(9, "A"))
    sequencer.sequenced(1)
    sequencer.submit(order(3, 1), Envelope(10, "A"))
    duplicate = sequencer.next_message(Duplicate, SequencedBatch)
    assert isinstance(duplicate, Duplicate)
    assert (duplicate.original, duplicate.last, duplicate.envelope) == (1, 1, Envelope(10, "A"))
    assert int(duplicate.record["account"][0]) == 3
    sequencer.submit(order(3, 2), Envelope(10, "B"))
    assert sequencer.sequenced(2)[0].first == 2


def test_replay_returns_journaled_ranges_and_the_head(sequencer_process):
    sequencer = sequencer_process(max_batch=4)
    for account in range(6):
        sequencer.submit(order(account), Envelope(1, f"r{account}"))
    sequencer.sequenced(6)
    middle = sequencer.replay(*encode_replay_request(2, 3))
    assert (middle.first, middle.last, middle.head) == (2, 4, 6)
    assert [e.clordid for e in middle.envelopes] == ["r1", "r2", "r3"]
    capped = sequencer.replay(*encode_replay_request(1, 1000))
    assert (capped.first, capped.last, capped.head) == (1, 4, 6)  # at most max_batch per answer
    past = sequencer.replay(*encode_replay_request(7, 10))
    assert len(past.records) == 0 and past.head == 6
    huge = msgpack.packb({"from": 1e30, "max": 1})
    for malformed in ([b"R", b"\xc1"], [b"X", b""], [b"R"], [b"R", b""], [b"R", b"\x81\xa4from\x00"], [b"R", huge]):
        answer = sequencer.replay(*malformed)
        assert len(answer.records) == 0 and answer.head == 6
    assert sequencer.proc.poll() is None


def test_heartbeats_carry_the_last_seq_when_idle(sequencer_process):
    sequencer = sequencer_process(heartbeat_ms=30)
    sequencer.submit(order(1), Envelope(1, ""))
    sequencer.sequenced(1)
    beats = [sequencer.next_message(Heartbeat) for _ in range(3)]
    assert [b.last for b in beats] == [1, 1, 1]


def test_a_malformed_submission_is_dropped_and_the_next_one_is_sequenced(sequencer_process):
    sequencer = sequencer_process()
    sequencer.push.send_multipart([b"short", b"\x80"])
    sequencer.push.send_multipart([order(1).tobytes(), b"\xc1"])
    sequencer.submit(order(2), Envelope(1, "ok"))
    batch = sequencer.sequenced(1)[0]
    assert (batch.first, batch.last, batch.envelopes) == (1, 1, [Envelope(1, "ok")])
    assert sequencer.proc.poll() is None


def test_a_subscriber_that_joins_late_catches_up_by_replay(sequencer_process):
    sequencer = sequencer_process()
    sequencer.sub.close(linger=0)  # nobody listens while these are sequenced
    for account in range(5):
        sequencer.submit(order(account), Envelope(1, ""))
    sequencer.replay(*encode_replay_request(1, 1))  # a round trip; the intake may still be in flight
    late = sequencer.socket(zmq.SUB, sequencer.config.sequencer.stream)
    late.setsockopt(zmq.SUBSCRIBE, b"")
    sequencer.sub = late
    head = 0
    while head < 5:
        head = sequencer.next_message(Heartbeat).last
    caught_up = sequencer.replay(*encode_replay_request(1, 100))
    assert caught_up.records["seq"].tolist() == [1, 2, 3, 4, 5] and caught_up.head == 5


def test_sigterm_exits_0_and_a_restart_continues_the_sequence_and_remembers_clordids(sequencer_process):
    first = sequencer_process()
    first.submit(order(4, 1), Envelope(1, "before"))
    first.submit(order(4, 2), Envelope(1, "other"))
    first.sequenced(2)
    assert first.stop() == 0
    assert "sequencer stopped at last seq 2" in first.log()

    second = sequencer_process()
    second.submit(order(4, 1), Envelope(2, "before"))
    duplicate = second.next_message(Duplicate, SequencedBatch)
    assert isinstance(duplicate, Duplicate) and (duplicate.original, duplicate.last) == (1, 2)
    second.submit(order(4, 3), Envelope(2, "after"))
    batch = second.next_message(SequencedBatch)
    assert (batch.first, batch.last, batch.envelopes) == (3, 3, [Envelope(2, "after")])
    assert "last seq 2" in second.log()


def test_sigterm_stops_an_idle_sequencer_without_waiting_for_its_next_heartbeat(sequencer_process):
    sequencer = sequencer_process(heartbeat_ms=60_000, await_heartbeat=False)
    started = time.monotonic()
    assert sequencer.stop() == 0
    assert time.monotonic() - started < 5.0


def test_a_full_journal_refuses_new_commands_keeps_the_old_ones_and_goes_on_running(sequencer_process):
    sequencer = sequencer_process(journal_max_bytes=1 << 20, max_batch=256)
    refused = None
    sent = 0
    deadline = time.monotonic() + TIMEOUT_S * 6
    while refused is None and time.monotonic() < deadline and sent < 50_000:
        for _ in range(500):
            sent += 1
            sequencer.submit(order(1, sent), Envelope(9, f"fill-{sent}-" + "x" * 100))
        while sequencer.sub.poll(0):
            message = decode(sequencer.sub.recv_multipart())
            if isinstance(message, Refused):
                refused = message
    if refused is None:
        refused = sequencer.next_message(Refused)
    assert refused.reason.startswith("the journal is full") and len(refused.records) > 0
    assert sequencer.proc.poll() is None, "still running"
    assert "refusing new commands" in sequencer.log()
    head = sequencer.replay(*encode_replay_request(1, 1)).head
    assert head > 0 and head + 1 <= sent
    assert sequencer.stop() == 0
    with Journal(sequencer.config.paths.journal_dir, map_bytes=MAP_BYTES, durability=Durability.PROCESS,
                 readonly=True) as journal:
        kept = journal.read(1, head)
        assert kept.records["seq"].tolist() == list(range(1, head + 1))
    # A refused batch is refused whole (a smaller one after it may still fit): none of it was journaled.
    assert not set(refused.records["client_order_id"].tolist()) & set(kept.records["client_order_id"].tolist())


def test_a_sequencer_killed_mid_write_leaves_whole_batches_and_a_restart_continues(sequencer_process, tmp_path):
    first = sequencer_process(max_batch=512)
    for n in range(1, 20_001):
        first.submit(order(3, n), Envelope(5, f"k{n}"))
        if n == 10_000:
            first.next_message(SequencedBatch)  # writing is under way
    first.proc.kill()  # SIGKILL while batches are being written
    first.proc.wait(TIMEOUT_S)
    first.proc = None
    first.close_sockets()

    with Journal(first.config.paths.journal_dir, map_bytes=MAP_BYTES, durability=Durability.PROCESS,
                 readonly=True) as journal:
        head = journal.last_seq()
        kept = journal.read(1, head)
    assert 0 < head <= 20_000
    assert kept.records["seq"].tolist() == list(range(1, head + 1))  # no gap, no torn entry
    assert [e.clordid for e in kept.envelopes] == [f"k{n}" for n in kept.records["client_order_id"].tolist()]

    second = sequencer_process(max_batch=512)
    second.submit(order(3, 1), Envelope(6, "k1"))  # a resend of what was journaled before the kill
    duplicate = second.next_message(Duplicate)
    assert duplicate.original == int(kept.records["seq"][kept.records["client_order_id"] == 1][0])
    second.submit(order(3, 20_001), Envelope(6, "k20001"))
    assert second.next_message(SequencedBatch).first == head + 1
