"""How often the engine publishes market messages: at most once per ``engine.market_interval_us``.

Each market message the engine sends wakes quotation (and, through quotation, the pusher), and a
wake-up costs CPU in each process whatever the message carries: at 1,000 and at 10,000 orders/s alike,
quotation and the pusher took about a third of a core between them, taken from the order path on a
small machine. Execution reports and account messages go out with every batch; market messages are
held back until ``interval`` has passed since the last ones went out, then leave together (quotation
takes them in one turn). At low rates nothing waits: a market message that comes ``interval`` or more
after the last one leaves at once. Under load a trade reaches quotation up to ``interval`` later than it
would have (and up to a millisecond more when nothing else wakes the engine: its poll counts in whole
milliseconds). How much CPU which interval saves is measured in docs/benchmarks.md (the default 1 ms
little at 10,000 orders/s, 5 ms about a tenth of a core).

Order is kept per topic (a market topic's messages only ever wait behind each other), which is all
subscribers rely on: each topic has its own counter ``n`` (common/reports.py).

Pure: the caller passes the clock (``now_ns``, monotonic) and sends what it is given.
"""

from __future__ import annotations

from common.reports import MARKET_PREFIX, ReportMessage


class MarketPacer:
    def __init__(self, interval_ns: int):
        if interval_ns < 0:
            raise ValueError("the interval cannot be negative")
        self.interval_ns = interval_ns
        self._held: list[ReportMessage] = []
        self._last_sent_ns: int | None = None  # when market messages last went out

    @property
    def held(self) -> int:
        return len(self._held)

    def due_ns(self) -> int | None:
        """When the held messages must go out (None: nothing is held)."""
        if not self._held:
            return None
        return self._last_sent_ns + self.interval_ns

    def take(self, messages: list[ReportMessage], now_ns: int) -> list[ReportMessage]:
        """Of ``messages`` (in publication order), those to send now, in order; the market messages among
        them are held when market messages went out less than ``interval`` ago (or others still wait)."""
        market = [message for message in messages if message.topic[:1] == MARKET_PREFIX]
        if not market:
            return messages
        now_free = [message for message in messages if message.topic[:1] != MARKET_PREFIX]
        self._held.extend(market)
        return now_free + self.release(now_ns)

    def release(self, now_ns: int) -> list[ReportMessage]:
        """The held messages, if their time has come (else nothing)."""
        if not self._held:
            return []
        if self._last_sent_ns is not None and now_ns - self._last_sent_ns < self.interval_ns:
            return []
        return self.drain(now_ns)

    def drain(self, now_ns: int) -> list[ReportMessage]:
        """Every held message, now (the process stops, say)."""
        held, self._held = self._held, []
        if held:
            self._last_sent_ns = now_ns
        return held
