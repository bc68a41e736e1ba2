"""Sequencer -> engine: the sequenced stream (PUB/SUB), and journal ranges on request (ROUTER/DEALER).

Every message on the stream starts with a kind frame, so a subscriber can tell them apart:

- ``BATCH``: ``[b"B", header, records, envelopes]``. ``header`` is msgpack ``{"first": seq, "last": seq}``;
  ``records`` the COMMAND_DTYPE records of seq ``first..last`` back to back (seq and ts set, journaled
  before publication); ``envelopes`` the matching intake envelopes as columns (``common.intake.pack_envelopes``).
- ``HEARTBEAT``: ``[b"H", header]`` with ``{"last": seq}``: the newest sequence number, sent when idle,
  so a subscriber that missed the last batch notices.
- ``DUPLICATE``: ``[b"D", header, record, envelope]`` with ``{"last": seq, "original": seq}``: a resend of
  an (account, ClOrdID) already sequenced as ``original``. Not journaled and given no sequence number;
  the engine answers it with the original outcome.
- ``REFUSED``: ``[b"X", header, records, envelopes]`` with ``{"last": seq, "ts": ns, "reason": text}``:
  commands the sequencer could not journal (the journal is full). Given no sequence number; the engine
  answers each with a reject (RejectReason.JOURNAL_UNAVAILABLE) and changes nothing.

Replay: a DEALER sends ``[b"R", {"from": seq, "max": n}]``; the sequencer answers with a BATCH of the
journaled commands from ``from`` (at most ``n``; none if ``from`` is past the end), whose header also has
``"head"``: the last journaled sequence number.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import msgpack
import numpy as np

from common.intake import Envelope, pack_envelopes, unpack_envelopes
from common.records import COMMAND_DTYPE

BATCH = b"B"
HEARTBEAT = b"H"
DUPLICATE = b"D"
REFUSED = b"X"
REPLAY_REQUEST = b"R"


class StreamError(ValueError):
    """Frames that are not a stream message."""


@dataclass
class SequencedBatch:
    first: int
    records: np.ndarray  # COMMAND_DTYPE, seq first..first+len-1
    envelopes: Sequence[Envelope]  # a list, or columns (common.intake.Envelopes: what decoding gives)
    head: int | None = None  # replay answers: the journal's last sequence number
    packed_envelopes: bytes | None = field(default=None, repr=False, compare=False)  # pack_envelopes(envelopes)

    @property
    def last(self) -> int:
        return self.first + len(self.records) - 1


@dataclass(frozen=True)
class Heartbeat:
    last: int


@dataclass
class Duplicate:
    last: int
    original: int
    record: np.ndarray = field(repr=False)
    envelope: Envelope = field(default_factory=lambda: Envelope(0, ""))


@dataclass
class Refused:
    last: int
    ts: int
    reason: str
    records: np.ndarray = field(repr=False)  # COMMAND_DTYPE, seq and ts 0
    envelopes: Sequence[Envelope] = field(default_factory=list)


def encode_refused(refused: Refused) -> list[bytes]:
    return [
        REFUSED,
        msgpack.packb({"last": refused.last, "ts": refused.ts, "reason": refused.reason}),
        np.ascontiguousarray(refused.records, dtype=COMMAND_DTYPE).tobytes(),
        pack_envelopes(refused.envelopes),
    ]


def encode_batch(batch: SequencedBatch) -> list[bytes]:
    header = {"first": batch.first, "last": batch.last}
    if batch.head is not None:
        header["head"] = batch.head
    return [
        BATCH,
        msgpack.packb(header),
        np.ascontiguousarray(batch.records, dtype=COMMAND_DTYPE).tobytes(),
        batch.packed_envelopes if batch.packed_envelopes is not None else pack_envelopes(batch.envelopes),
    ]


def encode_heartbeat(last: int) -> list[bytes]:
    return [HEARTBEAT, msgpack.packb({"last": last})]


def encode_duplicate(duplicate: Duplicate) -> list[bytes]:
    return [
        DUPLICATE,
        msgpack.packb({"last": duplicate.last, "original": duplicate.original}),
        duplicate.record.tobytes(),
        msgpack.packb(duplicate.envelope.pack(), use_bin_type=True),
    ]


def decode(frames: list[bytes]) -> SequencedBatch | Heartbeat | Duplicate | Refused:
    try:
        kind = frames[0]
        header = msgpack.unpackb(frames[1])
        if kind == BATCH:
            records = np.frombuffer(frames[2], dtype=COMMAND_DTYPE)
            if header["last"] - header["first"] + 1 != len(records):
                raise StreamError("batch header and records disagree")
            envelopes = unpack_envelopes(frames[3], len(records))
            return SequencedBatch(header["first"], records, envelopes, header.get("head"))
        if kind == HEARTBEAT:
            return Heartbeat(header["last"])
        if kind == REFUSED:
            records = np.frombuffer(frames[2], dtype=COMMAND_DTYPE)
            envelopes = unpack_envelopes(frames[3], len(records))
            return Refused(header["last"], header["ts"], str(header["reason"]), records, envelopes)
        if kind == DUPLICATE:
            record = np.frombuffer(bytearray(frames[2]), dtype=COMMAND_DTYPE)  # writable, copied as bytes
            envelope = Envelope.unpack(msgpack.unpackb(frames[3], raw=False))
            return Duplicate(header["last"], header["original"], record, envelope)
    except StreamError:
        raise
    except Exception as exc:
        raise StreamError(f"malformed stream message: {exc}") from None
    raise StreamError(f"unknown stream message kind {frames[0]!r}")


def encode_replay_request(first: int, max_count: int) -> list[bytes]:
    return [REPLAY_REQUEST, msgpack.packb({"from": first, "max": max_count})]


def decode_replay_request(frames: list[bytes]) -> tuple[int, int]:
    """(from, max) of a replay request."""
    try:
        if frames[0] != REPLAY_REQUEST:
            raise StreamError("not a replay request")
        body = msgpack.unpackb(frames[1])
        first, count = int(body["from"]), int(body["max"])
    except StreamError:
        raise
    except Exception as exc:
        raise StreamError(f"malformed replay request: {exc}") from None
    if first < 1 or count < 1:
        raise StreamError("replay wants from >= 1 and max >= 1")
    return first, count
