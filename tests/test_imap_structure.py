"""BODYSTRUCTURE and ENVELOPE held to RFC 3501 7.4.2, where pymap 0.36 writes them
otherwise: mail clients show attachments (their names and sizes) and fetch parts by
BODYSTRUCTURE, migration tools compare ENVELOPEs."""

from __future__ import annotations

import pytest

from tests.dovecot_support import Dovecot
from tests.helpers import require_programs
from tests.imap_support import implicit
from tests.test_imap import appenduid

# The header of a multipart/mixed message, up to its first part.
MIXED = (
    b"From: Ann <ann@a.example>\r\n"
    b"Subject: parts\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b1"\r\n'
    b"\r\n"
    b"--b1\r\n"
)
# A text part, an attachment and a forwarded message: each part's body is the bytes
# between its header's blank line and the next boundary line (BODY[n]).
PARTS = (
    MIXED + b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 7bit\r\n"
    b"\r\n"
    b"hi\r\n"
    b"--b1\r\n"
    b"Content-Type: application/octet-stream\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    b"JVBERi0xLjQK\r\n"
    b"--b1\r\n"
    b"Content-Type: message/rfc822\r\n"
    b"\r\n"
    b"From: Cy <cy@c.example>\r\n"
    b"Subject: inner\r\n"
    b"\r\n"
    b"inner body\r\n"
    b"--b1--\r\n"
)
CY = b'(("Cy" NIL "cy" "c.example"))'


@pytest.fixture
def inbox(rx):
    """A client, logged in, with INBOX selected; `inbox.put(raw)` appends a message and
    answers its UID."""
    c = implicit(rx)
    assert c.select("INBOX")[0] == "OK"
    yield c
    c.logout()


def fetched(c, raw: bytes, item: str) -> bytes:
    """The answer to FETCH `item` of `raw`, appended to the selected folder."""
    _, uid = appenduid(c.append("INBOX", None, None, raw))
    typ, data = c.uid("FETCH", str(uid), f"({item})")
    assert typ == "OK", data
    # imaplib gives a literal as (the line up to it, its bytes), the rest of the line
    # after it; an untagged FLAGS (\Recent) comes first, for a message just added.
    lines = [b"".join(item) if isinstance(item, tuple) else item for item in data]
    return b"".join(line for line in lines if not line.endswith(b" (FLAGS (\\Recent))"))


def test_a_parts_size_and_lines_are_its_bodys(inbox):
    # body-fld-octets, body-fld-lines: the body's, not the part's MIME header's too (for
    # the text part pymap said 80 octets, 3 lines).
    assert fetched(inbox, PARTS, "BODY") == (
        b"1 (BODY ("
        b'("text" "plain" ("charset" "utf-8") NIL NIL "7bit" 2 0)'
        b'("application" "octet-stream" NIL NIL NIL "base64" 12)'
        b'("message" "rfc822" NIL NIL NIL "7BIT" 53 (NIL "inner" %s %s %s NIL NIL NIL NIL NIL)'
        b' ("text" "plain" NIL NIL NIL "7BIT" 10 0) 3)'
        b' "mixed") UID 1)' % (CY, CY, CY)
    )
    # The sizes are those of what BODY[n] answers.
    for part, size in ((1, 2), (2, 12), (3, 53), ("3.1", 10)):
        typ, data = inbox.fetch("1", f"(BODY.PEEK[{part}])")
        assert typ == "OK" and len(data[0][1]) == size, (part, data)
    # A message of one part: its body is what follows the message's header.
    one = b"Subject: one\r\n\r\nline 1\r\nline 2\r\n"
    assert fetched(inbox, one, "BODYSTRUCTURE") == (
        b'2 (BODYSTRUCTURE ("text" "plain" NIL NIL NIL "7BIT" 16 2 NIL NIL NIL NIL) UID 2)'
    )


@pytest.mark.parametrize(
    ("date", "env_date"),
    [
        # env-date is the Date field's own text (RFC 3501 7.4.2), unfolded, as Dovecot
        # answers: pymap wrote "02-Jan-2019 11:00:00 -0500", INTERNALDATE's form.
        (
            b"Date: Wed, 2 Jan 2019 11:00:00 -0500 (EST)\r\n",
            b'"Wed, 2 Jan 2019 11:00:00 -0500 (EST)"',
        ),
        (b"Date: Wed,\r\n 2 Jan 2019 11:00:00 +0000\r\n", b'"Wed, 2 Jan 2019 11:00:00 +0000"'),
        # A date no parser reads is still the field's text (pymap failed the FETCH).
        (b"Date: garbage\r\n", b'"garbage"'),
        # 8-bit: a literal (imaplib leaves out the CRLF after its length).
        (b"Date: Mi, 2 J\xc3\xa4n 2019\r\n", b"{15}Mi, 2 J\xc3\xa4n 2019"),
        (b"", b"NIL"),
    ],
)
def test_the_envelope_date_is_the_date_fields_text(inbox, date, env_date):
    raw = date + b"From: Ann <ann@a.example>\r\nSubject: s\r\nMessage-ID: <m@a>\r\n\r\nb\r\n"
    ann = b'(("Ann" NIL "ann" "a.example"))'
    envelope = b'(%s "s" %s %s %s NIL NIL NIL NIL "<m@a>")' % (env_date, ann, ann, ann)
    assert fetched(inbox, raw, "ENVELOPE") == b"1 (ENVELOPE %s UID 1)" % envelope


# A text part, a PDF attached (named in RFC 2231's form in Content-Type, and in a plain
# filename) and a forwarded message.
ATTACHED = (
    MIXED + b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"hi\r\n"
    b"--b1\r\n"
    b"Content-Type: application/pdf; name*=utf-8''r%C3%A9sum%C3%A9.pdf\r\n"
    b'Content-Disposition: attachment; filename="a.pdf"\r\n'
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    b"JVBERi0xLjQK\r\n"
    b"--b1\r\n"
    b"Content-Type: message/rfc822\r\n"
    b"Content-Disposition: inline\r\n"
    b"\r\n"
    b"From: Cy <cy@c.example>\r\n"
    b"Subject: inner\r\n"
    b"Date: Wed, 2 Jan 2019 11:00:00 -0500 (EST)\r\n"
    b"\r\n"
    b"inner body\r\n"
    b"--b1--\r\n"
)


def test_a_disposition_and_parameters_are_lists_of_strings(inbox):
    # body-fld-dsp is ("attachment" ("filename" "a.pdf")), where pymap wrote the field
    # as one string; an RFC 2231 value is given 7-bit in its own form, as Dovecot gives
    # it, where pymap wrote ("name" {12}<CRLF>résumé.pdf), 8-bit text of no charset.
    pdf_fields = (
        b'"application" "pdf" ("name*" "utf-8\'\'r%C3%A9sum%C3%A9.pdf") NIL NIL "base64" 12'
    )
    inner_envelope = (
        b'("Wed, 2 Jan 2019 11:00:00 -0500 (EST)" "inner" %s %s %s NIL NIL NIL NIL NIL)'
        % (CY, CY, CY)
    )
    assert fetched(inbox, ATTACHED, "BODYSTRUCTURE") == (
        b"1 (BODYSTRUCTURE ("
        b'("text" "plain" ("charset" "utf-8") NIL NIL "7BIT" 2 0 NIL NIL NIL NIL)'
        b'(%s NIL ("attachment" ("filename" "a.pdf")) NIL NIL)'
        b'("message" "rfc822" NIL NIL NIL "7BIT" 97 %s'
        b' ("text" "plain" NIL NIL NIL "7BIT" 10 0 NIL NIL NIL NIL) 4 NIL ("inline" NIL) NIL NIL)'
        b' "mixed" ("boundary" "b1") NIL NIL NIL) UID 1)' % (pdf_fields, inner_envelope)
    )
    typ, data = inbox.fetch("1", "(BODY)")
    assert typ == "OK" and data == [
        b'1 (BODY (("text" "plain" ("charset" "utf-8") NIL NIL "7BIT" 2 0)(%s)'
        b'("message" "rfc822" NIL NIL NIL "7BIT" 97 %s ("text" "plain" NIL NIL NIL "7BIT" 10 0) 4)'
        b' "mixed"))' % (pdf_fields, inner_envelope)
    ], data


# A preamble, a text part, a nested multipart (with an epilogue of its own), a forwarded
# message, an 8bit attachment ending in a blank line, a base64 one and an epilogue.
NESTED = (
    MIXED.replace(b"\r\n--b1\r\n", b"\r\npreamble\r\n--b1\r\n")
    + b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"hi\r\n"
    b"--b1\r\n"
    b'Content-Type: multipart/alternative; boundary="b2"\r\n'
    b"\r\n"
    b"--b2\r\n"
    b"Content-Type: text/plain\r\n"
    b"\r\n"
    b"alt one\r\n"
    b"--b2\r\n"
    b"Content-Type: text/html\r\n"
    b"\r\n"
    b"<p>two</p>\r\n"
    b"--b2--\r\n"
    b"inner epilogue\r\n"
    b"--b1\r\n"
    b"Content-Type: message/rfc822\r\n"
    b"\r\n"
    b"From: Cy <cy@c.example>\r\n"
    b"Subject: inner\r\n"
    b"\r\n"
    b"inner body\r\n"
    b"--b1\r\n"
    b"Content-Type: application/octet-stream\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"\r\n"
    b"\xc3\xa9\xff8bit\r\n\r\n"
    b"--b1\r\n"
    b"Content-Type: application/octet-stream\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    b"AP8=\r\n"
    b"--b1--\r\n"
    b"epilogue\r\n"
)


# Each section of NESTED and its bytes, as Dovecot answers them. RFC 2046 5.1.1: the CRLF
# before a delimiter line is the delimiter's, so a part is the bytes up to it (pymap said
# "hi\r\n", and an attachment fetched by part had two bytes more than the file).
SECTIONS = {
    "BODY[1]": b"hi",
    "BODY[2]": (
        b"--b2\r\nContent-Type: text/plain\r\n\r\nalt one\r\n--b2\r\n"
        b"Content-Type: text/html\r\n\r\n<p>two</p>\r\n--b2--\r\ninner epilogue"
    ),
    "BODY[2.1]": b"alt one",
    "BODY[2.2]": b"<p>two</p>",
    "BODY[3]": b"From: Cy <cy@c.example>\r\nSubject: inner\r\n\r\ninner body",
    "BODY[3.TEXT]": b"inner body",
    "BODY[3.1]": b"inner body",
    "BODY[4]": b"\xc3\xa9\xff8bit\r\n",
    "BODY[5]": b"AP8=",
    "BINARY[4]": b"\xc3\xa9\xff8bit\r\n",
    "BINARY[5]": b"\x00\xff",
    # The sections beside a part are as they were: its MIME header, a message's header.
    "BODY[2.MIME]": b'Content-Type: multipart/alternative; boundary="b2"\r\n\r\n',
    "BODY[3.HEADER]": b"From: Cy <cy@c.example>\r\nSubject: inner\r\n\r\n",
    # The message as a whole is the bytes it was received as.
    "BODY[]": NESTED,
    "BODY[TEXT]": NESTED.partition(b"\r\n\r\n")[2],
}
BINARY_SIZES = b"BINARY.SIZE[1] 2 BINARY.SIZE[4] 9 BINARY.SIZE[5] 2"


def peeked(c, section: str, n: int = 1) -> bytes:
    """The bytes of `section` of message `n` in the selected folder, \\Seen left as it is."""
    typ, data = c.fetch(str(n), f"({section.replace('[', '.PEEK[', 1)})")
    # data[-2]: the literal, (the line up to it, its bytes); data[-1] the line after it.
    assert typ == "OK", (section, data)
    return data[-2][1]


def assert_answers(c, sections: dict[str, bytes], sizes: bytes) -> None:
    """Message 1 in the selected folder answers each of `sections` with its bytes, and
    its BINARY.SIZEs with `sizes` (as "BINARY.SIZE[1] 0 ...")."""
    for section, expected in sections.items():
        assert peeked(c, section) == expected, section
    items = " ".join(sizes.decode().split()[::2])
    typ, data = c.fetch("1", f"({items})")
    assert typ == "OK" and data[-1] == b"1 (%s)" % sizes, data


def test_a_part_ends_before_the_crlf_of_the_next_boundary(inbox):
    _, uid = appenduid(inbox.append("INBOX", None, None, NESTED))
    assert_answers(inbox, SECTIONS, BINARY_SIZES)
    # Sizes and lines are those of the parts, as Dovecot counts them.
    text = b'("text" "plain" NIL NIL NIL "7BIT" %d 0 NIL NIL NIL NIL)'
    octets = b'("application" "octet-stream" NIL NIL NIL "%s" %d NIL NIL NIL NIL)'
    typ, data = inbox.uid("FETCH", str(uid), "(BODYSTRUCTURE)")
    assert typ == "OK" and data[-1] == (
        b"1 (BODYSTRUCTURE ("
        b'("text" "plain" ("charset" "utf-8") NIL NIL "7BIT" 2 0 NIL NIL NIL NIL)'
        b'(("text" "plain" NIL NIL NIL "7BIT" 7 0 NIL NIL NIL NIL)'
        b'("text" "html" NIL NIL NIL "7BIT" 10 0 NIL NIL NIL NIL)'
        b' "alternative" ("boundary" "b2") NIL NIL NIL)'
        b'("message" "rfc822" NIL NIL NIL "7BIT" 53 (NIL "inner" %s %s %s NIL NIL NIL NIL NIL)'
        b" %s 3 NIL NIL NIL NIL)%s%s"
        b' "mixed" ("boundary" "b1") NIL NIL NIL) UID 1)'
        % (CY, CY, CY, text % 10, octets % (b"8bit", 9), octets % (b"base64", 4))
    ), data


# Parts and messages with nothing in them: a header and its blank line then the next
# delimiter line, a header of no blank line, no header either, message/rfc822 parts whose
# message has a header only (with and without its blank line) or nothing at all, and a
# header of no blank line naming a type.
EMPTY = (
    MIXED + b"Content-Type: text/plain\r\n"
    b"\r\n"
    b"--b1\r\n"
    b"Content-Type: text/plain\r\n"
    b"--b1\r\n"
    b"--b1\r\n"
    b"Content-Type: message/rfc822\r\n"
    b"\r\n"
    b"From: Cy <cy@c.example>\r\n"
    b"Subject: inner\r\n"
    b"\r\n"
    b"--b1\r\n"
    b"Content-Type: message/rfc822\r\n"
    b"\r\n"
    b"Subject: nobl\r\n"
    b"--b1\r\n"
    b"Content-Type: message/rfc822\r\n"
    b"\r\n"
    b"--b1\r\n"
    b"Content-Type: application/pdf\r\n"
    b"--b1\r\n"
    b"Content-Type: text/plain\r\n"
    b"\r\n"
    b"hi\r\n"
    b"--b1--\r\n"
)
# Each section of EMPTY and its bytes, as Dovecot answers them. pymap gave each empty
# header or body the whole message but its last octet. The CRLF before a delimiter line
# is the delimiter's, a header's blank line's too; but Dovecot's message/rfc822 part
# whose message has no body keeps it (BODY[4], BODY[5]), where its message's header
# does not.
EMPTY_SECTIONS = {
    "BODY[1]": b"",
    "BODY[1.MIME]": b"Content-Type: text/plain\r\n",
    "BINARY[1]": b"",
    "BODY[2]": b"",
    "BODY[2.MIME]": b"Content-Type: text/plain",
    "BODY[3]": b"",
    "BODY[3.MIME]": b"",
    "BODY[4]": b"From: Cy <cy@c.example>\r\nSubject: inner\r\n\r\n",
    "BODY[4.HEADER]": b"From: Cy <cy@c.example>\r\nSubject: inner\r\n",
    "BODY[4.TEXT]": b"",
    "BODY[4.1]": b"",
    "BODY[5]": b"Subject: nobl\r\n",
    "BODY[5.HEADER]": b"Subject: nobl",
    "BODY[5.TEXT]": b"",
    "BODY[6]": b"",
    "BODY[6.MIME]": b"Content-Type: message/rfc822\r\n",
    "BODY[6.HEADER]": b"",
    "BODY[6.TEXT]": b"",
    "BODY[7]": b"",
    "BODY[7.MIME]": b"Content-Type: application/pdf",
    "BODY[8]": b"hi",
    "BODY[]": EMPTY,
    "BODY[TEXT]": EMPTY.partition(b"\r\n\r\n")[2],
}
EMPTY_BINARY_SIZES = b"BINARY.SIZE[1] 0 BINARY.SIZE[2] 0 BINARY.SIZE[3] 0 BINARY.SIZE[7] 0"
EMPTY_TEXT = b'("text" "plain" NIL NIL NIL "7BIT" 0 0 NIL NIL NIL NIL)'
NOTHING = b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)"
# Its BODYSTRUCTURE: Dovecot's, but for the defaults pymap leaves out (a text part's
# charset) and the case of "7BIT".
EMPTY_STRUCTURE = b"".join(
    (
        b"(",
        EMPTY_TEXT * 3,
        b'("message" "rfc822" NIL NIL NIL "7BIT" 43 (NIL "inner" %s %s %s NIL NIL NIL NIL NIL)'
        b" %s 3 NIL NIL NIL NIL)" % (CY, CY, CY, EMPTY_TEXT),
        b'("message" "rfc822" NIL NIL NIL "7BIT" 15 (NIL "nobl" NIL NIL NIL NIL NIL NIL NIL NIL)'
        b" %s 1 NIL NIL NIL NIL)" % EMPTY_TEXT,
        b'("message" "rfc822" NIL NIL NIL "7BIT" 0 %s %s 0 NIL NIL NIL NIL)'
        % (NOTHING, EMPTY_TEXT),
        b'("application" "pdf" NIL NIL NIL "7BIT" 0 NIL NIL NIL NIL)',
        b'("text" "plain" NIL NIL NIL "7BIT" 2 0 NIL NIL NIL NIL)',
        b' "mixed" ("boundary" "b1") NIL NIL NIL)',
    )
)
# A message of a header only, with and without its blank line, and with no CRLF at all:
# pymap's BODY[] of the first lost its last octet ("Subject: x\r"), the last was all
# body, no header.
HEADER_ONLY = (b"Subject: x\r\n", b"Subject: y\r\n\r\n", b"Subject: z")
HEADER_ONLY_SECTIONS = ("BODY[]", "BODY[HEADER]", "BODY[TEXT]")


def test_an_empty_part_header_or_body_is_empty(inbox):
    _, uid = appenduid(inbox.append("INBOX", None, None, EMPTY))
    assert_answers(inbox, EMPTY_SECTIONS, EMPTY_BINARY_SIZES)
    typ, data = inbox.uid("FETCH", str(uid), "(BODYSTRUCTURE)")
    assert typ == "OK" and data[-1] == b"1 (BODYSTRUCTURE %s UID 1)" % EMPTY_STRUCTURE, data


def test_a_message_of_a_header_only_is_its_bytes(inbox):
    for raw in HEADER_ONLY:
        inbox.append("INBOX", None, None, raw)
    for n, raw in enumerate(HEADER_ONLY, 1):
        sections = [peeked(inbox, s, n) for s in HEADER_ONLY_SECTIONS]
        assert sections == [raw, raw, b""], raw
        typ, data = inbox.fetch(str(n), "(BODYSTRUCTURE)")
        assert typ == "OK" and data == [
            b'%d (BODYSTRUCTURE ("text" "plain" NIL NIL NIL "7BIT" 0 0 NIL NIL NIL NIL))' % n
        ], data


@pytest.fixture
def dovecot():
    """Debian's Dovecot, started on loopback by `dovecot.start(folders)`."""
    require_programs({"dovecot": "dovecot-imapd"})
    started: list[Dovecot] = []

    def start(folders):
        started.append(Dovecot(folders))
        started[-1].start()
        c = started[-1].client()
        assert c.select("INBOX")[0] == "OK"
        return c

    yield start
    for server in started:
        server.stop()


@pytest.mark.parametrize(
    ("raw", "sections", "sizes"),
    [(NESTED, SECTIONS, BINARY_SIZES), (EMPTY, EMPTY_SECTIONS, EMPTY_BINARY_SIZES)],
)
def test_the_sections_are_dovecots(dovecot, raw, sections, sizes):
    # The bytes test_a_part_ends_before_the_crlf_of_the_next_boundary and
    # test_an_empty_part_header_or_body_is_empty ask of the receiver are those Debian's
    # Dovecot answers for the same messages.
    c = dovecot({"INBOX": [raw]})
    assert_answers(c, sections, sizes)
    c.logout()


def test_the_empty_parts_structure_and_header_only_messages_are_dovecots(dovecot):
    c = dovecot({"INBOX": [EMPTY, *HEADER_ONLY]})
    typ, data = c.fetch("1", "(BODYSTRUCTURE)")
    defaults = data[0].replace(b' ("charset" "us-ascii")', b" NIL").replace(b'"7bit"', b'"7BIT"')
    assert typ == "OK" and defaults == b"1 (BODYSTRUCTURE %s)" % EMPTY_STRUCTURE, data
    for n, raw in enumerate(HEADER_ONLY, 2):
        assert [peeked(c, s, n) for s in HEADER_ONLY_SECTIONS] == [raw, raw, b""], raw
    c.logout()
