"""The journal: every sequenced command, in order, in an LMDB environment. The journal is the truth.

Written by the sequencer only (one writer); read by anyone (the sequencer's replay, an engine
rebuilding its state, tools), from any process, while the writer goes on.

Format (version 3)
------------------

- An LMDB environment in a directory (``config.paths.journal_dir``: ``data.mdb``, ``lock.mdb``), with
  a named database ``batches``: one entry per journaled batch (one write transaction of the sequencer),
  so that writing and reading cost an LMDB call per batch, not per command.
- Key: the batch's first ``seq`` as an 8-byte **big-endian** unsigned integer, so that LMDB's byte order is
  the sequence order. Batches run on without a gap: each starts at the seq after the last of the one
  before.
- Value: the number of commands ``n`` (4 bytes, little-endian), then the ``n`` 80-byte ``COMMAND_DTYPE``
  records (``common.records``; little-endian fields, ``seq`` and ``ts`` set by the sequencer), then the
  intake envelopes as one msgpack array of columns (``common.intake.pack_envelopes``: the sessions and
  the ClOrdIDs as bytes, ``[sessions, ends, text, origs]``; batches written before that hold
  ``[sessions, clordids, origs]`` as arrays, and are read alike; ``origs`` is nil when no command of the
  batch has an OrigClOrdID).
- A second database, ``clordids``: key the account (8 bytes, big-endian) followed by the ClOrdID's UTF-8
  bytes, value the 8-byte seq it was first journaled with. Written in the same transaction as the
  commands, it is the sequencer's memory of what was sequenced (a resend is recognised without reading
  the journal at start). A compaction keeps it whole, so resends stay recognised for good.
- A batch is written in one write transaction: a reader sees all of it or none of it. A compaction
  that cuts through a batch writes what it keeps of it again under the first kept seq.

Version 2 kept a command per entry (database ``commands``: the record, then its envelope as a msgpack
map). A writer that opens a version-2 journal converts it, before anything else, into version 3 batches
of ``DEFAULT_CHUNK`` commands; the conversion is restartable (a crash during it leaves the version-2
database in place and the conversion starts over). A reader refuses a version-2 journal with a clear
error until a writer (the sequencer) has opened it once.

Durability (``config.sequencer.durability``): ``process`` opens LMDB with ``sync=False``: a commit is
in the OS page cache when ``append`` returns, which survives a crash of any process but not of the
machine; ``fsync`` opens it with ``sync=True``: a commit is on disk when ``append`` returns.

The map (the most bytes the file may grow to) starts at ``map_bytes`` and doubles whenever a
transaction does not fit, up to ``max_bytes``; the transaction is then retried. A batch that cannot be
written (the limit is reached, the disk is full) raises JournalFull and leaves the journal as it was.
Readers in other processes adopt a map grown by the writer on their next transaction.
"""

from __future__ import annotations

import logging
import operator
import os
import struct
from itertools import repeat
from pathlib import Path
from typing import Iterator, Sequence

import lmdb
import msgpack
import numpy as np

from common.config import Durability
from common.intake import Envelope, Envelopes, pack_envelopes, unpack_envelope_runs, unpack_envelopes
from common.records import COMMAND_DTYPE
from common.stream import SequencedBatch

log = logging.getLogger("common.journal")

DB_NAME = b"batches"
CLORDID_DB_NAME = b"clordids"
V2_DB_NAME = b"commands"  # a version-2 journal's command per entry (converted by a writer)
RECORD_BYTES = COMMAND_DTYPE.itemsize
DEFAULT_CHUNK = 4096  # commands per batch that ``iterate`` yields
_KEY_BYTES = 8
_COUNT = struct.Struct("<I")  # a batch value's command count


class JournalError(ValueError):
    """The journal refused a write (not contiguous, malformed) or holds something it should not."""


class JournalFull(JournalError):
    """A batch that cannot be written: the map may not grow further, or the disk is full. Nothing of
    the batch was written, and everything before it is intact."""


class JournalCompacted(JournalError):
    """A read from before the first seq the journal still holds (the rest went to an archive)."""


def seq_key(seq: int) -> bytes:
    """The LMDB key of a sequence number: 8 bytes, big-endian, so keys sort as numbers do."""
    return seq.to_bytes(_KEY_BYTES, "big")


def clordid_key(account: int, clordid: str) -> bytes:
    """The ClOrdID index's key: the account as 8 bytes big-endian, then the ClOrdID's UTF-8 bytes."""
    return account.to_bytes(_KEY_BYTES, "big", signed=True) + clordid.encode()


def _clordid_entries(first: int, records: np.ndarray, envelopes: Sequence[Envelope]) -> list[tuple[bytes, int]]:
    """(index key, seq) of the commands from seq ``first`` that carry a ClOrdID."""
    accounts = records["account"].tolist()
    return [(clordid_key(account, clordid), first + offset)
            for offset, (account, clordid) in enumerate(zip(accounts, Envelopes.of(envelopes).clordids)) if clordid]


def _key_seq(key: bytes) -> int:
    return int.from_bytes(key, "big")


def batch_value(raw_records: bytes, envelopes: Sequence[Envelope], packed_envelopes: bytes | None = None) -> bytes:
    """The LMDB value of a batch: its count, its records' bytes, its envelopes as columns."""
    packed = packed_envelopes if packed_envelopes is not None else pack_envelopes(envelopes)
    return _COUNT.pack(len(envelopes)) + raw_records + packed


def _value_count(value: bytes) -> int:
    if len(value) < _COUNT.size:
        raise JournalError("journal corrupt: a batch shorter than its header")
    return _COUNT.unpack_from(value)[0]


def _value_envelopes(value: bytes, count: int) -> Envelopes:
    """The envelopes of a batch value (its records are checked to be there)."""
    end = _COUNT.size + count * RECORD_BYTES
    if count < 1 or len(value) <= end:
        raise JournalError("journal corrupt: a batch's records or envelopes are missing")
    return unpack_envelopes(value[end:], count)


class Journal:
    """The LMDB journal at ``path``. ``Journal(path, map_bytes=..., durability=...)`` is the writer
    (it creates the directory); ``readonly=True`` opens a reader of an existing journal."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        map_bytes: int,
        durability: Durability,
        readonly: bool = False,
        max_bytes: int | None = None,
    ):
        self.path = Path(path)
        self.max_bytes = max_bytes  # the map never grows past this (None: no bound but the disk)
        self.readonly = readonly
        self.durability = Durability(durability)
        if not readonly:
            self.path.mkdir(parents=True, exist_ok=True)
        elif not (self.path / "data.mdb").exists():
            raise JournalError(f"no journal at {str(self.path)!r}")
        self._env = lmdb.open(
            str(self.path),
            map_size=map_bytes,
            max_dbs=3,
            readonly=readonly,
            sync=self.durability is Durability.FSYNC,
            metasync=self.durability is Durability.FSYNC,
            lock=True,  # a reader without locks is not safe beside a writer
        )
        try:
            if readonly and self._has_db(V2_DB_NAME):
                raise JournalError(f"journal {str(self.path)!r} is in format version 2: open it once for writing "
                                   f"(start the sequencer) to convert it")
            self._db = self._env.open_db(DB_NAME, create=not readonly)
        except lmdb.Error as exc:
            self._env.close()
            raise JournalError(f"journal {str(self.path)!r} has no {DB_NAME.decode()!r} database: {exc}") from None
        except JournalError:
            self._env.close()
            raise
        self._clordids = None
        try:
            self._clordids = self._env.open_db(CLORDID_DB_NAME, create=not readonly)
        except lmdb.Error:  # a reader of a journal written before the index existed
            pass
        if not readonly:
            self._convert_version_2()
        self._last = self._read_last_seq()  # the writer's cache; a reader asks LMDB every time
        if not readonly:
            self._index_missing_clordids()

    def _entries_after(self, db, after: bytes) -> list[tuple[bytes, bytes]]:
        """Up to DEFAULT_CHUNK (key, value) entries of ``db`` after the key ``after`` (b"": from the first),
        read in one transaction: a walk over a whole database takes a transaction per chunk."""
        entries = []
        with self._begin(db=db) as txn:
            cursor = txn.cursor()
            found = cursor.set_range(after) if after else cursor.first()
            while found and len(entries) < DEFAULT_CHUNK:
                if cursor.key() != after:
                    entries.append((cursor.key(), cursor.value()))
                found = cursor.next()
        return entries

    def _has_db(self, name: bytes) -> bool:
        with self._env.begin() as txn:  # the main database lists the named ones
            return txn.get(name) is not None

    # --- transactions --------------------------------------------------------------------------------

    def _begin(self, *, write: bool = False, db=None) -> lmdb.Transaction:
        """A transaction whose default database is ``db`` (the batches unless told)."""
        db = self._db if db is None else db
        try:
            return self._env.begin(db=db, write=write)
        except lmdb.MapResizedError:
            # Another process grew the map: adopt its size (0 = the size recorded in the file).
            self._env.set_mapsize(0)
            return self._env.begin(db=db, write=write)

    def _read_last_seq(self) -> int:
        with self._begin() as txn:
            cursor = txn.cursor()
            return _key_seq(cursor.key()) + _value_count(cursor.value()) - 1 if cursor.last() else 0

    @property
    def map_bytes(self) -> int:
        """The current size of the map (grows as the journal does)."""
        return self._env.info()["map_size"]

    # --- writing -------------------------------------------------------------------------------------

    def append(self, records: np.ndarray, envelopes: Sequence[Envelope], *, archive: bool = False,
               packed_envelopes: bytes | None = None) -> None:
        """Write one batch in one transaction. ``records`` carry their ``seq`` (contiguous with the last
        one journaled) and ``ts``; ``envelopes`` match them one for one (``packed_envelopes``: their
        ``pack_envelopes`` bytes, if the caller has them). Returns once committed.
        ``archive``: an archive of compacted commands, whose first batch may start at any seq."""
        if self.readonly:
            raise JournalError("this journal is open read-only")
        if records.dtype != COMMAND_DTYPE:
            raise JournalError(f"records must be COMMAND_DTYPE, not {records.dtype}")
        count = len(records)
        if count != len(envelopes):
            raise JournalError(f"{count} records but {len(envelopes)} envelopes")
        if count == 0:
            return
        start = int(records["seq"][0]) if archive and self._last == 0 else self._last + 1
        expected = np.arange(start, start + count, dtype=np.int64)
        if not np.array_equal(records["seq"], expected):
            raise JournalError(
                f"batch seq {int(records['seq'][0])}..{int(records['seq'][-1])} does not continue the journal "
                f"after {self._last} contiguously"
            )
        value = batch_value(np.ascontiguousarray(records).tobytes(), envelopes, packed_envelopes)
        key = seq_key(start)
        indexed = _clordid_entries(start, records, envelopes)
        self._write(lambda txn: self._put_batch(txn, key, value, indexed))
        self._last = start + count - 1

    def _put_batch(self, txn: lmdb.Transaction, key: bytes, value: bytes, indexed: list[tuple[bytes, int]]) -> None:
        # Keys only grow: APPEND writes at the end without searching the tree.
        if not txn.cursor().put(key, value, append=True):
            raise JournalError(f"seq {_key_seq(key)} is already journaled")
        self._index(txn, indexed)

    def _write(self, work) -> None:
        """Run ``work(txn)`` in one write transaction, growing the map as long as it does not fit."""
        while True:
            try:
                with self._begin(write=True) as txn:
                    work(txn)
                return
            except lmdb.MapFullError:
                # The aborted transaction left nothing behind: grow the map and write it again.
                grown = self.map_bytes * 2
                if self.max_bytes is not None and grown > self.max_bytes:
                    if self.map_bytes >= self.max_bytes:
                        raise JournalFull(f"the journal is full at its limit of {self.max_bytes} bytes") from None
                    grown = self.max_bytes
                try:
                    self._env.set_mapsize(grown)
                except lmdb.Error as exc:
                    raise JournalFull(f"the journal cannot grow: {exc}") from None
            except lmdb.Error as exc:  # no space left on the device, an I/O error: nothing was written
                raise JournalFull(f"the journal cannot be written: {exc}") from None

    def _convert_version_2(self) -> None:
        """A version-2 journal (a command per entry) becomes version 3 (module docstring)."""
        if not self._has_db(V2_DB_NAME):
            return
        old = self._env.open_db(V2_DB_NAME)
        with self._begin(write=True) as txn:
            txn.drop(self._db, delete=False)  # what a conversion that did not finish left
        converted = 0
        after = b""
        while True:
            entries = self._entries_after(old, after)
            if not entries:
                break
            first = _key_seq(entries[0][0])
            if any(_key_seq(key) != first + i or len(value) <= RECORD_BYTES for i, (key, value) in enumerate(entries)):
                raise JournalError(f"version-2 journal corrupt near seq {first}")
            raw = b"".join([value[:RECORD_BYTES] for _, value in entries])
            envelopes = [Envelope.unpack(msgpack.unpackb(value[RECORD_BYTES:], raw=False)) for _, value in entries]
            batch = batch_value(raw, envelopes)
            self._write(lambda txn: txn.put(entries[0][0], batch, append=True))
            converted += len(entries)
            after = entries[-1][0]
        with self._env.begin(write=True) as txn:
            txn.drop(old, delete=True)
        log.info("journal %s converted from format version 2: %d commands", self.path, converted)

    # --- the ClOrdID index ----------------------------------------------------------------------------

    def sequenced_as(self, keys: list[tuple[int, str]]) -> dict[tuple[int, str], int]:
        """The seq each (account, ClOrdID) of ``keys`` was first journaled with, for those journaled."""
        if not keys or self._clordids is None:
            return {}
        by_index_key = {clordid_key(*key): key for key in keys}
        with self._begin() as txn:  # one call for the whole list: it returns the keys found only
            hits = txn.cursor(db=self._clordids).getmulti(list(by_index_key))
            return {by_index_key[index_key]: _key_seq(value) for index_key, value in hits}

    def clordid_count(self) -> int:
        """(account, ClOrdID) pairs in the index."""
        if self._clordids is None:
            return 0
        with self._begin() as txn:
            return txn.stat(self._clordids)["entries"]

    def _index_missing_clordids(self) -> None:
        """A journal written before the index existed: index what it holds, once."""
        if self._last == 0 or self.clordid_count() > 0:
            return
        for batch in self.iterate(chunk=DEFAULT_CHUNK):
            with self._begin(write=True) as txn:
                self._index(txn, _clordid_entries(batch.first, batch.records, batch.envelopes))

    def _index(self, txn: lmdb.Transaction, entries: list[tuple[bytes, int]]) -> None:
        """Index (key, seq) pairs; a key indexed before keeps its first seq."""
        # One call for the whole batch; overwrite=False leaves a key indexed before as it is.
        txn.cursor(db=self._clordids).putmulti([(key, seq_key(seq)) for key, seq in entries], overwrite=False)

    # --- reading -------------------------------------------------------------------------------------

    def last_seq(self) -> int:
        """The newest journaled sequence number (0 for an empty journal)."""
        if self.readonly:
            return self._read_last_seq()
        return self._last

    def structure_faults(self, max_faults: int = 100) -> list[str]:
        """Every batch entry checked against the format (an empty list: sound): batches that follow each
        other without gap or overlap, a count and records that fill the value, records that carry their
        own seqs, envelopes that decode. Read a chunk of entries per transaction."""
        faults: list[str] = []
        expected: int | None = None
        after = b""
        while len(faults) < max_faults:
            entries = self._entries_after(self._db, after)
            if not entries:
                break
            for key, value in entries:
                first = _key_seq(key)
                if expected is not None and first != expected:
                    faults.append(f"journal corrupt near seq {first}: a batch starts there where seq {expected} "
                                  f"should come next")
                try:
                    count = _value_count(value)
                    _value_envelopes(value, count)  # they decode, one per record
                    records = np.frombuffer(value, dtype=COMMAND_DTYPE, count=count, offset=_COUNT.size)
                    if records["seq"].tolist() != list(range(first, first + count)):
                        raise JournalError("records that do not carry the batch's seqs")
                except Exception as exc:
                    faults.append(f"journal corrupt near seq {first}: {exc}")
                    count = 1
                expected = first + count
            after = entries[-1][0]
        return faults[:max_faults]

    def batch_count(self) -> int:
        """Batches (LMDB entries, write transactions of the sequencer) the journal holds."""
        with self._begin() as txn:
            return txn.stat(self._db)["entries"]

    def first_seq(self) -> int:
        """The oldest seq the journal holds: 1, unless older ones were compacted away (0 when empty)."""
        with self._begin() as txn:
            cursor = txn.cursor()
            return _key_seq(cursor.key()) if cursor.first() else 0

    def read(self, first: int, max_count: int) -> SequencedBatch:
        """The journaled commands from ``first``, at most ``max_count``, as a batch whose ``head`` is the
        newest journaled seq (in the same snapshot). Empty (``first`` kept) if ``first`` is past the end.
        Raises JournalCompacted if ``first`` is older than what the journal holds."""
        if first < 1 or max_count < 0:
            raise ValueError("read wants first >= 1 and max_count >= 0")
        values: list[bytes] = []  # the batches' values, in order
        counts: list[int] = []  # their commands
        batch_first = first
        with self._begin() as txn:
            cursor = txn.cursor()
            head = _key_seq(cursor.key()) + _value_count(cursor.value()) - 1 if cursor.last() else 0
            oldest = _key_seq(cursor.key()) if cursor.first() else 0
            if oldest > first and first <= head:
                raise JournalCompacted(f"seq {first} is no longer in the journal: it starts at seq {oldest} "
                                       f"(older commands were compacted into an archive)")
            count = max(0, min(max_count, head - first + 1))
            if count:
                # The batch that holds ``first``: the one keyed ``first``, or else the one before.
                if not cursor.set_range(seq_key(first)):
                    cursor.last()
                elif _key_seq(cursor.key()) != first:
                    cursor.prev()
                expected = _key_seq(cursor.key())
                batch_first = expected
                stop = first + count
                # Per batch value, the least Python there can be: a chunk of a replay reads thousands.
                from_bytes, unpack_count = int.from_bytes, _COUNT.unpack_from
                for key, value in cursor.iternext():
                    if from_bytes(key, "big") != expected:
                        raise JournalError(f"journal corrupt near seq {expected}: the next batch starts at "
                                           f"{_key_seq(key)}")
                    try:
                        batch_count = unpack_count(value)[0]
                    except struct.error:
                        raise JournalError("journal corrupt: a batch shorter than its header") from None
                    values.append(value)
                    counts.append(batch_count)
                    expected += batch_count
                    if expected >= stop:
                        break
                if expected < stop:
                    raise JournalError(f"journal corrupt: seq {expected} is missing")
        return self._batch(first, count, batch_first, values, counts, head)

    @staticmethod
    def _batch(first: int, count: int, batch_first: int, values: list[bytes], counts: list[int],
               head: int) -> SequencedBatch:
        """The commands ``first`` .. ``first + count - 1`` out of consecutive batch values (the first
        one's first seq ``batch_first``, ``counts`` commands each). Column by column, no Python step per
        value but a slice of each: a journal of small batches has tens of thousands in a replay chunk."""
        if not values:
            return SequencedBatch(first, np.zeros(0, dtype=COMMAND_DTYPE), Envelopes([], [], []), head=head)
        records_ends = [_COUNT.size + batch_count * RECORD_BYTES for batch_count in counts]
        if min(counts) < 1 or any(map(operator.le, map(len, values), records_ends)):
            raise JournalError("journal corrupt: a batch's records or envelopes are missing")
        skip = first - batch_first  # commands of the first value before ``first``
        last_take = counts[-1] - (batch_first + sum(counts) - (first + count))  # commands of the last value kept
        raw = list(map(operator.getitem, values, map(slice, repeat(_COUNT.size), records_ends)))
        if len(values) == 1:
            raw[0] = raw[0][skip * RECORD_BYTES : last_take * RECORD_BYTES]
        else:
            raw[0] = raw[0][skip * RECORD_BYTES :]
            raw[-1] = raw[-1][: last_take * RECORD_BYTES]
        spans = [(0, batch_count) for batch_count in counts]
        spans[0] = (skip, spans[0][1])
        spans[-1] = (spans[-1][0], last_take)
        blobs = list(map(operator.getitem, values, map(slice, records_ends, repeat(None))))
        try:
            envelopes = unpack_envelope_runs(blobs, counts, spans)
        except Exception as exc:
            raise JournalError(f"journal corrupt: the envelopes of a batch from seq {first} on do not decode: "
                               f"{exc}") from None
        records = np.frombuffer(bytearray().join(raw), dtype=COMMAND_DTYPE)  # writable, copied once
        return SequencedBatch(first, records, envelopes, head=head)

    def iterate(self, first: int | None = None, chunk: int = DEFAULT_CHUNK) -> Iterator[SequencedBatch]:
        """Every journaled command from ``first`` (default: the oldest held), in batches of at most
        ``chunk``, up to the newest one at the time each batch is read."""
        if chunk < 1:
            raise ValueError("chunk must be at least 1")
        if first is None:
            first = max(1, self.first_seq())
        while True:
            batch = self.read(first, chunk)
            if not len(batch.records):
                return
            yield batch
            first = batch.last + 1

    def drop_before(self, seq: int, *, chunk: int = DEFAULT_CHUNK) -> int:
        """Delete every command older than ``seq`` (never the newest one: it carries the journal's last
        seq), about ``chunk`` commands per transaction so that the sequencer's writes wait little. A batch
        that holds ``seq`` is cut: what it keeps is written again under ``seq``. Returns how many."""
        if self.readonly:
            raise JournalError("this journal is open read-only")
        dropped = 0
        while True:
            removed = 0
            done = False
            with self._begin(write=True) as txn:
                cursor = txn.cursor()
                if not cursor.last():
                    return dropped
                limit = min(seq, _key_seq(cursor.key()) + _value_count(cursor.value()) - 1)
                cursor.first()
                while removed < chunk:
                    batch_first = _key_seq(cursor.key())
                    value = cursor.value()
                    count = _value_count(value)
                    if batch_first >= limit:
                        done = True
                        break
                    if batch_first + count <= limit:  # the whole batch is older
                        cursor.delete()  # moves to the next entry
                        removed += count
                        continue
                    cut = limit - batch_first  # the batch holds ``limit``: keep it and what follows
                    envelopes = _value_envelopes(value, count)[cut:]
                    kept = value[_COUNT.size + cut * RECORD_BYTES : _COUNT.size + count * RECORD_BYTES]
                    cursor.delete()
                    txn.put(seq_key(limit), batch_value(kept, envelopes))
                    removed += cut
                    done = True
                    break
            dropped += removed
            if done or removed == 0:
                return dropped

    def close(self) -> None:
        """Close the environment (a writer first flushes what ``process`` durability left in memory)."""
        if self._env is None:
            return
        if not self.readonly:
            self._env.sync(True)
        self._env.close()
        self._env = None

    def __enter__(self) -> "Journal":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
