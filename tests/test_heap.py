"""The collector policy of the processes on the order path (common/heap.py)."""

from __future__ import annotations

import gc
import weakref

import pytest

from common.heap import GEN2_AFTER_GEN1, RECOVERY_GEN0_THRESHOLD, HeapKeeper


class Node:
    def __init__(self):
        self.other = None


def cycle() -> weakref.ref:
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


@pytest.fixture
def restore_gc():
    threshold = gc.get_threshold()
    callbacks = list(gc.callbacks)
    yield
    gc.callbacks[:] = callbacks
    gc.unfreeze()
    gc.set_threshold(*threshold)
    gc.collect()


def test_start_up_freezes_what_lives_and_spaces_full_collections(restore_gc):
    keeper = HeapKeeper()
    keeper.started()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold()[2] == GEN2_AFTER_GEN1


def test_survivors_are_frozen_once_the_interval_has_passed(restore_gc):
    keeper = HeapKeeper(freeze_interval_s=1.0, full_interval_s=1e9)
    keeper.started()
    frozen = gc.get_freeze_count()
    survivors = [Node() for _ in range(1000)]
    keeper.tick(0.0, idle=False)  # before the interval: nothing moves
    assert gc.get_freeze_count() == frozen
    keeper.tick(1e12, idle=False)
    assert gc.get_freeze_count() >= frozen + len(survivors)


def test_recovery_collects_the_young_seldom_freezes_each_chunk_and_start_up_restores_the_pace(restore_gc):
    usual = gc.get_threshold()
    keeper = HeapKeeper()
    keeper.recovering()
    assert gc.get_threshold() == (RECOVERY_GEN0_THRESHOLD, usual[1], usual[2])
    frozen = gc.get_freeze_count()
    kept = [Node() for _ in range(1000)]
    keeper.recovered()
    assert gc.get_freeze_count() >= frozen + len(kept)
    keeper.recovering()  # again (a second catch-up): the usual thresholds are still the ones kept
    keeper.started()
    assert gc.get_threshold() == (usual[0], usual[1], GEN2_AFTER_GEN1)
    dead = cycle()  # collection works as before once started
    gc.collect()
    assert dead() is None

def test_a_cycle_that_died_frozen_is_collected_when_the_process_is_idle(restore_gc):
    keeper = HeapKeeper(freeze_interval_s=1e9, full_interval_s=1.0)
    keeper.started()
    dead = cycle()
    gc.freeze()  # the cycle outlived a freeze, then died: no ordinary collection finds it
    gc.collect()
    assert dead() is not None
    keeper.tick(1e12, idle=False)  # busy: no full collection
    assert dead() is not None
    keeper.tick(1e12, idle=True)
    assert dead() is None
    assert gc.get_freeze_count() > 0  # what lives is frozen again


def test_a_slow_collection_is_logged(restore_gc, caplog, monkeypatch):
    import common.heap as heap

    keeper = HeapKeeper()
    keeper.started()
    monkeypatch.setattr(heap, "SLOW_COLLECTION_S", 0.0)  # every collection counts as slow
    with caplog.at_level("WARNING", logger="common.heap"):
        gc.collect()
    assert keeper.slow_collections >= 1
    assert "garbage collection of generation 2 took" in caplog.text
    keeper.started()  # a second start does not register the callback twice
    assert gc.callbacks.count(keeper._on_collection) == 1

