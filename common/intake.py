"""Gateway -> sequencer: commands on their way to be sequenced (PUSH/PULL).

Frames: ``[records, envelopes]``. ``records`` is one or more COMMAND_DTYPE records (80 bytes each) with
``seq`` and ``ts`` zero (the sequencer sets them) and ``origin`` the gateway's id; a gateway sends what it
took from its clients in one loop turn as one message, in the order it took them. ``envelopes`` is a
msgpack array with a map per record, of what the engine needs to report back and the sequencer needs to
de-duplicate:

- ``session``: the gateway's id for the client connection, to route the outcome back;
- ``clordid``: the client's ClOrdID (or an admin request id); with the account, the resend key;
- ``orig``: the OrigClOrdID of a cancel or replace (the engine resolves it to an order id), or "".
"""

from __future__ import annotations

from typing import NamedTuple

import msgpack
import numpy as np

from common.records import COMMAND_DTYPE


class Envelope(NamedTuple):
    """Immutable; a named tuple because millions are built when a journal is replayed."""

    session: int
    clordid: str
    orig: str = ""

    def pack(self) -> dict:
        return {"session": self.session, "clordid": self.clordid, "orig": self.orig}

    @classmethod
    def unpack(cls, fields: dict) -> "Envelope":
        return cls(int(fields["session"]), str(fields["clordid"]), str(fields.get("orig", "")))


class IntakeError(ValueError):
    """Frames that are not a submission."""


def encode_submissions(records: list[bytes], envelopes: list[Envelope]) -> list[bytes]:
    """One message of the commands ``records`` (each one COMMAND_DTYPE record's bytes), in order."""
    if not records or len(records) != len(envelopes):
        raise ValueError("a submission carries one or more records, an envelope each")
    if any(len(record) != COMMAND_DTYPE.itemsize for record in records):
        raise ValueError("a submission's records are COMMAND_DTYPE records")
    return [b"".join(records), msgpack.packb([envelope.pack() for envelope in envelopes], use_bin_type=True)]


def decode_submissions(frames: list[bytes]) -> tuple[np.ndarray, list[Envelope]]:
    """(COMMAND_DTYPE array, an envelope per record) from the frames of a submission."""
    if len(frames) != 2 or not frames[0] or len(frames[0]) % COMMAND_DTYPE.itemsize:
        raise IntakeError("a submission is [80-byte records, envelopes]")
    count = len(frames[0]) // COMMAND_DTYPE.itemsize
    try:
        maps = msgpack.unpackb(frames[1], raw=False)
        if not isinstance(maps, list) or len(maps) != count:
            raise ValueError(f"{count} records need {count} envelopes")
        envelopes = [Envelope.unpack(fields) for fields in maps]
    except Exception as exc:
        raise IntakeError(f"bad envelopes: {exc}") from None
    return np.frombuffer(frames[0], dtype=COMMAND_DTYPE).copy(), envelopes
