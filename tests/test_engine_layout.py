"""engine.layout.zeroed: the engine's big arrays, in huge pages, behave as np.zeros arrays do; pretouch maps them."""

from __future__ import annotations

import mmap
import os
import resource

import numpy as np

from engine.layout import HUGE_PAGE, INDEX_DTYPE, ORDER_DTYPE, pretouch, zeroed


def test_small_arrays_are_plain_numpy_zeros():
    array = zeroed(100, INDEX_DTYPE)
    assert array.shape == (100,) and array.dtype == INDEX_DTYPE
    assert not array.view(np.uint8).any()


def test_large_arrays_are_zero_writable_and_aligned_to_huge_pages():
    count = 3 * HUGE_PAGE // ORDER_DTYPE.itemsize + 7  # not a whole number of huge pages
    array = zeroed(count, ORDER_DTYPE)
    assert array.shape == (count,) and array.dtype == ORDER_DTYPE
    assert array.ctypes.data % HUGE_PAGE == 0
    assert not array.view(np.uint8).any()
    array[-1]["order_id"] = 42
    assert array[-1]["order_id"] == 42
    two_d = zeroed((HUGE_PAGE // 16, 3), np.dtype([("available", "<i8"), ("frozen", "<i8")]))
    assert two_d.shape == (HUGE_PAGE // 16, 3)
    two_d[5, 2]["frozen"] = 7
    assert int(two_d["frozen"].sum()) == 7


def test_a_forked_child_sees_the_arrays_as_they_were():
    # The snapshot writer is a forked child: the parent's later writes must not reach it, nor its writes
    # the parent (the memory is private, not shared).
    array = zeroed(HUGE_PAGE // 8, np.int64)
    array[0] = 1
    read_end, write_end = os.pipe()
    go_read, go_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.read(go_read, 1)  # wait until the parent has written
            array[1] = 99
            os.write(write_end, bytes([int(array[0])]))
        finally:
            os._exit(0)
    array[0] = 2
    os.write(go_write, b"x")
    seen = os.read(read_end, 1)
    _, status = os.waitpid(pid, 0)
    for fd in (read_end, write_end, go_read, go_write):
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0
    assert seen == bytes([1])
    assert array[1] == 0


def _page_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _small_pages(pages: int) -> np.ndarray:
    """Fresh zero-filled memory in 4 KiB pages (a fault per page at its first write)."""
    region = mmap.mmap(-1, pages * mmap.PAGESIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    if hasattr(mmap, "MADV_NOHUGEPAGE"):
        region.madvise(mmap.MADV_NOHUGEPAGE)
    return np.frombuffer(region, dtype=np.uint8)


def test_pretouch_maps_every_page_so_that_no_write_faults_later():
    pages = 2048
    untouched, touched = _small_pages(pages), _small_pages(pages)
    pretouch(touched)
    before = _page_faults()
    untouched[:: mmap.PAGESIZE] = 1
    faults_untouched = _page_faults() - before
    before = _page_faults()
    touched[:: mmap.PAGESIZE] = 1
    faults_touched = _page_faults() - before
    assert faults_untouched >= pages // 2  # the writes fault without it: the measure sees faults
    assert faults_touched < 64  # the interpreter's own, if any


def test_pretouch_keeps_the_contents():
    count = 4 * HUGE_PAGE // ORDER_DTYPE.itemsize + 3
    array = zeroed(count, ORDER_DTYPE)
    array[1]["order_id"] = 7
    array[-1]["price"] = 9
    pretouch(array)
    assert array[1]["order_id"] == 7 and array[-1]["price"] == 9
    assert int(array["order_id"].sum()) == 7 and int(array["price"].sum()) == 9


def test_pretouch_maps_a_structured_two_dimensional_array_and_passes_over_empty_ones():
    balances = zeroed((HUGE_PAGE // 16, 3), np.dtype([("available", "<i8"), ("frozen", "<i8")]))
    balances[3, 1]["frozen"] = 5
    pretouch(balances)
    pretouch(np.zeros(0, dtype=np.int64))
    assert int(balances["frozen"].sum()) == 5 and int(balances["available"].sum()) == 0
