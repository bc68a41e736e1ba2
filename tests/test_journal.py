"""The LMDB journal: batches round-trip, the sequence stays contiguous, it survives reopening, the map
grows instead of failing, and a reader in another process sees every commit."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import lmdb
import msgpack
import numpy as np
import pytest

from common.config import Durability
from common.intake import Envelope
from common.journal import Journal, JournalCompacted, JournalError, JournalFull, seq_key
from common.records import COMMAND_DTYPE, CommandKind

REPO = Path(__file__).resolve().parent.parent
MAP_BYTES = 1 << 20


def commands(first: int, count: int, *, ts: int = 1_000, account: int = 7) -> tuple[np.ndarray, list[Envelope]]:
    """``count`` sequenced commands from seq ``first``, each with its own envelope."""
    records = np.zeros(count, dtype=COMMAND_DTYPE)
    records["seq"] = np.arange(first, first + count)
    records["ts"] = ts
    records["kind"] = CommandKind.NEW
    records["account"] = account
    records["client_order_id"] = np.arange(first, first + count) * 10
    records["price"] = -np.arange(first, first + count)  # any int64, negative included
    envelopes = [Envelope(session=1000 + seq, clordid=f"c-{seq}", orig="o" if seq % 2 else "") for seq in range(first, first + count)]
    return records, envelopes


@pytest.fixture
def journal(tmp_path):
    journal = Journal(tmp_path / "journal", map_bytes=MAP_BYTES, durability=Durability.PROCESS)
    yield journal
    journal.close()


class TestRoundTrip:
    def test_an_appended_batch_reads_back_byte_for_byte_with_its_envelopes(self, journal):
        records, envelopes = commands(1, 5)
        journal.append(records, envelopes)
        batch = journal.read(1, 10)
        assert batch.first == 1 and batch.last == 5 and batch.head == 5
        assert batch.records.tobytes() == records.tobytes()
        assert batch.envelopes == envelopes

    def test_a_read_spans_batches_and_stops_at_max_count(self, journal):
        for first in (1, 4, 6):
            journal.append(*commands(first, {1: 3, 4: 2, 6: 4}[first]))
        batch = journal.read(2, 6)
        assert batch.records["seq"].tolist() == [2, 3, 4, 5, 6, 7]
        assert [e.clordid for e in batch.envelopes] == [f"c-{seq}" for seq in range(2, 8)]
        assert batch.head == 9

    def test_reading_past_the_end_gives_an_empty_batch_with_the_head(self, journal):
        journal.append(*commands(1, 3))
        batch = journal.read(4, 10)
        assert len(batch.records) == 0 and batch.envelopes == []
        assert batch.first == 4 and batch.head == 3

    def test_an_empty_journal_reads_as_empty_with_head_zero(self, journal):
        assert journal.last_seq() == 0
        batch = journal.read(1, 10)
        assert len(batch.records) == 0 and batch.head == 0

    def test_iterate_yields_every_command_in_order_in_chunks(self, journal):
        for first in range(1, 30, 4):
            journal.append(*commands(first, 4))
        batches = list(journal.iterate(first=3, chunk=7))
        assert [len(b.records) for b in batches] == [7, 7, 7, 7, 2]
        assert np.concatenate([b.records["seq"] for b in batches]).tolist() == list(range(3, 33))

    def test_the_key_of_a_seq_is_8_bytes_big_endian(self):
        assert seq_key(1) == b"\x00" * 7 + b"\x01"
        assert seq_key(258) == b"\x00" * 6 + b"\x01\x02"


class TestContiguity:
    def test_the_first_batch_must_start_at_seq_1(self, journal):
        with pytest.raises(JournalError, match="contiguous"):
            journal.append(*commands(2, 3))
        assert journal.last_seq() == 0

    def test_a_gap_is_refused_and_nothing_is_written(self, journal):
        journal.append(*commands(1, 3))
        with pytest.raises(JournalError, match="contiguous"):
            journal.append(*commands(5, 2))
        assert journal.last_seq() == 3
        assert len(journal.read(4, 10).records) == 0

    def test_a_repeated_seq_is_refused(self, journal):
        journal.append(*commands(1, 3))
        with pytest.raises(JournalError):
            journal.append(*commands(3, 2))
        assert journal.last_seq() == 3

    def test_a_batch_with_a_hole_inside_is_refused(self, journal):
        records, envelopes = commands(1, 4)
        records["seq"][2] = 9
        with pytest.raises(JournalError):
            journal.append(records, envelopes)
        assert journal.last_seq() == 0

    def test_records_and_envelopes_must_match_one_for_one(self, journal):
        records, envelopes = commands(1, 3)
        with pytest.raises(JournalError, match="envelopes"):
            journal.append(records, envelopes[:2])


class TestDurability:
    def test_last_seq_survives_closing_and_reopening(self, tmp_path):
        path = tmp_path / "journal"
        with Journal(path, map_bytes=MAP_BYTES, durability=Durability.PROCESS) as journal:
            journal.append(*commands(1, 4))
            journal.append(*commands(5, 1))
        with Journal(path, map_bytes=MAP_BYTES, durability=Durability.PROCESS) as journal:
            assert journal.last_seq() == 5
            journal.append(*commands(6, 1))
            assert journal.read(1, 100).records["seq"].tolist() == [1, 2, 3, 4, 5, 6]

    @pytest.mark.parametrize("durability", list(Durability), ids=lambda d: d.value)
    def test_both_durability_modes_open_write_and_reopen(self, tmp_path, durability):
        path = tmp_path / "nested" / "journal"  # the directories are created
        with Journal(path, map_bytes=MAP_BYTES, durability=durability) as journal:
            journal.append(*commands(1, 3))
        with Journal(path, map_bytes=MAP_BYTES, durability=durability, readonly=True) as journal:
            assert journal.last_seq() == 3

    def test_a_tiny_map_grows_instead_of_failing(self, tmp_path):
        with Journal(tmp_path / "journal", map_bytes=64 * 1024, durability=Durability.PROCESS) as journal:
            seq = 1
            for _ in range(40):
                records, envelopes = commands(seq, 100)
                envelopes = [Envelope(e.session, e.clordid + "x" * 200) for e in envelopes]
                journal.append(records, envelopes)
                seq += 100
            assert journal.map_bytes > 64 * 1024 * 8
            batch = journal.read(1, 10_000)
            assert len(batch.records) == 4000 and batch.envelopes[-1].clordid.startswith("c-4000x")

    def test_a_journal_at_its_size_limit_refuses_a_batch_and_keeps_what_it_has(self, tmp_path):
        with Journal(tmp_path / "journal", map_bytes=MAP_BYTES, max_bytes=2 * MAP_BYTES,
                     durability=Durability.PROCESS) as journal:
            seq = 1
            with pytest.raises(JournalFull, match="limit"):
                for _ in range(1000):
                    records, envelopes = commands(seq, 100)
                    journal.append(records, [Envelope(e.session, e.clordid + "x" * 200) for e in envelopes])
                    seq += 100
            assert journal.map_bytes == 2 * MAP_BYTES
            assert journal.last_seq() == seq - 1  # the refused batch left nothing behind
            kept = journal.read(1, 1_000_000)
            assert len(kept.records) == seq - 1 and kept.records["seq"].tolist() == list(range(1, seq))
        with Journal(tmp_path / "journal", map_bytes=MAP_BYTES, max_bytes=4 * MAP_BYTES,
                     durability=Durability.PROCESS) as journal:  # a larger limit: writes go on
            journal.append(*commands(seq, 1))
            assert journal.last_seq() == seq

    def test_a_read_only_journal_refuses_to_append(self, tmp_path):
        with Journal(tmp_path / "journal", map_bytes=MAP_BYTES, durability=Durability.PROCESS) as journal:
            journal.append(*commands(1, 1))
        with Journal(tmp_path / "journal", map_bytes=MAP_BYTES, durability=Durability.PROCESS, readonly=True) as reader:
            with pytest.raises(JournalError, match="read-only"):
                reader.append(*commands(2, 1))

    def test_opening_a_missing_journal_read_only_is_a_clear_error(self, tmp_path):
        with pytest.raises(JournalError, match="no journal"):
            Journal(tmp_path / "absent", map_bytes=MAP_BYTES, durability=Durability.PROCESS, readonly=True)


class TestBatches:
    """A batch is one LMDB entry: reads cut into batches anywhere, and a version-2 journal is converted."""

    def test_reads_start_and_end_inside_batches(self, journal):
        for first, count in ((1, 5), (6, 1), (7, 6)):
            journal.append(*commands(first, count))
        for first in range(1, 13):
            for count in range(0, 14 - first):
                batch = journal.read(first, count)
                assert batch.records["seq"].tolist() == list(range(first, first + count))
                assert [e.session for e in batch.envelopes] == [1000 + seq for seq in range(first, first + count)]
                assert [e.orig for e in batch.envelopes] == ["o" if seq % 2 else "" for seq in range(first, first + count)]

    def test_batches_whose_envelopes_are_in_the_older_form_read_alike_beside_newer_ones(self, journal):
        """Journals written before envelopes became bytes columns hold ``[sessions, clordids, origs]``."""
        journal.append(*commands(1, 4))
        records, envelopes = commands(5, 3)
        older = msgpack.packb([[e.session for e in envelopes], [e.clordid for e in envelopes],
                               [e.orig for e in envelopes]], use_bin_type=True)
        with journal._begin(write=True) as txn:
            txn.put(seq_key(5), len(records).to_bytes(4, "little") + records.tobytes() + older)
        for first, count in ((1, 7), (3, 4), (6, 1), (5, 3)):
            batch = journal.read(first, count)
            assert batch.records["seq"].tolist() == list(range(first, first + count))
            assert batch.envelopes == commands(first, count)[1]

    def test_a_batch_without_origclordids_reads_them_as_empty(self, journal):
        records, _ = commands(1, 3)
        journal.append(records, [Envelope(1, f"x{i}") for i in range(3)])
        assert journal.read(1, 3).envelopes == [Envelope(1, "x0", ""), Envelope(1, "x1", ""), Envelope(1, "x2", "")]

    def test_a_compaction_through_a_batch_keeps_the_rest_of_it_readable(self, journal):
        journal.append(*commands(1, 10))
        journal.append(*commands(11, 10))
        assert journal.drop_before(14) == 13
        assert journal.first_seq() == 14 and journal.last_seq() == 20
        batch = journal.read(14, 100)
        assert batch.records["seq"].tolist() == list(range(14, 21))
        assert [e.clordid for e in batch.envelopes] == [f"c-{seq}" for seq in range(14, 21)]
        journal.append(*commands(21, 2))
        assert journal.read(20, 5).records["seq"].tolist() == [20, 21, 22]

    def test_the_structure_check_finds_torn_overlapping_and_undecodable_batches(self, journal):
        journal.append(*commands(1, 5))
        journal.append(*commands(6, 5))
        assert journal.structure_faults() == []
        with journal._begin(write=True) as txn:
            txn.put(seq_key(3), b"\x02\x00")  # torn: shorter than its header
            txn.put(seq_key(11), b"\x01\x00\x00\x00" + commands(11, 1)[0].tobytes() + b"\xc1")  # envelopes
        faults = journal.structure_faults()
        assert any("near seq 3" in fault for fault in faults)
        assert any("near seq 6" in fault for fault in faults)  # after the torn one, the next does not follow
        assert any("near seq 11" in fault for fault in faults)

    def test_a_version_2_journal_is_converted_by_a_writer_and_refused_by_a_reader_before(self, tmp_path):
        path = tmp_path / "journal"
        path.mkdir()
        records, envelopes = commands(1, 9000)  # more than one conversion chunk
        env = lmdb.open(str(path), map_size=64 << 20, max_dbs=2)
        old, index = env.open_db(b"commands"), env.open_db(b"clordids")
        with env.begin(write=True) as txn:
            for record, envelope in zip(records, envelopes):
                seq = int(record["seq"])
                txn.put(seq_key(seq), record.tobytes() + msgpack.packb(envelope.pack()), db=old)
                txn.put((7).to_bytes(8, "big") + envelope.clordid.encode(), seq_key(seq), db=index)
        env.close()
        with pytest.raises(JournalError, match="format version 2"):
            Journal(path, map_bytes=64 << 20, durability=Durability.PROCESS, readonly=True)
        with Journal(path, map_bytes=64 << 20, durability=Durability.PROCESS) as journal:
            assert journal.last_seq() == 9000 and journal.first_seq() == 1
            journal.append(*commands(9001, 1))
        with Journal(path, map_bytes=64 << 20, durability=Durability.PROCESS, readonly=True) as journal:
            batch = journal.read(1, 10_000)
            assert batch.records.tobytes() == np.concatenate([records, commands(9001, 1)[0]]).tobytes()
            assert batch.envelopes[:9000] == envelopes
            assert journal.sequenced_as([(7, "c-4242")]) == {(7, "c-4242"): 4242}


    def test_a_conversion_cut_short_starts_over(self, tmp_path):
        path = tmp_path / "journal"
        path.mkdir()
        records, envelopes = commands(1, 5)
        env = lmdb.open(str(path), map_size=MAP_BYTES, max_dbs=3)
        old, half_done = env.open_db(b"commands"), env.open_db(b"batches")
        with env.begin(write=True) as txn:
            for record, envelope in zip(records, envelopes):
                txn.put(seq_key(int(record["seq"])), record.tobytes() + msgpack.packb(envelope.pack()), db=old)
            txn.put(seq_key(1), b"\x02\x00\x00\x00" + records[:2].tobytes() + b"\xc0", db=half_done)
        env.close()
        with Journal(path, map_bytes=MAP_BYTES, durability=Durability.PROCESS) as journal:
            batch = journal.read(1, 10)
            assert batch.records.tobytes() == records.tobytes() and batch.envelopes == envelopes


# --- a reader in another process ----------------------------------------------------------------------

READER = """
import json, sys
from common.config import Durability
from common.journal import Journal
journal = Journal(sys.argv[1], map_bytes=1 << 16, durability=Durability.PROCESS, readonly=True)
print("ready", flush=True)
for line in sys.stdin:
    batch = journal.read(1, 1_000_000)
    print(json.dumps([journal.last_seq(), batch.records["seq"].tolist()[-1:], len(batch.envelopes)]), flush=True)
journal.close()
"""


class LineReader:
    """A child's stdout, read line by line with a timeout (a hung child fails the test, not the run)."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self.buffer = b""

    def line(self, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            remaining = deadline - time.monotonic()
            assert remaining > 0, "the reader process did not answer"
            if select.select([self.proc.stdout], [], [], remaining)[0]:
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                assert chunk, f"the reader process ended: {self.proc.stderr.read().decode()}"
                self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode()


def test_a_reader_in_another_process_sees_each_commit_even_after_the_map_grew(tmp_path):
    path = tmp_path / "journal"
    with Journal(path, map_bytes=64 * 1024, durability=Durability.PROCESS) as journal:
        journal.append(*commands(1, 2))
        proc = subprocess.Popen(
            [sys.executable, "-c", READER, str(path)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0, cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        try:
            lines = LineReader(proc)
            assert lines.line() == "ready"

            def ask() -> list:
                proc.stdin.write(b"?\n")
                return json.loads(lines.line())

            assert ask() == [2, [2], 2]
            journal.append(*commands(3, 5))
            assert ask() == [7, [7], 7]
            start_map = journal.map_bytes
            seq = 8
            while journal.map_bytes < 4 * start_map:
                journal.append(*commands(seq, 500))
                seq += 500
            assert ask() == [seq - 1, [seq - 1], seq - 1]
        finally:
            proc.stdin.close()
            try:
                assert proc.wait(timeout=10) == 0
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                proc.stdout.close()
                proc.stderr.close()


class TestCompaction:
    def test_dropping_old_commands_keeps_the_newest_and_reads_from_the_first_kept(self, journal):
        journal.append(*commands(1, 50))
        assert journal.drop_before(31, chunk=7) == 30
        assert journal.first_seq() == 31 and journal.last_seq() == 50
        assert [b.first for b in journal.iterate(chunk=10)] == [31, 41]
        with pytest.raises(JournalCompacted, match="starts at seq 31"):
            journal.read(5, 10)
        assert journal.drop_before(10_000) == 19  # never the newest: it holds the last seq
        assert journal.first_seq() == 50 and journal.last_seq() == 50
        journal.append(*commands(51, 1))
        assert journal.read(50, 5).records["seq"].tolist() == [50, 51]


class TestFullDisk:
    """A real full filesystem: a 1 MiB tmpfs mounted for the test (root only)."""

    @pytest.fixture
    def tiny_disk(self, tmp_path):
        mount_point = tmp_path / "disk"
        mount_point.mkdir()
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)],
                                 capture_output=True, text=True)
        if mounted.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
        try:
            yield mount_point
        finally:
            subprocess.run(["umount", "-l", str(mount_point)], check=False)

    def test_a_full_disk_refuses_a_batch_and_keeps_what_was_journaled(self, tiny_disk):
        path = tiny_disk / "journal"
        seq = 1
        with Journal(path, map_bytes=8 * MAP_BYTES, durability=Durability.PROCESS) as journal:
            with pytest.raises(JournalFull, match="cannot be written"):
                for _ in range(1000):
                    journal.append(*commands(seq, 100))
                    seq += 100
            assert journal.last_seq() == seq - 1
        with Journal(path, map_bytes=8 * MAP_BYTES, durability=Durability.PROCESS, readonly=True) as journal:
            kept = journal.read(1, 1_000_000)
            assert kept.records["seq"].tolist() == list(range(1, seq))


class TestClOrdIDIndex:
    def test_each_account_and_clordid_maps_to_the_seq_it_was_first_journaled_with(self, journal):
        records, envelopes = commands(1, 3)
        envelopes[2] = Envelope(5, "c-1")  # the same ClOrdID again (a journal may hold that: not a resend)
        journal.append(records, envelopes)
        found = journal.sequenced_as([(7, "c-1"), (7, "c-2"), (8, "c-1"), (7, "nope")])
        assert found == {(7, "c-1"): 1, (7, "c-2"): 2}
        assert journal.clordid_count() == 2
        later, later_envelopes = commands(4, 2)
        later_envelopes[0] = Envelope(5, "c-2")  # in a later batch too
        journal.append(later, later_envelopes)
        assert journal.sequenced_as([(7, "c-2")]) == {(7, "c-2"): 2}

    def test_a_journal_written_before_the_index_gets_one_when_opened_for_writing(self, tmp_path):
        path = tmp_path / "journal"
        with Journal(path, map_bytes=MAP_BYTES, durability=Durability.PROCESS) as journal:
            journal.append(*commands(1, 40))
            with journal._begin(write=True) as txn:
                txn.drop(journal._clordids, delete=False)  # as an older version left it: no entries
            assert journal.clordid_count() == 0
        with Journal(path, map_bytes=MAP_BYTES, durability=Durability.PROCESS) as journal:
            assert journal.clordid_count() == 40
            assert journal.sequenced_as([(7, "c-33")]) == {(7, "c-33"): 33}
