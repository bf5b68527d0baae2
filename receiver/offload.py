"""CPU-heavy work off the event loop and off its GIL: a pool of processes.

A thread keeps the event loop responsive only while the work releases the GIL; parsing
with mail-parser is pure Python and does not, so under load it slowed every session of
the process. A process pool runs it on another core. The pool replaces itself when one
of its processes dies (killed by the OOM killer, say): the deliveries in flight then fail
with 451 and the sender retries, the next ones get a fresh pool.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

log = logging.getLogger(__name__)


def default_processes(workers: int = 1) -> int:
    """One per core, shared among the `serve --workers` processes of this host."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def _warm() -> int:
    # Import what the work needs now, not during the first delivery.
    import receiver.pipeline  # noqa: F401

    return os.getpid()


class ProcessPool:
    def __init__(self, processes: int):
        self.processes = processes
        self._pool = self._new()

    def _new(self) -> ProcessPoolExecutor:
        # spawn: the daemon already runs threads (the store writer), fork would copy locks.
        return ProcessPoolExecutor(self.processes, mp_context=multiprocessing.get_context("spawn"))

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(self._pool, _warm)
                               for _ in range(self.processes)))

    async def run(self, fn, *args):
        pool = self._pool
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)
        except BrokenProcessPool:
            if pool is self._pool:
                log.error("a parsing process died; starting a new pool")
                self._pool = self._new()
                pool.shutdown(wait=False)
            raise

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
