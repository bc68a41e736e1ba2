"""Warnings about pauses on the order path, at most one per interval.

    slow = PauseLog(log, "a loop turn", threshold_s=0.05)
    slow.took(seconds)                   # from the process loop, every turn
    slow.took(seconds, "batch 7..9")     # with what it was about

A pause at or above the threshold is logged as a warning (with how many more there were since the last
warning), the first at once and then at most one every ``interval_s``: an overloaded process has long
turns one after the other, and a line for each would bury everything else in its log.
"""

from __future__ import annotations

import logging
import time

SLOW_S = 0.05  # a turn or batch this long or longer is a pause worth a warning
WARN_INTERVAL_S = 10.0


class PauseLog:
    def __init__(self, logger: logging.Logger, what: str, *, threshold_s: float = SLOW_S,
                 interval_s: float = WARN_INTERVAL_S, clock=time.monotonic):
        self.logger = logger
        self.what = what
        self.threshold_s = threshold_s
        self.interval_s = interval_s
        self.clock = clock
        self.count = 0  # pauses since the process started
        self._unreported = 0
        self._next_warning = 0.0

    def took(self, seconds: float, detail: str = "") -> None:
        if seconds < self.threshold_s:
            return
        self.count += 1
        now = self.clock()
        if now < self._next_warning:
            self._unreported += 1
            return
        more = f"; {self._unreported} more of {self.threshold_s * 1000:.0f} ms or longer since the last warning" \
            if self._unreported else ""
        self.logger.warning("%s%s took %.0f ms%s", self.what, f" ({detail})" if detail else "", seconds * 1000, more)
        self._unreported = 0
        self._next_warning = now + self.interval_s
