"""The fast engine's event buffer (docs/engine.md, "Event buffer").

With ``event_buffer = 64`` a batch whose events do not fit is split into several chunks by
``Engine.process()``, at command boundaries, losing nothing; a single command that needs more than the
whole buffer grows it first. Either way the events are byte for byte those of the reference engine and of
a fast engine whose buffer never fills.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings

from common.records import COMMAND_DTYPE, EVENT_DTYPE, EventKind
from engine.core import Engine
from engine.kernels import EVENTS_PER_FILL, event_bound
from engine.reference import ReferenceEngine
from tests.builders import BTC, BTC_USDT, ETH, USDT, CommandTape, make_config, summary
from tests.test_engine_properties import CONFIGS, assert_same_events, command_streams, to_commands

SMALL = 64
HUGE = 1 << 16


def _funded_tape(accounts=(1, 2, 3)) -> CommandTape:
    tape = CommandTape()
    for account in accounts:
        tape.create_account(account)
        tape.deposit(account, BTC, 10**10)
        tape.deposit(account, USDT, 10**13)
        tape.deposit(account, ETH, 10**10)
    return tape


def _busy_batch() -> np.ndarray:
    """About 270 events, no single command writing more than 64 (so no growth is needed)."""
    tape = _funded_tape()
    for i in range(20):  # a ladder of asks and bids
        tape.sell(1, BTC_USDT, 160 + i % 5, 2)
        tape.buy(2, BTC_USDT, 140 - i % 5, 2)
    for i in range(8):  # takers, each crossing a few makers (at most 1 + 6 x 4 + 1 events with qty 4)
        tape.buy(3, BTC_USDT, 200, 4, tif=2)  # IOC
        tape.sell(3, BTC_USDT, 100, 4, tif=2)
    tape.cancel_all(1, BTC_USDT)
    tape.cancel_all(2)
    return tape.array()


def _sweep_batch(makers: int = 40) -> tuple[np.ndarray, int]:
    """``makers`` one-lot asks at rising prices, then one buy that takes them all: (commands, its seq)."""
    tape = _funded_tape()
    for i in range(makers):
        tape.sell(1, BTC_USDT, 120 + i, 1)
    sweeper = tape.buy(2, BTC_USDT, 200, makers)
    return tape.array(), sweeper


def _chunks(engine: Engine, commands: np.ndarray) -> list[np.ndarray]:
    return [chunk.copy() for chunk in engine.process(commands)]


def _events_with_buffer(commands: np.ndarray, size: int, **config) -> np.ndarray:
    return Engine(make_config(event_buffer=size, **config)).apply(commands)


def test_a_batch_with_more_events_than_the_buffer_is_split_into_chunks_losing_nothing():
    commands = _busy_batch()
    engine = Engine(make_config(event_buffer=SMALL))
    chunks = _chunks(engine, commands)
    events = np.concatenate(chunks)

    assert len(events) > 4 * SMALL
    assert len(chunks) >= len(events) // SMALL
    assert all(0 < len(chunk) <= SMALL for chunk in chunks)
    assert engine.event_buffer_capacity == SMALL, "no command needed more than the buffer"
    assert_same_events(events, ReferenceEngine(make_config()).apply(commands), "split vs reference")
    assert_same_events(events, _events_with_buffer(commands, HUGE), "split vs huge buffer")
    # Every command is answered: each seq has at least one event, in order.
    assert np.array_equal(np.unique(events["seq"]), commands["seq"])
    assert (np.diff(events["seq"]) >= 0).all()
    engine.validate()


def test_a_split_falls_between_commands_never_inside_one():
    commands = _busy_batch()
    chunks = _chunks(Engine(make_config(event_buffer=SMALL)), commands)
    for before, after in zip(chunks, chunks[1:]):
        assert before["seq"][-1] < after["seq"][0]


def test_apply_returns_the_concatenated_chunks():
    commands = _busy_batch()
    chunks = _chunks(Engine(make_config(event_buffer=SMALL)), commands)
    applied = Engine(make_config(event_buffer=SMALL)).apply(commands)
    assert applied.dtype == EVENT_DTYPE
    assert applied.tobytes() == np.concatenate(chunks).tobytes()


def test_one_command_needing_more_than_the_whole_buffer_grows_it():
    commands, sweeper = _sweep_batch(40)
    engine = Engine(make_config(event_buffer=SMALL))
    assert engine.event_buffer_capacity == SMALL
    chunks = _chunks(engine, commands)
    events = np.concatenate(chunks)

    sweep = events[events["seq"] == sweeper]
    assert len(sweep) == 1 + 40 * EVENTS_PER_FILL  # ACCEPTED (with its balance), then TRADE + 5 BALANCE per fill
    assert summary(sweep).count("TRADE") == 40
    assert engine.event_buffer_capacity > SMALL
    assert engine.event_buffer_capacity >= len(sweep)
    # The sweep arrives whole, in one chunk of its own making.
    holding = [chunk for chunk in chunks if (chunk["seq"] == sweeper).any()]
    assert len(holding) == 1 and (holding[0]["seq"] == sweeper).sum() == len(sweep)

    assert_same_events(events, ReferenceEngine(make_config()).apply(commands), "grown vs reference")
    assert_same_events(events, _events_with_buffer(commands, HUGE), "grown vs huge buffer")
    assert engine.depth(BTC_USDT, 5) == ([], [])
    engine.validate()


def test_the_grown_buffer_is_kept_and_later_batches_still_match():
    tape = _funded_tape()
    for i in range(40):
        tape.sell(1, BTC_USDT, 120 + i, 1)
    tape.buy(2, BTC_USDT, 200, 40)
    first = tape.flush()
    for i in range(64):
        tape.sell(1, BTC_USDT, 150, 1)
    tape.cancel_all(1)  # 64 cancels (one event each) and MASS_CANCELLED: more than 64
    more = tape.flush()

    engine = Engine(make_config(event_buffer=SMALL))
    reference = ReferenceEngine(make_config())
    engine.apply(first)
    reference.apply(first)
    grown = engine.event_buffer_capacity
    assert grown > SMALL
    events = engine.apply(more)
    assert_same_events(events, reference.apply(more), "after growing")
    assert engine.event_buffer_capacity >= grown
    assert summary(events).count("CANCELLED:USER") == 64
    assert engine.state_hash() == reference.state_hash()


def test_a_cancel_all_of_more_orders_than_the_buffer_holds_grows_it():
    orders = SMALL + 6  # one CANCELLED per order (it carries the released balance), then MASS_CANCELLED
    tape = _funded_tape()
    for i in range(orders):
        tape.buy(1, BTC_USDT, 100 + i, 1)
    tape.cancel_all(1)
    commands = tape.array()
    engine = Engine(make_config(event_buffer=SMALL, max_open_orders=128))
    events = engine.apply(commands)
    last = events[events["seq"] == commands["seq"][-1]]
    assert len(last) == orders + 1
    assert summary(last) == ["CANCELLED:USER"] * orders + ["MASS_CANCELLED"]
    assert int(last[-1]["qty"]) == orders
    assert engine.event_buffer_capacity > SMALL
    reference = ReferenceEngine(make_config(max_open_orders=128)).apply(commands)
    assert_same_events(events, reference, "cancel_all vs reference")


def test_chunks_are_views_of_the_event_buffer_valid_until_the_next_iteration():
    """Whoever keeps a chunk past the next iteration must copy it: the buffer is reused."""
    commands = _busy_batch()
    engine = Engine(make_config(event_buffer=SMALL))
    views, copies = [], []
    for chunk in engine.process(commands):
        assert chunk.dtype == EVENT_DTYPE
        assert not chunk.flags.owndata, "a chunk is a view, not a fresh array"
        if views:
            assert np.shares_memory(chunk, views[-1]), "every chunk lives in the same buffer"
        views.append(chunk)
        copies.append(chunk.copy())
    assert len(views) > 2
    # The copies hold the batch's events; the old views now show whatever the buffer holds since.
    assert_same_events(np.concatenate(copies), _events_with_buffer(commands, HUGE), "copies")
    assert views[0].tobytes() != copies[0].tobytes()
    assert views[-1].tobytes() == copies[-1].tobytes()


def test_an_empty_batch_gives_no_events():
    engine = Engine(make_config(event_buffer=SMALL))
    before = engine.state_hash()
    empty = np.zeros(0, dtype=COMMAND_DTYPE)
    assert list(engine.process(empty)) == []
    events = engine.apply(empty)
    assert events.dtype == EVENT_DTYPE and len(events) == 0
    assert engine.state_hash() == before


@pytest.mark.parametrize(
    "wrong",
    [
        pytest.param(np.zeros(3, dtype=EVENT_DTYPE), id="events"),
        pytest.param(np.zeros(3, dtype=np.int64), id="int64"),
        pytest.param(np.zeros((3, 80), dtype=np.uint8), id="raw-bytes"),
        pytest.param(np.zeros(3, dtype=[(n, COMMAND_DTYPE[n]) for n in reversed(COMMAND_DTYPE.names)]), id="reordered"),
    ],
)
def test_a_batch_that_is_not_a_command_array_raises_type_error(wrong):
    engine = Engine(make_config(event_buffer=SMALL))
    before = engine.state_hash()
    with pytest.raises(TypeError):
        engine.apply(wrong)
    with pytest.raises(TypeError):
        next(engine.process(wrong))  # process() is a generator: it raises on the first chunk requested
    assert engine.state_hash() == before


# --- the bound the split relies on -------------------------------------------------------------------


def _bounded_run(config, commands: np.ndarray) -> None:
    """Each command writes no more events than ``event_bound`` promised just before it ran."""
    engine = Engine(config)
    arrays = engine.arrays
    for i in range(len(commands)):
        bound = int(event_bound(commands[i], arrays.orders, arrays.symbols, arrays.accounts, arrays.params))
        written = len(engine.apply(commands[i : i + 1]))
        assert written <= bound, f"command {i} {commands[i]} wrote {written} events, bound {bound}"


@pytest.mark.parametrize("config_name", sorted(CONFIGS))
@settings(max_examples=30)
@given(stream=command_streams())
def test_no_command_writes_more_events_than_its_bound(config_name, stream):
    _bounded_run(make_config(**CONFIGS[config_name]), to_commands(stream))


@pytest.mark.parametrize("config_name", sorted(CONFIGS))
@settings(max_examples=30)
@given(stream=command_streams())
def test_random_streams_through_the_smallest_buffer_match_a_huge_one(config_name, stream):
    commands = to_commands(stream)
    small = _chunks(Engine(make_config(event_buffer=SMALL, **CONFIGS[config_name])), commands)
    huge = _events_with_buffer(commands, HUGE, **CONFIGS[config_name])
    events = np.concatenate(small) if small else np.zeros(0, EVENT_DTYPE)
    assert_same_events(events, huge, "small vs huge buffer")
    assert all(len(chunk) <= SMALL or len(np.unique(chunk["seq"])) == 1 for chunk in small)


def test_a_market_buy_by_quote_that_fills_one_maker_twice_stays_within_its_bound():
    """Fees are rounded per fill, so a market buy by quote amount may take a second lot from the same maker.

    At 101 ticks with 5 bps taker fee one lot costs 101_050 units and two cost 202_101: an amount of
    202_100 buys one lot, then the 101_050 left buys another from the same maker.
    """
    tape = _funded_tape()
    tape.sell(1, BTC_USDT, 101, 5)
    tape.market_buy(2, BTC_USDT, amount=202_100)
    commands = tape.array()
    config = make_config(event_buffer=SMALL)
    _bounded_run(config, commands)
    events = Engine(config).apply(commands)
    last = events[events["seq"] == commands["seq"][-1]]
    assert summary(last).count("TRADE") == 2
    assert_same_events(events, ReferenceEngine(config).apply(commands), "double fill")
    assert int(of_trade(last)["maker_order_id"][0]) == int(of_trade(last)["maker_order_id"][1])


def of_trade(events: np.ndarray) -> np.ndarray:
    return events[events["kind"] == EventKind.TRADE]


_OVERFLOW_SCRIPT = textwrap.dedent(
    """
    from engine.core import Engine
    from engine.reference import ReferenceEngine
    from tests.builders import BTC_USDT, USDT, make_config
    from tests.test_engine_buffer import _funded_tape

    tape = _funded_tape()                      # 12 events
    tape.sell(1, BTC_USDT, 101, 5)             # 1 event: 13
    for _ in range(41):                        # 41 events: 54 in the buffer of 64
        tape.deposit(3, USDT, 1)
    tape.market_buy(2, BTC_USDT, amount=202_100)  # bound 10 (54 + 10 fits), writes 13
    commands = tape.array()
    config = make_config(event_buffer=64)
    fast = Engine(config).apply(commands)
    reference = ReferenceEngine(config).apply(commands)
    print(len(fast), len(reference), flush=True)
    assert fast.tobytes() == reference.tobytes()
    """
)


def test_a_double_fill_that_ends_a_full_buffer_loses_no_events():
    """The consequence of the bound above: the command runs although the buffer has room for only 10 of
    its 13 events; the fast engine writes past the end of its buffer and hands over 64 events instead of
    67. Run in a child process, because writing past the buffer corrupts memory (it may crash)."""
    root = Path(__file__).resolve().parent.parent
    child = subprocess.run(
        [sys.executable, "-c", _OVERFLOW_SCRIPT], cwd=root, capture_output=True, text=True, timeout=300
    )
    assert child.returncode == 0, f"exit {child.returncode}: {child.stdout}{child.stderr[-2000:]}"
