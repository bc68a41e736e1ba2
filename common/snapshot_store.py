"""The engine's snapshot store: LMDB under ``config.paths.snapshot_dir``, written by the engine, read by it at
start-up and by the operators' tools. The payloads are opaque here (engine/snapshot.py makes and reads them).

One LMDB environment with one database, ``snapshots``: key the 8-byte big-endian seq of the last command
a snapshot includes, value the payload. A write is one transaction (a snapshot is there whole or not at
all) that also drops all but the newest ``keep``. The map doubles when a write does not fit.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import lmdb

DB_NAME = b"snapshots"


class SnapshotStore:
    """The LMDB snapshot store at ``path`` (created if missing unless ``readonly``)."""

    def __init__(self, path: str | os.PathLike[str], *, map_bytes: int, readonly: bool = False):
        self.path = Path(path)
        if not readonly:
            self.path.mkdir(parents=True, exist_ok=True)
        elif not (self.path / "data.mdb").exists():
            raise FileNotFoundError(f"no snapshot store at {str(self.path)!r}")
        # sync: a snapshot is written rarely and a torn one would only cost a longer replay, but it is
        # cheap to have it whole on disk before the older ones it replaces are dropped.
        self._env = lmdb.open(str(self.path), map_size=map_bytes, max_dbs=1, readonly=readonly, sync=True,
                              lock=True)
        self._db = self._env.open_db(DB_NAME, create=not readonly)

    def _begin(self, *, write: bool = False) -> lmdb.Transaction:
        try:
            return self._env.begin(db=self._db, write=write)
        except lmdb.MapResizedError:
            self._env.set_mapsize(0)
            return self._env.begin(db=self._db, write=write)

    def seqs(self) -> list[int]:
        """The seqs of the snapshots kept, newest first."""
        with self._begin() as txn:
            return sorted((int.from_bytes(key, "big") for key in txn.cursor().iternext(values=False)),
                          reverse=True)

    def read(self, seq: int) -> bytes:
        with self._begin() as txn:
            value = txn.get(seq.to_bytes(8, "big"))
        if value is None:
            raise KeyError(f"no snapshot at seq {seq}")
        return bytes(value)

    def write(self, seq: int, payload: bytes, *, keep: int) -> None:
        """Store a snapshot and drop all but the newest ``keep``."""

        def put_and_trim(txn: lmdb.Transaction) -> None:
            txn.put(seq.to_bytes(8, "big"), payload)
            keys = [key for key in txn.cursor().iternext(values=False)]
            for key in keys[: max(0, len(keys) - keep)]:
                txn.delete(key)

        self._growing(put_and_trim)

    def put_raw(self, seq: int, payload: bytes) -> None:
        """Store bytes as they are (operators' tools and tests: a damaged snapshot, say)."""
        self._growing(lambda txn: txn.put(seq.to_bytes(8, "big"), payload))

    def _growing(self, write: Callable[[lmdb.Transaction], Any]) -> None:
        """Run ``write`` in a write transaction, doubling the map until it fits."""
        while True:
            try:
                with self._begin(write=True) as txn:
                    write(txn)
                return
            except lmdb.MapFullError:
                self._env.set_mapsize(self._env.info()["map_size"] * 2)

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env = None

    def __enter__(self) -> "SnapshotStore":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
