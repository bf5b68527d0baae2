"""Slow clients, session caps and the in-flight byte budget, against the real daemon."""

from __future__ import annotations

import subprocess
import time

import pytest

from tests.helpers import require_programs
from tests.rawsmtp import Raw, deliveries, message, open_data, send, transaction


def test_slow_client_is_closed_at_the_timeout(receiver):
    receiver.add_mailbox("alice@corp.example")
    port = receiver.start(THREADS_RECEIVER_SMTP_TIMEOUT="2")
    c = Raw(port)
    started = time.monotonic()
    closed = False
    # One byte every 0.5 s: a command line never completes in time.
    for byte in b"EHLO a-very-slow-client.example.org":
        try:
            c.send(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            closed = True
            break
        time.sleep(0.5)
        if time.monotonic() - started > 6:
            break
    code, text = c.reply()
    assert code == 421 and "4.4.2" in text
    # The line never completes, so only a timeout over the whole line can close it here
    # (one reset by each byte would not): no elapsed-time bound is needed.
    assert closed or c.closed()


def test_slow_data_is_closed_at_the_data_timeout(receiver):
    address = receiver.add_mailbox("alice@corp.example")
    port = receiver.start(THREADS_RECEIVER_SMTP_DATA_TIMEOUT="2")
    c = Raw(port)
    open_data(c, address)
    try:
        for _ in range(12):
            c.send(b"Subject: slow line by line\r\n")
            time.sleep(0.5)
    except (BrokenPipeError, ConnectionResetError):
        pass
    # Lines keep coming every 0.5 s: only a timeout over the whole DATA closes it.
    assert c.closed(wait=3)
    assert deliveries(receiver.db_url) == []


def test_session_caps_total_and_per_ip(receiver):
    address = receiver.add_mailbox("alice@corp.example")
    port = receiver.start(
        THREADS_RECEIVER_SMTP_MAX_SESSIONS_PER_IP="2", THREADS_RECEIVER_SMTP_MAX_SESSIONS="3"
    )
    a, b = Raw(port), Raw(port)
    code, text = Raw(port, greet=False).reply()
    assert code == 421 and "4.7.0" in text
    a.cmd("QUIT")
    a.close()
    time.sleep(0.2)
    c = Raw(port)  # a slot is free again
    assert c.greeting[0] == 220
    assert transaction(c, address, message(1))[0] == 250
    for s in (b, c):
        s.close()


def test_total_session_cap(receiver):
    receiver.add_mailbox("alice@corp.example")
    port = receiver.start(THREADS_RECEIVER_SMTP_MAX_SESSIONS="2")
    held = [Raw(port), Raw(port)]
    code, text = Raw(port, greet=False).reply()
    assert code == 421 and "4.7.0" in text
    for s in held:
        s.close()


def test_inflight_byte_budget_across_sessions(receiver):
    address = receiver.add_mailbox("alice@corp.example")
    port = receiver.start(THREADS_RECEIVER_SMTP_MAX_INFLIGHT_BYTES="60000")
    first, second = Raw(port), Raw(port)
    for c in (first, second):
        open_data(c, address)
    body = (b"b" * 98 + b"\r\n") * 400  # 40 kB each: two do not fit in 60 kB
    first.send(message("first", body=body))
    time.sleep(0.5)
    second.send(message("second", body=body) + b".\r\n")
    first.send(b".\r\n")
    replies = {"first": first.reply(), "second": second.reply()}
    # Whichever the daemon read second ran out of budget (normally the second).
    refused = [name for name, (code, text) in replies.items() if code == 452 and "4.3.1" in text]
    accepted = [name for name, (code, _) in replies.items() if code == 250]
    assert len(refused) == 1 and len(accepted) == 1, replies
    # The budget was given back: the refused one goes through on retry.
    assert send(port, address, message(refused[0], body=body))[0] == 250
    assert sorted(d["subject"] for d in deliveries(receiver.db_url)) == [
        "test first",
        "test second",
    ]


def test_a_declared_size_over_what_is_free_is_refused_at_mail(receiver):
    address = receiver.add_mailbox("alice@corp.example")
    port = receiver.start(THREADS_RECEIVER_SMTP_MAX_INFLIGHT_BYTES="60000")
    streaming = Raw(port)
    open_data(streaming, address)
    streaming.send((b"b" * 98 + b"\r\n") * 400)  # 40 kB held, its end not yet sent
    time.sleep(0.5)
    late = Raw(port)
    assert late.cmd("EHLO client.example.org")[0] == 250
    for _ in range(12):  # more than smtp.max_errors: a sender retrying is no offender
        code, text = late.cmd("MAIL FROM:<a@example.org> SIZE=40000")
        assert code == 452 and "4.3.1" in text  # refused before a byte of it is sent
    assert late.cmd("MAIL FROM:<a@example.org> SIZE=10000")[0] == 250  # this one fits
    streaming.send(b".\r\n")
    assert streaming.reply()[0] == 250


def test_a_message_larger_than_the_budget_is_refused_for_good(receiver):
    receiver.add_mailbox("alice@corp.example")
    port = receiver.start(THREADS_RECEIVER_SMTP_MAX_INFLIGHT_BYTES="60000")
    c = Raw(port)
    code, text = c.cmd("EHLO client.example.org")
    assert code == 250 and "SIZE 60000" in text
    code, text = c.cmd("MAIL FROM:<a@example.org> SIZE=70000")
    assert code == 552 and "5.3.4" in text  # never 452: it could never be taken


def test_a_declared_size_holds_its_budget_from_the_first_recipient_to_the_end(receiver):
    address = receiver.add_mailbox("alice@corp.example")
    port = receiver.start(THREADS_RECEIVER_SMTP_MAX_INFLIGHT_BYTES="60000")
    a, b = Raw(port), Raw(port)
    for c in (a, b):
        assert c.cmd("EHLO client.example.org")[0] == 250
    # MAIL alone holds nothing: a session naming no valid recipient cannot block others.
    assert a.cmd("MAIL FROM:<a@example.org> SIZE=60000")[0] == 250
    assert send(port, address, message("small"))[0] == 250
    assert a.cmd("RCPT TO:<nobody-x@push.example.org>")[0] == 550
    assert send(port, address, message("small again"))[0] == 250
    assert a.cmd("RSET")[0] == 250
    assert a.cmd("MAIL FROM:<a@example.org> SIZE=40000")[0] == 250
    assert a.cmd(f"RCPT TO:<{address}>")[0] == 250  # 40 kB taken now
    assert b.cmd("MAIL FROM:<b@example.org> SIZE=40000")[0] == 452
    assert a.cmd("RSET")[0] == 250
    assert b.cmd("MAIL FROM:<b@example.org> SIZE=40000")[0] == 250
    assert b.cmd(f"RCPT TO:<{address}>")[0] == 250
    b.close()  # gone mid-transaction: its 40 kB come back
    time.sleep(0.3)
    assert a.cmd("MAIL FROM:<a@example.org> SIZE=40000")[0] == 250
    assert a.cmd(f"RCPT TO:<{address}>")[0] == 250
    assert a.cmd("DATA")[0] == 354
    a.send(message("held", body=(b"b" * 98 + b"\r\n") * 390) + b".\r\n")
    assert a.reply()[0] == 250
    # After the message nothing stays taken: two more fit one after the other.
    for _ in range(2):
        assert a.cmd("MAIL FROM:<a@example.org> SIZE=50000")[0] == 250
        assert a.cmd(f"RCPT TO:<{address}>")[0] == 250
        assert a.cmd("RSET")[0] == 250


def test_a_message_of_exactly_the_budget_fits_with_or_without_its_size(receiver):
    address = receiver.add_mailbox("alice@corp.example")
    port = receiver.start(THREADS_RECEIVER_SMTP_MAX_INFLIGHT_BYTES="60000")
    head = message("exact", body=b"")
    lines, rest = divmod(60000 - len(head), 100)
    raw = head + (b"b" * 98 + b"\r\n") * lines + b"c" * (rest - 2) + b"\r\n"
    assert len(raw) == 60000
    for size in ("", " SIZE=60000"):
        c = Raw(port)
        assert c.cmd("EHLO client.example.org")[0] == 250
        assert c.cmd(f"MAIL FROM:<a@example.org>{size}")[0] == 250
        assert c.cmd(f"RCPT TO:<{address}>")[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(raw + b".\r\nNOOP\r\n")  # the end of data and the next command are not counted
        assert c.reply()[0] == 250
        assert c.reply()[0] == 250
        c.close()


def test_one_connection_carries_hundreds_of_messages(receiver):
    """An MTA's cached connection or a bulk tool: 400 messages, each after an RSET and a
    NOOP, in one session with the default limits (which cut it at 333 when every
    command counted)."""
    address = receiver.add_mailbox("alice@corp.example")
    port = receiver.start()
    c = Raw(port)
    assert c.cmd("EHLO client.example.org")[0] == 250
    for n in range(400):
        c.send(
            f"RSET\r\nNOOP\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<{address}>\r\nDATA\r\n".encode()
        )
        assert [c.reply()[0] for _ in range(5)] == [250, 250, 250, 250, 354], n
        c.send(message(f"cached {n}") + b".\r\n")
        assert c.reply()[0] == 250, n
    assert c.cmd("QUIT")[0] == 221
    assert len(deliveries(receiver.db_url)) == 400


def test_smtp_source_reusing_one_connection(receiver):
    """Postfix's own test client, one session for every message (-d)."""
    require_programs({"smtp-source": "postfix"})
    address = receiver.add_mailbox("alice@corp.example")
    port = receiver.start(THREADS_RECEIVER_SMTP_MAX_COMMANDS="5")
    r = subprocess.run(
        [
            "smtp-source",
            "-d",
            "-s",
            "1",
            "-m",
            "50",
            "-f",
            "a@example.org",
            "-t",
            address,
            f"127.0.0.1:{port}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0 and not r.stderr, r.stderr
    assert len(deliveries(receiver.db_url)) == 50
    assert "Too many" not in receiver.log_path.read_text()


def test_commands_without_progress_are_limited_and_a_message_resets_the_count(receiver):
    address = receiver.add_mailbox("alice@corp.example")
    port = receiver.start(THREADS_RECEIVER_SMTP_MAX_COMMANDS="3")
    c = Raw(port)
    assert c.cmd("EHLO client.example.org")[0] == 250  # progress: not counted
    assert c.cmd("NOOP")[0] == 250
    assert c.cmd("VRFY someone")[0] == 252
    assert transaction(c, address, message(1), helo=False)[0] == 250
    assert c.cmd("HELP")[0] == 250
    assert c.cmd("RSET")[0] == 250
    assert c.cmd("NOOP")[0] == 250  # the third since the message: answered, then closed
    code, text = c.reply()
    assert code == 421 and "4.7.0" in text
    assert c.closed()


@pytest.mark.parametrize("front", ["trusted_networks", "lmtp"])
def test_a_front_mta_is_held_to_the_total_cap_only(receiver, front):
    receiver.add_mailbox("alice@corp.example")
    env = (
        {"THREADS_RECEIVER_SMTP_TRUSTED_NETWORKS": "127.0.0.0/8"}
        if front == "trusted_networks"
        else {"THREADS_RECEIVER_SMTP_LMTP": "true"}
    )
    port = receiver.start(
        THREADS_RECEIVER_SMTP_MAX_SESSIONS_PER_IP="2", THREADS_RECEIVER_SMTP_MAX_SESSIONS="4", **env
    )
    held = [Raw(port) for _ in range(4)]  # twice the per-address cap
    assert all(c.greeting[0] == 220 for c in held)
    code, text = Raw(port, greet=False).reply()  # the total cap still holds
    assert code == 421 and "4.7.0" in text
    for c in held:
        c.close()


def test_idle_sessions_get_the_stress_timeout_near_the_cap(receiver):
    receiver.add_mailbox("alice@corp.example")
    port = receiver.start(
        THREADS_RECEIVER_SMTP_MAX_SESSIONS="5",
        THREADS_RECEIVER_SMTP_STRESS_THRESHOLD="0.6",
        THREADS_RECEIVER_SMTP_STRESS_TIMEOUT="1",
        THREADS_RECEIVER_SMTP_TIMEOUT="60",
    )
    idle = [Raw(port), Raw(port)]
    assert not idle[0].closed(wait=1.5)  # two of five: no pressure, the normal timeout
    idle.append(Raw(port))  # three of five: under stress, every idle session shrinks
    for c in idle:
        # Raw's socket timeout (10 s) is far below the normal 60 s: a 421 read here came
        # from the stress timeout.
        code, text = c.reply()
        assert code == 421 and "4.4.2" in text
        assert c.closed()
    calm = Raw(port)  # the pressure is gone: the normal timeout again
    time.sleep(2)
    assert calm.cmd("NOOP")[0] == 250
    calm.close()


def test_the_listen_backlog_is_configurable(receiver):
    port = receiver.start(THREADS_RECEIVER_SMTP_BACKLOG="77")
    out = subprocess.run(
        ["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout.split()
    # ss shows a listening socket's backlog in its Send-Q column.
    assert out[2] == "77", out
