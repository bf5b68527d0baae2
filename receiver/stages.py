"""Stage health: every long-lived stage says whether it is alive and when it last made
progress on waiting work; the watchdog restarts a dead stage and gives up on a stuck one.

A stage is the store writer, the verifier, the parse workers or the event loop. Each
counts the work it has taken and not finished (`taken`/`done`) and marks progress; the
watchdog, a thread of its own so it still runs when the event loop is blocked, looks
every second:

- dead (its thread ended, a worker process died): restarted at once, and counted;
- stuck (waiting work and no progress for `stages.stall_seconds`, or, in a stage of
  several threads, one piece of work running that long while the others go on): reported by /healthz
  (503) and by the SMTP greeting (421, which `status` reads); the work waiting on it is
  failed so its senders get 451 4.3.0 and retry; if it has not recovered after
  `stages.exit_after` more seconds the daemon gives up (exits 70 for systemd to restart it).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from dataclasses import dataclass
from collections.abc import Callable

log = logging.getLogger(__name__)

OK, DEAD, STUCK = "ok", "dead", "stuck"
TICK = 1.0


@dataclass(frozen=True)
class Report:
    stage: str
    state: str  # ok | dead | stuck
    detail: str

    @property
    def line(self) -> str:
        return f"{self.stage}: {self.detail}"


def assess(
    stage: str,
    alive: bool,
    pending: int,
    idle_for: float,
    stall_seconds: float,
    restarts: int,
    last_failure: str,
    longest_running: float = 0.0,
) -> Report:
    """The state of one stage from its counters (pure: the watchdog's judgement)."""
    if not alive:
        return Report(stage, DEAD, "not running")
    if pending and idle_for > stall_seconds:
        return Report(stage, STUCK, f"stuck: {pending} waiting, no progress for {idle_for:.0f}s")
    if longest_running > stall_seconds:
        # The stage as a whole progresses, but one of its threads is lost to a hung call.
        return Report(stage, STUCK, f"stuck: one task running for {longest_running:.0f}s")
    if restarts:
        return Report(stage, OK, f"ok (restarted {restarts} time(s); last: {last_failure})")
    return Report(stage, OK, "ok")


class Stage:
    """The counters one stage keeps; safe to update from any thread."""

    def __init__(
        self,
        name: str,
        alive: Callable[[], bool] = lambda: True,
        restart: Callable[[], None] | None = None,
        fail_waiting: Callable[[str], None] | None = None,
    ):
        self.name = name
        self.alive = alive
        self.restart = restart
        self.fail_waiting = fail_waiting
        self._lock = threading.Lock()
        self.pending = 0
        self.last_progress = time.monotonic()
        self.restarts = 0
        self.last_failure = ""
        # When each piece of work now running began (stages with several threads).
        self._running: dict[object, float] = {}

    def taken(self) -> None:
        with self._lock:
            if not self.pending:
                # Idle time before the work arrived is not a stall.
                self.last_progress = time.monotonic()
            self.pending += 1

    def done(self) -> None:
        with self._lock:
            self.pending -= 1
            self.last_progress = time.monotonic()

    def progressed(self) -> None:
        self.last_progress = time.monotonic()

    def run(self, fn: Callable, *args):
        """fn(*args) on the calling thread, timed: one call that runs on past
        stall_seconds makes the stage stuck even while its other threads progress."""
        token = object()
        with self._lock:
            self._running[token] = time.monotonic()
        try:
            return fn(*args)
        finally:
            with self._lock:
                del self._running[token]

    def report(self, stall_seconds: float, now: float) -> Report:
        with self._lock:
            pending, idle_for = self.pending, now - self.last_progress
            longest = now - min(self._running.values()) if self._running else 0.0
        return assess(
            self.name,
            self.alive(),
            pending,
            idle_for,
            stall_seconds,
            self.restarts,
            self.last_failure,
            longest,
        )


class Watchdog:
    """Looks at every stage once a `TICK`; see the module docstring."""

    def __init__(
        self,
        stages: list[Stage],
        stall_seconds: float,
        exit_after: float,
        give_up: Callable[[str], None],
    ):
        self.stages = stages
        self.stall_seconds = stall_seconds
        self.exit_after = exit_after
        self.give_up = give_up
        self._stuck_since: dict[str, float] = {}
        self._reports: list[Report] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="watchdog", daemon=True)

    def start(self) -> Watchdog:
        self.check()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def problems(self) -> list[str]:
        """What is wrong now, one line a stage ("writer: stuck: ..."); empty when healthy."""
        return [r.line for r in self._reports if r.state != OK]

    def reports(self) -> list[Report]:
        return list(self._reports)

    def _run(self) -> None:
        while not self._stop.wait(TICK):
            try:
                self.check()
            except Exception:  # the watchdog itself must not die of a stage's fault
                log.exception("watchdog: checking the stages failed")

    def check(self) -> None:
        now = time.monotonic()
        reports = []
        for stage in self.stages:
            report = stage.report(self.stall_seconds, now)
            if report.state == DEAD and stage.restart is not None:
                report = self._restart(stage, now)
            reports.append(report)
        # Published before the waiting work is failed: a sender told 451 who asks
        # /healthz or opens a session right after must see the stage named stuck.
        self._reports = reports
        for stage, report in zip(self.stages, reports):
            if report.state == STUCK:
                self._stuck(stage, report, now)
            else:
                self._stuck_since.pop(stage.name, None)

    def _restart(self, stage: Stage, now: float) -> Report:
        log.error("stage %s is not running; restarting it", stage.name)
        stage.restarts += 1
        stage.last_failure = f"found dead {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}"
        try:
            stage.restart()  # type: ignore[misc]
        except Exception as e:  # a restart that fails leaves the stage dead: seen below
            log.error("stage %s: restart failed: %r", stage.name, e)
        return stage.report(self.stall_seconds, now)

    def _stuck(self, stage: Stage, report: Report, now: float) -> None:
        since = self._stuck_since.setdefault(stage.name, now)
        if since == now:
            log.critical("stage %s: %s; failing the work waiting on it", stage.name, report.detail)
            if stage.fail_waiting is not None:
                stage.fail_waiting(f"{stage.name} is {report.detail}")
        if self.exit_after and now - since >= self.exit_after:
            self.give_up(report.line)


async def heartbeat(stage: Stage) -> None:
    """Beat for the event loop: a loop blocked for stall_seconds shows as stuck."""
    stage.taken()  # the loop always owes its next beat
    while True:
        stage.progressed()
        await asyncio.sleep(TICK / 4)


def exit_for_restart(code: int) -> Callable[[str], None]:
    """The watchdog's last resort: end the process so that it is started afresh.

    Nothing acknowledged is lost: a 250 is only ever sent after COMMIT, and the work
    the stuck stage held was failed (451) when it was found stuck."""

    def give_up(line: str) -> None:
        log.critical("%s; exiting with status %d to be started afresh", line, code)
        logging.shutdown()
        os._exit(code)

    return give_up


def watch(stages: list[Stage], config, give_up: Callable[[str], None]) -> Watchdog:
    """A started watchdog over `stages` with the configured [stages] times."""
    return Watchdog(stages, config.stages.stall_seconds, config.stages.exit_after, give_up).start()
