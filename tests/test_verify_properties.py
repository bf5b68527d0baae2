"""Properties of the checks, run on the pure functions with keys given (no DNS)."""

from __future__ import annotations

import datetime as dt

from hypothesis import given, settings, strategies as st

from receiver.mail import read
from receiver.verify import check_and_conclude, parse_for_checks
from receiver.verify.confirmation import find_confirmation
from receiver.verify.dnskeys import FOUND, KeyAnswer
from tests import mailfixtures as F

KEYS = {name: KeyAnswer(FOUND, txt.encode()) for name, txt in F.DNS_RECORDS.items()}
SIGNED = F.signed()
NOW = dt.datetime(2024, 10, 1, 12, tzinfo=dt.UTC)

TRACES = [
    b"X-Forwarded-To: alice-token@push.example.com\r\n",
    b"X-Forwarded-For: alice@corp.example alice-token@push.example.com\r\n",
    b"X-Sieve-Redirected-From: alice@corp.example\r\n",
    b"X-MS-Exchange-Inbox-Rules-Loop: alice@corp.example\r\n",
    b"Resent-From: alice@corp.example\r\n",
    b"Resent-Date: Tue, 01 Oct 2024 10:01:00 +0000\r\n",
    b"Return-Path: <SRS0=h4Xk=QZ=author.example=ann@corp.example>\r\n",
    b"Delivered-To: alice@corp.example\r\n",
    F.received("corp.example"),
]


def verdict_of(raw: bytes):
    parsed = parse_for_checks(read(raw), NOW)
    _, (path, verdict) = check_and_conclude(parsed, KEYS, F.SUBSCRIBER, "rx.example")
    return path, verdict


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(TRACES), max_size=8))
def test_redirect_traces_on_top_keep_a_copy_unaltered(traces):
    path, verdict = verdict_of(b"".join(traces) + SIGNED)
    assert verdict.kind == "unaltered", verdict.reasons
    assert path.kind == "copied"


_, _BODY = SIGNED.split(b"\r\n\r\n", 1)
BODY_AT = len(SIGNED) - len(_BODY)


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=len(_BODY) - 1), st.sampled_from(b"QZ#7"))
def test_any_changed_body_character_makes_the_copy_altered(offset, new):
    if _BODY[offset] in b" \t\r\n" or _BODY[offset] == new:
        return  # whitespace is the canonicalisation's to fold; equal bytes change nothing
    raw = SIGNED[: BODY_AT + offset] + bytes([new]) + SIGNED[BODY_AT + offset + 1 :]
    _, verdict = verdict_of(raw)
    assert (verdict.kind, verdict.cause) == ("altered", "body_changed")


def test_outlook_verification_code_is_found():
    raw = (
        b"From: Microsoft account team <account-security-noreply@accountprotection.microsoft.com>\r\n"
        b"To: alice-token@push.example.com\r\nSubject: Verify your email address\r\n"
        b"Date: Tue, 01 Oct 2024 09:00:00 +0000\r\nMessage-ID: <v1@microsoft.com>\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        b"To finish setting up forwarding, use this security code.\r\n\r\n"
        b"Security code: 4821\r\n\r\nOr confirm here: "
        b"https://account.live.com/confirm?token=abc123\r\n"
    )
    found = find_confirmation(read(raw))
    assert (found["provider"], found["code"]) == ("outlook", "4821")
    assert found["link"] == "https://account.live.com/confirm?token=abc123"


def test_a_message_merely_mentioning_a_code_is_no_confirmation():
    raw = F.original(subject="Forwarding Confirmation code: 123456789")
    assert find_confirmation(read(raw)) is None


_LINE = st.binary(min_size=0, max_size=60).map(
    lambda b: b.replace(b"\r", b"").replace(b"\n", b"").replace(b"--", b"-")
)


@settings(max_examples=80, deadline=None)
@given(st.lists(_LINE, min_size=1, max_size=12), st.sampled_from([b"\r\n", b"\n"]))
def test_the_enclosed_original_comes_back_byte_exact(lines, eol):
    from receiver.verify.copypath import enclosed_message

    inner = b"From: a@b.example\r\nSubject: x\r\n\r\n" + b"\r\n".join(lines) + b"\r\n"
    wrapped = F.journal_report(inner)
    if eol == b"\n":
        wrapped = wrapped.replace(b"\r\n", b"\n")
        inner = inner.replace(b"\r\n", b"\n")
    assert enclosed_message(read(wrapped)) == inner


_HEADER_NAMES = st.sampled_from(
    [
        b"DKIM-Signature",
        b"ARC-Seal",
        b"ARC-Message-Signature",
        b"ARC-Authentication-Results",
        b"From",
        b"Subject",
        b"Received",
        b"Content-Type",
        b"X-MS-Journal-Report",
    ]
)
_FIELD = st.tuples(_HEADER_NAMES, st.binary(max_size=80)).map(
    lambda nv: nv[0] + b": " + nv[1].replace(b"\n", b"\n ") + b"\r\n"
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_FIELD, max_size=8), st.binary(max_size=200), st.sampled_from([SIGNED, b""]))
def test_no_input_makes_the_checks_raise(fields, body, tail):
    # A crash would answer 451 for ever: the sender would retry a copy nobody can store.
    raw = b"".join(fields) + tail + b"\r\n" + body
    path, verdict = verdict_of(raw)
    assert verdict.kind in ("unaltered", "unverifiable", "altered")


_PIECES = st.sampled_from(
    [
        b"\r\n",
        b"\n",
        b"\r",
        b"\r\r\n",
        b" ",
        b"\t",
        b"X-A: 1",
        b"Subject: s",
        b"From b",
        b"DKIM-Signature: v=1",
        b"body",
        b":",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_PIECES, max_size=20), st.sampled_from([b"", SIGNED]))
def test_the_header_block_parse_reads_the_message_as_dkimpy_does(pieces, tail):
    """dkimpy reading the header block the reader cut sees what it sees reading the whole
    message. Where dkimpy reads the whole message, the reader ends its header block at
    the same line; where the block ends at a line of CRs (which dkimpy refuses as
    header text, and the email package reads as a blank line), dkimpy is compared on
    the message with that line written as CRLF."""
    import dkim

    from receiver.verify.dkimcheck import dkim_body, parse_header_block

    raw = b"".join(pieces) + tail
    mail = read(raw)
    try:
        dkim.DKIM(raw)
    except (dkim.DKIMException, IndexError):
        pass
    else:
        assert mail.plain_blank_line is raw
    try:
        whole = dkim.DKIM(mail.plain_blank_line)
    except (dkim.DKIMException, IndexError) as e:
        try:
            parse_header_block(mail)
        except type(e):
            return
        raise AssertionError("the header block parsed where dkimpy's whole parse refused") from e
    head = parse_header_block(mail)
    assert [list(h) for h in head.headers] == [list(h) for h in whole.headers]
    assert dkim_body(mail) == (whole.body or b"")


def test_a_message_opening_with_a_folded_line_gets_a_verdict():
    # dkimpy raised IndexError on it: the copy was answered 451 on every retry.
    path, verdict = verdict_of(b" folded\r\n" + SIGNED)
    assert verdict.kind == "unverifiable"
    assert verdict.reasons[0].startswith("malformed header block")
