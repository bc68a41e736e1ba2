"""The operators' commands, run as operators run them (``python -m sequencer.tool``, ``python -m
engine.tool``) against real LMDB files in a temporary data directory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from common.config import Durability, default_document, load_config
from common.intake import Envelope
from common.journal import Journal
from common.records import COMMAND_DTYPE, CommandKind, OrderType, Side, TimeInForce
from common.snapshot_store import SnapshotStore
from common.stream import SequencedBatch
from engine.service import EngineService
from engine.snapshot import encode
from tests.harness import to_toml

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT_S = 120


@pytest.fixture
def exchange_files(tmp_path):
    """A configuration whose data directory holds a journal of 300 commands (3 accounts funded, then
    orders), and the commands."""
    document = default_document()
    document["paths"] = {"data_dir": str(tmp_path / "data"), "log_dir": str(tmp_path / "log")}
    document["capacity"] = {"max_open_orders": 4096, "max_accounts": 16}
    config_path = tmp_path / "exchange.toml"
    config_path.write_text(to_toml(document))
    config = load_config(config_path)
    records = np.zeros(300, dtype=COMMAND_DTYPE)
    records["seq"] = np.arange(1, 301)
    records["ts"] = 1_700_000_000_000_000_000 + np.arange(300)
    for i, account in enumerate((1, 2, 3)):
        records[i]["kind"], records[i]["account"] = CommandKind.CREATE_ACCOUNT, account
        records[3 + i]["kind"], records[3 + i]["account"] = CommandKind.DEPOSIT, account
        records[3 + i]["asset"], records[3 + i]["amount"] = 2, 10**15  # USDT
    orders = records[6:]
    orders["kind"], orders["account"], orders["symbol"] = CommandKind.NEW, 1, 0
    orders["side"], orders["order_type"], orders["tif"] = Side.BUY, OrderType.LIMIT, TimeInForce.GTC
    orders["price"], orders["qty"] = 500_000, 10  # 50000 USDT, 0.001 BTC
    orders["client_order_id"] = np.arange(7, 301)
    envelopes = [Envelope(0xABC, f"c{seq}") for seq in range(1, 301)]
    with Journal(config.paths.journal_dir, map_bytes=1 << 20, durability=Durability.PROCESS) as journal:
        journal.append(records, envelopes)
    return config_path, config, records, envelopes


def run(config_path: Path, *arguments: str) -> subprocess.CompletedProcess:
    """``python -m MODULE --config PATH ARGS...``"""
    module, *rest = arguments
    return subprocess.run([sys.executable, "-m", module, "--config", str(config_path), *rest],
                          cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT_S)


def test_verify_finds_a_sound_journal_sound(exchange_files):
    config_path, *_ = exchange_files
    done = run(config_path, "sequencer.tool", "verify")
    assert done.returncode == 0, done.stderr
    assert "seq 1..300: OK" in done.stdout


def test_verify_reports_a_damaged_entry(exchange_files):
    config_path, config, *_ = exchange_files
    with Journal(config.paths.journal_dir, map_bytes=1 << 20, durability=Durability.PROCESS) as journal:
        with journal._begin(write=True) as txn:  # a value cut short, as a torn write would leave it
            txn.put((150).to_bytes(8, "big"), b"\x00" * 10)
    done = run(config_path, "sequencer.tool", "verify")
    assert done.returncode == 1
    assert "near seq 150" in done.stdout


def test_tail_prints_the_last_commands_readably(exchange_files):
    config_path, *_ = exchange_files
    done = run(config_path, "sequencer.tool", "tail", "-n", "2")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 2 and lines[-1].split()[0] == "300"
    assert "NEW" in lines[-1] and "BTC-USDT  buy  limit  GTC" in lines[-1]
    assert "qty 0.001" in lines[-1] and "price 50000" in lines[-1] and "clordid 'c300'" in lines[-1]


def test_compact_archives_what_the_oldest_snapshot_covers_and_the_engine_still_recovers(exchange_files):
    config_path, config, records, envelopes = exchange_files
    assert "no engine snapshot yet" in run(config_path, "sequencer.tool", "compact").stdout

    service = EngineService(config)
    service.apply(SequencedBatch(1, records[:200], envelopes[:200]))
    with SnapshotStore(config.paths.snapshot_dir, map_bytes=1 << 20) as store:
        store.write(200, encode(service, created_ns=0), keep=3)
    listed = run(config_path, "engine.tool", "snapshots")
    assert "seq          200" in listed.stdout
    assert run(config_path, "engine.tool", "verify").stdout.strip() == "seq 200: OK"

    done = run(config_path, "sequencer.tool", "compact")
    assert done.returncode == 0, done.stderr
    assert "archived seq 1..200 (200 commands)" in done.stdout
    assert run(config_path, "sequencer.tool", "verify").stdout.strip().endswith("seq 201..300: OK")
    archive = config.paths.data_dir / "journal-archive" / "1-200"
    assert run(config_path, "sequencer.tool", "--journal", str(archive), "verify").stdout.strip().endswith(
        "seq 1..200: OK")

    # The snapshot plus what the journal still holds is the whole state.
    whole = EngineService(config)
    whole.apply(SequencedBatch(1, records, envelopes))
    with Journal(config.paths.journal_dir, map_bytes=1 << 20, durability=Durability.PROCESS, readonly=True) as journal:
        rest = journal.read(201, 1000)
    service.apply(rest)
    assert service.engine.state_hash() == whole.engine.state_hash()
    assert "nothing to compact" in run(config_path, "sequencer.tool", "compact").stdout
