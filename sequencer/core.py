"""The sequencer's core: commands in, journaled batches with a global order out. No sockets.

``submit`` queues a command from a gateway (``submit_many`` the commands of one submission); ``seal``
turns what is queued into the next batch:

1. a command whose (account, ClOrdID) was sequenced before, or earlier in the same batch, is not
   sequenced again: it becomes a ``Duplicate`` naming the original ``seq`` (an empty ClOrdID is never a
   duplicate);
2. the others get the next sequence numbers, ``last + 1, last + 2, ...``, without a gap, and one
   timestamp for the batch, ``ts = max(clock(), last ts)``: non-decreasing along the journal even when
   the wall clock steps back;
3. the batch is written to the journal in one transaction. Only then does the core remember it, and
   only then may the caller publish it.

Startup is recovery, and takes no time whatever the journal's length: the last ``seq`` and ``ts`` are
those of the journal's last entry, and what was sequenced is looked up in the journal's ClOrdID index,
written in the same transaction as each batch (common/journal.py), so that a resend after any crash
still gets the original outcome.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from itertools import islice

import numpy as np

from common.intake import Envelope, pack_envelopes
from common.journal import Journal
from common.records import COMMAND_DTYPE
from common.stream import Duplicate, Refused, SequencedBatch

ResendKey = tuple[int, str]  # (account, ClOrdID)


def _record(raw: bytes) -> np.ndarray:
    """A queued record's bytes as a one-record, writable COMMAND_DTYPE array (copied as bytes:
    ``ndarray.copy`` on a record array costs seven times as much, common/records.py ``owned_copy``)."""
    return np.frombuffer(bytearray(raw), dtype=COMMAND_DTYPE)


class Sequencer:
    """Gives commands their global order. ``clock()`` returns nanoseconds since the Unix epoch."""

    def __init__(self, journal: Journal, clock: Callable[[], int], *, max_batch: int):
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.journal = journal
        self.clock = clock
        self.max_batch = max_batch
        self._queue: deque[tuple[bytes, Envelope, ResendKey | None]] = deque()  # a record's bytes each
        self.last_seq = 0
        self.last_ts = 0
        self._recover()

    def _recover(self) -> None:
        """Where the journal ends: its last seq and ts (what was sequenced is in its ClOrdID index)."""
        self.last_seq = self.journal.last_seq()
        if self.last_seq:
            last = self.journal.read(self.last_seq, 1)
            self.last_ts = int(last.records["ts"][0])

    @property
    def pending(self) -> int:
        """Commands submitted and not sealed yet."""
        return len(self._queue)

    @property
    def known_clordids(self) -> int:
        """(account, ClOrdID) pairs remembered for de-duplication (the journal's index)."""
        return self.journal.clordid_count()

    def submit(self, record: np.ndarray | np.void, envelope: Envelope) -> None:
        """Queue one command (one COMMAND_DTYPE record; its seq and ts are ignored)."""
        record = np.asarray(record)
        if record.dtype != COMMAND_DTYPE or record.size != 1:
            raise ValueError("submit takes exactly one COMMAND_DTYPE record")
        self.submit_many(record.reshape(1), [envelope])

    def submit_many(self, records: np.ndarray, envelopes: Sequence[Envelope]) -> None:
        """Queue commands in order: COMMAND_DTYPE ``records`` (seq and ts ignored), an envelope each."""
        if records.dtype != COMMAND_DTYPE or records.ndim != 1 or len(records) != len(envelopes):
            raise ValueError("submit_many takes a COMMAND_DTYPE array and an envelope per record")
        # The queue holds each record's bytes: slicing one buffer costs a fraction of a numpy view per record.
        raw, size = np.ascontiguousarray(records).tobytes(), COMMAND_DTYPE.itemsize
        accounts = records["account"].tolist()
        append = self._queue.append
        for index, envelope in enumerate(envelopes):
            key = (accounts[index], envelope.clordid) if envelope.clordid else None
            append((raw[index * size : (index + 1) * size], envelope, key))

    def seal(self) -> tuple[SequencedBatch | None, list[Duplicate]]:
        """Sequence and journal up to ``max_batch`` queued commands. Returns (the batch, or None if every
        one was a duplicate or nothing was queued; the duplicates, in arrival order). If the journal
        write fails, nothing is consumed or remembered and the error propagates."""
        taken = min(len(self._queue), self.max_batch)
        if taken == 0:
            return None, []
        fresh: list[bytes] = []
        envelopes: list[Envelope] = []
        new_keys: dict[ResendKey, int] = {}
        duplicates: list[tuple[int, bytes, Envelope]] = []  # (original seq, record, envelope)
        queued = list(islice(self._queue, taken))
        sequenced = self.journal.sequenced_as([key for _, _, key in queued if key is not None])
        for record, envelope, key in queued:
            if key is not None:
                original = sequenced.get(key)
                if original is None:
                    original = new_keys.get(key)
                if original is not None:
                    duplicates.append((original, record, envelope))
                    continue
                new_keys[key] = self.last_seq + 1 + len(fresh)
            fresh.append(record)
            envelopes.append(envelope)

        batch = None
        if fresh:
            # One writable buffer of the records' bytes (np.concatenate and ndarray.copy are slow on
            # structured dtypes).
            records = np.frombuffer(bytearray().join(fresh), dtype=COMMAND_DTYPE)
            first = self.last_seq + 1
            ts = max(int(self.clock()), self.last_ts)
            records["seq"] = np.arange(first, first + len(records), dtype=np.int64)
            records["ts"] = ts
            packed = pack_envelopes(envelopes)  # once, for the journal and the stream
            self.journal.append(records, envelopes, packed_envelopes=packed)  # committed from here on
            batch = SequencedBatch(first, records, envelopes, packed_envelopes=packed)
            self.last_seq = batch.last
            self.last_ts = ts
        for _ in range(taken):
            self._queue.popleft()
        return batch, [Duplicate(self.last_seq, original, _record(record), envelope)
                       for original, record, envelope in duplicates]

    def refuse_pending(self, reason: str) -> tuple[Refused | None, list[Duplicate]]:
        """Take every queued command out unsequenced, because the journal cannot take them: (a notice
        for the engine to answer each with a reject, or None; the resends of commands sequenced before,
        which still get their original outcome)."""
        refused: list[tuple[bytes, Envelope]] = []
        duplicates: list[Duplicate] = []
        sequenced = self.journal.sequenced_as([key for _, _, key in self._queue if key is not None])
        for record, envelope, key in self._queue:
            original = sequenced.get(key) if key is not None else None
            if original is not None:
                duplicates.append(Duplicate(self.last_seq, original, _record(record), envelope))
            else:
                refused.append((record, envelope))
        self._queue.clear()
        if not refused:
            return None, duplicates
        records = np.frombuffer(b"".join(record for record, _ in refused), dtype=COMMAND_DTYPE)
        notice = Refused(self.last_seq, max(int(self.clock()), self.last_ts), reason, records,
                         [envelope for _, envelope in refused])
        return notice, duplicates

    def replay(self, first: int, max_count: int) -> SequencedBatch:
        """Journaled commands from ``first`` (at most ``max_count``, capped at ``max_batch``), with the
        journal's head. Empty when ``first`` is past the end."""
        return self.journal.read(first, min(max_count, self.max_batch))
