"""What the SMTP edge says: an enhanced status code on every reply, the extensions it
has advertised (PIPELINING, ENHANCEDSTATUSCODES), and one text for one cause."""

from __future__ import annotations

import re
import sqlite3
import subprocess

import pytest
from hypothesis import given
from hypothesis import strategies as st

from receiver.pipeline import STORED, TEMPFAILED, Outcome
from receiver.smtp.handler import TEMPFAIL_DATA, combined_reply, outcome_line
from receiver.smtp.replies import enhanced
from tests.helpers import Receiver, require_programs
from tests.rawsmtp import Raw, deliveries, dot_stuff, message, transaction

CODED = re.compile(r"(\d)\d\d[ -]\1\.\d{1,3}\.\d{1,3}( |$)")


@pytest.fixture(scope="module")
def rx(tmp_path_factory):
    directory = tmp_path_factory.mktemp("rx")
    r = Receiver(directory, f"sqlite:///{directory / 'receiver.db'}")
    r.address = r.add_mailbox("alice@corp.example")
    r.start()
    yield r
    r.stop()


def test_every_reply_carries_an_enhanced_status_code(rx):
    c = Raw(rx.port)
    code, text = c.cmd("EHLO client.example.org")
    assert "250-PIPELINING" in text and "250-ENHANCEDSTATUSCODES" in text
    steps = [
        ("NOOP", "250 2.0.0"),
        ("RSET", "250 2.0.0"),
        ("VRFY someone", "252 2.0.0"),
        ("HELP", "250 2.0.0"),
        ("MAIL FROM:<a@example.org>", "250 2.1.0"),
        ("MAIL FROM:<a@example.org>", "503 5.5.1"),
        ("RCPT TO:<someone@elsewhere.example>", "550 5.7.1"),
        (f"RCPT TO:<{rx.address}>", "250 2.1.5"),
        ("DATA now", "501 5.5.4"),
        ("BOGUS", "500 5.5.1"),
        ("RSET", "250 2.0.0"),
        # Too many digits for a number aiosmtpd's own check would see first.
        (
            "MAIL FROM:<a@example.org> SIZE=" + "9" * 40,
            "552 5.3.4 Message size exceeds fixed maximum message size",
        ),
        ("QUIT", "221 2.0.0"),
    ]
    for command, expected in steps:
        code, text = c.cmd(command)
        assert text.startswith(expected), (command, text)
        assert all(CODED.match(line) for line in text.split("\n")), (command, text)


def test_pipelined_commands_are_answered_in_order(rx):
    c = Raw(rx.port)
    assert c.cmd("EHLO client.example.org")[0] == 250
    c.send(
        f"MAIL FROM:<a@example.org>\r\nRCPT TO:<{rx.address}>\r\n"
        "RCPT TO:<someone@elsewhere.example>\r\nDATA\r\n".encode()
    )
    assert [c.reply()[0] for _ in range(4)] == [250, 250, 550, 354]
    c.send(
        dot_stuff(message("pipelined 1"))
        + b".\r\n"
        + f"MAIL FROM:<b@example.org>\r\nRCPT TO:<{rx.address}>\r\nDATA\r\n".encode()
    )
    assert [c.reply()[0] for _ in range(4)] == [250, 250, 250, 354]
    c.send(dot_stuff(message("pipelined 2")) + b".\r\nQUIT\r\n")
    assert [c.reply()[0] for _ in range(2)] == [250, 221]
    subjects = {d["subject"] for d in deliveries(rx.db_url)}
    assert {"test pipelined 1", "test pipelined 2"} <= subjects


def test_swaks_pipelines_when_it_is_advertised(rx):
    require_programs({"swaks": "swaks"})
    r = subprocess.run(
        [
            "swaks",
            "--pipeline",
            "--server",
            f"127.0.0.1:{rx.port}",
            "--to",
            rx.address,
            "--from",
            "a@example.org",
            "--header",
            "Subject: swaks pipelined",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    # swaks pipelines only when PIPELINING is advertised: MAIL, RCPT and DATA go out
    # before the first of their replies comes back.
    assert r.stdout.index(" -> DATA") < r.stdout.index("<-  250 2.1.0"), r.stdout
    assert "swaks pipelined" in {d["subject"] for d in deliveries(rx.db_url)}


@given(
    number=st.sampled_from(
        [
            "220",
            "221",
            "250",
            "252",
            "421",
            "451",
            "452",
            "454",
            "500",
            "501",
            "502",
            "503",
            "504",
            "530",
            "550",
            "552",
            "553",
            "554",
            "555",
            "599",
        ]
    ),
    text=st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40),
    command=st.sampled_from(["MAIL", "RCPT", "DATA", "NOOP", "AUTH", "?"]),
)
def test_enhanced_adds_a_code_of_the_reply_class_and_keeps_the_text(number, text, command):
    out = enhanced(f"{number} {text}", command)
    assert CODED.match(out) and out.startswith(number)
    assert out.endswith(text.rstrip())
    assert enhanced(out, command) == out  # a line with a code is left alone


def test_greeting_ehlo_and_intermediate_replies_get_no_code():
    assert enhanced("220 host ESMTP", None) == "220 host ESMTP"
    assert enhanced("250-host\r\n250 HELP", "EHLO") == "250-host\r\n250 HELP"
    assert enhanced("354 End data with <CR><LF>.<CR><LF>", "DATA").startswith("354 End")
    assert enhanced("334 VXNlcm5hbWU6", "AUTH") == "334 VXNlcm5hbWU6"


def test_a_storage_fault_has_one_text_over_smtp_and_lmtp():
    """The pipeline's reason for a storage fault never reaches the client: one text."""
    o = Outcome(None, "x@y", TEMPFAILED, reason="storage is unavailable, try again later")
    stored = Outcome(None, "z@y", STORED, delivery_id=1)
    assert outcome_line(o) == combined_reply([o, stored]) == TEMPFAIL_DATA


def _lmtp_transaction(c: Raw, rcpt: str, raw: bytes) -> tuple[int, str]:
    assert c.cmd("LHLO client.example.org")[0] == 250
    assert c.cmd("MAIL FROM:<a@example.org>")[0] == 250
    assert c.cmd(f"RCPT TO:<{rcpt}>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send(dot_stuff(raw) + b".\r\n")
    return c.reply()


def test_a_locked_database_gets_the_same_451_over_smtp_and_lmtp(tmp_path):
    db = tmp_path / "receiver.db"
    r = Receiver(tmp_path / "rx", f"sqlite:///{db}")
    address = r.add_mailbox("alice@corp.example")
    replies = {}
    try:
        for lmtp in ("false", "true"):
            port = r.start(
                THREADS_RECEIVER_SMTP_LMTP=lmtp, THREADS_RECEIVER_DATABASE_LOCK_TIMEOUT="0.5"
            )
            holder = sqlite3.connect(db, isolation_level=None)
            holder.execute("BEGIN EXCLUSIVE")  # every write waits, then gives up: 451
            c = Raw(port)
            try:
                replies[lmtp] = (
                    _lmtp_transaction(c, address, message(lmtp))
                    if lmtp == "true"
                    else transaction(c, address, message(lmtp))
                )
            finally:
                holder.execute("ROLLBACK")
                holder.close()
                c.close()
            r.stop()
    finally:
        r.stop()  # when a step above failed with the daemon running
    assert replies["false"] == replies["true"] == (451, TEMPFAIL_DATA)


def test_a_code_of_another_class_is_text_not_the_replys_code():
    # Found by the property above: "2.0.0" after a 421 is not the reply's code.
    assert enhanced("421 2.0.0", "MAIL") == "421 4.0.0 2.0.0"
