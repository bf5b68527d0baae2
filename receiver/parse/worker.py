"""Parsing in child processes under a time, size, nesting and memory budget.

mail-parser (and the email package under it) can take seconds or recurse itself to
death on hostile MIME, and a thread cannot be stopped. So the parse runs in a small pool
of worker processes: a parse that runs out of time is ended by killing its worker (a
fresh one takes its place), one that runs out of memory dies alone. Either way the
caller gets a record built from the raw headers with `parse_error` saying why: the copy
is stored byte-exact and flagged, never dropped.
"""

from __future__ import annotations

import logging
import multiprocessing
import queue
import resource
import threading
from collections.abc import Callable
from dataclasses import dataclass

from receiver import faults, malloc
from receiver.mail import read
from receiver.parse.record import ParsedMessage, parse_message
from receiver.stages import Stage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Budget:
    """The [parse] limits (receiver.wiring.parse_budget builds it from the config)."""

    timeout: float
    max_depth: int
    max_parts: int
    max_bytes: int
    max_memory: int


def parse_within(raw: bytes, budget: Budget) -> ParsedMessage:
    """Parse in this process, skipping mail-parser for a message over the static budget."""
    mail = read(raw)  # as received: the content hash reads the lines the view leaves out
    reason = (
        f"larger than {budget.max_bytes} bytes"
        if len(raw) > budget.max_bytes
        else mail.for_parser.over_budget(budget.max_depth, budget.max_parts)
    )
    return parse_message(mail, unparsed=f"parse budget: {reason}" if reason else None)


def _serve(conn, budget: Budget, log_setup: Callable[[], None]) -> None:
    """A worker's life: bytes in, a ParsedMessage out, until the pipe closes."""
    log_setup()  # what mail-parser logs here is written as the daemon's own lines are
    if budget.max_memory:
        resource.setrlimit(resource.RLIMIT_AS, (budget.max_memory, budget.max_memory))
    malloc.unmap_large_blocks()
    while True:
        try:
            raw = conn.recv_bytes()
        except (EOFError, OSError):
            return
        faults.hit("parse")
        conn.send(parse_within(raw, budget))
        # Not held while the next message comes in: a worker would hold two at once.
        del raw


class _Worker:
    def __init__(self, ctx, budget: Budget, log_setup: Callable[[], None]):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(
            target=_serve, args=(child, budget, log_setup), daemon=True, name="parse-worker"
        )
        self.proc.start()
        child.close()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.join(5)
        self.conn.close()


class ParseWorkers:
    """`parse(raw)` blocks its (executor) thread until a worker answers or the time is up.

    A worker that dies (killed from outside, out of memory) is replaced: found dead when
    it is picked, during a parse, or by the watchdog (`stage`) while idle. A message whose
    worker died under it is tried once more on a fresh worker before it is stored unparsed,
    so a worker killed for reasons of its own costs no message its parse.
    """

    ATTEMPTS = 2

    def __init__(self, budget: Budget, workers: int, log_setup: Callable[[], None]):
        """`log_setup` (picklable) sets up logging in each worker, receiver.logs.for_child."""
        self.budget = budget
        self.log_setup = log_setup
        # forkserver: children start from a clean, single-threaded process, not a copy of
        # this one with its writer thread and event loop.
        self._ctx = multiprocessing.get_context("forkserver")
        self._ctx.set_forkserver_preload(["receiver.parse.worker"])
        self._idle: queue.LifoQueue[_Worker] = queue.LifoQueue()
        self._all: set[_Worker] = set()
        self._busy: set[_Worker] = set()
        self._lock = threading.Lock()
        self._closed = False
        for _ in range(max(1, workers)):
            self._add()
        self.stage = Stage("parse", alive=self._idle_alive, restart=self.replace_dead)

    def _add(self) -> None:
        w = _Worker(self._ctx, self.budget, self.log_setup)
        with self._lock:
            self._all.add(w)
        self._idle.put(w)

    def _retire(self, w: _Worker) -> None:
        with self._lock:
            if w not in self._all:
                return  # already replaced (the watchdog found it dead while idle)
            self._all.discard(w)
            self._busy.discard(w)
        w.kill()
        if not self._closed:
            self._add()

    def _idle_alive(self) -> bool:
        with self._lock:
            return self._closed or all(w.proc.is_alive() for w in self._all - self._busy)

    def replace_dead(self) -> None:
        """Replace the idle workers that died (the watchdog's restart)."""
        with self._lock:
            dead = [w for w in self._all - self._busy if not w.proc.is_alive()]
        for w in dead:
            log.error("parse worker %s died while idle; replacing it", w.proc.pid)
            self._retire(w)

    def _checkout(self) -> _Worker:
        while True:
            w = self._idle.get()
            with self._lock:
                if w in self._all and w.proc.is_alive():
                    self._busy.add(w)
                    return w
            self._retire(w)

    def _checkin(self, w: _Worker) -> None:
        with self._lock:
            self._busy.discard(w)
        self._idle.put(w)

    def parse(self, raw: bytes) -> ParsedMessage:
        if len(raw) > self.budget.max_bytes:
            return parse_within(raw, self.budget)
        self.stage.taken()
        try:
            return self._parse(raw)
        finally:
            self.stage.done()

    def _parse(self, raw: bytes) -> ParsedMessage:
        for _ in range(self.ATTEMPTS):
            w = self._checkout()
            try:
                w.conn.send_bytes(raw)
                if w.conn.poll(self.budget.timeout):
                    rec = w.conn.recv()
                    self._checkin(w)
                    return rec
            except (EOFError, OSError) as e:
                reason = f"parse worker died: {e!r}"
                log.warning("%s; trying the copy on a fresh worker", reason)
                self._retire(w)
                continue
            reason = f"parse budget: took longer than {self.budget.timeout:g}s"
            self._retire(w)
            break
        log.warning("%s; storing the copy unparsed", reason)
        return parse_message(raw, unparsed=reason)

    def close(self) -> None:
        self._closed = True
        with self._lock:
            workers = list(self._all)
            self._all.clear()
        for w in workers:
            w.kill()
