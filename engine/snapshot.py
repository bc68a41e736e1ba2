"""Engine snapshots: the whole state of an ``EngineService`` at a sequence number, in LMDB.

    payload = encode(service, created_ns)          # bytes: every array and the service's own state
    seq = restore(service, payload)                # into a fresh service built from the same config
    store = SnapshotStore(path, map_bytes=...)     # LMDB: seq -> payload, the newest ``keep`` kept
    seq = load_newest(store, service)              # the newest snapshot that verifies (0: none)

Format (version 1) of a payload: ``MAGIC``, a 4-byte little-endian header length, the header (msgpack),
then the sections one after the other, each compressed with zlib. The header holds:

- ``seq``: the last command the state includes; ``created_ns``: when it was taken;
- ``layout``: a digest of what the arrays' shapes and meaning depend on (assets, symbols, fees, capacities,
  self-trade prevention, record dtypes). A snapshot taken under another configuration is refused: the
  state is then rebuilt from the journal under the configuration in force;
- ``sections``: ``[name, compressed length, raw length]`` in order: the nine engine arrays (the order
  table only up to its high-water mark: slots above it were never used) and ``service``, the msgpack of
  ``EngineService.export_state()``;
- ``digest``: BLAKE2b-256 of all the section bytes; ``state_hash``: ``Engine.state_hash()`` of the state.

``restore`` checks the digest before it touches anything, and the state hash after: a snapshot that
fails either is refused with :class:`SnapshotError`, and ``load_newest`` falls back to the one before.

The store (``config.paths.snapshot_dir``, common/snapshot_store.py) keeps the payloads by seq.
"""

from __future__ import annotations

import hashlib
import logging
import struct
import zlib

import msgpack
import numpy as np

from common.config import ExchangeConfig
from common.records import COMMAND_DTYPE, EVENT_DTYPE
from common.snapshot_store import SnapshotStore
from engine.layout import P_HIGH_WATER, EngineArrays
from engine.service import EngineService

log = logging.getLogger("engine.snapshot")

MAGIC = b"EXSNAP\x00\x01"
FORMAT_VERSION = 1
ARRAY_NAMES = ("orders", "levels", "bits", "symbols", "accounts", "balances", "supply", "index", "params")
SERVICE_SECTION = "service"
COMPRESSION_LEVEL = 1  # the arrays are mostly zeros: the fastest level already shrinks them a hundredfold
_HEADER_LENGTH = struct.Struct("<I")


class SnapshotError(ValueError):
    """A payload that is not a snapshot this engine can take (corrupt, cut short, other configuration)."""


def layout_digest(config: ExchangeConfig) -> str:
    """What a snapshot's arrays depend on; two configurations with the same digest share snapshots."""
    described = repr((FORMAT_VERSION, config.assets, config.symbols, config.fees, config.capacity,
                      config.engine.self_trade_prevention, COMMAND_DTYPE.descr, EVENT_DTYPE.descr))
    return hashlib.sha256(described.encode()).hexdigest()


def _arrays(service: EngineService) -> EngineArrays:
    return service.engine.arrays


def _section_bytes(arrays: EngineArrays, name: str) -> bytes:
    array = getattr(arrays, name)
    if name == "orders":
        array = array[: int(arrays.params[P_HIGH_WATER])]
    return np.ascontiguousarray(array).tobytes()


def encode(service: EngineService, created_ns: int) -> bytes:
    """The snapshot of ``service`` as it is now (between two batches)."""
    arrays = _arrays(service)
    sections: list[tuple[str, bytes]] = [(name, _section_bytes(arrays, name)) for name in ARRAY_NAMES]
    sections.append((SERVICE_SECTION, msgpack.packb(service.export_state(), use_bin_type=True)))
    digest = hashlib.blake2b(digest_size=32)
    table, body = [], []
    for name, raw in sections:
        packed = zlib.compress(raw, COMPRESSION_LEVEL)
        digest.update(packed)
        table.append([name, len(packed), len(raw)])
        body.append(packed)
    header = msgpack.packb({
        "version": FORMAT_VERSION, "seq": service.last_seq, "created_ns": created_ns,
        "layout": layout_digest(service.config), "sections": table, "digest": digest.hexdigest(),
        "state_hash": service.engine.state_hash(),
    })
    return b"".join([MAGIC, _HEADER_LENGTH.pack(len(header)), header, *body])


def read_header(payload: bytes) -> dict:
    """The header of a payload (checked for form, not against the body)."""
    if len(payload) < len(MAGIC) + _HEADER_LENGTH.size or not payload.startswith(MAGIC):
        raise SnapshotError("not a snapshot (bad magic)")
    (length,) = _HEADER_LENGTH.unpack_from(payload, len(MAGIC))
    start = len(MAGIC) + _HEADER_LENGTH.size
    if start + length > len(payload):
        raise SnapshotError("snapshot cut short in its header")
    try:
        header = msgpack.unpackb(payload[start : start + length], raw=False)
        header["body_offset"] = start + length
        if header["version"] != FORMAT_VERSION:
            raise SnapshotError(f"snapshot format {header['version']} is not {FORMAT_VERSION}")
        int(header["seq"]), list(header["sections"]), str(header["digest"])
    except SnapshotError:
        raise
    except Exception as exc:
        raise SnapshotError(f"malformed snapshot header: {exc}") from None
    return header


def _sections(payload: bytes, header: dict) -> dict[str, bytes]:
    """Every section, decompressed, after checking the digest of them all."""
    at = header["body_offset"]
    digest = hashlib.blake2b(digest_size=32)
    packed: list[tuple[str, bytes, int]] = []
    for name, length, raw_length in header["sections"]:
        chunk = payload[at : at + length]
        if len(chunk) != length:
            raise SnapshotError(f"snapshot cut short in section {name!r}")
        digest.update(chunk)
        packed.append((name, chunk, raw_length))
        at += length
    if at != len(payload):
        raise SnapshotError("snapshot has bytes after its last section")
    if digest.hexdigest() != header["digest"]:
        raise SnapshotError("snapshot digest does not match: corrupt")
    out = {}
    for name, chunk, raw_length in packed:
        raw = zlib.decompress(chunk)
        if len(raw) != raw_length:
            raise SnapshotError(f"section {name!r} is {len(raw)} bytes, the header says {raw_length}")
        out[name] = raw
    return out


def restore(service: EngineService, payload: bytes) -> int:
    """Load ``payload`` into ``service`` (fresh, built from a configuration with the same layout digest);
    returns the snapshot's seq. Refused with SnapshotError, the service untouched, if the payload does
    not verify; if the state it gives does not hash as recorded, the error is raised after loading (the
    caller must then build a fresh service)."""
    header = read_header(payload)
    if header.get("layout") != layout_digest(service.config):
        raise SnapshotError("snapshot taken under another configuration (layout digest differs)")
    if service.last_seq != 0:
        raise ValueError("restore wants a fresh service")
    sections = _sections(payload, header)
    if set(sections) != {*ARRAY_NAMES, SERVICE_SECTION}:
        raise SnapshotError(f"snapshot sections {sorted(sections)} are not the engine's")
    arrays = _arrays(service)
    for name in ARRAY_NAMES:
        target = getattr(arrays, name)
        raw = sections[name]
        flat = target.reshape(-1)
        if len(raw) % target.dtype.itemsize or len(raw) > target.nbytes:
            raise SnapshotError(f"section {name!r} does not fit the engine's {name} array")
        if name != "orders" and len(raw) != target.nbytes:
            raise SnapshotError(f"section {name!r} is {len(raw)} bytes, the engine's array {target.nbytes}")
        loaded = np.frombuffer(raw, dtype=target.dtype)
        flat[: len(loaded)] = loaded
    state = msgpack.unpackb(sections[SERVICE_SECTION], raw=False, strict_map_key=False)
    if int(state["last_seq"]) != int(header["seq"]):
        raise SnapshotError("the service state and the header disagree on seq")
    service.import_state(state)
    if service.engine.state_hash() != header["state_hash"]:
        raise SnapshotError("the restored state does not hash as recorded")
    return int(header["seq"])


def load_newest(config: ExchangeConfig, store: SnapshotStore) -> tuple[EngineService, int]:
    """A service from the newest snapshot that verifies, falling back to older ones; a fresh service and
    seq 0 when none does (the whole journal is then replayed)."""
    for seq in store.seqs():
        service = EngineService(config)
        try:
            restored = restore(service, store.read(seq))
        except (SnapshotError, zlib.error, KeyError) as exc:
            log.error("snapshot at seq %d refused: %s; trying the one before", seq, exc)
            continue
        return service, restored
    return EngineService(config), 0
