"""Operator commands for the engine's snapshots: ``python -m engine.tool [--config PATH] COMMAND``.

    snapshots          the snapshots kept: seq, when taken, size, state hash
    verify [SEQ ...]   restore each snapshot (default: every one) into a fresh engine and check its
                       digest and state hash; exit 1 if any fails

Both read the store while the engine runs (LMDB readers never block its writer).
"""

from __future__ import annotations

import argparse
import sys
import zlib
from datetime import datetime, timezone

from common.config import ConfigError, load_config
from common.snapshot_store import SnapshotStore
from engine.service import EngineService
from engine.snapshot import SnapshotError, read_header, restore

READER_MAP_BYTES = 1 << 20  # a reader adopts the map size the file records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.tool", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="configuration file (default: $EXCHANGE_CONFIG, else the packaged one)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("snapshots", help="list the snapshots kept")
    verify_parser = commands.add_parser("verify", help="restore and check snapshots")
    verify_parser.add_argument("seqs", nargs="*", type=int, help="which (default: all)")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    try:
        store = SnapshotStore(config.paths.snapshot_dir, map_bytes=READER_MAP_BYTES, readonly=True)
    except FileNotFoundError:
        print(f"no snapshot store at {config.paths.snapshot_dir}")
        return 0 if args.command == "snapshots" else 1
    with store:
        seqs = store.seqs()
        if args.command == "snapshots":
            for seq in seqs:
                payload = store.read(seq)
                try:
                    header = read_header(payload)
                    taken = datetime.fromtimestamp(header["created_ns"] / 1e9, tz=timezone.utc).isoformat(
                        timespec="seconds")
                    print(f"seq {seq:>12}  taken {taken}  {len(payload):>12,} bytes  state {header['state_hash'][:16]}")
                except SnapshotError as exc:
                    print(f"seq {seq:>12}  unreadable: {exc}")
            if not seqs:
                print("no snapshot yet")
            return 0
        failed = 0
        for seq in args.seqs or seqs:
            try:
                restore(EngineService(config), store.read(seq))
                print(f"seq {seq}: OK")
            except (SnapshotError, KeyError, zlib.error) as exc:
                failed += 1
                print(f"seq {seq}: FAILED: {exc}")
        return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
