"""Faults: the database going away mid-load, kill -9 mid-load, SIGTERM and SIGHUP.

A 250 is only ever given for a stored copy; everything else is retried by the sender
and then succeeds."""

from __future__ import annotations

import signal
import sqlite3
import time

import psycopg2

from tests.helpers import merge_toml
from tests.loadclient import Load
from tests.rawsmtp import Raw, message, open_data, send, stored_raws, transaction, wait_until


def _pg_admin(db_url: str):
    conn = psycopg2.connect(db_url.rsplit("/", 1)[0] + "/postgres")
    conn.autocommit = True
    return conn


class DatabaseOutage:
    """PostgreSQL: refuse new connections and kill the open ones (the server stays up
    for everyone else). SQLite: an exclusive lock held by another connection."""

    def __init__(self, db_url: str):
        self.db_url = db_url
        self.conn = None

    def begin(self) -> None:
        if self.db_url.startswith("sqlite:///"):
            self.conn = sqlite3.connect(
                self.db_url[len("sqlite:///") :], timeout=30, isolation_level=None
            )
            self.conn.execute("BEGIN EXCLUSIVE")
            return
        name = self.db_url.rsplit("/", 1)[1]
        self.conn = _pg_admin(self.db_url)
        with self.conn.cursor() as cur:
            cur.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            cur.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )

    def end(self) -> None:
        if self.db_url.startswith("sqlite:///"):
            self.conn.execute("ROLLBACK")
        else:
            name = self.db_url.rsplit("/", 1)[1]
            with self.conn.cursor() as cur:
                cur.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        self.conn.close()


def test_database_outage_mid_load_tempfails_and_recovers(receiver):
    address = receiver.add_mailbox("alice@corp.example")
    port = receiver.start(THREADS_RECEIVER_DATABASE_LOCK_TIMEOUT="1")
    load = Load(port, address, n=10_000, threads=3).start()
    wait_until(lambda: len(load.acked()) >= 10)
    outage = DatabaseOutage(receiver.db_url)
    outage.begin()
    try:
        assert wait_until(lambda: load.count(451) >= 3, timeout=20)
        code, text = send(port, address, message("during"))
        assert code == 451 and "4.3.0" in text
    finally:
        outage.end()
    # Recovers by itself: new messages are stored again.
    after = len(load.acked())
    assert wait_until(lambda: len(load.acked()) >= after + 10, timeout=20)
    load.stop.set()
    load.join()
    stored = set(stored_raws(receiver.db_url).values())
    assert all(load.raw(i) in stored for i in load.acked())
    # The sender's retry of every refused message succeeds.
    for i, code in sorted(load.codes.items()):
        if code != 250:
            assert send(port, address, load.raw(i))[0] == 250
    assert len(stored_raws(receiver.db_url)) == len(load.codes)


def test_kill_9_mid_load_loses_no_acknowledged_message(receiver):
    address = receiver.add_mailbox("alice@corp.example")
    port = receiver.start()
    load = Load(port, address, n=10_000, threads=4).start()
    wait_until(lambda: len(load.acked()) >= 30, timeout=30)
    load.stop.set()  # no new transactions; those under way are cut off by the kill
    receiver.proc.kill()  # SIGKILL: no shutdown code runs
    receiver.proc.wait()
    receiver.proc = None
    load.join()
    acked = load.acked()
    assert len(acked) >= 30
    print(
        f"kill -9 after {len(acked)} acknowledged, {load.count(None)} cut off, "
        f"{load.count(451)} tempfailed"
    )
    port = receiver.start()
    stored = set(stored_raws(receiver.db_url).values())
    lost = [i for i in acked if load.raw(i) not in stored]
    assert lost == [], f"{len(lost)} of {len(acked)} acknowledged messages lost"
    for i in load.codes:
        if load.codes[i] != 250:
            assert send(port, address, load.raw(i))[0] == 250
    assert len(stored_raws(receiver.db_url)) == len(load.codes)


def test_sigterm_finishes_sessions_in_data_and_exits_0(receiver):
    address = receiver.add_mailbox("alice@corp.example")
    port = receiver.start(THREADS_RECEIVER_SMTP_SHUTDOWN_GRACE="10")
    busy, idle = Raw(port), Raw(port)
    assert idle.cmd("EHLO x")[0] == 250
    open_data(busy, address)
    busy.send(message(1)[:40])
    receiver.proc.send_signal(signal.SIGTERM)
    code, text = idle.reply()
    assert code == 421 and "4.3.2" in text
    time.sleep(0.5)
    busy.send(message(1)[40:] + b".\r\n")
    assert busy.reply()[0] == 250
    rc, err = receiver.stop()
    assert rc == 0, err
    assert list(stored_raws(receiver.db_url).values()) == [message(1)]


def test_sighup_reloads_config_without_dropping_connections(receiver):
    address = receiver.add_mailbox("alice@corp.example")
    port = receiver.start()
    c = Raw(port)
    assert c.cmd("EHLO x")[0] == 250
    receiver.config.write_text(
        merge_toml(receiver.config.read_text(), "[smtp]\nmax_recipients = 1\n")
    )
    receiver.proc.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    # The open connection still works.
    assert transaction(c, address, message(1), helo=False)[0] == 250
    c.close()
    fresh = Raw(port)
    assert fresh.cmd("EHLO x")[0] == 250
    assert fresh.cmd("MAIL FROM:<a@example.org>")[0] == 250
    assert fresh.cmd(f"RCPT TO:<{address}>")[0] == 250
    assert fresh.cmd(f"RCPT TO:<{address}>")[0] == 452
    fresh.close()
    assert receiver.proc.poll() is None
