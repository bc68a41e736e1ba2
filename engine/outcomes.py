"""The first event of each recent command's outcome, by seq: what a resend of the command gets again.

    history = OutcomeHistory(100_000)
    history.record(first_events, command_kinds)   # per batch: the first event of each command, in order
    history.get(seq)                               # -> (command kind, a 1-event array) or None

A ring of ``size`` event records indexed by ``seq % size``: recording a batch's outcomes is two numpy
assignments, however many commands it has, where a map keyed by (account, ClOrdID) cost a Python
operation per command. The sequencer's resend notice carries the seq the command was first sequenced
with (common/stream.py DUPLICATE), so the seq is the key. The ring holds the last ``size`` commands
that reached it; an older seq is no longer kept (its slot holds a newer command).
"""

from __future__ import annotations

import numpy as np

from common.records import EVENT_DTYPE, CommandKind, EventKind
from engine.jit import kernel

_NEW = int(CommandKind.NEW)
_ACCEPTED = int(EventKind.ACCEPTED)


class OutcomeHistory:
    def __init__(self, size: int):
        if size < 1:
            raise ValueError("an outcome history holds at least one command")
        self.size = size
        self._events = np.zeros(size, dtype=EVENT_DTYPE)  # seq 0: an empty slot (seqs start at 1)
        self._kinds = np.zeros(size, dtype=np.uint8)  # the CommandKind of the command in each slot
        self._unplaced = np.empty(64, dtype=np.int64)  # record_commands' answer, reused

    def record(self, first_events: np.ndarray, command_kinds: np.ndarray) -> None:
        """Keep ``first_events`` (EVENT_DTYPE, one per command, seqs increasing), each with the kind of its
        command. Of more than ``size`` commands, the last ``size`` are kept."""
        if len(first_events) > self.size:
            first_events, command_kinds = first_events[-self.size :], command_kinds[-self.size :]
        slots = first_events["seq"] % self.size
        self._events[slots] = first_events
        self._kinds[slots] = command_kinds

    def record_commands(self, events: np.ndarray, read_seq: int, first: int, command_kinds: np.ndarray) -> list[int]:
        """Keep the first event of each command that begins in ``events`` (a batch's events in order; a
        command whose seq is ``read_seq`` began before them), its kind read from ``command_kinds`` at
        ``seq - first``. Return the positions in ``events`` of NEWs answered without an ACCEPTED.

        One kernel call (0.7 us for a batch of one command, most live batches): done with numpy, its dozen
        operations on small arrays cost 18 us."""
        if len(self._unplaced) < len(events):
            self._unplaced = np.empty(max(len(events), 2 * len(self._unplaced)), dtype=np.int64)
        found = _record_first_events(events, read_seq, first, command_kinds, self._events, self._kinds,
                                     self._unplaced)
        return self._unplaced[:found].tolist()

    def get(self, seq: int) -> tuple[int, np.ndarray] | None:
        """(command kind, its first event as a 1-element EVENT_DTYPE array), or None if not kept."""
        slot = seq % self.size
        if seq < 1 or int(self._events["seq"][slot]) != seq:
            return None
        return int(self._kinds[slot]), self._events[slot : slot + 1].copy()

    def export(self) -> list[bytes]:
        """[events, kinds] of the kept commands, oldest first, as bytes (for a snapshot)."""
        kept = np.flatnonzero(self._events["seq"])
        kept = kept[np.argsort(self._events["seq"][kept], kind="stable")]
        return [self._events[kept].tobytes(), self._kinds[kept].tobytes()]

    def restore(self, exported: list[bytes]) -> None:
        """Hold exactly what ``export`` gave."""
        events = np.frombuffer(exported[0], dtype=EVENT_DTYPE)
        kinds = np.frombuffer(exported[1], dtype=np.uint8)
        if len(events) != len(kinds):
            raise ValueError("an outcome history's events and kinds differ in number")
        self._events[:] = 0
        self._kinds[:] = 0
        self.record(events, kinds)


@kernel
def _record_first_events(events, read_seq, first, command_kinds, ring, ring_kinds, unplaced):
    """OutcomeHistory.record_commands: returns how many positions it wrote to ``unplaced``."""
    size = ring.shape[0]
    previous = read_seq
    found = 0
    for i in range(events.shape[0]):
        seq = events[i].seq
        if seq != previous:
            slot = seq % size
            ring[slot] = events[i]
            at = seq - first
            # An event outside the batch is the service's to refuse (StreamInconsistency); never read past it.
            kind = command_kinds[at] if 0 <= at < command_kinds.shape[0] else 0
            ring_kinds[slot] = kind
            if kind == _NEW and events[i].kind != _ACCEPTED:
                unplaced[found] = i
                found += 1
        previous = seq
    return found
