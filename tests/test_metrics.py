"""Metrics, /healthz, `status` and the structured log lines of a running receiver."""

from __future__ import annotations

import json
import os
import re
import select
import smtplib
import time
import urllib.error
import urllib.request

from peewee import SqliteDatabase

from receiver import metrics
from tests.helpers import Receiver

RAW = (
    b"From: Bob <bob@example.org>\r\nTo: alice@corp.example\r\nSubject: hi\r\n"
    b"Message-ID: <met1@example.org>\r\nDate: Tue, 01 Jan 2019 10:00:00 +0000\r\n\r\nbody\r\n"
)


def send(port: int, address: str) -> None:
    with smtplib.SMTP("127.0.0.1", port) as s:
        s.sendmail("bob@example.org", [address], RAW)


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def metrics_url(proc, timeout: float = 30) -> str:
    """The metrics listener's address, from the line the daemon prints after starting."""
    seen = proc.startup_output
    deadline = time.monotonic() + timeout
    while (m := re.search(rb"(http://[\d.]+:\d+)/metrics", seen)) is None:
        assert time.monotonic() < deadline, seen
        if select.select([proc.stdout.fileno()], [], [], 0.2)[0]:
            seen += os.read(proc.stdout.fileno(), 65536)
    proc.startup_output = seen  # a second call finds it again
    return m.group(1).decode()


def sample(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        m = re.match(r"(\w+)(\{.*\})? (\S+)$", line)
        if m and m.group(1) == name:
            found = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
            if all(found.get(k) == v for k, v in labels.items()):
                return float(m.group(3))
    raise AssertionError(f"no {name} {labels} in metrics")


def test_metrics_healthz_and_status(tmp_path, db_url):
    rx = Receiver(tmp_path / "rx", db_url, extra_config='[metrics]\nlisten = "127.0.0.1:0"\n')
    address = rx.add_mailbox("alice@corp.example")
    try:
        port = rx.start()
        base = metrics_url(rx.proc)
        assert get(base + "/healthz") == (200, "ok\n")
        send(port, address)
        send(port, address)  # a byte-identical redelivery
        status, text = get(base + "/metrics")
        assert status == 200
        assert sample(text, "receiver_deliveries_total", source="smtp", outcome="stored") == 1
        assert sample(text, "receiver_deliveries_total", source="smtp", outcome="duplicate") == 1
        assert sample(text, "receiver_verdicts_total", source="smtp", verdict="unverifiable") == 2
        assert sample(text, "receiver_smtp_sessions_total") == 2
        assert sample(text, "receiver_received_bytes_total", source="smtp") == 2 * len(RAW)
        assert sample(text, "receiver_db_commit_seconds_count") >= 1
        assert sample(text, "receiver_delivery_seconds_count", source="smtp") == 2
        assert sample(text, "receiver_inflight_bytes") == 0

        r = rx.cli(
            "status",
            "--listen",
            f"127.0.0.1:{port}",
            "--metrics",
            base[len("http://") :],
            "--json",
            check=False,
        )
        data = json.loads(r.stdout)
        assert r.returncode == 0 and data["ok"], data
        assert data["checks"]["metrics"]["ok"] and data["deliveries"] == 1
    finally:
        rx.stop()
    r = rx.cli(
        "status", "--listen", f"127.0.0.1:{port}", "--metrics", base[len("http://") :], check=False
    )
    assert r.returncode == 1 and re.search(rb"smtp\s+DOWN", r.stdout)


def test_health_needs_listener_and_database(tmp_path):
    good = SqliteDatabase(str(tmp_path / "ok.db"))
    assert metrics.health(lambda: True, good, None) == (True, "ok")
    ok, why = metrics.health(lambda: False, good, None)
    assert not ok and why.startswith("smtp")
    broken = SqliteDatabase(str(tmp_path))  # a folder: the database cannot be opened
    ok, why = metrics.health(lambda: True, broken, None)
    assert not ok and why.startswith("database")


def test_json_log_lines_link_to_messages(receiver):
    address = receiver.add_mailbox("alice@corp.example")
    port = receiver.start(THREADS_RECEIVER_LOG_FORMAT="json")
    send(port, address)
    _, err = receiver.stop()
    events = [json.loads(l) for l in err.splitlines() if l.startswith("{")]
    delivery = [e for e in events if e.get("event") == "delivery"]
    session = [e for e in events if e.get("event") == "session"]
    assert len(delivery) == 1 and len(session) == 1
    listed = receiver.cli_json("messages", "list")
    assert delivery[0]["message"] == listed[0]["id"] and delivery[0]["status"] == "stored"
    assert delivery[0]["session"] == session[0]["session"] and session[0]["messages"] == 1
    show = receiver.cli_json("messages", "show", str(delivery[0]["message"]))
    assert show["deliveries"][0]["id"] == delivery[0]["delivery"]


SIGNED = (
    b"From: Bob <bob@example.org>\r\nTo: alice@corp.example\r\nSubject: signed\r\n"
    b"Message-ID: <met2@example.org>\r\nContent-Type: multipart/signed; "
    b'protocol="application/pgp-signature"; boundary="b"\r\n\r\n'
    b"--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b\r\n"
    b"Content-Type: application/pgp-signature\r\n\r\n-----BEGIN PGP SIGNATURE-----\r\n"
    b"abc\r\n-----END PGP SIGNATURE-----\r\n--b--\r\n"
)


def test_every_log_line_is_json_the_parse_workers_included(receiver):
    # mail-parser warns "Email content 'pgp-signature' not handled" in a parse worker:
    # a worker without the daemon's logging wrote it as a bare line.
    address = receiver.add_mailbox("alice@corp.example")
    port = receiver.start(THREADS_RECEIVER_LOG_FORMAT="json")
    with smtplib.SMTP("127.0.0.1", port) as s:
        s.sendmail("bob@example.org", [address], SIGNED)
    _, err = receiver.stop()
    events = [json.loads(line) for line in err.splitlines()]
    assert [e["status"] for e in events if e.get("event") == "delivery"] == ["stored"]
