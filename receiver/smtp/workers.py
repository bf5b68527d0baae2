"""`serve --workers N`: N daemon processes on one port, and the supervisor that runs them.

One Python process uses one core; parsing, DKIM and SMTP framing are CPU work, so more
cores need more processes. Each worker is a whole daemon (event loop, store writer,
database connection) with its own listening socket on the shared port (SO_REUSEPORT): the
kernel spreads new connections across the workers. The supervisor holds the port bound
but not listening (so it never gets a connection and port 0 resolves once), restarts a
worker that dies, and passes SIGTERM on so each worker finishes what it has queued.

On SQLite the workers' writers take turns on the one write lock (BEGIN IMMEDIATE, waiting
up to database.lock_timeout): more workers add cores for parsing and checks, not for
commits. On PostgreSQL each worker has its own connection; threading transactions still
serialise on the advisory lock, as they do between receivers on several hosts.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import queue
import signal
import socket
import time
from collections.abc import Callable

from receiver import logs, service
from receiver.config import Config, parse_hostport

log = logging.getLogger(__name__)

# A worker that dies sooner than this after starting is failing, not crashing: give up.
MIN_WORKER_LIFETIME = 5.0
START_TIMEOUT = 60.0


class WorkerError(Exception):
    """A worker could not start or keeps dying; the message says what to look at."""


def reuseport_socket(host: str, port: int, backlog: int | None) -> socket.socket:
    """Bound to the shared port; listening too unless `backlog` is None."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        if backlog is not None:
            sock.listen(backlog)
            sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def _worker_main(
    config: Config, host: str, port: int, lmtp: bool | None, ready, log_setup: Callable[[], None]
) -> None:
    service.hold_hangups()
    log_setup()
    asyncio.run(_serve_worker(config, host, port, lmtp, ready))


async def _serve_worker(config: Config, host: str, port: int, lmtp: bool | None, ready) -> None:
    from receiver.smtp.server import start, until_signal

    daemon = await start(config, lmtp=lmtp, sock=reuseport_socket(host, port, config.smtp.backlog))
    await until_signal(daemon, ready=lambda: ready.put(multiprocessing.current_process().pid))
    await daemon.stop()


class Supervisor:
    def __init__(self, config: Config, host: str, port: int, lmtp: bool | None, workers: int):
        self.ctx = multiprocessing.get_context("spawn")
        self.ready = self.ctx.Queue()
        self.args = (config, host, port, lmtp)
        self.workers = workers
        self.procs: list = []
        self.started: list[float] = []
        # Workers whose SIGHUP handler is in place, and those a reload reached before
        # theirs was (spawned with the config of before: they are sent it once ready).
        self.ready_pids: set[int] = set()
        self.owed_reload: set[int] = set()

    def _spawn(self):
        p = self.ctx.Process(
            target=_worker_main,
            name="threads-receiver-worker",
            daemon=False,
            args=(*self.args, self.ready, logs.for_child()),
        )
        p.start()
        return p

    def start(self) -> None:
        self.procs = [self._spawn() for _ in range(self.workers)]
        self.started = [time.monotonic()] * self.workers
        deadline = time.monotonic() + START_TIMEOUT
        for _ in range(self.workers):
            while True:
                try:
                    self.ready_pids.add(self.ready.get(timeout=0.2))
                    break
                except queue.Empty:
                    dead = [p for p in self.procs if not p.is_alive()]
                    if dead or time.monotonic() > deadline:
                        self.stop()
                        raise WorkerError("a worker did not start (see the log above)") from None

    def check(self) -> None:
        """Restart a worker that died; give up on one that dies as it starts."""
        while True:
            try:
                pid = self.ready.get_nowait()
            except queue.Empty:
                break
            self.ready_pids.add(pid)
            if pid in self.owed_reload:
                self.owed_reload.discard(pid)
                os.kill(pid, signal.SIGHUP)
        for i, p in enumerate(self.procs):
            if p.is_alive():
                continue
            if time.monotonic() - self.started[i] < MIN_WORKER_LIFETIME:
                raise WorkerError(f"worker {p.pid} exited with {p.exitcode} right after starting")
            log.error("worker %s exited with %s; starting another", p.pid, p.exitcode)
            self.procs[i] = self._spawn()
            self.started[i] = time.monotonic()

    def reload(self) -> None:
        for p in self.procs:
            if not p.is_alive():
                continue
            if p.pid in self.ready_pids:
                os.kill(p.pid, signal.SIGHUP)
            else:
                self.owed_reload.add(p.pid)

    def stop(self, timeout: float = 60.0) -> None:
        for p in self.procs:
            if p.is_alive():
                p.terminate()  # SIGTERM: the worker finishes its queued commits
        deadline = time.monotonic() + timeout
        for p in self.procs:
            p.join(max(0.1, deadline - time.monotonic()))
            if p.is_alive():
                log.error("worker %s did not stop in time; killing it", p.pid)
                p.kill()
                p.join()


def run_workers(
    config: Config, listen: str | None, lmtp: bool | None, workers: int, announce=print
) -> None:
    """Run `workers` daemons on one port until SIGTERM or SIGINT."""
    host, port = parse_hostport(listen or config.smtp.listen)
    holder = reuseport_socket(host, port, None)
    port = holder.getsockname()[1]
    stopping = False
    reload = False

    def on_signal(signum, frame):
        nonlocal stopping, reload
        if signum == signal.SIGHUP:
            reload = True
        else:
            stopping = True

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    reload = service.take_hangup()
    sup = Supervisor(config, host, port, lmtp, workers)
    try:
        sup.start()
        kind = "LMTP" if (config.smtp.lmtp if lmtp is None else lmtp) else "SMTP"
        announce(f"threads-receiver: {kind} listening on {host}:{port} ({workers} workers)")
        service.notify("READY=1", f"STATUS={kind} on {host}:{port}, {workers} workers")
        if config.metrics.listen:
            # Each worker has its own counters; one port cannot serve them all (yet).
            announce(
                "threads-receiver: metrics.listen is not served with --workers; "
                "`threads-receiver status` still checks health"
            )
        while not stopping:
            sup.check()
            if reload:
                reload = False
                sup.reload()  # each worker re-reads the config (SIGHUP)
            time.sleep(0.2)
        service.notify("STOPPING=1")
        announce("threads-receiver: stopping")
    finally:
        sup.stop()
        holder.close()
