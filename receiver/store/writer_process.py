"""The store writer in a process of its own, behind the same `submit` as `Writer`.

The profile under load (bench/RESULTS.md) had the writer thread busy 80% of the run,
most of it building and running peewee queries while sharing one GIL with the event
loop: each had half a core. In its own process the writer has a core and a GIL of its
own. It is still one writer (group commit, SQLite's single writer connection); requests
and results cross a pipe, pickled (the compressed bytes and the parsed record).

If the process dies, the deliveries in flight fail (451: the sender retries) and the next
`submit` starts a new process.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import logging
import multiprocessing
import queue
import threading

from peewee import Database

from receiver.store.deliveries import DeliveryRequest, WriterStopped

log = logging.getLogger(__name__)


class WriterProcessDied(Exception):
    """The writer process ended with deliveries in flight; they were not acknowledged."""


def _child(conn, db_url: str, lock_timeout: float, batch_max: int, log_level: int) -> None:
    import signal

    from receiver.store.db import open_database
    from receiver.store.deliveries import Writer

    # The daemon stops the writer by a message on the pipe, after its sessions are done;
    # a terminal's Ctrl-C (or systemd's SIGTERM to the whole group) must not cut it short.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    writer = Writer(open_database(db_url, lock_timeout), batch_max)
    send_lock = threading.Lock()

    def reply(job_id: int, fut: concurrent.futures.Future) -> None:
        err = fut.exception()
        msg = (job_id, False, err) if err is not None else (job_id, True, fut.result())
        with send_lock:
            try:
                conn.send(msg)
            except Exception as e:  # an error object that does not pickle: send its text
                conn.send((job_id, False, RuntimeError(repr(err or e))))

    while True:
        try:
            item = conn.recv()
        except EOFError:
            break
        if item is None:
            break
        job_id, requests = item
        writer.submit(requests).add_done_callback(lambda f, j=job_id: reply(j, f))
    writer.stop()
    conn.close()


class ProcessWriter:
    """`submit(requests) -> Future[list[DeliveryResult]]`, resolved after COMMIT."""

    def __init__(self, db: Database, db_url: str, lock_timeout: float = 10.0,
                 batch_max: int = 64):
        # This process's own handle, for the reads callers make beside the writer.
        self.db = db
        self.args = (db_url, lock_timeout, batch_max)
        self._ctx = multiprocessing.get_context("spawn")
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._pending: dict[int, concurrent.futures.Future] = {}
        self._stopping = False
        self._proc = None
        self._conn = None
        # The event loop only queues; a thread writes to the pipe, which can block.
        self._outbox: queue.Queue = queue.Queue()
        with self._lock:
            self._start()
        self._sender = threading.Thread(target=self._send, name="store-requests", daemon=True)
        self._sender.start()

    def _start(self) -> None:
        parent, child = self._ctx.Pipe()
        self._proc = self._ctx.Process(
            target=_child, name="threads-receiver-store",
            args=(child, *self.args, logging.getLogger().getEffectiveLevel()))
        self._proc.start()
        child.close()
        self._conn = parent
        threading.Thread(target=self._read, args=(parent,), name="store-replies",
                         daemon=True).start()

    def _send(self) -> None:
        while True:
            item = self._outbox.get()
            if item is None:
                with self._lock:
                    conn = self._conn
                if conn is not None:
                    try:
                        conn.send(None)
                    except OSError as e:
                        log.debug("telling the store process to stop: %r", e)
                return
            job_id, requests, fut = item
            with self._lock:
                if self._conn is None:
                    self._proc.join(1)
                    self._start()
                self._pending[job_id] = fut
                conn = self._conn
            try:
                conn.send((job_id, requests))
            except (OSError, ValueError) as e:
                with self._lock:
                    lost = self._pending.pop(job_id, None)
                if lost is not None:
                    lost.set_exception(WriterProcessDied(f"the store process is gone: {e!r}"))

    def _read(self, conn) -> None:
        while True:
            try:
                job_id, ok, value = conn.recv()
            except (EOFError, OSError):
                break
            with self._lock:
                fut = self._pending.pop(job_id, None)
            if fut is None:
                continue
            if ok:
                fut.set_result(value)
            else:
                fut.set_exception(value)
        with self._lock:
            lost, self._pending = self._pending, {}
            if self._conn is conn:
                self._conn = None
        if lost and not self._stopping:
            log.error("the store process ended with %d deliveries in flight", len(lost))
        for fut in lost.values():
            fut.set_exception(WriterProcessDied("the store process ended; try again"))

    def submit(self, requests: list[DeliveryRequest]) -> concurrent.futures.Future:
        fut: concurrent.futures.Future = concurrent.futures.Future()
        if self._stopping:
            fut.set_exception(WriterStopped("the receiver is shutting down"))
        else:
            self._outbox.put((next(self._ids), requests, fut))
        return fut

    def stop(self, timeout: float = 30.0) -> None:
        """Finish what is queued, then end the process."""
        self._stopping = True
        self._outbox.put(None)
        self._sender.join(timeout)
        self._proc.join(timeout)
        if self._proc.is_alive():
            log.error("the store process did not stop in %ss; killing it", timeout)
            self._proc.kill()
            self._proc.join()
