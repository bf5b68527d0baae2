"""The one reader of raw mail: one rule for where the header block ends, and every consumer
(DKIM, the copy-path check, the MIME walk, the parsed record, the SMTP defects) seeing the
same header block and the same body start."""

from __future__ import annotations

import email

import dkim
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from receiver.mail import read
from receiver.mail.block import header_span
from receiver.parse import parse_message
from receiver.verify.copypath import classify
from receiver.verify.dkimcheck import dkim_body, parse_header_block


@pytest.mark.parametrize(
    "raw, span",
    [
        (b"A: b\r\n\r\nbody", (6, 8)),
        (b"A: b\n\nbody", (5, 6)),
        (b"A: b\r\n\nbody", (6, 7)),  # a CRLF line, then a bare LF blank line
        (b"A: b\n\r\nbody", (5, 7)),
        (b"A: b\r\n\r\r\nbody", (6, 9)),  # a line of nothing but CRs is blank
        (b"A: b\r\n\r\rbody\r\n", (14, 14)),  # a bare CR ends no line: "\r\rbody" is no blank
        (b"A: b\r\nX: c\rY: d\r\n\r\nbody", (17, 19)),
        (b"A: b\r\nX: c\nY: d\r\n\r\nbody", (17, 19)),  # a bare LF ends a line, not the block
        (b"\r\nbody", (0, 2)),
        (b"\nbody", (0, 1)),
        (b"", (0, 0)),
        (b"A: b", (4, 4)),  # no blank line: all header
        (b"A: b\r\n", (6, 6)),
        (b"A: b\r\n\r", (6, 7)),
        (b"A: b\r\n\r\n body", (6, 8)),  # a body that starts with white space
        (b"A: b\r\n c\r\n\r\nx", (10, 12)),  # obs-fold
        (b"A: b\r\njunk\r\n\r\nx", (12, 14)),  # a line without a colon does not end it
        (b"A: b\r\n\0\r\n\r\nx", (9, 11)),
    ],
)
def test_the_one_rule_for_the_end_of_the_header_block(raw, span):
    assert header_span(raw) == span
    mail = read(raw)
    assert (mail.header_end, mail.body_start) == span


def test_the_message_the_old_readers_split_four_ways_is_split_once():
    # parse/headers.py put its body at 20, parse/bare.py at 26, parse/budget.py at 14,
    # and verify/dkimcheck.py refused it.
    raw = b"A: b\r\nX: c\n\r\r\nY: d\n\nZ: e\r\n\r\nbody"
    mail = read(raw)
    assert (mail.header_end, mail.body_start) == (11, 14)
    assert [n for n, _ in parse_header_block(mail).headers] == [b"A", b"X"]
    assert dkim_body(mail) == b"Y: d\r\n\r\nZ: e\r\n\r\nbody"
    assert next(mail.parts()).body == 14
    assert mail.for_parser.body() == raw[14:]
    assert email.message_from_bytes(mail.for_parser.raw).get_payload() == raw[14:].decode()
    assert mail.defects == ("bare LF in header", "bare CR in header")


def test_fields_keep_their_raw_value_and_offsets():
    raw = (
        b"From alice Mon Jan  1 00:00:00 2024\r\nSubject: a\r\n b\r\nX : not a field\r\n"
        b" lost\r\nTo: t\r\n\r\nbody"
    )
    mail = read(raw)
    assert [(f.name, f.value) for f in mail.fields] == [
        ("Subject", b" a\r\n b\r\n"),
        ("To", b" t\r\n"),
    ]
    subject, to = mail.fields
    assert raw[subject.start : subject.end] == b"Subject: a\r\n b\r\n"
    assert raw[to.start : to.end] == b"To: t\r\n"
    assert [raw[s:e] for s, e in mail.junk] == [
        b"From alice Mon Jan  1 00:00:00 2024\r\n",
        b"X : not a field\r\n",
        b" lost\r\n",
    ]
    assert mail.get_first("subject") == "a b"


def test_the_parser_reads_no_field_hidden_behind_a_bare_cr_or_lf():
    raw = (
        b"From: bob@example.org\r\nX-Note: hi\nIn-Reply-To: <victim@example.org>\r\n"
        b"X-Other: a\rSubject: hidden\r\n\r\nbody\r\n"
    )
    mail = read(raw)
    assert mail.defects == ("bare LF in header", "bare CR in header")
    assert mail.for_parser.body() == mail.body() == b"body\r\n"
    assert [f.name for f in mail.for_parser.fields] == ["From", "X-Note", "X-Other"]
    assert parse_message(mail).in_reply_to == []


def test_a_clean_message_is_not_copied_for_the_parser():
    raw = b"Subject: s\r\n\r\nbody\r\n"
    assert read(raw).for_parser.raw is raw
    lf_only = b"Subject: s\n\nbody\n"
    assert read(lf_only).for_parser.raw is lf_only


# Crafted header lines: fields, obs-fold, NUL, bare CR inside a line, a line without a
# colon, a blank before the colon, an mbox envelope line; each ended by CRLF or a bare LF.
_LINES = st.sampled_from(
    [
        b"Subject: s",
        b"From: a@b.example",
        b"Message-ID: <m@x>",
        b"X-Forwarded-To: f@x",
        b" folded",
        b"\tfolded",
        b"X-Nul: a\0b",
        b"To: a\rCc: c@x",
        b"junk",
        b"Subject : spaced",
        b"From x@y Mon Jan  1 00:00:00 2024",
        b"X-Empty:",
        b"\r",
    ]
)
_EOLS = st.sampled_from([b"\r\n", b"\r\n", b"\n"])
# The line that ends the block ("" leaves it out), then bodies that look like more header.
_BLANKS = st.sampled_from([b"\r\n", b"\n", b"\r\r\n", b""])
_BODIES = st.sampled_from(
    [
        b"body\r\n",
        b" starts with white space\r\n",
        b"\tX: y\r\n\r\nz",
        b"Subject: not a header\r\n",
        b"\r\n\r\n",
        b"",
        b"a\rb\nc\r\n",
    ]
)


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.tuples(_LINES, _EOLS), max_size=10), _BLANKS, _BODIES)
def test_every_consumer_sees_one_header_block_and_one_body(lines, blank, body):
    raw = b"".join(line + eol for line, eol in lines) + blank + body
    mail = read(raw)
    he, bs = mail.header_end, mail.body_start
    assert 0 <= he <= bs <= len(raw)

    # DKIM: dkimpy reading the whole message (its blank line as CRLF) sees the fields of
    # the reader's header block, and the body from the reader's body start.
    try:
        whole = dkim.DKIM(mail.plain_blank_line)
    except (dkim.DKIMException, IndexError):
        assert mail.junk
    else:
        head = parse_header_block(mail)
        assert [n for n, _ in head.headers] == [n for n, _ in whole.headers]
        assert [n.decode() for n, _ in head.headers] == [f.name for f in mail.fields]
        assert dkim_body(mail) == (whole.body or b"")

    # The copy-path check reads the same fields.
    forwarded = "Gmail forwarding" in classify(mail, None).how
    assert forwarded == any(f.name.lower() == "x-forwarded-to" for f in mail.fields)

    # The MIME walk (budget and slim) starts the body where the reader does.
    first = next(mail.parts())
    assert (first.header, first.body) == (raw[:he], bs)

    # The parsed record: the email package, fed the parser's view, sees the view's fields
    # and the body as received.
    view = mail.for_parser
    assert view.for_parser is view
    msg = email.message_from_bytes(view.raw)
    assert msg.keys() == [f.name for f in view.fields]
    assert view.body() == mail.body()
    assert msg.get_payload() == mail.body().decode("ascii", "surrogateescape")

    # The SMTP defects are those of the header block alone.
    assert read(raw[:bs]).defects == mail.defects
    assert (b"\0" in raw[:bs]) == ("NUL in header" in mail.defects)
