"""Stage health and the store writer's survival, in process: the watchdog's judgement, a
writer that outlives a cancelled request, a bad batch, its own thread's death and a stall."""

from __future__ import annotations

import concurrent.futures
import threading
import time

import pytest

from receiver import faults
from receiver.stages import DEAD, OK, STUCK, Stage, Watchdog, assess
from receiver.store.deliveries import Writer, WriterFailed
from receiver.store.models import Delivery
from receiver.parse import parse_message
from tests.helpers import DEFAULT_RULE
from tests.threading_support import fresh_store, request_for


def test_assess_names_dead_and_stuck_stages():
    assert assess("writer", False, 0, 0, 60, 0, "").state == DEAD
    stuck = assess("writer", True, 3, 61, 60, 0, "")
    assert stuck.state == STUCK and stuck.line.startswith("writer: stuck: 3 waiting")
    assert assess("writer", True, 3, 59, 60, 0, "").state == OK
    # Idle for an hour with nothing to do is not stuck.
    assert assess("writer", True, 0, 3600, 60, 0, "").state == OK
    assert "restarted 2 time(s)" in assess("parse", True, 0, 0, 60, 2, "x").detail


def test_one_task_running_past_the_limit_is_stuck_while_others_progress():
    s = Stage("verifier")
    release = threading.Event()
    hung = threading.Thread(target=s.run, args=(release.wait,))
    s.taken()
    hung.start()
    try:
        # Other work keeps finishing on the stage's other threads.
        for _ in range(3):
            s.taken()
            assert s.run(lambda x: x + 1, 1) == 2
            s.done()
        assert s.report(60, time.monotonic()).state == OK
        for started in s._running:
            s._running[started] -= 61  # the hung one began 61 s ago
        report = s.report(60, time.monotonic())
        assert report.state == STUCK and report.line.startswith("verifier: stuck: one task")
    finally:
        release.set()
        hung.join()
    s.done()
    assert s.report(60, time.monotonic() + 61).state == OK


def test_stage_clock_starts_when_work_arrives():
    s = Stage("x")
    s.last_progress -= 1000  # idle for a long time
    s.taken()
    assert s.report(60, time.monotonic()).state == OK
    s.last_progress -= 61
    assert s.report(60, time.monotonic()).state == STUCK
    s.done()
    assert s.report(60, time.monotonic()).state == OK


def test_watchdog_restarts_a_dead_stage_and_gives_up_on_a_stuck_one():
    alive = threading.Event()
    restarted = []
    dead = Stage("dead", alive=alive.is_set, restart=lambda: (restarted.append(1), alive.set()))
    failed: list[str] = []
    stuck = Stage("stuck", fail_waiting=failed.append)
    stuck.taken()
    stuck.last_progress -= 100
    given_up: list[str] = []
    dog = Watchdog([dead, stuck], stall_seconds=10, exit_after=5, give_up=given_up.append)
    dog.check()
    assert restarted == [1] and dead.restarts == 1
    assert dog.problems() == ["stuck: stuck: 1 waiting, no progress for 100s"]
    assert failed == ["stuck is stuck: 1 waiting, no progress for 100s"]
    assert given_up == []  # not yet: it has exit_after seconds to recover
    dog._stuck_since["stuck"] -= 6
    dog.check()
    assert given_up and given_up[0].startswith("stuck: stuck")
    assert failed == ["stuck is stuck: 1 waiting, no progress for 100s"]  # failed once


@pytest.fixture
def writer(tmp_path):
    db = fresh_store(f"sqlite:///{tmp_path / 'w.db'}")
    w = Writer(db, 8, DEFAULT_RULE)
    yield w
    w.stop(5)


def _submit(w: Writer, n: int) -> concurrent.futures.Future:
    raw = f"Message-ID: <m{n}@x>\r\nSubject: s{n}\r\nFrom: a@x\r\n\r\nbody\r\n".encode()
    return w.submit([request_for(parse_message(raw))])


def test_a_cancelled_request_does_not_kill_the_writer(writer):
    """The hole of issue 11: a session that vanished cancelled the commit future and the
    writer thread died on set_result. Cancelled while queued: skipped; once taken: not
    cancellable, committed as a unit."""
    futures = [_submit(writer, n) for n in range(20)]
    cancelled = [f for f in futures[::2] if f.cancel()]
    for f in futures:
        if f not in cancelled:
            assert f.result(10)[0].delivery_id
    assert writer._thread.is_alive()
    assert _submit(writer, 99).result(10)[0].delivery_id
    with writer.db.connection_context():
        assert Delivery.select().count() == 21 - len(cancelled)


def test_a_batch_that_raises_fails_alone_and_the_writer_goes_on(writer, monkeypatch):
    monkeypatch.setattr(faults, "_faults", faults.parse_spec("writer=raise@1"))
    monkeypatch.setattr(faults, "_hits", {})
    with pytest.raises(faults.InjectedFault):
        _submit(writer, 1).result(10)
    assert _submit(writer, 2).result(10)[0].delivery_id
    with writer.db.connection_context():
        assert Delivery.select().count() == 1  # the failed batch left nothing behind


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_dead_writer_thread_is_restarted_and_its_batch_failed(writer, monkeypatch):
    monkeypatch.setattr(faults, "_faults", faults.parse_spec("writer=die@1"))
    monkeypatch.setattr(faults, "_hits", {})
    first = _submit(writer, 1)
    writer._thread.join(5)
    assert not writer._thread.is_alive()
    dog = Watchdog([writer.stage], 60, 0, give_up=pytest.fail)
    dog.check()
    with pytest.raises(WriterFailed):
        first.result(5)
    assert _submit(writer, 2).result(10)[0].delivery_id
    assert writer.stage.restarts == 1 and dog.problems() == []
    with writer.db.connection_context():
        assert Delivery.select().count() == 1  # the dead batch was rolled back


def test_a_stuck_writer_fails_what_waits(writer, monkeypatch):
    monkeypatch.setattr(faults, "_faults", faults.parse_spec("writer=stall:3@1"))
    monkeypatch.setattr(faults, "_hits", {})
    waiting = [_submit(writer, n) for n in range(3)]
    time.sleep(0.5)
    writer.stage.last_progress -= 100
    dog = Watchdog([writer.stage], 60, 0, give_up=pytest.fail)
    dog.check()
    assert dog.problems()[0].startswith("writer: stuck")
    for f in waiting:
        with pytest.raises(WriterFailed):
            f.result(1)
    # The stalled batch commits later; its settling must not end the thread.
    time.sleep(3)
    assert writer._thread.is_alive()
    assert _submit(writer, 9).result(10)[0].delivery_id


def test_a_stage_is_named_stuck_before_its_waiting_work_is_failed():
    # The failed senders' next look (/healthz, the greeting) must already see it.
    seen: list[list[str]] = []
    stage = Stage("writer", fail_waiting=lambda why: seen.append(dog.problems()))
    stage.taken()
    stage.last_progress -= 100
    dog = Watchdog([stage], 60, 0, give_up=pytest.fail)
    dog.check()
    assert len(seen) == 1 and seen[0][0].startswith("writer: stuck")


def test_fault_spec_grammar():
    spec = faults.parse_spec("writer=raise@2, verifier=stall:1.5")
    assert (spec["writer"].action, spec["writer"].at) == ("raise", 2)
    assert (spec["verifier"].action, spec["verifier"].seconds, spec["verifier"].at) == (
        "stall",
        1.5,
        1,
    )
    with pytest.raises(ValueError):
        faults.parse_spec("writer=explode")
