"""Fuzzing the SMTP session and the parse path with generated garbage (hypothesis):
no unhandled exception reaches a client, no session hangs, and every 250 given for a
message matches a stored row, byte-exact."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import DEFAULT_BUDGET
from tests.rawsmtp import Raw, dot_stuff, stored_raws

VERBS = [
    "HELO",
    "EHLO",
    "MAIL FROM:",
    "RCPT TO:",
    "DATA",
    "RSET",
    "NOOP",
    "QUIT",
    "VRFY",
    "HELP",
    "AUTH",
    "STARTTLS",
    "BDAT",
    "EXPN",
    "PROXY",
]
garbage = st.binary(max_size=300)
command = st.one_of(
    garbage,
    st.tuples(st.sampled_from(VERBS), garbage).map(lambda t: t[0].encode() + b" " + t[1]),
    st.tuples(st.sampled_from(VERBS), st.text(max_size=80)).map(
        lambda t: (t[0] + " " + t[1]).encode("utf-8", "surrogatepass")
    ),
)
header_line = st.one_of(
    st.tuples(
        st.sampled_from(
            [
                b"Subject",
                b"From",
                b"Content-Type",
                b"Message-ID",
                b"References",
                b"Content-Transfer-Encoding",
                b"X-\0",
            ]
        ),
        garbage,
    ).map(lambda t: t[0] + b": " + t[1]),
    garbage,
)
body = st.lists(st.one_of(garbage, st.just(b"--b"), st.just(b"."), st.just(b"..")), max_size=30)
mime = st.tuples(st.lists(header_line, max_size=12), body).map(
    lambda t: b"\r\n".join(t[0]) + b"\r\n\r\n" + b"\r\n".join(t[1]) + b"\r\n"
)


def pieces(line: bytes) -> list[bytes]:
    """The server ends a line at any LF (and refuses one without CR), so a command with
    bare LFs is sent as the lines the server will see, one reply each."""
    parts = line.replace(b"\r\n", b"").split(b"\n")
    return [p + b"\n" for p in parts[:-1]] + [parts[-1] + b"\r\n"]


@pytest.fixture
def fuzz_port(receiver):
    receiver.address = receiver.add_mailbox("alice@corp.example")
    receiver.start(THREADS_RECEIVER_SMTP_TIMEOUT="5", THREADS_RECEIVER_SMTP_MAX_ERRORS="50")
    return receiver


def test_fuzz_session_and_parse(fuzz_port):
    rx = fuzz_port
    acked: list[bytes] = []

    @settings(
        max_examples=120,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(st.lists(command, max_size=8), mime)
    def session(commands, raw):
        c = Raw(rx.port, timeout=10)
        try:
            for line in (p for cmd in commands for p in pieces(cmd)):
                c.send(line)
                code, text = c.reply()
                assert "Error: (" not in text and 200 <= code < 600
                if code in (221, 421):
                    return
                if code == 354:
                    c.send(b".\r\n")
                    code, text = c.reply()
                    assert "Error: (" not in text
            c.cmd("RSET")
            c.cmd("EHLO fuzz.example")
            assert c.cmd("MAIL FROM:<fuzz@example.org>")[0] == 250
            assert c.cmd(f"RCPT TO:<{rx.address}>")[0] == 250
            assert c.cmd("DATA")[0] == 354
            c.send(dot_stuff(raw) + b".\r\n")
            code, text = c.reply()
            assert "Error: (" not in text
            if code == 250:
                acked.append(raw)
            assert c.cmd("NOOP")[0] == 250  # the session is alive and answering
        except (TimeoutError, ConnectionError, BrokenPipeError) as e:
            raise AssertionError(f"session broke or hung: {e!r}") from e
        finally:
            c.close()

    session()
    assert acked
    stored = set(stored_raws(rx.db_url).values())
    assert all(raw in stored for raw in acked)


@settings(max_examples=200, deadline=None)
@given(mime)
def test_fuzz_parse_never_raises(raw):
    from receiver.parse.worker import parse_within

    rec = parse_within(raw, dataclasses.replace(DEFAULT_BUDGET, max_depth=5, max_parts=20))
    assert rec.message_id and len(rec.content_hash) == 64
