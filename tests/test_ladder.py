"""The three-layer bitmap of engine/ladder.py against a plain Python set.

A ladder of ``size`` levels is laid out inside a larger shared array, as engine.layout does for several
symbols, but with guard words before, between and after its three layers. Random set/clear sequences
(Hypothesis) must keep ``next_set`` / ``prev_set`` equal, for every index from -1 to size-1, to the
smallest member >= i / the largest member <= i of the set (-1 if none); every layer must hold exactly the
bits the set implies; and no guard word may ever change (nothing outside the ladder's slice is written).

The last section asks next_set for the index just past the last level, as the engine does, and checks
the engine where that used to go wrong: a ladder whose length is a multiple of 64 (not of 2**18), both
packed as engine.layout lays it out and with the layers apart.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from numba import njit

from common.config import default_document, parse_config
from engine.core import Engine
from engine.ladder import bit_clear, bit_set, next_set, prev_set
from engine.layout import NO_PRICE
from engine.reference import ReferenceEngine
from tests.builders import BTC, USDT, CommandTape, summary

BIG = 3 * 2**18 + 5  # layer 2 has four words, the last one with a single meaningful bit
SIZES = [1, 63, 64, 65, 4095, 4097, BIG]
GUARD_WORDS = 3
GUARD = np.uint64(0xFFFF_FFFF_FFFF_FFFF)  # all ones: a stray read of a guard word shows as a wrong answer


def _words(bits: int) -> int:
    return (bits + 63) // 64


class Ladder:
    """One ladder inside a shared uint64 array: guard | layer 0 | guard | layer 1 | guard | layer 2 | guard,
    or, ``packed`` as engine.layout lays it out, guard | layer 0 | layer 1 | layer 2 | guard."""

    def __init__(self, size: int, packed: bool = False):
        self.size = size
        self.words0 = _words(size)
        self.words1 = _words(self.words0)
        self.words2 = _words(self.words1)
        between = 0 if packed else GUARD_WORDS
        self.base0 = GUARD_WORDS
        self.base1 = self.base0 + self.words0 + between
        self.base2 = self.base1 + self.words1 + between
        total = self.base2 + self.words2 + GUARD_WORDS
        self.bits = np.full(total, GUARD, dtype=np.uint64)
        self.inside = np.zeros(total, dtype=bool)
        for base, words in ((self.base0, self.words0), (self.base1, self.words1), (self.base2, self.words2)):
            self.bits[base:base + words] = 0
            self.inside[base:base + words] = True
        self.members: set[int] = set()

    @property
    def bases(self) -> tuple[int, int, int]:
        return self.base0, self.base1, self.base2

    def set(self, index: int) -> None:
        bit_set(self.bits, *self.bases, index)
        self.members.add(index)

    def clear(self, index: int) -> None:
        bit_clear(self.bits, *self.bases, index)
        self.members.discard(index)

    def next(self, index: int) -> int:
        return int(next_set(self.bits, *self.bases, self.size, index))

    def prev(self, index: int) -> int:
        return int(prev_set(self.bits, *self.bases, self.size, index))

    # --- checks ---

    def check_guards(self) -> None:
        outside = self.bits[~self.inside]
        assert (outside == GUARD).all(), f"words outside the ladder were written: {np.flatnonzero(outside != GUARD)}"

    def check_layers(self) -> None:
        marks = np.zeros(self.words0 * 64, dtype=bool)
        marks[sorted(self.members)] = True
        expected = marks
        for layer, (base, words) in enumerate(
            ((self.base0, self.words0), (self.base1, self.words1), (self.base2, self.words2))
        ):
            actual = np.unpackbits(self.bits[base:base + words].view(np.uint8), bitorder="little").astype(bool)
            want = np.zeros(words * 64, dtype=bool)
            want[: len(expected)] = expected
            assert np.array_equal(actual, want), f"layer {layer} disagrees with the set {sorted(self.members)[:20]}"
            expected = self.bits[base:base + words] != 0

    def check_queries(self) -> None:
        """next_set and prev_set for every index from -1 to size-1, against the set."""
        n = self.size
        members = np.array(sorted(self.members), dtype=np.int64)
        queries = np.arange(-1, n, dtype=np.int64)
        # Smallest member >= i and largest member <= i, -1 past either end.
        want_next = np.append(members, -1)[np.searchsorted(members, queries, "left")]
        want_prev = np.concatenate([[-1], members])[np.searchsorted(members, queries, "right")]
        got_next, got_prev = np.empty(n + 1, np.int64), np.empty(n + 1, np.int64)
        _scan(self.bits, self.base0, self.base1, self.base2, self.size, n, got_next, got_prev)
        for name, got, want in (("next_set", got_next, want_next), ("prev_set", got_prev, want_prev)):
            wrong = np.flatnonzero(got != want)
            assert not len(wrong), (
                f"size {n}, set {sorted(self.members)[:20]}: {name}({int(wrong[0]) - 1}) = {int(got[wrong[0]])}, "
                f"expected {int(want[wrong[0]])} ({len(wrong)} indices wrong)"
            )
        # The numpy oracle itself, spot-checked against the set in plain Python.
        for i in {-1, 0, n - 1, n // 2, *(m + d for m in list(self.members)[:8] for d in (-1, 0, 1))}:
            if -1 <= i < n:
                assert self.next(i) == min((m for m in self.members if m >= i), default=-1)
                assert self.prev(i) == max((m for m in self.members if m <= i), default=-1)

    def check(self) -> None:
        self.check_guards()
        self.check_layers()
        self.check_queries()


@njit(cache=False)
def _scan(bits, base0, base1, base2, levels, n, out_next, out_prev):
    for i in range(-1, n):
        out_next[i + 1] = next_set(bits, base0, base1, base2, levels, i)
        out_prev[i + 1] = prev_set(bits, base0, base1, base2, levels, i)


def _interesting(size: int) -> list[int]:
    """The ends, and both sides of every word boundary of every layer (thinned for the big ladder)."""
    points = {0, size - 1, size // 2}
    for unit in (64, 64 * 64, 64 * 64 * 64):
        for k in range(1, (size - 1) // unit + 1):
            if unit == 64 and k > 70 and k % 61:
                continue  # the big ladders have thousands of layer-0 words; keep a sample
            for d in (-1, 0, 1):
                points.add(k * unit + d)
    return sorted(p for p in points if 0 <= p < size)


def _indices(size: int) -> st.SearchStrategy[int]:
    """Level indices biased towards word boundaries of every layer, where the bugs would be."""
    choices = [st.integers(0, size - 1), st.sampled_from(_interesting(size))]
    for unit in (64, 64 * 64, 64 * 64 * 64):
        if size > unit:
            choices.append(
                st.builds(lambda k, d, unit=unit: min(max(k * unit + d, 0), size - 1),
                          st.integers(0, (size - 1) // unit), st.sampled_from([-1, 0, 1, 63]))
            )
    return st.one_of(*choices)


def _operations(size: int) -> st.SearchStrategy[list[tuple[bool, int]]]:
    # Mostly sets, so that sets grow; clears of members and of non-members (a no-op) both occur.
    return st.lists(st.tuples(st.sampled_from([True, True, False]), _indices(size)), min_size=1, max_size=30)


def _run(size: int, operations: list[tuple[bool, int]]) -> None:
    ladder = Ladder(size)
    ladder.check()
    members_in_order: list[int] = []
    for setting, index in operations:
        if setting:
            ladder.set(index)
            members_in_order.append(index)
        elif members_in_order and index % 2:
            ladder.clear(members_in_order[index % len(members_in_order)])  # clear a member
        else:
            ladder.clear(index)  # possibly not a member: must change nothing
        ladder.check()
    for index in sorted(ladder.members):  # emptying it again leaves every layer zero
        ladder.clear(index)
    ladder.check()
    assert not ladder.bits[ladder.inside].any()


@pytest.mark.parametrize("size", [s for s in SIZES if s != BIG])
@given(data=st.data())
def test_random_set_and_clear_sequences_agree_with_a_python_set(size, data):
    _run(size, data.draw(_operations(size)))


@settings(max_examples=25)
@given(operations=_operations(BIG))
@example(operations=[(True, 0), (True, BIG - 1)])
@example(operations=[(True, 2**18 - 1), (True, 2**18), (True, 3 * 2**18 + 4), (False, 2**18)])
def test_random_set_and_clear_sequences_agree_with_a_python_set_above_2_18_levels(operations):
    ladder = Ladder(BIG)
    assert ladder.words2 == 4
    _run(BIG, operations)


@pytest.mark.parametrize("size", SIZES)
def test_a_lone_level_at_any_word_boundary_is_found_from_every_index(size):
    ladder = Ladder(size)
    points = _interesting(size)
    if size == BIG:
        points = [p for p in points if p % 64 in (0, 63) or p in (0, size - 1)][:40]
    for point in points:
        ladder.set(point)
        ladder.check()
        ladder.clear(point)
        ladder.check_guards()
        assert not ladder.bits[ladder.inside].any()
    ladder.check_queries()


@pytest.mark.parametrize("size", [4097, BIG])
def test_levels_far_apart_are_found_across_empty_upper_layer_words(size):
    """The two ends only: lookups from the middle must cross empty layer-1 (and layer-2) words."""
    ladder = Ladder(size)
    ladder.set(0)
    ladder.set(size - 1)
    ladder.check()
    assert ladder.next(1) == size - 1
    assert ladder.prev(size - 2) == 0
    ladder.clear(size - 1)
    assert ladder.next(1) == -1
    assert ladder.prev(size - 1) == 0
    ladder.clear(0)
    ladder.set(size - 1)
    assert ladder.prev(size - 2) == -1
    assert ladder.next(-1) == size - 1
    ladder.check()


def test_two_ladders_sharing_one_array_do_not_disturb_each_other():
    """As engine.layout packs them: the first ladder's layer 2 is followed by the second's layer 0."""
    sizes = (65, 4097)
    words = [(_words(s), _words(_words(s)), _words(_words(_words(s)))) for s in sizes]
    bits = np.zeros(sum(sum(w) for w in words), dtype=np.uint64)
    bases = []
    offset = 0
    for w0, w1, w2 in words:
        bases.append((offset, offset + w0, offset + w0 + w1, w2))
        offset += w0 + w1 + w2
    (a0, a1, a2, _), (b0, b1, b2, _) = bases
    a_levels, b_levels = sizes
    for index in range(4097):
        bit_set(bits, b0, b1, b2, index)  # the second ladder full
    assert next_set(bits, a0, a1, a2, a_levels, 0) == -1
    assert prev_set(bits, a0, a1, a2, a_levels, 64) == -1
    bit_set(bits, a0, a1, a2, 64)
    bit_clear(bits, a0, a1, a2, 64)
    assert not bits[: b0].any()
    assert next_set(bits, b0, b1, b2, b_levels, 4000) == 4000
    assert prev_set(bits, b0, b1, b2, b_levels, 4096) == 4096


# --- just past the last level -------------------------------------------------------------------------
#
# The engine asks next_set(offset + 1) for the level above the one that just emptied (book_unlink, when
# the best ask's level empties), and when walking the asks (depth, state hash, FOK dry run, p_worst, the
# event bound). For the top level that index is the ladder's length. When the length is a multiple of 64,
# its layer-0 word lies outside layer 0 (in the engine's packed layout it is layer 1's first word). The
# old next_set read it as if it were level bits; now next_set knows the ladder's length and returns -1
# for any index at or past it, however the layers are laid out.

SIZES_JUST_PAST = [1, 63, 64, 65, 128, 4095, 4096, 4097, 2**18]


@pytest.mark.parametrize("size", SIZES_JUST_PAST)
def test_next_set_just_past_the_last_level_finds_nothing(size):
    ladder = Ladder(size, packed=True)  # as engine.layout lays it out: layer 1 right after layer 0
    ladder.set(0)
    ladder.set(size - 1)
    ladder.check()
    assert ladder.next(size - 1) == size - 1
    assert ladder.next(size) == -1, f"next_set({size}) on a ladder of {size} levels"
    ladder.check_guards()


@pytest.mark.parametrize("size", [s for s in SIZES_JUST_PAST if s % 64 == 0])
def test_next_set_just_past_the_last_level_finds_nothing_with_the_layers_apart(size):
    ladder = Ladder(size)
    ladder.set(0)
    ladder.set(size - 1)
    assert ladder.next(size) == -1, f"next_set({size}) on a ladder of {size} levels"


def _config_with_levels(levels: int, extra_symbol: bool = False):
    """One symbol of ``levels`` ticks (100 .. 99 + levels), optionally followed by a second symbol."""

    def symbol(name: str, price_max: int) -> dict:
        return {"name": name, "base": "BTC", "quote": "USDT", "tick_size": "1", "lot_size": "0.001",
                "min_qty": "0.001", "max_qty": "1", "min_notional": "0.1", "price_min": "100",
                "price_max": str(price_max)}

    document = default_document()
    document["engine"].update(self_trade_prevention="cancel_taker", event_buffer=64)
    document.update({
        "fees": {"maker_bps": 2, "taker_bps": 5, "fee_account": 0},
        "capacity": {"max_open_orders": 64, "max_accounts": 16},
        "assets": [{"name": "BTC", "decimals": 8}, {"name": "USDT", "decimals": 6}],
        "symbols": [symbol("TOP", 99 + levels)] + ([symbol("NEXT", 200)] if extra_symbol else []),
    })
    config = parse_config(document, source="<tests.test_ladder>")
    assert config.symbols[0].levels == levels
    return config


def _funded(tape, accounts=(1, 2)):
    for account in accounts:
        tape.create_account(account)
        tape.deposit(account, BTC, 10**9)
        tape.deposit(account, USDT, 10**11)


LEVELS = [63, 64, 65, 4096]


@pytest.mark.parametrize("levels", LEVELS)
def test_an_ask_at_the_top_of_the_band_is_the_last_ask_in_depth(levels):
    config = _config_with_levels(levels)
    top = 99 + levels
    tape = CommandTape()
    _funded(tape)
    tape.buy(1, 0, 100, 1)
    tape.sell(2, 0, top, 1)
    fast, reference = Engine(config), ReferenceEngine(config)
    fast.apply(tape.array())
    reference.apply(tape.array())
    assert reference.depth(0, 5) == ([(100, 1, 1)], [(top, 1, 1)])
    assert fast.depth(0, 5) == reference.depth(0, 5)


@pytest.mark.parametrize("levels", LEVELS)
def test_cancelling_the_only_ask_at_the_top_of_the_band_leaves_no_best_ask(levels):
    config = _config_with_levels(levels)
    tape = CommandTape()
    _funded(tape)
    tape.buy(1, 0, 100, 1)  # any other non-empty level in the ladder's first layer-0 word
    ask = tape.sell(2, 0, 99 + levels, 1)
    tape.cancel(2, ask)
    fast = Engine(config)
    fast.apply(tape.array())
    assert int(fast.arrays.symbols["best_ask"][0]) == NO_PRICE
    fast.validate()


@pytest.mark.parametrize("levels", LEVELS)
def test_a_market_buy_after_the_top_ask_empties_matches_the_reference(levels):
    """With a second symbol after it, the phantom level above the band is that symbol's first level."""
    config = _config_with_levels(levels, extra_symbol=True)
    tape = CommandTape()
    _funded(tape)
    tape.buy(1, 0, 100, 1)
    ask = tape.sell(1, 0, 99 + levels, 1)
    tape.cancel(1, ask)
    tape.market_buy(2, 0, qty=1)  # nothing to buy: ACCEPTED with nothing frozen, then MARKET_REMAINDER
    commands = tape.array()
    fast, reference = Engine(config), ReferenceEngine(config)
    events = fast.apply(commands)
    expected = reference.apply(commands)
    assert events.tobytes() == expected.tobytes(), (
        f"fast {summary(events[-6:])}\nreference {summary(expected[-6:])}"
    )
    fast.validate()
