"""MIME torture through the daemon: every copy is stored byte-exact; one over the parse
budget is stored raw and flagged, never refused; the parse never blocks other sessions."""

from __future__ import annotations

import base64
import dataclasses
import os
import select
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from receiver import logs
from receiver.mail import mime as budget
from receiver.mail.mime import nested_kind, over_budget
from receiver.parse.worker import ParseWorkers
from tests.helpers import DEFAULT_BUDGET
from tests.rawsmtp import Raw, deliveries, open_data, send, stored_raws, transaction


def nested(depth: int) -> bytes:
    head = b"From: a@example.org\r\nSubject: nested\r\nMessage-ID: <nested@x>\r\n"
    out = [head]
    for i in range(depth):
        out.append(b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i))
    out.append(b"Content-Type: text/plain\r\n\r\ndeep\r\n")
    for i in reversed(range(depth)):
        out.append(b"--b%d--\r\n" % i)
    return b"".join(out)


def many_parts(n: int) -> bytes:
    parts = b"".join(b"--p\r\nContent-Type: text/plain\r\n\r\npart %d\r\n" % i for i in range(n))
    return (
        b"From: a@example.org\r\nSubject: parts\r\nMessage-ID: <parts@x>\r\n"
        b'Content-Type: multipart/mixed; boundary="p"\r\n\r\n' + parts + b"--p--\r\n"
    )


def test_budget_scan():
    assert over_budget(nested(50), 100, 5000) is None
    assert "nesting" in over_budget(nested(101), 100, 5000)
    assert over_budget(many_parts(100), 100, 5000) is None
    assert "parts" in over_budget(many_parts(5001), 100, 5000)
    # A boundary-looking line in a text part's body does not count as a part.
    assert over_budget(b"Subject: x\r\n\r\n--p\r\n--p\r\n", 1, 1) is None
    # The outer multipart's next part ends the inner one: its boundary is no longer open.
    inner = b'--a\nContent-Type: multipart/mixed; boundary="b"\n\n--b\nContent-Type: x/y\n\n'
    raw = (
        b'Content-Type: multipart/mixed; boundary="a"\n\n'
        + inner * 3
        + b"--a\nContent-Type: x/y\n\n--b\n--b\n"
    )
    assert over_budget(raw, 2, 7) is None
    assert "parts" in over_budget(raw, 2, 6)


def line_by_line(raw: bytes, max_depth: int, max_parts: int) -> str | None:
    """The scan as it was: every line of the message split out and looked at (30 MB of
    line objects for a 20 MB attachment). The reference over_budget must agree with."""
    stack: list[bytes | None] = []
    parts = 0
    in_header = True
    header = bytearray()
    for line in raw.split(b"\n"):
        if in_header:
            if line.strip(b"\r"):
                if len(header) < budget._HEADER_CAP:
                    header += line + b"\n"
                continue
            in_header = False
            nested = nested_kind(bytes(header))
            header.clear()
            if nested is not None:
                kind, boundary = nested
                stack.append(b"--" + boundary if kind == "multipart" else None)
                if len(stack) > max_depth:
                    return f"MIME nesting deeper than {max_depth} levels"
                if kind == "message":
                    in_header = True
            continue
        if not line.startswith(b"--") or not stack:
            continue
        text = line.rstrip(b" \t\r")
        for level in range(len(stack) - 1, -1, -1):
            delim = stack[level]
            if delim is None or not text.startswith(delim):
                continue
            rest = text[len(delim) :]
            if rest == b"--":
                del stack[level:]
            elif rest == b"":
                del stack[level + 1 :]
                parts += 1
                if parts > max_parts:
                    return f"more than {max_parts} MIME parts"
                in_header = True
            else:
                continue
            break
    return None


# Lines that steer the scan: content types that open multiparts and embedded messages,
# boundary lines (closing, trailing blanks, longer look-alikes), blank lines of CRs, a
# folded header, and filler that a header cap of a few dozen octets cuts off.
LINES = st.sampled_from(
    [
        b'Content-Type: multipart/mixed; boundary="a"',
        b"Content-Type: multipart/alternative;",
        b" boundary=b",
        b"content-type:\tmultipart/related; boundary=a",
        b"Content-Type: multipart/x",
        b"Content-Type: message/rfc822",
        b"Content-Type: message/global",
        b"Content-Type: text/plain",
        b"Subject: x",
        b"X-Filler: " + b"f" * 40,
        b"--a",
        b"--a--",
        b"--b",
        b"--b--",
        b"--a \t\r",
        b"--b--\r\r",
        b"--ab",
        b"--a-",
        b"-a",
        b"",
        b"\r",
        b"\r\r",
        b"\r\r--a",
        b"QUJD",
        b"----",
    ]
)


# Whole steps of a MIME tree, so that deep and wide trees come up often.
STEPS = st.sampled_from(
    [
        b'Content-Type: multipart/mixed; boundary="a"\n',
        b"Content-Type: multipart/mixed;\n boundary=b\n",
        b"Content-Type: message/rfc822\n",
        b"Subject: leaf\n\nbody",
        b"--a",
        b"--b",
        b"--a--",
        b"--b--",
    ]
)


@settings(max_examples=3000, deadline=None)
@given(
    st.lists(
        st.tuples(st.one_of(LINES, STEPS, STEPS), st.sampled_from([b"\n", b"\r\n"])), max_size=40
    ),
    st.sampled_from([b"", b"\n", b"\r\n", b"--a", b"\r"]),
    st.integers(1, 4),
    st.integers(0, 6),
    st.sampled_from([16, 50, 64 * 1024]),
)
def test_the_scan_agrees_with_reading_every_line(lines, last, max_depth, max_parts, cap):
    raw = b"".join(line + nl for line, nl in lines) + last
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(budget, "_HEADER_CAP", cap)
        assert over_budget(raw, max_depth, max_parts) == line_by_line(raw, max_depth, max_parts)


@pytest.mark.parametrize("raw", [nested(120), many_parts(300), nested(3000), many_parts(6000)])
def test_the_scan_agrees_on_large_trees(raw):
    for limits in ((100, 5000), (200, 100), (5000, 299)):
        assert over_budget(raw, *limits) == line_by_line(raw, *limits)


TORTURE = {
    "deep nesting": nested(3000),
    "thousands of parts": many_parts(6000),
    "huge base64": (
        b"From: a@example.org\r\nSubject: big\r\nMessage-ID: <big@x>\r\n"
        b'Content-Type: multipart/mixed; boundary="q"\r\n\r\n--q\r\n'
        b"Content-Type: application/octet-stream\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n"
        + b"\r\n".join(base64.b64encode(os.urandom(57)) for _ in range(40000))
        + b"\r\n--q--\r\n"
    ),
    "wrong charsets": (
        b"From: =?x-unknown?B?w7w=?= <a@example.org>\r\nSubject: =?utf-8?Q?"
        b"=FF=FE?= =?iso-8859-1?B?!!!?=\r\nMessage-ID: <cs@x>\r\n"
        b"Content-Type: text/plain; charset=no-such-charset\r\n\r\n\xff\xfe\r\n"
    ),
    "broken boundaries": (
        b"From: a@example.org\r\nSubject: bb\r\nMessage-ID: <bb@x>\r\n"
        b'Content-Type: multipart/mixed; boundary="\r\n\r\n--\r\n--x--\r\n'
    ),
    "encoded-word abuse": (
        b"From: a@example.org\r\nMessage-ID: <ew@x>\r\nSubject: "
        + b" ".join(b"=?utf-8?B?%s?=" % base64.b64encode(b"\xe2\x82\xac" * 20) for _ in range(2000))
        + b"\r\n\r\nx\r\n"
    ),
}


@pytest.mark.parametrize("name", sorted(TORTURE))
def test_mime_torture_is_stored_byte_exact(receiver, name):
    address = receiver.add_mailbox("alice@corp.example")
    port = receiver.start(THREADS_RECEIVER_SMTP_MAX_LINE_LENGTH="200000")
    raw = TORTURE[name]
    assert send(port, address, raw)[0] == 250
    assert list(stored_raws(receiver.db_url).values()) == [raw]
    [row] = deliveries(receiver.db_url)
    if name in ("deep nesting", "thousands of parts"):
        assert row["parse_error"].startswith("BudgetExceeded: parse budget")


def test_a_hung_parse_is_killed_and_the_copy_stored_flagged(receiver):
    address = receiver.add_mailbox("alice@corp.example")
    port = receiver.start(
        THREADS_RECEIVER_PARSE_TIMEOUT="0.001", THREADS_RECEIVER_SMTP_MAX_LINE_LENGTH="200000"
    )
    raw = TORTURE["huge base64"]
    assert send(port, address, raw)[0] == 250
    [row] = deliveries(receiver.db_url)
    assert "took longer" in row["parse_error"]
    assert list(stored_raws(receiver.db_url).values()) == [raw]
    # The pool replaced the killed worker and keeps serving.
    assert send(port, address, TORTURE["wrong charsets"])[0] == 250


def test_worker_pool_survives_a_dying_worker():
    budget = dataclasses.replace(DEFAULT_BUDGET, timeout=5, max_memory=0)
    pool = ParseWorkers(budget, workers=1, log_setup=logs.for_child())
    try:
        w = pool._idle.get()
        w.proc.kill()
        w.proc.join()
        pool._idle.put(w)
        # Found dead when picked: replaced, and the copy parsed by the fresh worker.
        rec = pool.parse(b"Subject: hi\r\nMessage-ID: <a@b>\r\n\r\nx\r\n")
        assert rec.parse_error is None and rec.subject == "hi"
        assert not w.proc.is_alive() and w not in pool._all and len(pool._all) == 1
    finally:
        pool.close()


def test_parsing_does_not_block_other_sessions(receiver):
    address = receiver.add_mailbox("alice@corp.example")
    # The slow copy's parse takes 5 s more than it would: it is still being parsed when
    # the other session asks; a loop blocked by the parse would answer the slow one first.
    port = receiver.start(
        THREADS_RECEIVER_SMTP_MAX_LINE_LENGTH="200000", THREADS_RECEIVER_TEST_FAULTS="parse=stall:5"
    )
    slow = Raw(port)
    open_data(slow, address)
    slow.send(TORTURE["encoded-word abuse"] + b".\r\n")
    time.sleep(1)  # the copy reaches the parse worker
    other = Raw(port)
    assert other.cmd("NOOP")[0] == 250
    assert select.select([slow.sock], [], [], 0)[0] == [], "the slow copy was answered first"
    assert slow.reply()[0] == 250
    assert list(stored_raws(receiver.db_url).values()) == [TORTURE["encoded-word abuse"]]


def _test_email_data() -> Path | None:
    pyenv = Path("/root/.pyenv/versions/3.11.7/lib/python3.11/test/test_email/data")
    here = Path(os.path.dirname(sys.modules["os"].__file__)) / "test" / "test_email" / "data"
    for p in (here, pyenv):
        if p.is_dir():
            return p
    return None


TEST_EMAIL_DATA = _test_email_data()


@pytest.mark.skipif(
    TEST_EMAIL_DATA is None,
    reason="CPython's test package (Lib/test/test_email/data) is not installed",
)
def test_cpython_test_email_corpus_is_stored_byte_exact(receiver):
    address = receiver.add_mailbox("alice@corp.example")
    port = receiver.start(THREADS_RECEIVER_SMTP_MAX_LINE_LENGTH="200000")
    sent = []
    c = Raw(port)
    assert c.cmd("EHLO x")[0] == 250
    for path in sorted(TEST_EMAIL_DATA.glob("msg_*.txt")):
        raw = path.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        if not raw.endswith(b"\r\n"):
            raw += b"\r\n"
        code, text = transaction(c, address, raw, helo=False)
        assert code == 250, (path.name, text)
        sent.append(raw)
    c.close()
    assert len(sent) > 40
    stored = stored_raws(receiver.db_url)
    assert sorted(stored.values()) == sorted(set(sent))
