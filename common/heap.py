"""Garbage collection without pauses in the middle of traffic, for the processes on the order path.

CPython frees almost everything by reference counting; its cyclic collector only finds reference cycles.
But a full (generation 2) collection walks every tracked object of the process: after a start that
imported numpy, numba and the engine, and with the order tracking of a busy engine, that is tens of
milliseconds during which nothing is matched, sequenced or routed (the pipeline benchmark saw 45 ms).

``HeapKeeper`` keeps the collector's work proportional to what changed recently:

- after start-up, everything alive is collected once and frozen (``gc.freeze``): it moves to a permanent
  generation that collections never walk again;
- while running, what survived is frozen again every ``freeze_interval_s``, so a full collection only ever
  walks the objects of the last interval; the young generations are collected as usual, which is where
  short-lived cycles die;
- frozen objects are still freed by reference counting when they die; only a reference cycle that lives
  past a freeze and then dies would stay. The processes build no such cycles on their hot paths, and to
  leave nothing behind for good, when the process has been idle for a whole poll timeout the permanent
  generation is given back (``gc.unfreeze``), collected in full and frozen again, at most every
  ``full_interval_s``.

Usage: ``keeper = HeapKeeper(); keeper.started()`` once the process is ready; then
``keeper.tick(now, idle=...)`` from its loop (``now`` from ``time.monotonic()``).

Recovery (the engine replaying the journal at start-up) allocates fast and keeps most of what it
allocates: the young generation fills every 700 allocations and each collection walks objects that all
survive. ``keeper.recovering()`` before the replay collects the young generation only every
``RECOVERY_GEN0_THRESHOLD`` allocations, and ``keeper.recovered()`` after each replayed chunk freezes
what lives (a quarter faster replay of a million commands: 82,000 -> 102,000 commands/s of CPU);
``started()`` puts the usual thresholds back.

Every collection that takes ``SLOW_COLLECTION_S`` or more is logged (a warning with its generation and
duration), so that a pause in a latency figure can be told from the collector's.
"""

from __future__ import annotations

import gc
import logging
import time

log = logging.getLogger("common.heap")

FREEZE_INTERVAL_S = 1.0  # survivors are frozen this often
FULL_INTERVAL_S = 300.0  # an idle process collects everything at most this often
# A full collection is only started after this many collections of generation 1 (CPython's default is
# 10); with the survivors frozen every second, it seldom has anything to walk.
GEN2_AFTER_GEN1 = 100
SLOW_COLLECTION_S = 0.02  # a collection this long or longer is logged
RECOVERY_GEN0_THRESHOLD = 100_000  # allocations between young collections while the journal is replayed


class HeapKeeper:
    def __init__(self, *, freeze_interval_s: float = FREEZE_INTERVAL_S, full_interval_s: float = FULL_INTERVAL_S):
        self.freeze_interval_s = freeze_interval_s
        self.full_interval_s = full_interval_s
        self._next_freeze = 0.0
        self._next_full = 0.0
        self._collection_started = 0.0
        self.slow_collections = 0
        self._usual_thresholds: tuple[int, int, int] | None = None  # while recovering

    def _on_collection(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._collection_started = time.perf_counter()
            return
        took = time.perf_counter() - self._collection_started
        if took >= SLOW_COLLECTION_S:
            self.slow_collections += 1
            log.warning("garbage collection of generation %d took %.0f ms (%d collected)", info["generation"],
                        took * 1000, info["collected"])

    def recovering(self) -> None:
        """A replay of the journal begins: collect the young generation seldom (see the module docstring)."""
        if self._usual_thresholds is None:
            self._usual_thresholds = gc.get_threshold()
        _, threshold1, threshold2 = self._usual_thresholds
        gc.set_threshold(RECOVERY_GEN0_THRESHOLD, threshold1, threshold2)

    def recovered(self) -> None:
        """A chunk of the journal was replayed: what it left alive is kept, freeze it."""
        gc.freeze()

    def started(self) -> None:
        """Start-up is over: collect once, freeze what lives, and pace the collector."""
        if self._usual_thresholds is not None:
            gc.set_threshold(*self._usual_thresholds)
            self._usual_thresholds = None
        gc.collect()
        gc.freeze()
        if self._on_collection not in gc.callbacks:
            gc.callbacks.append(self._on_collection)
        threshold0, threshold1, _ = gc.get_threshold()
        gc.set_threshold(threshold0, threshold1, GEN2_AFTER_GEN1)
        now = time.monotonic()
        self._next_freeze = now + self.freeze_interval_s
        self._next_full = now + self.full_interval_s
        log.debug("heap frozen after start-up: %d objects", gc.get_freeze_count())

    def tick(self, now: float, *, idle: bool) -> None:
        """Called from the process loop. ``idle``: the last poll timed out with nothing to do."""
        if idle and now >= self._next_full:
            gc.unfreeze()
            collected = gc.collect()
            gc.freeze()
            self._next_full = now + self.full_interval_s
            self._next_freeze = now + self.freeze_interval_s
            log.debug("idle full collection: %d unreachable, %d objects frozen", collected, gc.get_freeze_count())
        elif now >= self._next_freeze:
            gc.freeze()
            self._next_freeze = now + self.freeze_interval_s

    @property
    def interval_s(self) -> float:
        """How often ``tick`` needs to run at least (a poll timeout no longer than this)."""
        return self.freeze_interval_s
