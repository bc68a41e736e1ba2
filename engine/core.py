"""The fast engine's Python API: build from a config, apply command arrays, inspect the state.

    engine = Engine(config)
    events = engine.apply(commands)          # COMMAND_DTYPE array in, EVENT_DTYPE array out
    for chunk in engine.process(commands):   # zero-copy: views of the event buffer
        ...

One call into the kernel applies a whole batch; the buffer of events is reused from call to call. See
docs/engine.md for the semantics.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from common.config import ExchangeConfig
from common.records import COMMAND_DTYPE, EVENT_DTYPE
from engine import inspection
from engine.digest import state_digest
from engine.jit import entry_point
from engine.kernels import BATCH_DONE, BATCH_GROW, BATCH_SPLIT, apply_batch
from engine.layout import P_NEED_EVENTS, EngineArrays, allocate, pretouch


class Engine:
    """The Numba matching engine. Not thread-safe: one owner applies commands."""

    def __init__(self, config: ExchangeConfig):
        self.config = config
        self.arrays: EngineArrays = allocate(config)
        self._kernel_args = self.arrays.kernel_args()
        self._set_event_buffer(config.engine.event_buffer)
        # Commands arrive as a writable, aligned, C-contiguous 1-D array (the service copies each batch):
        # for those the compiled kernel is called directly (engine.jit.entry_point); anything else goes
        # through the dispatcher, which checks types.
        sample = np.zeros(1, dtype=COMMAND_DTYPE)
        self._apply_batch = entry_point(apply_batch, (sample, 0, 0, self._events, self._event_words,
                                                      *self._kernel_args))

    def _set_event_buffer(self, capacity: int) -> None:
        self._events = np.zeros(capacity, dtype=EVENT_DTYPE)
        self._event_words = self._events.view(np.int64).reshape(capacity, EVENT_DTYPE.itemsize // 8)

    @property
    def event_buffer_capacity(self) -> int:
        return len(self._events)

    # --- applying commands ---------------------------------------------------------------------------

    def process(self, commands: np.ndarray) -> Iterator[np.ndarray]:
        """Apply ``commands`` in order, yielding their events in chunks.

        Each chunk is a view of the engine's event buffer, valid until the next chunk is requested. A
        batch whose events do not fit in the buffer is split into several chunks; a single command that
        needs more than the whole buffer grows it first. No event is ever dropped.
        """
        if commands.dtype != COMMAND_DTYPE:
            raise TypeError(f"commands must be a COMMAND_DTYPE array, got {commands.dtype}")
        start, stop = 0, len(commands)
        flags = commands.flags
        direct = commands.ndim == 1 and flags.c_contiguous and flags.writeable and flags.aligned
        kernel = self._apply_batch if direct else apply_batch
        while start < stop:
            start, written, status = kernel(
                commands, start, stop, self._events, self._event_words, *self._kernel_args
            )
            if written:
                yield self._events[:written]
            if status == BATCH_GROW:
                needed = int(self.arrays.params[P_NEED_EVENTS])
                self._set_event_buffer(max(needed, 2 * len(self._events)))
            elif status not in (BATCH_DONE, BATCH_SPLIT):  # pragma: no cover - kernel contract
                raise RuntimeError(f"unexpected batch status {status}")

    def pretouch(self) -> None:
        """Map every page of the engine's arrays now (engine.layout.pretouch), the state unchanged."""
        for array in (*self.arrays.kernel_args(), self._events):
            pretouch(array)

    def apply(self, commands: np.ndarray) -> np.ndarray:
        """Apply ``commands`` and return all their events as one new array."""
        chunks = [chunk.copy() for chunk in self.process(commands)]
        if not chunks:
            return np.zeros(0, dtype=EVENT_DTYPE)
        return chunks[0] if len(chunks) == 1 else np.concatenate(chunks)

    # --- inspecting the state ------------------------------------------------------------------------

    def balance(self, account: int, asset: int) -> tuple[int, int]:
        row = self.arrays.balances[account, asset]
        return int(row["available"]), int(row["frozen"])

    def order(self, order_id: int) -> dict | None:
        return inspection.order(self.arrays, order_id)

    def open_orders(self, account: int) -> list[dict]:
        return inspection.open_orders(self.arrays, account)

    def depth(self, symbol: int, levels: int) -> tuple[list, list]:
        return inspection.depth(self.arrays, symbol, levels)

    def level_quantities(self, symbol: int, prices: np.ndarray, sides: np.ndarray) -> np.ndarray:
        return inspection.level_quantities(self.arrays, symbol, prices, sides)

    def state_hash(self) -> str:
        supply, accounts, orders = inspection.canonical_state(self.arrays)
        return state_digest(supply, accounts, orders)

    def validate(self) -> None:
        inspection.validate(self.arrays, self.config)
