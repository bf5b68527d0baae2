"""Reading and writing mbox/Maildir files: separators, quoting, line endings (no database)."""

from __future__ import annotations

import datetime as dt
import io

from hypothesis import given, settings, strategies as st

from receiver.mailfiles import (
    MaildirWriter,
    MailSource,
    read_mbox,
    strip_from_line,
    wire_form,
    write_mbox,
)


def msgs(data: bytes) -> list[bytes]:
    return [m.raw for m in read_mbox(io.BytesIO(data))]


def test_unquoted_from_in_body_is_not_a_separator():
    data = (
        b"From a@x Thu Dec 31 22:50:51 2009\nSubject: one\n\nhello\n\n"
        b"From what I can tell this is fine.\nbye\n\n"
        b"From b@x Thu Dec 31 22:50:52 2009\nSubject: two\n\nbody\n"
    )
    assert msgs(data) == [
        b"Subject: one\r\n\r\nhello\r\n\r\nFrom what I can tell this is fine.\r\nbye\r\n",
        b"Subject: two\r\n\r\nbody\r\n",
    ]


def test_separator_without_blank_line_and_mixed_endings():
    data = (
        b"From a@x Thu Dec 31 22:50:51 2009\r\nSubject: one\r\n\nline\n"
        b"From b@x  Fri Jan  1 09:20:34 2010\nSubject: two\n\r\nbody\r\n"
    )
    assert msgs(data) == [b"Subject: one\r\n\r\nline\r\n", b"Subject: two\r\n\r\nbody\r\n"]


def test_mboxrd_quoting_is_undone():
    data = b"From a@x Thu Dec 31 22:50:51 2009\nSubject: q\n\n>From here\n>>From there\n"
    assert msgs(data) == [b"Subject: q\r\n\r\nFrom here\r\n>From there\r\n"]


def test_single_message_with_from_line():
    assert (
        strip_from_line(b"From a@x Thu Dec 31 22:50:51 2009\nSubject: s\n\nb\n")
        == b"Subject: s\n\nb\n"
    )
    assert strip_from_line(b"From: a@x\n\nb\n") == b"From: a@x\n\nb\n"


line = st.one_of(
    st.sampled_from(
        [
            b"From here on",
            b">From quoted",
            b">>From",
            b"",
            b"From a@x Thu Dec 31 22:50:51 2009",
            b"Subject: looks like a header",
        ]
    ),
    st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"").replace(b"\r", b"")),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(line, max_size=8), min_size=1, max_size=4))
def test_export_then_read_gives_the_bytes_back(bodies):
    """Any CRLF message written as mboxrd reads back byte for byte."""
    raws = [
        b"Subject: s\r\nMessage-ID: <%d@x>\r\n\r\n" % i + b"".join(l + b"\r\n" for l in body)
        for i, body in enumerate(bodies)
    ]
    out = io.BytesIO()
    for raw in raws:
        write_mbox(out, "bob@example.org", dt.datetime(2020, 1, 2, 3, 4, 5), raw)
    assert msgs(out.getvalue()) == raws


def test_maildir_and_folder_sources(tmp_path):
    box = MaildirWriter(tmp_path / "md")
    box.add("1_abc", None, b"Subject: a\r\n\r\nx\r\n")
    (tmp_path / "md" / "new" / "2").write_bytes(b"Subject: b\n\ny\n")
    src = MailSource(tmp_path / "md")
    assert src.kind == "maildir" and src.total == 2
    assert sorted(m.raw for m in src) == [b"Subject: a\r\n\r\nx\r\n", b"Subject: b\r\n\r\ny\r\n"]
    (tmp_path / "eml").mkdir()
    (tmp_path / "eml" / "one.eml").write_bytes(b"Subject: c\n\nz\n")
    assert [m.raw for m in MailSource(tmp_path / "eml")] == [b"Subject: c\r\n\r\nz\r\n"]
    assert MailSource(tmp_path / "eml" / "one.eml").kind == "message"


def test_wire_form_keeps_crlf_and_bare_cr():
    assert wire_form(b"a\r\nb\nc\rd\n") == b"a\r\nb\r\nc\rd\r\n"
