"""Clean stops for the processes: SIGTERM and SIGINT call back and wake the process's poller at once.

A process blocked in ``zmq.Poller.poll`` would otherwise notice a signal only when the poll times out.
``StopSignals`` routes the signals through a non-blocking pipe (``signal.set_wakeup_fd``); the process
registers ``fd`` with its poller, calls ``drain()`` when it is readable, and finishes its current batch.
"""

from __future__ import annotations

import os
import signal
from typing import Callable


class StopSignals:
    def __init__(self, on_stop: Callable[[], None]):
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        signal.set_wakeup_fd(self._write)
        handler = lambda signum, frame: on_stop()  # noqa: E731
        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    @property
    def fd(self) -> int:
        """Readable after a signal: register it with the poller."""
        return self._read

    def drain(self) -> None:
        try:
            while os.read(self._read, 4096):
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        signal.set_wakeup_fd(-1)
        os.close(self._read)
        os.close(self._write)
