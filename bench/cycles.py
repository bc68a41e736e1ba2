"""A cycle counter readable from Numba code, for timing single commands inside a jitted loop.

Benchmark-only: the engine's kernels never read a clock. ``rdtsc()`` is LLVM's ``readcyclecounter``
(the TSC on x86, constant-rate on this hardware); ``tsc_hz()`` calibrates it against ``perf_counter``.
"""

from __future__ import annotations

import time

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic


@intrinsic
def rdtsc(typingctx):
    def codegen(context, builder, signature, args):
        fnty = ir.FunctionType(ir.IntType(64), [])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.readcyclecounter")
        return builder.call(fn, [])

    return types.int64(), codegen


@njit(cache=True)
def read_counter():
    return rdtsc()


@njit(cache=True)
def timer_overhead(samples):
    """The cycles between two back-to-back reads, ``samples`` times."""
    out = np.empty(samples, dtype=np.int64)
    for i in range(samples):
        t0 = rdtsc()
        t1 = rdtsc()
        out[i] = t1 - t0
    return out


def tsc_hz(seconds: float = 0.2) -> float:
    """Counter ticks per second, measured over ``seconds``."""
    c0, t0 = read_counter(), time.perf_counter()
    deadline = t0 + seconds
    while time.perf_counter() < deadline:
        pass
    c1, t1 = read_counter(), time.perf_counter()
    return (c1 - c0) / (t1 - t0)
