"""Operator commands for the journal: ``python -m sequencer.tool [--config PATH] COMMAND``.

    verify                    read every entry and check it (exit 1 on any fault)
    tail [-n N] [--follow]    the last N commands, one readable line each (--follow: then new ones)
    compact [--before SEQ]    move the commands older than SEQ (default: the newest command the oldest
                              kept engine snapshot covers, plus one) to an archive, then drop them

All of them work while the exchange runs: LMDB lets readers and a second writer beside the sequencer
(the compaction's deletions wait for the sequencer's transactions, a chunk at a time).

An archive is a journal of its own (the same format, common/journal.py) in
``<data_dir>/journal-archive/<first>-<last>``: ``--journal`` points ``verify`` and ``tail`` at one.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import numpy as np

from common.config import ConfigError, Durability, ExchangeConfig, load_config
from common.journal import Journal, JournalError
from common.records import CommandKind, OrderType, Side, TimeInForce
from common.snapshot_store import SnapshotStore
from common.stream import SequencedBatch

ARCHIVE_DIR_NAME = "journal-archive"
READ_CHUNK = 65_536  # commands read per transaction
FOLLOW_POLL_S = 0.5  # how often --follow looks for new commands
TAIL_DEFAULT = 20
READER_MAP_BYTES = 1 << 20  # a reader adopts the map size the file records


def _open_reader(path: Path) -> Journal:
    return Journal(path, map_bytes=READER_MAP_BYTES, durability=Durability.PROCESS, readonly=True)


# --- verify ---------------------------------------------------------------------------------------------


def verify(journal: Journal) -> list[str]:
    """Every fault found (an empty list: the journal is sound): gaps, records whose seq is not their
    key, timestamps that go back, unknown command kinds, envelopes that do not decode."""
    faults: list[str] = journal.structure_faults()
    if faults:  # the batches themselves are damaged: reading through them would only repeat it
        return faults
    expected = None
    last_ts = None
    kinds = {int(kind) for kind in CommandKind}
    try:
        for batch in journal.iterate(chunk=READ_CHUNK):
            seqs = batch.records["seq"].tolist()
            if expected is not None and batch.first != expected:
                faults.append(f"gap: seq {expected} to {batch.first - 1} missing")
            if seqs != list(range(batch.first, batch.last + 1)):
                faults.append(f"records of seq {batch.first}..{batch.last} do not carry their own seq")
            for seq, ts, kind in zip(seqs, batch.records["ts"].tolist(), batch.records["kind"].tolist()):
                if last_ts is not None and ts < last_ts:
                    faults.append(f"seq {seq}: ts {ts} is before the previous one ({last_ts})")
                if kind not in kinds:
                    faults.append(f"seq {seq}: unknown command kind {kind}")
                last_ts = ts
            expected = batch.last + 1
            if len(faults) > 100:
                faults.append("... (stopped after 100 faults)")
                break
    except JournalError as exc:  # a key out of order, a value too short, an envelope that does not decode
        faults.append(str(exc))
    return faults


# --- tail -----------------------------------------------------------------------------------------------


def describe(batch: SequencedBatch, config: ExchangeConfig) -> Iterator[str]:
    """One line per command: seq, time, kind, account, and what the command says, in the config's units."""
    for record, envelope in zip(batch.records, batch.envelopes):
        kind = _name(CommandKind, int(record["kind"]))
        when = datetime.fromtimestamp(int(record["ts"]) / 1e9, tz=timezone.utc).isoformat(timespec="microseconds")
        parts = [f"{int(record['seq']):>12}", when, f"{kind:<14}", f"account {int(record['account'])}"]
        symbol_id = int(record["symbol"])
        symbol = config.symbols[symbol_id] if 0 <= symbol_id < len(config.symbols) else None
        if kind in ("NEW", "CANCEL_REPLACE") and symbol is not None:
            parts.append(symbol.name)
            if kind == "NEW":
                parts += [_name(Side, int(record["side"])).lower(), _name(OrderType, int(record["order_type"])).lower(),
                          _name(TimeInForce, int(record["tif"]))]
            if int(record["qty"]):
                parts.append(f"qty {symbol.lot.format(int(record['qty']))}")
            if int(record["price"]):
                parts.append(f"price {symbol.tick.format(int(record['price']))}")
            if int(record["amount"]):
                parts.append(f"amount {symbol.quote.unit.format(int(record['amount']))}")
        if int(record["order_id"]):
            parts.append(f"order {int(record['order_id'])}")
        if kind in ("DEPOSIT", "WITHDRAW"):
            asset_id = int(record["asset"])
            if 0 <= asset_id < len(config.assets):
                asset = config.assets[asset_id]
                parts.append(f"{asset.unit.format(abs(int(record['amount'])))} {asset.name}")
        parts.append(f"gateway {int(record['origin'])} session {envelope.session:x} clordid {envelope.clordid!r}")
        if envelope.orig:
            parts.append(f"orig {envelope.orig!r}")
        yield "  ".join(parts)


def _name(enum: type, value: int) -> str:
    try:
        return enum(value).name
    except ValueError:
        return str(value)


def tail(journal: Journal, config: ExchangeConfig, count: int, follow: bool, out=sys.stdout) -> None:
    last = journal.last_seq()
    first = max(journal.first_seq(), last - count + 1, 1)
    while True:
        for batch in journal.iterate(first, chunk=READ_CHUNK):
            for line in describe(batch, config):
                print(line, file=out)
            first = batch.last + 1
        out.flush()
        if not follow:
            return
        time.sleep(FOLLOW_POLL_S)


# --- compact --------------------------------------------------------------------------------------------


def oldest_snapshot_seq(config: ExchangeConfig) -> int | None:
    """The seq the oldest kept engine snapshot covers (None: no snapshot)."""
    if not (config.paths.snapshot_dir / "data.mdb").exists():
        return None
    with SnapshotStore(config.paths.snapshot_dir, map_bytes=READER_MAP_BYTES, readonly=True) as store:
        seqs = store.seqs()
    return min(seqs) if seqs else None


def compact(config: ExchangeConfig, before: int | None, out=sys.stdout) -> int:
    """Archive and drop the commands older than ``before``; returns how many were dropped."""
    if before is None:
        covered = oldest_snapshot_seq(config)
        if covered is None:
            print("no engine snapshot yet: nothing may be dropped (an engine could not recover)", file=out)
            return 0
        before = covered + 1
    settings = config.sequencer
    with Journal(config.paths.journal_dir, map_bytes=settings.journal_map_bytes, durability=settings.durability,
                 max_bytes=settings.journal_max_bytes) as journal:
        first, last = journal.first_seq(), journal.last_seq()
        before = min(before, last)  # the newest command always stays: it carries the last seq
        if first == 0 or before <= first:
            print(f"nothing to compact: the journal holds seq {first}..{last}", file=out)
            return 0
        archive_path = config.paths.data_dir / ARCHIVE_DIR_NAME / f"{first}-{before - 1}"
        copied = _archive(journal, first, before, archive_path, settings.durability)
        dropped = journal.drop_before(before)
        if dropped != copied:
            raise JournalError(f"archived {copied} commands but dropped {dropped}")
        print(f"archived seq {first}..{before - 1} ({copied} commands) to {archive_path}; "
              f"the journal now holds seq {before}..{journal.last_seq()}", file=out)
        return dropped


def _archive(journal: Journal, first: int, before: int, path: Path, durability: Durability) -> int:
    """Copy seq ``first``..``before - 1`` to a new journal at ``path`` and check the copy."""
    if path.exists():
        raise JournalError(f"the archive {path} exists already")
    copied = 0
    with Journal(path, map_bytes=journal.map_bytes, durability=Durability.FSYNC) as archive:
        seq = first
        while seq < before:
            batch = journal.read(seq, min(READ_CHUNK, before - seq))
            if batch.first != seq or not len(batch.records):
                raise JournalError(f"the journal changed while it was archived (at seq {seq})")
            archive.append(np.array(batch.records), batch.envelopes, archive=True)
            copied += len(batch.records)
            seq = batch.last + 1
        if archive.first_seq() != first or archive.last_seq() != before - 1 or verify(archive):
            raise JournalError(f"the archive at {path} does not verify")
    return copied


# --- the command line -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sequencer.tool", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="configuration file (default: $EXCHANGE_CONFIG, else the packaged one)")
    parser.add_argument("--journal", help="a journal directory other than the configuration's (an archive)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("verify", help="check every entry of the journal")
    tail_parser = commands.add_parser("tail", help="the last commands, readable")
    tail_parser.add_argument("-n", type=int, default=TAIL_DEFAULT, help=f"how many (default {TAIL_DEFAULT})")
    tail_parser.add_argument("--follow", action="store_true", help="then print new commands as they come")
    compact_parser = commands.add_parser("compact", help="archive and drop old commands")
    compact_parser.add_argument("--before", type=int, help="drop the commands with a lower seq")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    path = Path(args.journal) if args.journal else config.paths.journal_dir
    try:
        if args.command == "compact":
            if args.journal:
                parser.error("compact works on the exchange's own journal only")
            compact(config, args.before)
            return 0
        with _open_reader(path) as journal:
            if args.command == "verify":
                faults = verify(journal)
                for fault in faults:
                    print(fault)
                print(f"{path}: seq {journal.first_seq()}..{journal.last_seq()}: "
                      f"{'OK' if not faults else f'{len(faults)} fault(s)'}")
                return 1 if faults else 0
            tail(journal, config, max(1, args.n), args.follow)
            return 0
    except (JournalError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
