"""The pacing of the engine's market messages (engine/pacing.py), on a clock the test moves."""

from __future__ import annotations

import numpy as np
import pytest

from common.records import EVENT_DTYPE
from common.reports import ReportMessage, account_topic, gateway_topic, market_topic
from engine.pacing import MarketPacer

INTERVAL_NS = 1_000_000


def message(topic: bytes, n: int) -> ReportMessage:
    return ReportMessage(topic, n, np.zeros(0, dtype=EVENT_DTYPE))


def batch(n: int) -> list[ReportMessage]:
    """One batch's messages in publication order: a gateway's, two markets', an account's."""
    return [message(gateway_topic(1), n), message(market_topic(0), n), message(market_topic(1), n),
            message(account_topic(7), n)]


def names(messages: list[ReportMessage]) -> list[tuple[bytes, int]]:
    return [(m.topic, m.n) for m in messages]


def test_the_first_market_messages_leave_at_once_and_later_ones_wait_for_the_interval():
    pacer = MarketPacer(INTERVAL_NS)
    assert names(pacer.take(batch(1), now_ns=5_000)) == [
        (gateway_topic(1), 1), (account_topic(7), 1), (market_topic(0), 1), (market_topic(1), 1)]
    assert pacer.due_ns() is None

    sent = pacer.take(batch(2), now_ns=5_000 + INTERVAL_NS // 2)
    assert names(sent) == [(gateway_topic(1), 2), (account_topic(7), 2)], "reports and account events never wait"
    assert pacer.held == 2 and pacer.due_ns() == 5_000 + INTERVAL_NS
    assert names(pacer.take(batch(3), now_ns=5_000 + INTERVAL_NS - 1)) == [(gateway_topic(1), 3), (account_topic(7), 3)]
    assert pacer.release(5_000 + INTERVAL_NS - 1) == []

    released = pacer.release(5_000 + INTERVAL_NS)
    assert names(released) == [(market_topic(0), 2), (market_topic(1), 2), (market_topic(0), 3), (market_topic(1), 3)]
    assert pacer.held == 0 and pacer.due_ns() is None
    assert pacer.release(10 * INTERVAL_NS) == []


def test_held_messages_leave_with_the_first_batch_after_their_time():
    pacer = MarketPacer(INTERVAL_NS)
    pacer.take(batch(1), now_ns=0)
    pacer.take(batch(2), now_ns=10)
    sent = pacer.take(batch(3), now_ns=INTERVAL_NS + 10)
    assert names(sent) == [(gateway_topic(1), 3), (account_topic(7), 3), (market_topic(0), 2), (market_topic(1), 2),
                           (market_topic(0), 3), (market_topic(1), 3)]
    assert pacer.take(batch(4), now_ns=INTERVAL_NS + 20)[-1].topic == account_topic(7), "the interval starts again"
    assert pacer.due_ns() == 2 * INTERVAL_NS + 10


def test_a_market_message_after_a_quiet_interval_is_not_held():
    pacer = MarketPacer(INTERVAL_NS)
    pacer.take(batch(1), now_ns=0)
    assert len(pacer.take(batch(2), now_ns=3 * INTERVAL_NS)) == 4
    assert pacer.held == 0


def test_drain_gives_everything_held_at_once():
    pacer = MarketPacer(INTERVAL_NS)
    pacer.take(batch(1), now_ns=0)
    pacer.take(batch(2), now_ns=1)
    assert names(pacer.drain(2)) == [(market_topic(0), 2), (market_topic(1), 2)]
    assert pacer.held == 0 and pacer.drain(3) == []


def test_an_interval_of_zero_holds_nothing():
    pacer = MarketPacer(0)
    for n in range(1, 4):
        assert len(pacer.take(batch(n), now_ns=100)) == 4
    assert pacer.held == 0
    with pytest.raises(ValueError):
        MarketPacer(-1)
