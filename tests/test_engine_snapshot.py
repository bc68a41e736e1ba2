"""Engine snapshots (engine/snapshot.py): a service restored from a snapshot and fed the rest of the
journal ends in exactly the state of the service that never stopped, from any kept snapshot or from
the journal alone; damaged snapshots are refused and the one before is used."""

from __future__ import annotations

import random

import numpy as np
import pytest

from common.intake import Envelope
from common.snapshot_store import SnapshotStore
from common.stream import SequencedBatch
from engine.service import EngineService
from engine.snapshot import SnapshotError, encode, load_newest, read_header, restore
from tests.builders import BTC, BTC_USDT, ETH, ETH_USDT, USDT, CommandTape, make_config

ACCOUNTS = (1, 2, 3, 4)
FUNDS = 10**15


def workload(seed: int, count: int) -> tuple[np.ndarray, list[Envelope]]:
    """Funded accounts, then random limit orders, market orders, cancels and replaces on two symbols."""
    rng = random.Random(seed)
    tape = CommandTape()
    for account in ACCOUNTS:
        tape.create_account(account)
        for asset in (BTC, USDT, ETH):
            tape.deposit(account, asset, FUNDS)
    orders: list[tuple[int, int]] = []
    while tape.last_seq < count:
        account = rng.choice(ACCOUNTS)
        roll = rng.random()
        if roll < 0.6 or not orders:
            symbol, low, high = rng.choice(((BTC_USDT, 140, 160), (ETH_USDT, 200, 300)))
            side = rng.choice((tape.buy, tape.sell))
            orders.append((account, side(account, symbol, rng.randint(low, high), rng.randint(1, 5))))
        elif roll < 0.75:
            tape.market_sell(account, BTC_USDT, qty=rng.randint(1, 3))
        elif roll < 0.9:
            owner, order_id = rng.choice(orders)
            tape.cancel(owner, order_id)
        else:
            owner, order_id = rng.choice(orders)
            tape.replace(owner, order_id, rng.randint(140, 160), rng.randint(1, 5))
    records = tape.array()
    envelopes = [Envelope(7, f"c{seq}") for seq in range(1, len(records) + 1)]
    return records, envelopes


def feed(service: EngineService, records: np.ndarray, envelopes: list[Envelope], stop: int, step: int = 37,
         report: bool = True) -> None:
    """Apply commands up to seq ``stop`` in batches of ``step``."""
    while service.last_seq < stop:
        first = service.last_seq + 1
        last = min(stop, first + step - 1)
        service.apply(SequencedBatch(first, records[first - 1 : last], envelopes[first - 1 : last]), report=report)


@pytest.fixture
def config():
    return make_config(max_open_orders=512, max_accounts=16)


def test_a_restored_snapshot_plus_the_rest_of_the_journal_is_the_state_that_never_stopped(config):
    records, envelopes = workload(1, 1500)
    live = EngineService(config)
    feed(live, records, envelopes, 700)
    payload = encode(live, created_ns=1)
    feed(live, records, envelopes, len(records))

    restored = EngineService(config)
    assert restore(restored, payload) == 700
    feed(restored, records, envelopes, len(records), step=101)

    assert restored.engine.state_hash() == live.engine.state_hash()
    restored.engine.validate()
    assert restored.export_state() == live.export_state()  # order tracking, ClOrdIDs and outcomes too


@pytest.mark.parametrize("step", [7, 37, 5000])
@pytest.mark.parametrize("seed", [2, 3])
def test_applying_without_building_reports_reaches_the_same_whole_state(seed, step):
    config = make_config(max_open_orders=512, max_accounts=16, event_buffer=64)  # chunks end mid-batch
    records, envelopes = workload(seed, 3000)
    reported, state_only = EngineService(config), EngineService(config)
    for stop in range(step, len(records) + step, step):  # compared after every batch
        feed(reported, records, envelopes, min(stop, len(records)), step=step)
        feed(state_only, records, envelopes, min(stop, len(records)), step=step, report=False)
        assert state_only.export_state() == reported.export_state(), f"after seq {stop}"
    assert state_only.engine.state_hash() == reported.engine.state_hash()


def test_from_the_journal_alone_and_from_every_kept_snapshot_the_state_is_the_same(config, tmp_path):
    records, envelopes = workload(2, 1200)
    live = EngineService(config)
    with SnapshotStore(tmp_path, map_bytes=1 << 20) as store:
        for stop in (300, 600, 900, 1000):
            feed(live, records, envelopes, stop)
            store.write(stop, encode(live, created_ns=stop), keep=3)
        feed(live, records, envelopes, len(records))
        assert store.seqs() == [1000, 900, 600]  # the oldest was dropped

        for seq in [*store.seqs(), 0]:
            service = EngineService(config)
            if seq:
                assert restore(service, store.read(seq)) == seq
            feed(service, records, envelopes, len(records))
            assert service.engine.state_hash() == live.engine.state_hash(), seq
            service.engine.validate()
            supply = service.engine.arrays.supply
            balances = service.engine.arrays.balances
            assert (balances["available"].sum(axis=0) + balances["frozen"].sum(axis=0) == supply).all()


def test_a_corrupt_newest_snapshot_falls_back_to_the_one_before(config, tmp_path, caplog):
    records, envelopes = workload(3, 600)
    live = EngineService(config)
    with SnapshotStore(tmp_path, map_bytes=1 << 20) as store:
        feed(live, records, envelopes, 200)
        store.write(200, encode(live, created_ns=0), keep=3)
        feed(live, records, envelopes, 400)
        good = encode(live, created_ns=0)
        damaged = bytearray(good)
        damaged[-10] ^= 0xFF  # a flipped bit in the last section
        store.put_raw(400, bytes(damaged))

        service, seq = load_newest(config, store)
        assert seq == 200
        assert "seq 400 refused" in caplog.text and "digest" in caplog.text

        store.put_raw(400, good[: len(good) // 2])  # cut off mid-write
        service, seq = load_newest(config, store)
        assert seq == 200
        feed(service, records, envelopes, 400)
        assert service.engine.state_hash() == live.engine.state_hash()


def test_no_snapshot_at_all_gives_a_fresh_service_to_replay_into(config, tmp_path):
    with SnapshotStore(tmp_path, map_bytes=1 << 20) as store:
        service, seq = load_newest(config, store)
    assert seq == 0 and service.last_seq == 0


def test_a_snapshot_of_another_configuration_is_refused(config):
    records, envelopes = workload(4, 200)
    live = EngineService(config)
    feed(live, records, envelopes, 200)
    payload = encode(live, created_ns=0)
    other = make_config(max_open_orders=1024, max_accounts=16)
    with pytest.raises(SnapshotError, match="another configuration"):
        restore(EngineService(other), payload)
    assert read_header(payload)["seq"] == 200


@pytest.mark.parametrize("payload", [b"", b"EXSNAP\x00\x01", b"not a snapshot at all", b"EXSNAP\x00\x01\xff\xff\x00\x00"])
def test_garbage_is_refused_with_a_reason(config, payload):
    with pytest.raises(SnapshotError):
        restore(EngineService(config), payload)
