"""The fast engine against the reference engine, on random command streams.

Hypothesis draws streams of valid, invalid and adversarial commands. Both engines apply them one by one;
after every command the events must be identical record for record, both states must pass
`validate()`, and the state hashes must agree. Then the whole stream goes through a fresh fast engine in
one batch with a tiny event buffer, which must split the batch and still give the same events.

`HYPOTHESIS_PROFILE=long` runs many more examples (see tests/conftest.py).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.records import COMMAND_DTYPE, CommandKind, OrderType, Side, TimeInForce, event_to_dict
from engine.core import Engine
from engine.reference import ReferenceEngine
from tests.builders import BTC, BTC_USDT, ETH, ETH_USDT, USDT, make_config

ACCOUNTS = (1, 2, 3)
TS0 = 1_700_000_000_000_000_000

# Prices cluster around the middle of each band so that orders meet; a few fall outside.
PRICES = {BTC_USDT: (100, 200, 150), ETH_USDT: (100, 500, 300)}


def _price(draw, symbol: int) -> int:
    low, high, mid = PRICES.get(symbol, (100, 200, 150))
    return draw(
        st.one_of(
            st.integers(mid - 6, mid + 6),
            st.integers(mid - 6, mid + 6),
            st.integers(mid - 6, mid + 6),
            st.integers(low - 2, high + 2),
            st.sampled_from([0, -1, low, high, 2**40]),
        )
    )


def _owner_mostly(draw, owner: int) -> int:
    """The order's own account, now and then another one (which must not see the order)."""
    return owner if draw(st.integers(0, 7)) else draw(st.sampled_from(ACCOUNTS))


def _qty(draw, symbol: int = BTC_USDT) -> int:
    # ETH-USDT's 10 USDT minimum notional needs 34+ lots near the middle of its band.
    usual = st.integers(1, 12) if symbol == BTC_USDT else st.integers(30, 80)
    return draw(st.one_of(usual, usual, usual, usual, usual, usual, st.integers(1, 1200),
                          st.sampled_from([0, -3, 2**50])))


@st.composite
def command_streams(draw):
    """A list of command field dicts: funding first, then a random mix."""
    fields: list[dict] = []
    order_ids: list[int] = []
    owners: dict[int, int] = {}

    def add(**f):
        fields.append(f)
        return len(fields)  # the seq it will get

    for account in ACCOUNTS:
        add(kind=CommandKind.CREATE_ACCOUNT, account=account)
        for asset, scale in ((BTC, 10**6), (USDT, 10**7), (ETH, 10**7)):
            add(kind=CommandKind.DEPOSIT, account=account, asset=asset, amount=draw(st.integers(0, 400)) * scale)

    steps = draw(st.integers(5, 80))
    for _ in range(steps):
        choice = draw(st.integers(0, 99))
        account = draw(st.sampled_from(ACCOUNTS + (0, 7, 99)))
        if choice < 45:  # limit order
            symbol = draw(st.sampled_from([BTC_USDT, BTC_USDT, ETH_USDT]))
            tif = draw(st.sampled_from([TimeInForce.GTC] * 3 + [TimeInForce.IOC, TimeInForce.FOK, TimeInForce.POST_ONLY]))
            owner = draw(st.sampled_from(ACCOUNTS))
            seq = add(kind=CommandKind.NEW, account=owner, symbol=symbol,
                      side=draw(st.sampled_from([Side.BUY, Side.SELL])), order_type=OrderType.LIMIT, tif=tif,
                      price=_price(draw, symbol), qty=_qty(draw, symbol), client_order_id=draw(st.integers(0, 5)))
            order_ids.append(seq)
            owners[seq] = owner
        elif choice < 55:  # market order, by quantity or (buy) by quote amount
            symbol = draw(st.sampled_from([BTC_USDT, ETH_USDT]))
            side = draw(st.sampled_from([Side.BUY, Side.SELL]))
            by_quote = side == Side.BUY and draw(st.booleans())
            add(kind=CommandKind.NEW, account=draw(st.sampled_from(ACCOUNTS)), symbol=symbol, side=side,
                order_type=OrderType.MARKET, tif=TimeInForce.IOC,
                qty=0 if by_quote else _qty(draw, symbol),
                amount=draw(st.integers(1, 5 * 10**7)) if by_quote else 0)
        elif choice < 67 and order_ids:  # cancel-replace
            target = draw(st.sampled_from(order_ids))
            symbol = fields[target - 1]["symbol"] if draw(st.integers(0, 9)) else BTC_USDT
            add(kind=CommandKind.CANCEL_REPLACE, account=_owner_mostly(draw, owners[target]), order_id=target,
                price=_price(draw, symbol), qty=_qty(draw, symbol), client_order_id=draw(st.integers(0, 5)))
        elif choice < 77 and order_ids:  # cancel, mostly of an order of the right account
            target = draw(st.sampled_from(order_ids))
            add(kind=CommandKind.CANCEL, account=_owner_mostly(draw, owners[target]),
                order_id=draw(st.one_of(st.just(target), st.just(target), st.integers(-2, 500))))
        elif choice < 81:
            add(kind=CommandKind.CANCEL_ALL, account=account, symbol=draw(st.sampled_from([-1, BTC_USDT, ETH_USDT, 5])))
        elif choice < 86:
            add(kind=draw(st.sampled_from([CommandKind.DEPOSIT, CommandKind.WITHDRAW])), account=account,
                asset=draw(st.sampled_from([BTC, USDT, ETH, 3, -1])),
                amount=draw(st.one_of(st.integers(-5, 10**9), st.just(2**62))))
        elif choice < 88:
            add(kind=CommandKind.CREATE_ACCOUNT, account=draw(st.integers(-1, 20)))
        else:  # adversarial: any code in every field
            add(kind=draw(st.integers(0, 9)), account=account, symbol=draw(st.integers(-2, 3)),
                side=draw(st.integers(0, 3)), order_type=draw(st.integers(0, 3)), tif=draw(st.integers(0, 5)),
                price=_price(draw, BTC_USDT), qty=_qty(draw), amount=draw(st.integers(-10, 10**8)),
                order_id=draw(st.one_of(st.sampled_from(order_ids or [0]), st.integers(-1, 100))),
                asset=draw(st.integers(-1, 3)))
    return fields


def to_commands(fields: list[dict]) -> np.ndarray:
    commands = np.zeros(len(fields), dtype=COMMAND_DTYPE)
    for i, f in enumerate(fields):
        commands[i]["seq"] = i + 1
        commands[i]["ts"] = TS0 + 1000 * i
        for name, value in f.items():
            commands[i][name] = value
    return commands


def assert_same_events(fast: np.ndarray, reference: np.ndarray, context: str) -> None:
    if fast.tobytes() == reference.tobytes():
        return
    lines = [context]
    for i in range(max(len(fast), len(reference))):
        a = event_to_dict(fast[i]) if i < len(fast) else None
        b = event_to_dict(reference[i]) if i < len(reference) else None
        if a != b:
            lines.append(f"event {i}:\n  fast      {a}\n  reference {b}")
            break
    lines.append(f"({len(fast)} fast events, {len(reference)} reference events)")
    raise AssertionError("\n".join(lines))


CONFIGS = {
    "cancel_taker": dict(stp="cancel_taker"),
    "cancel_maker": dict(stp="cancel_maker", maker_bps=0, taker_bps=7),
    "cancel_both": dict(stp="cancel_both", maker_bps=10, taker_bps=3),
    "off": dict(stp="off", maker_bps=25, taker_bps=25),
    "tiny_table": dict(stp="cancel_taker", max_open_orders=4),
}


@pytest.mark.parametrize("config_name", sorted(CONFIGS))
@given(stream=command_streams())
def test_fast_engine_matches_the_reference_command_by_command(config_name, stream):
    config = make_config(**CONFIGS[config_name])
    fast, reference = Engine(config), ReferenceEngine(config)
    commands = to_commands(stream)
    for i in range(len(commands)):
        one = commands[i : i + 1]
        context = f"command {i}: {dict(zip(COMMAND_DTYPE.names, one[0].tolist()))}"
        assert_same_events(fast.apply(one), reference.apply(one), context)
        fast.validate()
        reference.validate()
        assert fast.state_hash() == reference.state_hash(), context

    # The same stream as one batch, through a buffer of 64 events: split, never truncated.
    batched = Engine(config)
    all_events = batched.apply(commands)
    assert_same_events(all_events, ReferenceEngine(config).apply(commands), "whole batch")
    assert batched.state_hash() == fast.state_hash()
