"""Gateway -> sequencer: a command on its way to be sequenced (PUSH/PULL).

Frames: ``[record, envelope]``. ``record`` is one COMMAND_DTYPE record (80 bytes) with ``seq`` and
``ts`` zero (the sequencer sets them) and ``origin`` the gateway's id. ``envelope`` is a msgpack map of
what the engine needs to report back and the sequencer needs to de-duplicate:

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


def encode_submission(record: np.ndarray, envelope: Envelope) -> list[bytes]:
    if record.dtype != COMMAND_DTYPE or record.size != 1:
        raise ValueError("a submission carries exactly one COMMAND_DTYPE record")
    return [record.tobytes(), msgpack.packb(envelope.pack(), use_bin_type=True)]


def decode_submission(frames: list[bytes]) -> tuple[np.ndarray, Envelope]:
    """(one-record COMMAND_DTYPE array, envelope) from the frames of a submission."""
    if len(frames) != 2 or len(frames[0]) != COMMAND_DTYPE.itemsize:
        raise IntakeError("a submission is [80-byte record, envelope]")
    try:
        envelope = Envelope.unpack(msgpack.unpackb(frames[1], raw=False))
    except Exception as exc:
        raise IntakeError(f"bad envelope: {exc}") from None
    return np.frombuffer(frames[0], dtype=COMMAND_DTYPE).copy(), envelope
