"""Envelopes on the wire (common/intake.py): packed as bytes columns (the stream, the journal) or string
columns (a gateway's submissions, journals written before), each decoded to the same envelopes, the bytes
without a string per ClOrdID until one is read; anything malformed refused."""

from __future__ import annotations

import struct

import msgpack
import numpy as np
import pytest

from common.intake import (
    Envelope,
    Envelopes,
    decode_submissions,
    encode_submissions,
    pack_envelope_strings,
    pack_envelopes,
    unpack_envelope_runs,
    unpack_envelopes,
)
from common.records import COMMAND_DTYPE

SAMPLE = [Envelope(1, "a"), Envelope(2, "bé", "a"), Envelope(1, "", ""), Envelope((1 << 64) - 1, "c-3"),
          Envelope(5, "ordré-1"), Envelope(6, "x" * 64)]


def many(count: int, *, start: int = 0, origs: bool = False) -> list[Envelope]:
    return [Envelope(1000 + k, f"c{k}" if k % 7 else ("é" * (k % 3)), f"o{k}" if origs and k % 2 else "")
            for k in range(start, start + count)]


def older_form(envelopes: list[Envelope]) -> bytes:
    """How envelopes were packed before the bytes columns: ``[sessions, clordids, origs]`` as msgpack
    arrays, as journals written then hold them (and as a gateway's submissions still travel)."""
    origs = [e.orig for e in envelopes]
    return msgpack.packb([[e.session for e in envelopes], [e.clordid for e in envelopes],
                          origs if any(origs) else None], use_bin_type=True)


def bytes_form(sessions: bytes, ends: bytes, text: bytes, origs=None) -> bytes:
    return msgpack.packb([sessions, ends, text, origs], use_bin_type=True)


@pytest.mark.parametrize("envelopes", [SAMPLE, many(300), many(300, origs=True), [Envelope(9, "")] * 3, []])
def test_envelopes_round_trip_as_bytes_columns(envelopes):
    decoded = unpack_envelopes(pack_envelopes(envelopes), len(envelopes))
    assert decoded.clordid_bytes() is not None  # as they came
    assert decoded == envelopes and list(decoded) == envelopes
    assert decoded.sessions == [e.session for e in envelopes]
    assert decoded.session_array().dtype == np.uint64 and decoded.session_array().flags.writeable
    assert decoded.session_array().tolist() == [e.session for e in envelopes]
    text, ends = decoded.clordid_bytes()
    assert text == "".join(e.clordid for e in envelopes).encode()
    assert ends.tolist() == np.cumsum([len(e.clordid.encode()) for e in envelopes]).tolist()
    assert pack_envelopes(decoded) == pack_envelopes(envelopes)  # packed again from the bytes alike


def test_slices_of_decoded_envelopes_are_the_slices_of_the_list():
    envelopes = many(40, origs=True)
    decoded = unpack_envelopes(pack_envelopes(envelopes), 40)
    for index in (slice(0, 40), slice(3, 17), slice(17, 17), slice(30, 5), slice(-5, None), slice(None, -38),
                  slice(1, 30, 3), slice(None, None, -1)):
        part = decoded[index]
        assert isinstance(part, Envelopes) and part == envelopes[index], index
        assert unpack_envelopes(pack_envelopes(part), len(part)) == envelopes[index]
    assert decoded[5] == envelopes[5] and decoded[-1] == envelopes[-1]


def test_joined_envelopes_are_their_parts_one_after_another():
    first, second = many(10, origs=True), many(5, start=10)
    decoded = [unpack_envelopes(pack_envelopes(part), len(part)) for part in (first, second)]
    joined = Envelopes.join(decoded)
    assert joined.clordid_bytes() is not None and joined == first + second
    assert Envelopes.join([decoded[0], second]) == first + second  # bytes and values mixed
    assert Envelopes.join([decoded[0][2:4], decoded[1][1:]]) == first[2:4] + second[1:]


def test_the_older_form_still_decodes_alone_and_among_the_new():
    envelopes = many(50, origs=True)
    assert unpack_envelopes(older_form(envelopes), 50) == envelopes
    blobs = [older_form(envelopes[:20]), pack_envelopes(envelopes[20:35]), older_form(envelopes[35:])]
    counts, spans = [20, 15, 15], [(4, 20), (0, 15), (0, 9)]
    assert unpack_envelope_runs(blobs, counts, spans) == envelopes[4:44]


@pytest.mark.parametrize("size", [30, 600])  # checked in Python, and with numpy
def test_runs_of_packed_arrays_give_the_envelopes_of_their_spans(size):
    envelopes = many(size, origs=True)
    cuts = [0, size // 5, size // 5 + 1, size // 2, size]
    blobs = [pack_envelopes(envelopes[a:b]) for a, b in zip(cuts, cuts[1:])]
    counts = [b - a for a, b in zip(cuts, cuts[1:])]
    whole = [(0, count) for count in counts]
    assert unpack_envelope_runs(blobs, counts, whole) == envelopes
    one_run = [(2, counts[0]), *whole[1:-1], (0, counts[-1] - 3)]
    assert unpack_envelope_runs(blobs, counts, one_run) == envelopes[2 : size - 3]
    scattered = [(1, 2), (0, 0), (0, 1), (3, counts[-1])]
    expected = [e for (a, b), start in zip(scattered, cuts) for e in envelopes[start + a : start + b]]
    assert unpack_envelope_runs(blobs, counts, scattered) == expected
    assert unpack_envelope_runs([], [], []) == []


def _valid(count: int) -> tuple[bytes, bytes, bytes]:
    sessions = struct.pack(f"<{count}Q", *range(count))
    text = b"".join(b"c%d" % k for k in range(count))
    ends = struct.pack(f"<{count}I", *np.cumsum([len(b"c%d" % k) for k in range(count)]).tolist())
    return sessions, ends, text


def _malformed(count: int) -> list[bytes]:
    sessions, ends, text = _valid(count)
    falling = struct.pack(f"<{count}I", *([2, 1] + list(struct.unpack(f"<{count}I", ends))[2:]))
    accented = "é".encode() * count
    inside = struct.pack(f"<{count}I", *[2 * k + 1 for k in range(count - 1)], 2 * count)  # ends inside "é"
    return [
        bytes_form(sessions[:-1], ends, text),  # a session cut short
        bytes_form(sessions, ends[:-4], text),  # an end missing
        bytes_form(sessions, ends, text + b"x"),  # text beyond the last end
        bytes_form(sessions, ends, text[:-1]),  # the last end beyond the text
        bytes_form(sessions, falling, text),  # ends that fall back
        bytes_form(sessions, ends, text[:-1] + b"\xff"),  # not UTF-8
        bytes_form(sessions, inside, accented),  # a ClOrdID that ends inside a character
        bytes_form(sessions, ends, text, ["o"] * (count - 1)),  # origs short of one
        bytes_form(sessions, ends, text, [1] * count),  # an orig that is not a string
        msgpack.packb([list(range(count)), ends, text, None]),  # sessions not bytes
        msgpack.packb([sessions, ends, text.decode(), None]),  # text not bytes
        msgpack.packb([sessions, ends, text, None, None]),  # five columns
        b"\x94\xc4",  # cut short
    ]


@pytest.mark.parametrize("count", [3, 300])
def test_malformed_bytes_columns_are_refused(count):
    assert unpack_envelopes(bytes_form(*_valid(count)), count).clordids == [f"c{k}" for k in range(count)]
    good = bytes_form(*_valid(count))
    malformed = _malformed(count)
    for index, blob in enumerate(malformed):
        with pytest.raises(ValueError):
            unpack_envelopes(blob, count)
        if index < len(malformed) - 1:  # among valid ones in a run too (all but the blob cut short)
            with pytest.raises(ValueError):
                unpack_envelope_runs([good, blob, good], [count] * 3, [(0, count)] * 3)


def test_a_session_that_is_not_an_unsigned_64_bit_integer_cannot_be_packed():
    for session in (-1, 1 << 64):
        with pytest.raises(ValueError, match="unsigned 64-bit"):
            pack_envelopes([Envelope(session, "a")])


@pytest.mark.parametrize("envelopes", [SAMPLE, many(10, origs=True), many(3)])
def test_a_submission_carries_string_columns_and_decodes_to_its_envelopes(envelopes):
    assert pack_envelope_strings(envelopes) == older_form(envelopes)
    assert unpack_envelopes(pack_envelope_strings(envelopes), len(envelopes)) == envelopes
    records = [np.zeros(1, dtype=COMMAND_DTYPE).tobytes()] * len(envelopes)
    decoded_records, decoded = decode_submissions(encode_submissions(records, envelopes))
    assert len(decoded_records) == len(envelopes) and decoded == envelopes
    assert decoded.clordid_bytes() is None  # strings as they came
    packed_again = unpack_envelopes(pack_envelopes(decoded), len(envelopes))  # the sequencer's batch
    assert packed_again == envelopes and packed_again.clordid_bytes() is not None
