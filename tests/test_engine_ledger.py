"""The order ledger (engine/ledger.py) against a plain model of the same tracking (tests/reference_tracking.py):
after every batch of random workloads the service's orders, their fills and ClOrdIDs, the history of ended
orders and the OrigClOrdID map are the model's, whatever the batch sizes, the chunking of events, the
growth of the arrays, and whether reports were built. Also: snapshots from before the ledger."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine.service as service_module
from common.intake import Envelope
from common.records import TimeInForce
from common.reports import ACCOUNT_PREFIX
from common.stream import SequencedBatch
from engine.ledger import Ledger, clordid_text
from engine.service import EngineService, StreamInconsistency
from engine.snapshot import encode, restore
from tests.builders import BTC, BTC_USDT, ETH, ETH_USDT, USDT, CommandTape, make_config
from tests.reference_tracking import ReferenceTracking

ACCOUNTS = (1, 2, 3, 4)
SESSIONS = (7, 8, (0xFFFFFFFF << 32) | 5)  # the last: a gateway epoch with its top bit set
FUNDS = 10**15


def workload(seed: int, count: int) -> tuple[np.ndarray, list[Envelope]]:
    """Funded accounts, then limit (GTC, IOC, FOK) and market orders, cancels and replaces by order id or by
    OrigClOrdID (often a ClOrdID an order has since left behind, or one it never had), mass cancels."""
    rng = random.Random(seed)
    tape = CommandTape()
    envelopes: list[Envelope] = []

    def add(seq: int, clordid: str = "", orig: str = "") -> None:
        envelopes.append(Envelope(rng.choice(SESSIONS), clordid, orig))
        assert len(envelopes) == seq

    for account in ACCOUNTS:
        add(tape.create_account(account), f"admin-{account}")
        for asset in (BTC, USDT, ETH):
            add(tape.deposit(account, asset, FUNDS), f"fund-{account}-{asset}")
    used: dict[int, list[str]] = {account: [] for account in ACCOUNTS}  # ClOrdIDs each account gave
    orders: list[tuple[int, int, int, bool]] = []  # (account, order id, symbol, buy)
    order_of: dict[str, tuple[int, bool]] = {}  # ClOrdID -> (symbol, buy) of the order it was given to
    # Per symbol: buy prices, sell prices (they meet at one tick: some cross, most rest), lots.
    terms = {BTC_USDT: ((140, 150), (150, 160), (1, 5)), ETH_USDT: ((200, 250), (250, 300), (40, 80))}

    def price(symbol: int, buy: bool) -> int:
        return rng.randint(*terms[symbol][0 if buy else 1])

    def lots(symbol: int) -> int:
        return rng.randint(*terms[symbol][2])

    while tape.last_seq < count:
        account = rng.choice(ACCOUNTS)
        clordid = f"k{tape.last_seq + 1}" if rng.random() < 0.95 else ""
        roll = rng.random()
        if roll < 0.4 or not orders:
            symbol, buy = rng.choice((BTC_USDT, ETH_USDT)), rng.random() < 0.5
            tif = rng.choice((TimeInForce.GTC,) * 6 + (TimeInForce.IOC, TimeInForce.FOK))
            side = tape.buy if buy else tape.sell
            seq = side(account, symbol, price(symbol, buy), lots(symbol), tif=tif)
            orders.append((account, seq, symbol, buy))
            add(seq, clordid)
            order_of[clordid] = (symbol, buy)
        elif roll < 0.45:
            add(tape.market_sell(account, BTC_USDT, qty=rng.randint(1, 3)), clordid)
        elif roll < 0.55:
            owner, order_id, _, _ = rng.choice(orders)
            add(tape.cancel(owner, order_id), clordid)
            account = owner
        elif roll < 0.62 and used[account]:
            orig = rng.choice(used[account][-12:] + ["never-given"])
            add(tape.cancel(account, 0), clordid, orig)
        elif roll < 0.9 and used[account]:
            orig = used[account][-1] if rng.random() < 0.6 else rng.choice(used[account][-6:])  # chains of replaces
            symbol, buy = order_of.get(orig, (BTC_USDT, True))
            add(tape.replace(account, 0, price(symbol, buy), lots(symbol)), clordid, orig)
            order_of[clordid] = (symbol, buy)
        elif roll < 0.99:
            owner, order_id, symbol, buy = rng.choice(orders[-20:])
            add(tape.replace(owner, order_id, price(symbol, buy), lots(symbol)), clordid)
            order_of[clordid] = (symbol, buy)
            account = owner
        else:
            add(tape.cancel_all(account), clordid)
        if clordid:
            used[account].append(clordid)
    return tape.array(), envelopes


def follow(service: EngineService, model: ReferenceTracking) -> None:
    """Feed ``model`` what the service's ledger is fed, at the same points."""
    take, run, sweep, apply = service._take_chunk, service._run, service._sweep, service.apply

    def take_chunk(chunk, ctx, part, output):
        model.take(chunk.copy(), ctx.first, ctx.records, ctx.session_column.tolist(), ctx.clordids,
                   service_module.CLOSED_ORDER_HISTORY, service_module.CLORDIDS_PER_ORDER)
        take(chunk, ctx, part, output)

    def run_part(commands, ctx, output):
        run(commands, ctx, output)
        model.end_command(service_module.CLOSED_ORDER_HISTORY)

    def sweep_map():
        sweep()
        model.sweep()

    def apply_batch(batch, **options):
        model.begin_batch()
        return apply(batch, **options)

    service._take_chunk, service._run, service._sweep, service.apply = take_chunk, run_part, sweep_map, apply_batch


def reported(messages) -> list[tuple]:
    """What report messages say (a restored service's topic counters start again at 1)."""
    return [(message.topic, message.events.tobytes(), message.items, message.seq, message.prev,
             None if message.levels is None else message.levels.tobytes()) for message in messages]


def tracked(service: EngineService) -> dict[str, list]:
    rows = service.tracked()
    rows["by_clordid"] = sorted(rows["by_clordid"])
    return rows


def feed(service: EngineService, records: np.ndarray, envelopes: list[Envelope], rng: random.Random,
         check=None) -> None:
    """The whole workload in batches of random sizes, reports built or not at random."""
    while service.last_seq < len(records):
        first = service.last_seq + 1
        last = min(len(records), first + rng.choice((1, 2, 5, 17, 60)) - 1)
        service.apply(SequencedBatch(first, records[first - 1 : last], envelopes[first - 1 : last]),
                      report=rng.random() < 0.5)
        if check is not None:
            check()


@pytest.fixture(scope="module", autouse=True)
def compiled():
    """The kernels compiled (or loaded from the cache) before Hypothesis runs an example: it traces the
    code of the examples, and Numba's compiler is Python (a cold cache then took ten minutes, not two)."""
    EngineService(make_config()).warm_up()


@pytest.fixture
def small_bounds(monkeypatch):
    """Bounds small enough that a short workload evicts ended orders, pushes ClOrdIDs out and sweeps often."""
    monkeypatch.setattr(service_module, "CLOSED_ORDER_HISTORY", 6)
    monkeypatch.setattr(service_module, "CLORDIDS_PER_ORDER", 3)
    monkeypatch.setattr(service_module, "SWEEP_INTERVAL", 8)
    monkeypatch.setattr(service_module, "LEDGER_ROWS", 4)  # every structure grows, mid-chunk too


# The fixture only sets constants, the same for every example.
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1))
def test_the_ledger_tracks_orders_as_the_plain_model_does(small_bounds, seed):
    records, envelopes = workload(seed, 400)
    service = EngineService(make_config(max_open_orders=256, max_accounts=16, event_buffer=64))
    model = ReferenceTracking()
    follow(service, model)

    def same() -> None:
        assert tracked(service) == model.rows(), f"after seq {service.last_seq}"

    feed(service, records, envelopes, random.Random(seed), check=same)


def test_the_comparison_reaches_evictions_pushed_out_clordids_and_sweeps(small_bounds):
    records, envelopes = workload(1, 600)
    service = EngineService(make_config(max_open_orders=256, max_accounts=16, event_buffer=64))
    model = ReferenceTracking()
    follow(service, model)
    feed(service, records, envelopes, random.Random(1))
    assert tracked(service) == model.rows()
    assert model.evictions > 50 and model.pushed_out >= 5 and model.forgotten > 50
    assert any(order[16] for order in model.rows()["closed"])  # fills


def test_arrays_that_grow_hold_the_same_tracking_and_give_the_same_reports(monkeypatch):
    records, envelopes = workload(5, 800)
    config = make_config(max_open_orders=256, max_accounts=16, event_buffer=64)
    roomy = EngineService(config)
    monkeypatch.setattr(service_module, "LEDGER_ROWS", 2)
    cramped = EngineService(config)
    assert len(cramped._ledger.slots) < len(roomy._ledger.slots)
    for start in range(0, len(records), 50):
        batch = SequencedBatch(start + 1, records[start : start + 50], envelopes[start : start + 50])
        assert reported(cramped.apply(batch)) == reported(roomy.apply(batch))
    assert tracked(cramped) == tracked(roomy)
    assert len(cramped._ledger.slots) > 2


def account_items(messages) -> list[tuple]:
    """The account topics' messages and their items (ClOrdIDs, own and maker's)."""
    return [(message.topic, message.items) for message in messages if message.topic.startswith(ACCOUNT_PREFIX)]


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), listeners=st.sampled_from([None, set(), {1}, {2, 4}]))
def test_long_chunks_routed_with_numpy_give_the_messages_of_the_loop_over_events(monkeypatch, seed, listeners):
    """A replay's long chunks are routed to topics column by column (``COLUMN_ROUTING_EVENTS``), a live
    batch's few events by a loop: the same workload, batched alike, gives the same messages either way,
    from several gateways and sessions, for every choice of listened accounts."""
    records, envelopes = workload(seed, 500)
    rng = random.Random(seed)
    records["origin"] = [rng.choice((1, 2, 3)) for _ in range(len(records))]
    config = make_config(max_open_orders=256, max_accounts=16, event_buffer=rng.choice((64, 4096)))
    by_columns, by_loop = EngineService(config), EngineService(config)
    by_columns.account_listeners = by_loop.account_listeners = listeners
    first = 1
    while first <= len(records):
        last = min(len(records), first + rng.choice((1, 3, 40, 200)) - 1)
        batch = SequencedBatch(first, records[first - 1 : last], envelopes[first - 1 : last])
        resend = rng.random() < 0.3
        monkeypatch.setattr(service_module, "COLUMN_ROUTING_EVENTS", 1)
        columns = by_columns.apply(batch, resend=resend)
        monkeypatch.setattr(service_module, "COLUMN_ROUTING_EVENTS", 1 << 30)
        loop = by_loop.apply(batch, resend=resend)
        assert reported(columns) == reported(loop), f"batch {first}..{last}"
        assert account_items(columns) == account_items(loop)
        first = last + 1
    assert by_columns.engine.state_hash() == by_loop.engine.state_hash()


def test_a_snapshot_from_before_the_ledger_is_taken_as_rows(small_bounds):
    records, envelopes = workload(9, 700)
    config = make_config(max_open_orders=256, max_accounts=16, event_buffer=64)
    live = EngineService(config)
    rng = random.Random(9)
    half = len(records) // 2
    while live.last_seq < half:
        first = live.last_seq + 1
        live.apply(SequencedBatch(first, records[first - 1 : first + 6], envelopes[first - 1 : first + 6]))
    old = live.export_state()
    del old["ledger"]
    old.update(live.tracked())  # the rows the snapshots held before the ledger
    restored = EngineService(config)
    restore(restored, encode(live, created_ns=0))
    restored.import_state(old)
    assert tracked(restored) == tracked(live)
    while live.last_seq < len(records):
        first = live.last_seq + 1
        last = min(len(records), first + rng.choice((1, 9, 40)) - 1)
        batch = SequencedBatch(first, records[first - 1 : last], envelopes[first - 1 : last])
        assert reported(restored.apply(batch)) == reported(live.apply(batch))
        assert tracked(restored) == tracked(live)


def test_clordids_are_bytes_to_the_kernels_and_a_longer_one_than_the_protocol_allows_is_not_mapped():
    text, offsets = clordid_text(["a1", "", "é2", "x" * 3])
    assert bytes(text) == "a1é2xxx".encode() and offsets.tolist() == [0, 2, 2, 5, 8]
    config = make_config()
    service = EngineService(config)
    tape = CommandTape()
    envelopes = [Envelope(1, "admin"), Envelope(1, "fund")]
    tape.create_account(1)
    tape.deposit(1, USDT, FUNDS)
    long_id, accented = "L" * 65, "ordré-1"
    for clordid in (long_id, accented):
        tape.buy(1, BTC_USDT, 150, 1)
        envelopes.append(Envelope(1, clordid))
    service.apply(SequencedBatch(1, tape.array(), envelopes))
    assert service._ledger.resolve(1, accented) == 4
    assert service._ledger.resolve(1, long_id) == 0
    assert service.query({"q": "order", "account": 1, "order_id": 3})["order"]["clordid"] == ""
    assert service.query({"q": "order", "account": 1, "clordid": accented})["order"]["order_id"] == 4


@pytest.mark.parametrize("clordids", [
    [f"c{k}" for k in range(200)],
    ["", "a", "é2", "", "ordré-1", "x" * 64, "L" * 65] * 20,
    [""] * 100,
    ["a\0b", "c"] * 40,  # a zero byte inside one
    ["only-one"],
    [],
])
def test_a_batch_s_clordids_are_their_bytes_one_after_the_other_however_many(clordids):
    text, offsets = clordid_text(clordids)
    encoded = [clordid.encode() for clordid in clordids]
    assert offsets.tolist() == [0, *itertools.accumulate(map(len, encoded))]
    assert bytes(text[: offsets[-1]]) == b"".join(encoded)
    assert len(text) >= 1 and not text.flags.writeable and text.flags.c_contiguous


def test_an_empty_ledger_resolves_nothing():
    ledger = Ledger()
    assert ledger.resolve(1, "a") == 0 and ledger.slot(5) == -1 and ledger.open_count() == 0
    assert ledger.mapped_clordids() == [] and ledger.retired_clordids() == []


@pytest.mark.parametrize("session", [-1, 1 << 64])
def test_a_batch_whose_session_is_not_a_64_bit_unsigned_integer_is_refused(session):
    service = EngineService(make_config())
    tape = CommandTape()
    tape.create_account(1)
    with pytest.raises(StreamInconsistency, match="batch 1..1"):
        service.apply(SequencedBatch(1, tape.array(), [Envelope(session, "admin")]))
    assert service.last_seq == 0


# The OrigClOrdID map alone, against a dict: keys mapped, mapped again to newer entries, retired and swept in
# any order, in a table small enough that probe runs are long and sweeps remove from their middle.
_MAP_STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("map"), st.integers(1, 3), st.sampled_from(["a", "b", "c", "d", "e", "f", "g", "h"])),
        st.tuples(st.just("retire"), st.integers(0, 50)),
        st.tuples(st.just("sweep")),
    ),
    max_size=80,
)


@settings(max_examples=60, deadline=None)
@given(steps=_MAP_STEPS)
def test_a_sweep_removes_what_a_retired_entry_still_maps_and_nothing_else(steps):
    ledger = Ledger(2)
    mapped: dict[tuple[int, str], tuple[int, int]] = {}  # key -> (pool entry, order id)
    live: dict[int, tuple[int, str]] = {}  # pool entry not yet retired -> its key
    retired: list[tuple[int, tuple[int, str]]] = []
    order_id = 0
    for step in steps:
        if step[0] == "map":
            order_id += 1
            key = (step[1], step[2])
            entry = ledger._map(*key, order_id)
            mapped[key] = (entry, order_id)
            live[entry] = key
        elif step[0] == "retire" and live:
            entry = sorted(live)[step[1] % len(live)]
            ledger.retire(entry)
            retired.append((entry, live.pop(entry)))
        elif step[0] == "sweep":
            ledger.sweep()
            for entry, key in retired:
                if mapped.get(key, (None,))[0] == entry:
                    del mapped[key]
            retired.clear()
        for account in (1, 2, 3):
            for clordid in "abcdefgh":
                assert ledger.resolve(account, clordid) == mapped.get((account, clordid), (0, 0))[1]
        assert sorted(map(tuple, ledger.mapped_clordids())) == sorted((*key, oid) for key, (_, oid) in mapped.items())
