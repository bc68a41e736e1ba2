"""The one place where engine code meets Numba: every kernel is compiled with these options.

- ``cache=True``: compiled code is kept on disk, so a restart does not recompile.
- ``_nrt=False``: the kernels never allocate, so they need no reference counting. With it on, every
  array passed from one kernel to another costs an atomic increment and decrement.
- ``error_model="numpy"``: no Python exception machinery around integer division; the kernels never
  divide by zero (divisors are positive constants or checked first).
- ``inline=True`` inlines a helper into its callers at the Numba level. A call between kernels passes
  every array as a struct of seven or more words, so the hot path is flattened into ``apply_batch``
  (docs/benchmarks.md has the figures); rarely taken paths stay real calls to keep compile time down.

Numba invalidates a cached function only when its own source file changes, not when a kernel it calls
(or inlined) changes in another file. So the cache lives in a directory named after a digest of every
kernel source file: any change to any of them starts from a fresh cache.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numba
from numba import njit

_ROOT = Path(__file__).resolve().parent.parent
KERNEL_SOURCES = (
    "engine/jit.py",
    "engine/layout.py",
    "engine/ladder.py",
    "engine/kernels.py",
    "engine/inspection.py",
    "engine/outcomes.py",
    "engine/ledger_kernels.py",
    "engine/unchecked.py",
    "common/records.py",
)


def _kernel_digest() -> str:
    digest = hashlib.sha256(numba.__version__.encode())
    for name in KERNEL_SOURCES:
        digest.update(name.encode())
        digest.update((_ROOT / name).read_bytes())
    return digest.hexdigest()[:16]


def _configure_cache() -> None:
    base = os.environ.get("NUMBA_CACHE_DIR") or str(_ROOT / "engine" / "__pycache__" / "numba")
    numba.config.CACHE_DIR = os.path.join(base, _kernel_digest())


_configure_cache()


def kernel(function=None, *, inline: bool = False):
    """Compile ``function`` as an engine kernel (usable as ``@kernel`` or ``@kernel(inline=True)``)."""
    options = dict(cache=True, _nrt=False, error_model="numpy", inline="always" if inline else "never")
    if function is None:
        return njit(**options)
    return njit(**options)(function)


def entry_point(dispatcher, sample_args: tuple):
    """The compiled function of ``dispatcher`` for exactly the types of ``sample_args``, to call without
    the dispatcher.

    A dispatcher call works out the type of every argument before it unboxes them: with apply_batch's
    fourteen arguments that is 0.9 of the call's 1.2 us, paid on every batch (a live batch is often one
    command). The entry point only unboxes, and trusts the types: call it only with arguments of the
    sample's types (same dtypes, dimensions, layout and writability), else call the dispatcher.
    """
    signature = tuple(numba.typeof(arg) for arg in sample_args)
    dispatcher.compile(signature)
    return dispatcher.overloads[signature].entry_point
