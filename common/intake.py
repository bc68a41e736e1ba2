"""Gateway -> sequencer: commands on their way to be sequenced (PUSH/PULL).

Frames: ``[records, envelopes]``. ``records`` is one or more COMMAND_DTYPE records (80 bytes each) with
``seq`` and ``ts`` zero (the sequencer sets them) and ``origin`` the gateway's id; a gateway sends what it
took from its clients in one loop turn as one message, in the order it took them. ``envelopes`` holds,
per record, what the engine needs to report back and the sequencer needs to de-duplicate:

- ``session``: the gateway's id for the client connection, to route the outcome back;
- ``clordid``: the client's ClOrdID (or an admin request id); with the account, the resend key;
- ``orig``: the OrigClOrdID of a cancel or replace (the engine resolves it to an order id), or "".

Envelopes of several records travel as one msgpack array of columns. Here, from a gateway, in the form
``[sessions, clordids, origs]`` (``pack_envelope_strings``): arrays of integers and strings, ``origs``
nil when every one is "". On the sequenced stream and in the journal, where a replay reads millions, as
four columns (``pack_envelopes``): ``[sessions, ends, text, origs]``, where

- ``sessions`` is a bin of one little-endian uint64 per envelope;
- ``text`` a bin of the ClOrdIDs' UTF-8 bytes one after the other, and ``ends`` a bin of one
  little-endian uint32 per envelope: where its ClOrdID ends in ``text`` (so the k-th is
  ``text[ends[k - 1]:ends[k]]``, the first from 0);
- ``origs`` an array of strings, or nil when every one is "".

Decoded, they stay columns (``Envelopes``), and the sessions and ClOrdIDs stay bytes until something
reads them as Python values: a replay decodes millions, and the engine hands the bytes to its kernels.
Decoding checks the sizes, that the ends rise to the text's length, that the text is UTF-8 and that no
ClOrdID ends inside a character. ``unpack_envelopes`` reads either form (journals written before the
bytes columns hold the string form). One envelope alone (a resend notice) is a map
``{"session", "clordid", "orig"}``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
import operator
import struct
from itertools import accumulate, chain
from typing import NamedTuple, overload

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


class Envelopes(Sequence[Envelope]):
    """Envelopes as columns: a sequence of ``Envelope`` (equal to a list of the same envelopes) whose
    columns are read directly. Decoding a journal chunk into a tuple per command cost 0.4 us per command
    of the 1.6 us its read took, and the engine then split them into columns again.

    Decoded from the wire (``unpack_envelopes``), the sessions and ClOrdIDs stay the bytes they came as
    (``session_array``, ``clordid_bytes``) until someone reads them as Python values (``sessions``,
    ``clordids``, then kept): an engine replaying the journal hands the bytes to its kernels and never
    makes a string of most ClOrdIDs (a string each cost about as much as the rest of a command's read)."""

    __slots__ = ("_sessions", "_clordids", "origs", "_session_bytes", "_end_bytes", "_text")

    def __init__(self, sessions: list[int], clordids: list[str], origs: list[str] | None = None):
        self._sessions: list[int] | None = sessions
        self._clordids: list[str] | None = clordids
        self.origs = origs if origs is not None else [""] * len(sessions)
        self._session_bytes: bytes | None = None
        self._end_bytes: bytes | None = None
        self._text: bytes | None = None

    @classmethod
    def from_bytes(cls, session_bytes: bytes, end_bytes: bytes, text: bytes, origs: list[str] | None) -> "Envelopes":
        """Envelopes whose sessions are ``session_bytes`` (a little-endian uint64 each) and whose ClOrdIDs are
        ``text`` (UTF-8), the k-th ending at the k-th little-endian uint32 of ``end_bytes`` (checked by the
        caller)."""
        self = cls.__new__(cls)
        self._sessions = self._clordids = None
        self._session_bytes, self._end_bytes, self._text = session_bytes, end_bytes, text
        self.origs = origs if origs is not None else [""] * (len(end_bytes) // 4)
        return self

    @property
    def sessions(self) -> list[int]:
        if self._sessions is None:
            count = len(self._session_bytes) // 8
            self._sessions = (list(struct.unpack(f"<{count}Q", self._session_bytes)) if count <= _SMALL
                              else np.frombuffer(self._session_bytes, dtype="<u8").tolist())
        return self._sessions

    @property
    def clordids(self) -> list[str]:
        if self._clordids is None:
            count = len(self._end_bytes) // 4
            ends = (struct.unpack(f"<{count}I", self._end_bytes) if count <= _SMALL
                    else np.frombuffer(self._end_bytes, dtype="<u4").tolist())
            self._clordids = _split_text(self._text, ends)
        return self._clordids

    def session_array(self) -> np.ndarray:
        """The sessions as a new uint64 array. Raises OverflowError for a session that is not one."""
        if self._session_bytes is not None:
            return np.frombuffer(self._session_bytes, dtype="<u8").astype(np.uint64)
        return np.array(self._sessions, dtype=np.uint64)

    def clordid_bytes(self) -> tuple[bytes, np.ndarray] | None:
        """(the ClOrdIDs' UTF-8 bytes one after the other, the end of each as int64) when the envelopes were
        decoded from the wire; None when they were built from Python values."""
        return None if self._text is None else (self._text, self._end_array())

    def _end_array(self) -> np.ndarray:
        return np.frombuffer(self._end_bytes, dtype="<u4").astype(np.int64)

    @classmethod
    def of(cls, envelopes: Iterable[Envelope]) -> "Envelopes":
        """``envelopes`` as columns (themselves if they are already)."""
        if isinstance(envelopes, Envelopes):
            return envelopes
        columns = list(zip(*envelopes))
        if not columns:
            return cls([], [], [])
        return cls(list(columns[0]), list(columns[1]), list(columns[2]))

    @classmethod
    def join(cls, parts: Iterable[Sequence[Envelope]]) -> "Envelopes":
        """The envelopes of ``parts`` one after another."""
        parts = [cls.of(part) for part in parts]
        if parts and all(part._text is not None for part in parts):
            lengths = np.array([len(part._text) for part in parts], dtype=np.int64)
            bases = np.cumsum(lengths) - lengths
            ends = np.concatenate([part._end_array() + base for part, base in zip(parts, bases.tolist())])
            return cls.from_bytes(b"".join(part._session_bytes for part in parts), ends.astype("<u4").tobytes(),
                                  b"".join(part._text for part in parts),
                                  list(chain.from_iterable(part.origs for part in parts)))
        return cls(list(chain.from_iterable(part.sessions for part in parts)),
                   list(chain.from_iterable(part.clordids for part in parts)),
                   list(chain.from_iterable(part.origs for part in parts)))

    def __len__(self) -> int:
        return len(self.origs)

    @overload
    def __getitem__(self, index: int) -> Envelope: ...

    @overload
    def __getitem__(self, index: slice) -> "Envelopes": ...

    def __getitem__(self, index):
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if self._text is not None and step == 1:  # a run of them: still bytes
                stop = max(start, stop)
                ends = np.frombuffer(self._end_bytes, dtype="<u4")[start:stop]
                begin = struct.unpack_from("<I", self._end_bytes, 4 * (start - 1))[0] if start > 0 else 0
                end = int(ends[-1]) if stop > start else begin
                return Envelopes.from_bytes(self._session_bytes[8 * start : 8 * stop],
                                            (ends - np.uint32(begin)).astype("<u4").tobytes(), self._text[begin:end],
                                            self.origs[start:stop])
            return Envelopes(self.sessions[index], self.clordids[index], self.origs[index])
        return Envelope(self.sessions[index], self.clordids[index], self.origs[index])

    def __iter__(self) -> Iterator[Envelope]:
        return map(Envelope._make, zip(self.sessions, self.clordids, self.origs))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Envelopes):
            return (self.sessions, self.clordids, self.origs) == (other.sessions, other.clordids, other.origs)
        if isinstance(other, (list, tuple)):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Envelopes({list(self)!r})"


def _split_text(text: bytes, bounds: Sequence[int]) -> list[str]:
    """The strings whose UTF-8 bytes ``text`` holds one after the other, the k-th ending at ``bounds[k]``."""
    starts = [0, *bounds[:-1]]
    whole = text.decode()
    if len(whole) == len(text):  # ASCII (what the gateways let through): byte offsets are character offsets
        return list(map(whole.__getitem__, map(slice, starts, bounds)))
    return [text[start:end].decode() for start, end in zip(starts, bounds)]


class IntakeError(ValueError):
    """Frames that are not a submission."""


# packb builds a Packer per call; a process packs envelopes from one thread (its loop) with this one.
_COLUMNS_PACKER = msgpack.Packer(use_bin_type=True)
_ARRAY32 = struct.Struct(">BI")  # a msgpack array header: 0xdd, then the element count
_SMALL = 256  # envelopes up to which a decoded array is checked in Python (numpy's calls cost more)


def pack_envelopes(envelopes: Sequence[Envelope]) -> bytes:
    """Envelopes as one msgpack array ``[sessions, ends, text, origs]`` (module docstring)."""
    if isinstance(envelopes, Envelopes) and envelopes._text is not None:  # as they came: no string made
        origs = envelopes.origs
        return _COLUMNS_PACKER.pack([envelopes._session_bytes, envelopes._end_bytes, envelopes._text,
                                     origs if any(origs) else None])
    sessions, clordids, origs = _value_columns(envelopes)
    joined = "".join(clordids)
    text = joined.encode()
    lengths = map(len, clordids) if len(text) == len(joined) else (len(clordid.encode()) for clordid in clordids)
    count = len(sessions)
    try:
        session_bytes = struct.pack(f"<{count}Q", *sessions)
        end_bytes = struct.pack(f"<{count}I", *accumulate(lengths))
    except struct.error as exc:
        raise ValueError(f"an envelope's session is an unsigned 64-bit integer: {exc}") from None
    return _COLUMNS_PACKER.pack([session_bytes, end_bytes, text, origs if any(origs) else None])


def _value_columns(envelopes: Sequence[Envelope]) -> tuple[Sequence[int], Sequence[str], Sequence[str]]:
    """(sessions, ClOrdIDs, origs) of envelopes as Python values. Tuples, not ``Envelopes.of``: its three
    list copies cost 0.3 - 0.5 us an order on the way from gateway to engine, and packing reads them once."""
    if isinstance(envelopes, Envelopes):
        return envelopes.sessions, envelopes.clordids, envelopes.origs
    if not envelopes:
        return (), (), ()
    return tuple(zip(*envelopes))  # type: ignore[return-value]


def pack_envelope_strings(envelopes: Sequence[Envelope]) -> bytes:
    """Envelopes as one msgpack array ``[sessions, clordids, origs]`` of integers and strings: the form of a
    gateway's submissions (module docstring). For a message of a few envelopes it costs half of the bytes
    columns to pack, and the sequencer reads the strings (its resend keys) without making them."""
    sessions, clordids, origs = _value_columns(envelopes)
    return _COLUMNS_PACKER.pack([sessions, clordids, origs if any(origs) else None])  # tuples pack as arrays


def _columns(decoded: object, count: int) -> tuple[list, list, list | None]:
    """The three columns of one decoded envelope array of ``count`` envelopes in the string form
    ``[sessions, clordids, origs]`` (``origs`` None when the array has none). Raises ValueError if it is
    not that."""
    if not isinstance(decoded, list) or len(decoded) != 3:
        raise ValueError("envelopes are [sessions, ends, text, origs] (or [sessions, clordids, origs])")
    sessions, clordids, origs = decoded
    if not (isinstance(sessions, list) and isinstance(clordids, list) and (origs is None or isinstance(origs, list))):
        raise ValueError("envelope columns are arrays")
    if not len(sessions) == len(clordids) == count or (origs is not None and len(origs) != count):
        raise ValueError(f"{count} records need {count} envelopes, not {len(sessions)}, {len(clordids)}, "
                         f"{count if origs is None else len(origs)}")
    return sessions, clordids, origs


def _checked(sessions: list, clordids: list, origs: list | None) -> Envelopes:
    """Envelopes of these columns, their types checked (``origs`` None: all "")."""
    # Whole columns checked at once: a map per envelope, or a type check per field, costs several times more.
    if set(map(type, sessions)) - {int} or set(map(type, clordids)) - {str} or (
            origs is not None and set(map(type, origs)) - {str}):
        raise ValueError("an envelope's session is an integer, its clordid and orig strings")
    return Envelopes(sessions, clordids, origs if origs is not None else [""] * len(sessions))


def _is_bytes_form(decoded: object) -> bool:
    return isinstance(decoded, list) and len(decoded) == 4


def _one_in_bytes_form(array: list, count: int) -> Envelopes:
    """The envelopes of one decoded ``[sessions, ends, text, origs]`` array of ``count``, checked: sizes, ends
    that rise to the text's length, valid UTF-8 that no ClOrdID ends inside a character of. Raises
    ValueError if it is not that. A live message's few are checked in Python (numpy's calls cost more)."""
    if count > _SMALL:
        return _from_bytes_form([array], [count])
    sessions, end_bytes, text, origs = array
    if type(sessions) is not bytes or type(end_bytes) is not bytes or type(text) is not bytes or not (
            origs is None or type(origs) is list):
        raise ValueError("envelope columns are [sessions, ends, text] as bytes, then origs as an array or nil")
    if len(sessions) != 8 * count or len(end_bytes) != 4 * count or (origs is not None and len(origs) != count):
        raise ValueError("an envelope array holds 8-byte sessions, 4-byte ends and origs, as many of each as "
                         "its batch has records")
    ends = struct.unpack(f"<{count}I", end_bytes)
    if (ends[-1] if count else 0) != len(text) or not all(map(operator.le, ends, ends[1:])):
        raise ValueError("a ClOrdID column's ends must rise to its text's length")
    if len(text.decode()) != len(text) and any(end < len(text) and text[end] & 0xC0 == 0x80 for end in ends):
        raise ValueError("a ClOrdID ends inside a UTF-8 character")
    if origs is not None and set(map(type, origs)) - {str}:
        raise ValueError("an envelope's orig is a string")
    return Envelopes.from_bytes(sessions, end_bytes, text, origs)


def _from_bytes_form(arrays: list[list], counts: list[int]) -> Envelopes:
    """One ``Envelopes`` of several decoded ``[sessions, ends, text, origs]`` arrays (``counts[k]`` envelopes
    in the k-th), each checked as ``_one_in_bytes_form`` checks one, column by column with numpy: no
    Python step per array. Raises ValueError if any is not that."""
    session_columns, end_columns, texts, orig_columns = (list(column) for column in zip(*arrays))
    if (set(map(type, session_columns)) - {bytes} or set(map(type, end_columns)) - {bytes}
            or set(map(type, texts)) - {bytes} or set(map(type, orig_columns)) - {list, type(None)}):
        raise ValueError("envelope columns are [sessions, ends, text] as bytes, then origs as an array or nil")
    if (list(map(len, session_columns)) != [8 * count for count in counts]
            or list(map(len, end_columns)) != [4 * count for count in counts]
            or any(len(origs) != count for origs, count in zip(orig_columns, counts) if origs is not None)):
        raise ValueError("an envelope array holds 8-byte sessions, 4-byte ends and origs, as many of each as "
                         "its batch has records")
    text = b"".join(texts)
    count_array = np.array(counts, dtype=np.int64)
    lengths = np.array(list(map(len, texts)), dtype=np.int64)
    bases = np.cumsum(lengths) - lengths
    ends = np.frombuffer(b"".join(end_columns), dtype="<u4").astype(np.int64) + np.repeat(bases, count_array)
    filled = count_array > 0
    lasts = np.cumsum(count_array)[filled] - 1
    if (np.any(np.diff(ends) < 0) or not np.array_equal(ends[lasts], (bases + lengths)[filled])
            or np.any(lengths[~filled])):
        raise ValueError("a ClOrdID column's ends must rise to its text's length")
    if len(text.decode()) != len(text):  # UnicodeDecodeError (a ValueError) if it is not UTF-8
        inner = ends[ends < len(text)]
        if np.any((np.frombuffer(text, dtype=np.uint8)[inner] & 0xC0) == 0x80):
            raise ValueError("a ClOrdID ends inside a UTF-8 character")
    if len(text) >= 1 << 32:
        raise ValueError("envelopes of more than 4 GiB of ClOrdIDs")
    origs = None
    if any(column is not None for column in orig_columns):
        origs = list(chain.from_iterable(column if column is not None else [""] * count
                                         for column, count in zip(orig_columns, counts)))
        if set(map(type, origs)) - {str}:
            raise ValueError("an envelope's orig is a string")
    return Envelopes.from_bytes(b"".join(session_columns), ends.astype("<u4").tobytes(), text, origs)


def unpack_envelopes(blob: bytes, count: int) -> Envelopes:
    """The ``count`` envelopes ``pack_envelopes`` or ``pack_envelope_strings`` packed. Raises ValueError if
    ``blob`` is not that."""
    decoded = msgpack.unpackb(blob, raw=False)
    if _is_bytes_form(decoded):
        return _one_in_bytes_form(decoded, count)
    return _checked(*_columns(decoded, count))


def unpack_envelope_runs(blobs: Sequence[bytes], counts: Sequence[int],
                         spans: Sequence[tuple[int, int]]) -> Envelopes:
    """Of several packed envelope arrays (``blobs[k]``, ``counts[k]`` envelopes, as ``pack_envelopes`` packed
    each), the envelopes ``spans[k][0]:spans[k][1]`` of each, as one ``Envelopes``: a journal read of
    many small batches. Raises ValueError as ``unpack_envelopes`` does.

    The blobs are decoded as the elements of one msgpack array (a header in front of them joined), in one
    call, and checked column by column, so that no Python step is taken per blob: a step per blob cost
    1.6 us, 50 ns a command of a journal written in batches of 32. A blob cut short or followed by other
    bytes still shows: the elements after it no longer decode to envelope columns, or the array ends
    before the bytes do."""
    counts = list(counts)
    if not len(blobs) == len(counts) == len(spans):
        raise ValueError("a count and a span per envelope array")
    if not blobs:
        return Envelopes([], [], [])
    try:
        arrays = msgpack.unpackb(_ARRAY32.pack(0xDD, len(blobs)) + b"".join(blobs), raw=False)
    except Exception as exc:
        raise ValueError(f"envelopes do not decode: {exc}") from None
    if all(map(_is_bytes_form, arrays)):
        whole = _from_bytes_form(arrays, counts)
        inner = spans[1:-1]
        if all(begin == 0 and end == count for (begin, end), count in zip(inner, counts[1:-1])) and (
                len(spans) == 1 or (spans[0][1] == counts[0] and spans[-1][0] == 0)):
            return whole[spans[0][0] : sum(counts) - (counts[-1] - spans[-1][1])]  # one run: the usual read
        starts = [0, *accumulate(counts)]
        return Envelopes.join(whole[start + begin : start + end] for start, (begin, end) in zip(starts, spans))
    parts = []
    for array, count, (begin, end) in zip(arrays, counts, spans):
        part = _one_in_bytes_form(array, count) if _is_bytes_form(array) else _checked(*_columns(array, count))
        parts.append(part[begin:end])
    return Envelopes.join(parts)


def encode_submissions(records: list[bytes], envelopes: Sequence[Envelope]) -> list[bytes]:
    """One message of the commands ``records`` (each one COMMAND_DTYPE record's bytes), in order."""
    if not records or len(records) != len(envelopes):
        raise ValueError("a submission carries one or more records, an envelope each")
    if any(len(record) != COMMAND_DTYPE.itemsize for record in records):
        raise ValueError("a submission's records are COMMAND_DTYPE records")
    return [b"".join(records), pack_envelope_strings(envelopes)]


def decode_submissions(frames: list[bytes]) -> tuple[np.ndarray, Envelopes]:
    """(COMMAND_DTYPE array, an envelope per record) from the frames of a submission."""
    if len(frames) != 2 or not frames[0] or len(frames[0]) % COMMAND_DTYPE.itemsize:
        raise IntakeError("a submission is [80-byte records, envelopes]")
    count = len(frames[0]) // COMMAND_DTYPE.itemsize
    try:
        envelopes = unpack_envelopes(frames[1], count)
    except Exception as exc:
        raise IntakeError(f"bad envelopes: {exc}") from None
    # Writable (the sequencer numbers them), copied as bytes: ndarray.copy is slow on structured dtypes.
    return np.frombuffer(bytearray(frames[0]), dtype=COMMAND_DTYPE), envelopes
