"""common.pauses.PauseLog: one warning per interval, the rest counted."""

from __future__ import annotations

import logging

from common.pauses import PauseLog


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_short_pauses_are_not_logged(caplog):
    pauses = PauseLog(logging.getLogger("test.pauses"), "a loop turn", threshold_s=0.05, clock=Clock())
    with caplog.at_level("WARNING", logger="test.pauses"):
        pauses.took(0.049)
    assert pauses.count == 0 and caplog.records == []


def test_the_first_pause_is_logged_then_one_per_interval_with_the_count_of_the_others(caplog):
    clock = Clock()
    pauses = PauseLog(logging.getLogger("test.pauses"), "applying a batch", threshold_s=0.05, interval_s=10.0,
                      clock=clock)
    with caplog.at_level("WARNING", logger="test.pauses"):
        pauses.took(0.061, "1..3, 3 commands")
        for _ in range(4):
            clock.now += 1
            pauses.took(0.08)
        clock.now += 10
        pauses.took(0.2)
    messages = [record.getMessage() for record in caplog.records]
    assert messages == ["applying a batch (1..3, 3 commands) took 61 ms",
                        "applying a batch took 200 ms; 4 more of 50 ms or longer since the last warning"]
    assert pauses.count == 6
