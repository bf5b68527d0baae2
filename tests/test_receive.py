"""The daemon over real SMTP/LMTP: RCPT replies, DATA, byte-exact storage, idempotence, faults."""

from __future__ import annotations

import smtplib
import socket
import sqlite3
import subprocess

import psycopg2
import pytest

from tests.helpers import DOMAIN, require_programs
from tests.rawsmtp import Raw


def message(
    msgid: str = "m1@example.org",
    subject: str = "hello",
    body: bytes = b"body\r\n",
    extra: bytes = b"",
) -> bytes:
    return (
        extra + b"From: Bob <bob@example.org>\r\nTo: alice@corp.example\r\n"
        b"Subject: " + subject.encode() + b"\r\nMessage-ID: <" + msgid.encode() + b">\r\n"
        b"Date: Tue, 01 Jan 2019 10:00:00 +0000\r\n\r\n" + body
    )


def rcpt_reply(port: int, address: str) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port) as s:
        s.ehlo("test.example")
        s.mail("bob@example.org")
        return s.rcpt(address)


def send_raw(port: int, rcpts: list[str], raw: bytes) -> tuple[int, bytes]:
    """MAIL/RCPT/DATA with smtplib; returns the DATA reply."""
    with smtplib.SMTP("127.0.0.1", port) as s:
        s.ehlo("test.example")
        s.mail("bob@example.org", ["BODY=8BITMIME"])
        for r in rcpts:
            code, _ = s.rcpt(r)
            assert code == 250, (r, code)
        return s.data(raw)


def stored_raws(receiver) -> list[bytes]:
    return [
        receiver.cli("messages", "raw", str(m["id"])).stdout
        for m in receiver.cli_json("messages", "list", "--limit", "0")
    ]


@pytest.fixture
def running(receiver):
    receiver.address = receiver.add_mailbox("alice@corp.example")
    receiver.start()
    return receiver


def test_rcpt_replies(running):
    r = running
    port = r.port
    assert rcpt_reply(port, r.address)[0] == 250
    # Case of the domain does not matter; the token is the secret.
    local, _, _ = r.address.partition("@")
    assert rcpt_reply(port, f"{local}@{DOMAIN.upper()}")[0] == 250
    code, text = rcpt_reply(port, f"alice-aaaaaaaaaaaaaaaaaaaaaaaa@{DOMAIN}")
    assert (code, text[:5]) == (550, b"5.1.1")
    assert rcpt_reply(port, f"nobody@{DOMAIN}")[:1] == (550,)
    code, text = rcpt_reply(port, "someone@elsewhere.example")
    assert code == 550 and text.startswith(b"5.7.1") and b"elaying denied" in text
    r.cli("mailbox", "disable", "alice@corp.example")
    code, text = rcpt_reply(port, r.address)
    assert (code, text[:5]) == (550, b"5.2.1")
    r.cli("mailbox", "enable", "alice@corp.example")
    assert rcpt_reply(port, r.address)[0] == 250


def test_ehlo_advertises_size_8bitmime_smtputf8(running):
    with smtplib.SMTP("127.0.0.1", running.port) as s:
        s.ehlo("test.example")
        assert s.has_extn("size") and s.esmtp_features["size"] == str(50 * 1024 * 1024)
        assert s.has_extn("8bitmime") and s.has_extn("smtputf8")


def test_too_many_recipients(receiver):
    receiver.address = receiver.add_mailbox("alice@corp.example")
    receiver.start(THREADS_RECEIVER_SMTP_MAX_RECIPIENTS="2")
    with smtplib.SMTP("127.0.0.1", receiver.port) as s:
        s.ehlo("t")
        s.mail("bob@example.org")
        assert s.rcpt(receiver.address)[0] == 250
        assert s.rcpt(receiver.address)[0] == 250
        code, text = s.rcpt(receiver.address)
        assert (code, text[:5]) == (452, b"4.5.3")


def test_multi_recipient_data_gives_one_delivery_per_mailbox(running):
    r = running
    other = r.add_mailbox("carol@corp.example")
    code, text = send_raw(r.port, [r.address, other], message())
    assert code == 250 and text.startswith(b"2.0.0")
    shown = r.cli_json("messages", "show", "1")
    assert sorted(d["mailbox"] for d in shown["deliveries"]) == [
        "alice@corp.example",
        "carol@corp.example",
    ]
    assert shown["mailboxes"] == ["alice@corp.example", "carol@corp.example"]
    assert {d["rcpt_to"] for d in shown["deliveries"]} == {r.address, other}
    ids = {str(d["id"]) for d in shown["deliveries"]}
    assert ids == set(text.decode().split("stored as ")[1].split(", "))


@pytest.mark.parametrize(
    "body",
    [
        b"caf\xc3\xa9 in UTF-8\r\n",
        b"caf\xe9 in Latin-1, not UTF-8\r\n\xff\xfe\x00 binary junk\r\n",
        b"trailing spaces   \r\n\ttab line\r\n.leading dot line\r\n..two dots\r\n",
        b"no final newline",
        b"bare LF line\nthen CRLF\r\nthen CR alone\rend\r\n",
    ],
)
def test_bytes_stored_exactly(running, body):
    raw = message(body=body)
    code, _ = send_raw(running.port, [running.address], raw)
    assert code == 250
    # smtplib sends bytes as they are (dot-stuffed) and ends an unterminated message
    # with CRLF: compare with exactly what went over the wire, unstuffed.
    wire = raw if raw.endswith(b"\r\n") else raw + b"\r\n"
    assert stored_raws(running) == [wire]


def test_raw_dot_unstuffing_over_socket(running):
    """Over a raw socket: lines starting with '.' are unstuffed, nothing else changes."""
    raw_wire = b"Subject: dots\r\nMessage-ID: <dots@x>\r\n\r\n..leading\r\n.. two\r\nx\n"
    with socket.create_connection(("127.0.0.1", running.port)) as s:
        f = s.makefile("rwb")
        f.readline()
        for cmd in (
            b"EHLO t",
            b"MAIL FROM:<b@example.org>",
            b"RCPT TO:<" + running.address.encode() + b">",
            b"DATA",
        ):
            f.write(cmd + b"\r\n")
            f.flush()
            line = f.readline()
            while line[3:4] == b"-":
                line = f.readline()
        f.write(raw_wire + b"\r\n.\r\n")
        f.flush()
        assert f.readline().startswith(b"250")
    assert stored_raws(running) == [
        b"Subject: dots\r\nMessage-ID: <dots@x>\r\n\r\n.leading\r\n. two\r\nx\n\r\n"
    ]


def test_swaks_delivery(running):
    require_programs({"swaks": "swaks"})
    out = subprocess.run(
        [
            "swaks",
            "--server",
            f"127.0.0.1:{running.port}",
            "--to",
            running.address,
            "--from",
            "bob@example.org",
            "--header",
            "Subject: via swaks",
            "--body",
            "Hello from swaks",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "<-  250 2.0.0 Ok: stored as" in out.stdout
    [m] = running.cli_json("messages", "list")
    assert m["subject"] == "via swaks"
    raw = running.cli("messages", "raw", str(m["id"])).stdout
    assert b"Hello from swaks" in raw


def test_redelivery_is_idempotent(running):
    raw = message()
    first = send_raw(running.port, [running.address], raw)
    second = send_raw(running.port, [running.address], raw)
    assert first == second and first[0] == 250
    stats = running.cli_json("stats")["totals"]
    assert (stats["deliveries"], stats["messages"]) == (1, 1)


def test_two_mailboxes_share_one_message(running):
    other = running.add_mailbox("carol@corp.example")
    raw = message()
    # The same message reaching two mailboxes by two paths: trace headers differ.
    a = message(extra=b"Received: from mx1.corp.example by a\r\n")
    b = message(extra=b"Received: from mx2.corp.example by b\r\nX-Forwarded-To: x@y\r\n")
    assert send_raw(running.port, [running.address], a)[0] == 250
    assert send_raw(running.port, [other], b)[0] == 250
    assert send_raw(running.port, [other], raw)[0] == 250
    totals = running.cli_json("stats")["totals"]
    assert (totals["deliveries"], totals["messages"]) == (3, 1)
    shown = running.cli_json("messages", "show", "1")
    assert shown["mailboxes"] == ["alice@corp.example", "carol@corp.example"]
    # Each delivery keeps its own bytes.
    by_delivery = {
        running.cli("messages", "raw", "1", "--delivery", str(d["id"])).stdout
        for d in shown["deliveries"]
    }
    assert by_delivery == {a, b, raw}


def test_same_message_id_different_content_kept_apart(running):
    assert send_raw(running.port, [running.address], message(body=b"one\r\n"))[0] == 250
    assert send_raw(running.port, [running.address], message(body=b"two\r\n"))[0] == 250
    assert running.cli_json("stats")["totals"]["messages"] == 2


def test_different_texts_without_a_header_are_kept_apart(running):
    # Neither has an author field or a body: only their lines tell them apart.
    texts = [b"just a body line\r\n", b"garbage\r\n", b"Note: one\r\n", b"Note: two\r\n"]
    for text in texts:
        assert send_raw(running.port, [running.address], text)[0] == 250
    assert running.cli_json("stats")["totals"]["messages"] == 4
    assert sorted(stored_raws(running)) == sorted(texts)


class _Lock:
    """Makes the database refuse writes from the daemon until released."""

    def __init__(self, url: str):
        self.url = url
        if url.startswith("sqlite:///"):
            self.conn = sqlite3.connect(url[len("sqlite:///") :], isolation_level=None)
            self.conn.execute("BEGIN EXCLUSIVE")
        else:
            self.conn = psycopg2.connect(url)
            self.conn.cursor().execute("LOCK TABLE delivery IN ACCESS EXCLUSIVE MODE")

    def release(self):
        self.conn.rollback() if not self.url.startswith("sqlite") else self.conn.execute("ROLLBACK")
        self.conn.close()


def test_451_while_database_unwritable_then_250(receiver):
    receiver.address = receiver.add_mailbox("alice@corp.example")
    receiver.start(THREADS_RECEIVER_DATABASE_LOCK_TIMEOUT="0.5")
    with smtplib.SMTP("127.0.0.1", receiver.port) as s:
        s.ehlo("t")
        s.mail("bob@example.org")
        assert s.rcpt(receiver.address)[0] == 250
        lock = _Lock(receiver.db_url)
        try:
            code, text = s.data(message())
        finally:
            lock.release()
        assert (code, text[:5]) == (451, b"4.3.0")
        # Same session, the sender retries: stored now.
        s.mail("bob@example.org")
        assert s.rcpt(receiver.address)[0] == 250
        assert s.data(message())[0] == 250
    assert stored_raws(receiver) == [message()]


def test_reconnects_after_postgres_drops_connections(receiver):
    if not receiver.db_url.startswith("postgresql"):
        pytest.skip("connection loss is a PostgreSQL fault")
    receiver.address = receiver.add_mailbox("alice@corp.example")
    receiver.start()
    assert send_raw(receiver.port, [receiver.address], message("a@x"))[0] == 250
    dbname = receiver.db_url.rsplit("/", 1)[1]
    admin = psycopg2.connect(receiver.db_url)
    admin.autocommit = True
    admin.cursor().execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = %s AND pid <> pg_backend_pid()",
        (dbname,),
    )
    admin.close()
    replies = []
    for _ in range(3):
        try:
            replies.append(send_raw(receiver.port, [receiver.address], message("b@x"))[0])
        except smtplib.SMTPRecipientsRefused:
            replies.append(451)
        except AssertionError:
            replies.append(451)
        if replies[-1] == 250:
            break
    assert replies[-1] == 250 and set(replies) <= {250, 451}
    assert {m["message_id"] for m in receiver.cli_json("messages", "list")} == {"a@x", "b@x"}


def test_lmtp_per_recipient_replies(receiver):
    a = receiver.add_mailbox("alice@corp.example")
    b = receiver.add_mailbox("carol@corp.example")
    receiver.start("--lmtp")
    with socket.create_connection(("127.0.0.1", receiver.port)) as s:
        f = s.makefile("rwb")
        assert f.readline().startswith(b"220")

        def cmd(line: bytes) -> list[bytes]:
            f.write(line + b"\r\n")
            f.flush()
            out = [f.readline()]
            while out[-1][3:4] == b"-":
                out.append(f.readline())
            return out

        cmd(b"LHLO t")
        assert cmd(b"MAIL FROM:<bob@example.org>")[0].startswith(b"250")
        assert cmd(b"RCPT TO:<" + a.encode() + b">")[0].startswith(b"250")
        assert cmd(b"RCPT TO:<nobody@" + DOMAIN.encode() + b">")[0].startswith(b"550")
        assert cmd(b"RCPT TO:<" + b.encode() + b">")[0].startswith(b"250")
        assert cmd(b"DATA")[0].startswith(b"354")
        f.write(message() + b".\r\n")
        f.flush()
        replies = [f.readline(), f.readline()]
    assert all(r.startswith(b"250 2.0.0") for r in replies)
    shown = receiver.cli_json("messages", "show", "1")
    ids = sorted(str(d["id"]) for d in shown["deliveries"])
    assert sorted(r.split()[-1].decode() for r in replies) == ids
    assert {d["source"] for d in shown["deliveries"]} == {"lmtp"}


def test_lmtp_refusal_of_the_data_is_one_reply_per_recipient(receiver):
    a = receiver.add_mailbox("alice@corp.example")
    b = receiver.add_mailbox("carol@corp.example")
    receiver.start("--lmtp", THREADS_RECEIVER_SMTP_MAX_MESSAGE_SIZE="1000")
    c = Raw(receiver.port)
    assert c.cmd("LHLO t")[0] == 250
    assert c.cmd("MAIL FROM:<bob@example.org>")[0] == 250
    for rcpt in (a, b):
        assert c.cmd(f"RCPT TO:<{rcpt}>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send(message(body=(b"x" * 98 + b"\r\n") * 20) + b".\r\n")
    assert [c.reply()[0], c.reply()[0]] == [552, 552]
    assert c.cmd("NOOP")[0] == 250  # in step: no reply left over


def test_a_non_ascii_local_part_is_unknown_not_a_failure(receiver):
    address = receiver.add_mailbox("alice@corp.example")
    token = address.split("@")[0].rpartition("-")[2]
    receiver.start()
    c = Raw(receiver.port)
    assert c.cmd("EHLO t")[0] == 250
    assert c.cmd("MAIL FROM:<bob@example.org> SMTPUTF8")[0] == 250
    code, text = c.cmd(f"RCPT TO:<älice-{token}@{DOMAIN}>")
    assert code == 550 and "5.1.1" in text
