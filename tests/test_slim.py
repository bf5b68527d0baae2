"""Leaving large base64 parts out of mail-parser's view changes nothing in the record."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from receiver.mail import read
from receiver.parse import record, slim as slim_module
from receiver.parse.record import parse_message
from receiver.parse.slim import _measure, confirmed, slim
from tests.test_parse_budget import TEST_EMAIL_DATA
from tests.threading_support import fedora_messages


def records_agree(raw: bytes, monkeypatch) -> bool:
    """The record with every base64 part slimmed equals the record without slimming."""
    monkeypatch.setattr(record, "SLIM_THRESHOLD", 1)
    slimmed = parse_message(raw)
    monkeypatch.setattr(record, "SLIM_THRESHOLD", 1 << 62)
    whole = parse_message(raw)
    assert dataclasses.asdict(slimmed) == dataclasses.asdict(whole)
    return True


def attachment(
    name: str,
    data: bytes,
    nl: bytes = b"\r\n",
    cte: str = "base64",
    ctype: str = "application/octet-stream",
) -> bytes:
    body = base64.encodebytes(data).replace(b"\n", nl) if cte == "base64" else data + nl
    return (
        f"Content-Type: {ctype}; name={name}".encode()
        + nl
        + f"Content-Disposition: attachment; filename={name}".encode()
        + nl
        + f"Content-Transfer-Encoding: {cte}".encode()
        + nl
        + nl
        + body
    )


def multipart(
    boundary: str,
    parts: list[bytes],
    nl: bytes = b"\r\n",
    preamble: bytes = b"",
    epilogue: bytes = b"",
) -> bytes:
    b = boundary.encode()
    out = [f'Content-Type: multipart/mixed; boundary="{boundary}"'.encode() + nl + nl + preamble]
    for p in parts:
        out.append(b"--" + b + nl + p + nl)
    out.append(b"--" + b + b"--" + nl + epilogue)
    return b"".join(out)


HEAD = (
    b"From: Ann <ann@example.org>\r\nTo: bob@example.net\r\nSubject: files\r\n"
    b"Message-ID: <files@example.org>\r\nMIME-Version: 1.0\r\n"
)


def test_a_large_attachment_is_measured_without_mail_parser_reading_it(monkeypatch):
    data = bytes(range(256)) * 400
    raw = HEAD + multipart(
        "X",
        [
            b"Content-Type: text/plain\r\n\r\nsee attached\r\n",
            attachment("a.pdf", data, ctype="application/pdf"),
        ],
    )
    view, omitted = slim(read(raw), 1024)
    assert len(view) < 1000 and list(omitted.values()) == [
        (len(data), hashlib.sha256(data).hexdigest())
    ]
    rec = parse_message(raw)
    assert rec.attachments == [
        {
            "name": "a.pdf",
            "type": "application/pdf",
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
    ]
    assert rec.text_body.strip() == "see attached"
    assert records_agree(raw, monkeypatch)


def test_a_message_that_is_one_named_base64_part(monkeypatch):
    raw = (
        HEAD + b"Content-Type: application/octet-stream; name=big.bin\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(b"\x00" * 5000)
    )
    view, omitted = slim(read(raw), 100)
    assert len(omitted) == 1 and view.endswith(b"\r\n")
    assert records_agree(raw, monkeypatch)


def test_an_unnamed_binary_part_is_not_slimmed(monkeypatch):
    # mail-parser decodes it as body text: its charset defects come from the real bytes.
    raw = (
        HEAD + b"Content-Type: application/octet-stream\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(b"\xff" * 9000)
    )
    assert slim(read(raw), 100) == (raw, {})
    assert "CharsetDecodeDefect" in parse_message(raw).defects
    assert records_agree(raw, monkeypatch)


def test_what_is_not_plain_base64_stays(monkeypatch):
    text = (
        b"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(b"words " * 2000)
    )
    odd = attachment("x.bin", b"\xff" * 3000).replace(b"/", b"-")  # not base64 any more
    qp = attachment("q.txt", b"=3D" * 2000, cte="quoted-printable")
    raw = HEAD + multipart("Y", [text, odd, qp])
    assert slim(read(raw), 100) == (raw, {})
    assert records_agree(raw, monkeypatch)


def test_a_marker_seen_elsewhere_is_a_leak():
    raw = HEAD + multipart("Z", [attachment("a.bin", b"a" * 3000)])
    _, omitted = slim(read(raw), 100)
    (marker,) = omitted
    assert confirmed(omitted, ["body text"], [marker, b"other file"])
    assert not confirmed(omitted, ["body text"], [b"other file"])  # not seen as a file
    assert not confirmed(omitted, ["body"], [marker, marker])  # seen twice
    assert not confirmed(omitted, ["text with " + marker.decode()], [marker])
    assert not confirmed(omitted, [base64.b64encode(marker).decode()], [marker])
    assert not confirmed(omitted, [], [marker, b"a multipart attachment holding " + marker])


# Part header blocks and boundary lines the email package reads otherwise than slim's
# walk (review of this module): each must give the record of the unslimmed parse.
NAMED = b"Content-Disposition: attachment; filename=a.bin\r\n"
PART = NAMED + b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
B64 = base64.encodebytes(bytes(range(256)) * 47).replace(b"\n", b"\r\n")


def two_parts(part_headers: bytes) -> bytes:
    return (
        HEAD + b'Content-Type: multipart/mixed; boundary="B"\r\n\r\n--B\r\n'
        b"Content-Type: text/plain\r\n\r\nhello\r\n--B\r\n"
        + part_headers
        + b"\r\n"
        + B64
        + b"--B--\r\n"
    )


@pytest.mark.parametrize(
    "raw",
    [
        two_parts(PART),
        two_parts(PART + b"junk1\r\n"),
        two_parts(PART + b"junkjunk\r\n"),
        two_parts(PART.replace(b"Encoding:", b"Encoding :")),
        two_parts(PART + b"\rab\r\n"),
        two_parts(PART + b"\rabcde\r\n"),
        two_parts(PART).replace(b"hello\r\n--B\r\n", b"hello\r\n--B\r\r\n"),
        two_parts(PART).replace(b"--B--\r\n", b"--B--\r\r\n"),
        two_parts(PART.replace(b"application/octet-stream", b'"application/octet-stream"')),
    ],
    ids=[
        "plain",
        "junk5",
        "junk8",
        "space-colon",
        "bare-cr",
        "bare-cr-5",
        "cr-cr-lf-boundary",
        "cr-cr-lf-close",
        "quoted-type",
    ],
)
def test_what_the_email_package_reads_otherwise_gives_the_same_record(raw, monkeypatch):
    assert records_agree(raw, monkeypatch)


def test_a_boundary_reused_inside_itself_is_not_slimmed():
    inner = multipart("R", [attachment("a.bin", b"a" * 3000)])
    raw = HEAD + multipart("R", [inner])
    assert slim(read(raw), 100) == (raw, {})


def decoded_whole(body: bytes) -> tuple[int, str] | str:
    """Size and SHA-256 of the body decoded at once (the reference), or the error."""
    try:
        data = base64.b64decode(body)
    except binascii.Error:
        return "invalid"
    return len(data), hashlib.sha256(data).hexdigest()


@settings(max_examples=2000, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [b"QUJD", b"QUJDRA", b"A", b"AB", b"=", b"==", b"\r\n", b"\n", b" ", b"\t", b"\r"]
        ),
        max_size=40,
    ),
    st.integers(1, 9),
    st.sampled_from([b"", b"\r\n--b--\r\n"]),
)
def test_decoding_in_slices_gives_the_whole_bodys_size_hash_or_fails_alike(pieces, size, after):
    body = b"".join(pieces)
    raw = b"head\r\n\r\n" + body + after
    start = raw.index(b"\r\n\r\n") + 4
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(slim_module, "_DECODE_SLICE", size)
        try:
            got = _measure(raw, start, start + len(body))
        except binascii.Error:
            got = "invalid"
    assert got == decoded_whole(body)


def test_a_large_part_that_is_not_valid_base64_is_left_to_mail_parser(monkeypatch):
    raw = HEAD + multipart(
        "V",
        [
            attachment("a.bin", b"").replace(
                b"\r\n\r\n\r\n", b"\r\n\r\n" + b"QUJD" * 3000 + b"QUJDR\r\n"
            )
        ],
    )
    assert slim(read(raw), 100) == (raw, {})
    assert parse_message(raw).parse_error is None
    assert records_agree(raw, monkeypatch)


def test_a_large_body_is_decoded_in_slices_to_the_same_digest():
    data = bytes(range(256)) * 20000
    body = base64.encodebytes(data).replace(b"\n", b"\r\n")
    assert len(body) > 3 * slim_module._DECODE_SLICE
    assert _measure(body, 0, len(body)) == (len(data), hashlib.sha256(data).hexdigest())


sizes = st.integers(0, 3000)
leaf = st.one_of(
    st.builds(
        lambda n, s: attachment(f"f{n}.bin", bytes([n % 256]) * s), st.integers(0, 99), sizes
    ),
    st.builds(
        lambda s: b"Content-Type: text/plain\r\n\r\n" + b"-- not a boundary\r\n" * (s % 50), sizes
    ),
    st.just(
        b"Content-Type: message/rfc822\r\n\r\nSubject: inner\r\nContent-Type: application/zip"
        b"\r\nContent-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(b"z" * 999)
    ),
)
trees = st.recursive(
    leaf,
    lambda kids: st.builds(
        lambda parts, k, pre, epi: multipart(f"b{k}", parts, preamble=pre, epilogue=epi),
        st.lists(kids, min_size=1, max_size=4),
        st.integers(0, 9),
        st.sampled_from([b"", b"preamble\r\n"]),
        st.sampled_from([b"", b"QUFB\r\n"]),
    ),
    max_leaves=8,
)


@given(trees, st.booleans())
@settings(max_examples=150, deadline=None)
def test_generated_mime_trees_give_the_same_record(monkeypatch_session, tree, lf_only):
    raw = HEAD + tree
    if lf_only:
        raw = raw.replace(b"\r\n", b"\n")
    assert records_agree(raw, monkeypatch_session)


@pytest.fixture(scope="module")
def monkeypatch_session():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


@pytest.mark.skipif(TEST_EMAIL_DATA is None, reason="CPython's test_email data is not installed")
def test_cpython_email_corpus_gives_the_same_records(monkeypatch):
    for path in sorted(TEST_EMAIL_DATA.glob("msg_*.txt")):
        assert records_agree(path.read_bytes(), monkeypatch), path.name


def test_fedora_archive_gives_the_same_records(monkeypatch):
    for raw in fedora_messages()[:200]:
        assert records_agree(raw, monkeypatch)
