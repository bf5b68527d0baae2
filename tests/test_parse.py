"""The parsed record: content hash over the author's part, dates in UTC, never an exception."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from receiver.parse import parse_message, record
from receiver.mail import read
from receiver.parse.record import content_hash

BASE = (
    b'From: Bob <Bob@Example.org>\r\nTo: a@x.example, "C" <c@y.example>\r\nSubject: hi\r\n'
    b"Date: Tue, 01 Jan 2019 10:00:00 +0200\r\nMessage-ID: <ID@Example.ORG>\r\n"
    b"In-Reply-To: <p@x>\r\nReferences: <r1@x> <p@x>\r\n\r\nbody\r\n"
)

trace = st.sampled_from(
    [
        b"Received: from mx.example by relay; Tue, 01 Jan 2019 10:00:01 +0000\r\n",
        b"X-Forwarded-To: someone@example.net\r\n",
        b"ARC-Seal: i=1; a=rsa-sha256; d=google.com; s=arc; cv=none; b=AAAA\r\n",
        b"Authentication-Results: mx.google.com; dkim=pass\r\n",
        b"Delivered-To: x@y\r\n",
    ]
)


@given(st.lists(trace, max_size=5))
def test_trace_headers_do_not_change_the_content_hash(prefix):
    assert content_hash(b"".join(prefix) + BASE) == content_hash(BASE)


@given(st.binary(min_size=1, max_size=50))
def test_body_changes_change_the_content_hash(extra):
    assert content_hash(BASE + extra) != content_hash(BASE) or extra.strip(b"\r\n") == b""


def test_line_endings_do_not_change_the_content_hash():
    assert content_hash(BASE.replace(b"\r\n", b"\n")) == content_hash(BASE)


def test_lines_that_are_no_field_change_the_content_hash():
    # Text that is not mail is all header block: its lines are what tells it apart.
    assert content_hash(b"just a body line\r\n") != content_hash(b"garbage\n")
    assert content_hash(b"garbage\r\n") == content_hash(b"garbage\n")
    assert content_hash(b"Note: one\n") != content_hash(b"Note: two\n")
    junk = BASE.replace(b"Subject: hi\r\n", b"Subject: hi\r\nnot a field\r\n")
    assert content_hash(junk) != content_hash(BASE)
    # An mbox envelope line ahead of the fields is transport, as a Received field is.
    assert content_hash(b"From bob@example.org Tue Jan  1 10:00:00 2019\r\n" + BASE) == (
        content_hash(BASE)
    )


def whole_body_hash(raw: bytes) -> str:
    """The content hash as it was: the body folded and stripped in whole copies (40 MB
    for a 20 MB attachment). The reference the sliced hash must agree with."""
    mail = read(raw)
    view = mail.for_parser  # the body as the record reads it
    body = view.body()
    h = hashlib.sha256(record.header_digest(mail))
    h.update(b"\n")
    h.update(body.replace(b"\r\n", b"\n").rstrip(b"\n"))
    return h.hexdigest()


@settings(max_examples=1000)
@given(
    st.lists(
        st.sampled_from([b"\r", b"\n", b"\r\n", b"x", b"Subject: s", b"To: t", b"X-Trace: t"]),
        max_size=30,
    ),
    st.integers(1, 5),
)
def test_the_sliced_content_hash_agrees_with_folding_the_whole_body(pieces, slice_size):
    raw = b"".join(pieces)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(record, "_HASH_SLICE", slice_size)
        assert content_hash(raw) == whole_body_hash(raw)
        assert parse_message(raw).content_hash == whole_body_hash(raw)


def test_record_fields():
    rec = parse_message(BASE)
    assert rec.message_id == "ID@example.org"
    assert rec.date == dt.datetime(2019, 1, 1, 8, 0, 0)
    assert rec.date_raw == "Tue, 01 Jan 2019 10:00:00 +0200"
    assert (rec.from_name, rec.from_addr) == ("Bob", "bob@example.org")
    assert rec.to == [("", "a@x.example"), ("C", "c@y.example")]
    assert rec.in_reply_to == ["p@x"] and rec.references == ["r1@x", "p@x"]
    assert rec.text_body.strip() == "body" and rec.parse_error is None


def test_missing_message_id_gets_a_stable_synthetic_one():
    raw = BASE.replace(b"Message-ID: <ID@Example.ORG>\r\n", b"")
    a, b = parse_message(raw), parse_message(b"Received: by x\r\n" + raw)
    assert a.synthetic_id and a.message_id == b.message_id
    assert a.message_id != parse_message(raw + b"more").message_id


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_parse_never_raises(raw):
    rec = parse_message(raw)
    assert rec.message_id and len(rec.content_hash) == 64


@pytest.mark.parametrize(
    ("subject", "read"),
    [
        (b"Gr\xfc\xdfe", "Grüße"),  # Latin-1
        ("Grüße".encode(), "Grüße"),  # UTF-8 (RFC 6532)
        (b"=?iso-8859-1?q?Gr=FC=DFe?=", "Grüße"),
        (b"\x93quoted\x94 =?utf-8?q?caf=C3=A9?=", "\u201cquoted\u201d café"),  # cp1252
        (b"\x81\x8d", "\x81\x8d"),  # bytes cp1252 leaves undefined: Latin-1
    ],
)
def test_8bit_subject_text_is_never_dropped(subject, read):
    rec = parse_message(b"Subject: " + subject + b"\r\nFrom: a@example.org\r\n\r\nbody\r\n")
    assert rec.subject == read
