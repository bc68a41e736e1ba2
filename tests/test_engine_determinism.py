"""Determinism: the same commands give the same bytes and the same state hash, however they are fed.

Two fresh engines, one engine fed command by command, in batches of 7 or all at once, with a tiny or a
huge event buffer: identical events (``tobytes()``) and equal ``state_hash()``. The hash itself follows
the state: it changes exactly when a balance, an account or an open order changes.
"""

from __future__ import annotations

import hashlib
import random
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.records import EventKind, TimeInForce
from engine.core import Engine
from engine.digest import ORDER_ROW_FIELDS
from engine.kernels import index_find
from engine.reference import ReferenceEngine
from tests.builders import BTC, BTC_USDT, ETH, ETH_USDT, USDT, CommandTape, make_config
from tests.test_engine_properties import CONFIGS, assert_same_events, command_streams, to_commands

ACCOUNTS = (1, 2, 3, 4)


def random_commands(seed: int, steps: int = 400) -> np.ndarray:
    """A busy, seeded stream: funding, then limit/market orders, replaces, cancels and some junk."""
    rng = random.Random(seed)
    tape = CommandTape()
    for account in ACCOUNTS:
        tape.create_account(account)
        tape.deposit(account, BTC, rng.randint(1, 50) * 10**8)
        tape.deposit(account, USDT, rng.randint(1, 50) * 10**9)
        tape.deposit(account, ETH, rng.randint(1, 50) * 10**9)
    resting: list[tuple[int, int, int]] = []  # (order id, account, symbol)
    for _ in range(steps):
        roll = rng.random()
        account = rng.choice(ACCOUNTS)
        symbol = rng.choice([BTC_USDT, BTC_USDT, ETH_USDT])
        mid, qty = (150, rng.randint(1, 9)) if symbol == BTC_USDT else (300, rng.randint(35, 70))
        if roll < 0.5:
            tif = rng.choice([TimeInForce.GTC] * 4 + [TimeInForce.IOC, TimeInForce.FOK, TimeInForce.POST_ONLY])
            side = rng.choice([tape.buy, tape.sell])
            seq = side(account, symbol, mid + rng.randint(-8, 8), qty, tif=tif)
            resting.append((seq, account, symbol))
        elif roll < 0.58:
            if rng.random() < 0.5:
                tape.market_buy(account, symbol, amount=rng.randint(10**5, 5 * 10**7))
            else:
                rng.choice([tape.market_sell, lambda a, s, qty: tape.market_buy(a, s, qty=qty)])(account, symbol, qty=qty)
        elif roll < 0.72 and resting:
            order_id, owner, sym = rng.choice(resting)
            price = (150 if sym == BTC_USDT else 300) + rng.randint(-8, 8)
            tape.replace(owner, order_id, price, rng.randint(1, 9) if sym == BTC_USDT else rng.randint(35, 70))
        elif roll < 0.85 and resting:
            order_id, owner, _ = rng.choice(resting)
            tape.cancel(owner if rng.random() < 0.9 else account, order_id)
        elif roll < 0.88:
            tape.cancel_all(account, rng.choice([-1, BTC_USDT, ETH_USDT]))
        elif roll < 0.94:
            rng.choice([tape.deposit, tape.withdraw])(account, rng.choice([BTC, USDT, ETH]), rng.randint(-5, 10**9))
        else:
            tape.add(rng.randint(0, 9), account=rng.randint(-1, 6), symbol=rng.randint(-1, 2),
                     side=rng.randint(0, 3), order_type=rng.randint(0, 3), tif=rng.randint(0, 5),
                     price=rng.randint(90, 210), qty=rng.randint(-1, 12), order_id=rng.randint(-1, 500))
    return tape.array()


def in_batches(engine, commands: np.ndarray, size: int) -> tuple[np.ndarray, list[str]]:
    """All events of ``commands`` fed ``size`` at a time, and the state hash after each batch."""
    events, hashes = [], []
    for start in range(0, len(commands), size):
        events.append(engine.apply(commands[start : start + size]))
        hashes.append(engine.state_hash())
    return np.concatenate(events), hashes


SEEDS = [1, 2, 3]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("config_name", sorted(CONFIGS))
def test_two_fresh_engines_give_byte_identical_events_and_equal_hashes(config_name, seed):
    commands = random_commands(seed)
    config = make_config(**CONFIGS[config_name])
    first, second, reference = Engine(config), Engine(config), ReferenceEngine(config)
    a, b, r = first.apply(commands), second.apply(commands), reference.apply(commands)
    assert len(a) > len(commands)
    assert a.tobytes() == b.tobytes()
    assert_same_events(a, r, "fast vs reference")
    assert first.state_hash() == second.state_hash() == reference.state_hash()
    first.validate()


@pytest.mark.parametrize("seed", SEEDS)
def test_one_engine_fed_in_batches_of_1_7_or_all_at_once_gives_the_same_bytes_and_hashes(seed):
    commands = random_commands(seed)
    config = make_config(stp="cancel_maker")
    by_one, hashes_one = in_batches(Engine(config), commands, 1)
    by_seven, hashes_seven = in_batches(Engine(config), commands, 7)
    at_once, hashes_all = in_batches(Engine(config), commands, len(commands))
    assert by_one.tobytes() == by_seven.tobytes() == at_once.tobytes()
    # Wherever two ways of cutting reach the same command, the states agree too.
    assert hashes_seven == hashes_one[6::7] + ([hashes_one[-1]] if len(commands) % 7 else [])
    assert hashes_all == [hashes_one[-1]]
    # The reference, fed one command at a time, agrees with all of them.
    ref_events, ref_hashes = in_batches(ReferenceEngine(config), commands, 1)
    assert_same_events(by_one, ref_events, "fast vs reference, one by one")
    assert ref_hashes == hashes_one


@pytest.mark.parametrize("buffer", [64, 65, 100, 1 << 16])
def test_the_event_buffer_size_changes_neither_events_nor_hash(buffer):
    commands = random_commands(7)
    config = make_config()
    baseline = Engine(make_config(event_buffer=1 << 20))
    expected = baseline.apply(commands)
    engine = Engine(make_config(event_buffer=buffer))
    assert engine.apply(commands).tobytes() == expected.tobytes()
    reference = ReferenceEngine(config)
    reference.apply(commands)
    assert engine.state_hash() == baseline.state_hash() == reference.state_hash()


@settings(max_examples=40)
@given(stream=command_streams(), cuts=st.lists(st.integers(1, 40), min_size=1, max_size=12))
def test_any_cutting_of_a_random_stream_gives_the_same_bytes_and_hash(stream, cuts):
    commands = to_commands(stream)
    config = make_config(stp="cancel_both")
    whole = Engine(config)
    expected = whole.apply(commands)
    engine = Engine(config)
    pieces, start, k = [], 0, 0
    while start < len(commands):
        stop = start + cuts[k % len(cuts)]
        pieces.append(engine.apply(commands[start:stop]))
        start, k = stop, k + 1
    assert np.concatenate(pieces).tobytes() == expected.tobytes()
    assert engine.state_hash() == whole.state_hash()


# --- the hash follows the state ----------------------------------------------------------------------


def _reference_state(engine: ReferenceEngine) -> tuple:
    """What the hash covers, read from the reference engine's own structures."""
    accounts = tuple(
        (account, tuple(acc.available), tuple(acc.frozen)) for account, acc in sorted(engine._accounts.items())
    )
    orders = tuple(tuple(getattr(o, f) for f in ORDER_ROW_FIELDS) for o in engine._orders_in_book_order())
    return tuple(engine._supply), accounts, orders


def _docs_hash(engine: ReferenceEngine) -> str:
    """docs/engine.md's "State hash", built by hand with struct."""
    supply, accounts, orders = _reference_state(engine)
    blocks = [list(supply), [v for a, av, fr in accounts for v in (a, *[x for pair in zip(av, fr) for x in pair])],
              [v for row in orders for v in row]]
    data = b"exchange-state-v1"
    for block in blocks:
        data += struct.pack("<q", len(block)) + struct.pack(f"<{len(block)}q", *block)
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("seed", SEEDS)
def test_the_hash_changes_exactly_when_the_state_changes(seed):
    commands = random_commands(seed, steps=250)
    config = make_config(stp="cancel_maker")
    fast, reference = Engine(config), ReferenceEngine(config)
    changes = 0
    for i in range(len(commands)):
        state_before, hash_before = _reference_state(reference), fast.state_hash()
        events = fast.apply(commands[i : i + 1])
        reference.apply(commands[i : i + 1])
        changed = _reference_state(reference) != state_before
        assert (fast.state_hash() != hash_before) == changed, f"command {i}: state changed {changed}"
        if (events["kind"] == EventKind.REJECTED).all():
            assert not changed
        changes += changed
    assert changes > len(commands) // 3
    assert fast.state_hash() == reference.state_hash() == _docs_hash(reference)


def _book() -> tuple[Engine, ReferenceEngine]:
    tape = CommandTape()
    for account in (1, 2):
        tape.create_account(account)
        tape.deposit(account, BTC, 10**9)
        tape.deposit(account, USDT, 10**11)
    tape.buy(1, BTC_USDT, 140, 3)
    tape.buy(2, BTC_USDT, 140, 2)
    tape.buy(1, BTC_USDT, 139, 4)
    tape.sell(2, BTC_USDT, 160, 5)
    tape.sell(1, BTC_USDT, 161, 1)
    tape.sell(2, BTC_USDT, 170, 2)
    tape.buy(1, BTC_USDT, 160, 2)  # partly fills the ask at 160
    commands = tape.array()
    fast, reference = Engine(make_config()), ReferenceEngine(make_config())
    fast.apply(commands)
    reference.apply(commands)
    assert fast.state_hash() == reference.state_hash()
    return fast, reference


def test_the_hash_changes_when_any_balance_or_supply_changes():
    fast, _ = _book()
    original = fast.state_hash()
    arrays = fast.arrays
    existing = np.flatnonzero(arrays.accounts["active"]).tolist()
    assert len(existing) == 3  # the fee account, 1 and 2
    seen = {original}
    for account in existing:
        for asset in range(arrays.balances.shape[1]):
            for column in ("available", "frozen"):
                arrays.balances[column][account, asset] += 1
                changed = fast.state_hash()
                arrays.balances[column][account, asset] -= 1
                assert changed not in seen, f"account {account} asset {asset} column {column}"
                seen.add(changed)
    for asset in range(len(arrays.supply)):
        arrays.supply[asset] += 1
        assert fast.state_hash() not in seen
        arrays.supply[asset] -= 1
    # Balances of accounts that do not exist are not part of the state.
    arrays.balances["available"][5, USDT] += 1
    assert fast.state_hash() == original
    arrays.balances["available"][5, USDT] -= 1
    # Creating an account (all zero) is a change.
    arrays.accounts["active"][5] = 1
    assert fast.state_hash() != original
    arrays.accounts["active"][5] = 0
    assert fast.state_hash() == original


def test_the_hash_changes_when_any_field_of_any_open_order_changes():
    fast, _ = _book()
    original = fast.state_hash()
    arrays = fast.arrays
    orders = arrays.orders
    ids = [o["order_id"] for account in (1, 2) for o in fast.open_orders(account)]
    slots = [int(index_find(arrays.index, arrays.params, order_id)) for order_id in ids]
    assert len(ids) == 6 and min(slots) >= 0
    for slot in slots:
        for field in ORDER_ROW_FIELDS:
            orders[slot][field] += 1
            assert fast.state_hash() != original, f"slot {slot} field {field}"
            orders[slot][field] -= 1
    assert fast.state_hash() == original


def test_the_hash_changes_when_two_orders_of_a_level_swap_places():
    """Time priority is state: the same orders in another FIFO order hash differently."""
    tape = CommandTape()
    tape.create_account(1)
    tape.deposit(1, USDT, 10**11)
    first = tape.buy(1, BTC_USDT, 140, 3, client_order_id=7)
    second = tape.buy(1, BTC_USDT, 140, 3, client_order_id=7)
    one = Engine(make_config())
    one.apply(tape.array())
    # The same two orders, arriving the other way round (same ids and seqs, swapped in the stream).
    swapped = tape.array()[[0, 1, 3, 2]]
    other = Engine(make_config())
    other.apply(swapped)
    assert [o["order_id"] for o in other.open_orders(1)] == [first, second]
    assert one.depth(BTC_USDT, 1) == other.depth(BTC_USDT, 1)
    assert one.state_hash() != other.state_hash()


def test_the_reference_hash_changes_when_a_balance_changes():
    _, reference = _book()
    original = reference.state_hash()
    reference._accounts[1].available[USDT] += 1
    assert reference.state_hash() != original
    reference._accounts[1].available[USDT] -= 1
    assert reference.state_hash() == original


def test_the_hash_of_a_fresh_engine_is_the_same_everywhere():
    config = make_config()
    hashes = {Engine(config).state_hash(), Engine(config).state_hash(), ReferenceEngine(config).state_hash()}
    assert len(hashes) == 1
    (value,) = hashes
    assert len(value) == 64 and int(value, 16) >= 0
    assert value == _docs_hash(ReferenceEngine(config))
