"""Bare CR, bare LF and NUL in the header block: what SMTP smuggling and header hiding use.

SMTP lines end in CRLF. A lone LF or CR inside the header block is read by some parsers
as a line end and by others as text, so a sender can hide a header from one reader and
show it to another. We record it as a defect of the delivery and parse a view of the
message in which those bytes are blanks, so nothing hidden reaches the parsed record.
The stored bytes stay exactly as received.
"""

from __future__ import annotations

import re

_BARE_LF = re.compile(rb"(?<!\r)\n")
_BARE_CR = re.compile(rb"\r(?!\n)")


def header_defects(section: bytes) -> tuple[str, ...]:
    """What is wrong with a header block (its blank line included)."""
    defects = []
    if _BARE_LF.search(section):
        defects.append("bare LF in header")
    if _BARE_CR.search(section):
        defects.append("bare CR in header")
    if b"\0" in section:
        defects.append("NUL in header")
    return tuple(defects)


def parse_view(raw: bytes, header_end: int, body_start: int, junk: list[tuple[int, int]]) -> bytes:
    """The bytes the parser sees: `raw` itself, unless its header block has junk lines
    (receiver.mail.fields), mixes line ends or holds a bare CR. Then the junk lines are
    left out (the email package would end the header block at one, or take it for an
    envelope line), every bare CR and every bare LF between two header lines becomes a
    blank (the field after it is hidden from the record, as from any reader that takes
    CRLF for the only line end), and the last line end and the blank line become CRLF,
    so that the email package ends the header block where receiver.mail.block does (and
    the view needs no view of its own). The body is kept as it is."""
    section = raw[:body_start]
    if (
        not junk
        and not _BARE_CR.search(section)
        and (b"\r" not in section or not _BARE_LF.search(section))
    ):
        return raw  # clean, or LF line ends throughout (a file's): read alike by all
    kept, at = [], 0
    for start, stop in junk:
        kept.append(raw[at:start])
        at = stop
    kept.append(raw[at:header_end])
    lines = b"".join(kept)
    eol = b""
    if lines.endswith(b"\n"):  # the last line's own end, as CRLF: the view is clean
        lines, eol = lines[: -2 if lines.endswith(b"\r\n") else -1], b"\r\n"
    blank = b"\r\n" if body_start > header_end else b""
    return _BARE_CR.sub(b" ", _BARE_LF.sub(b" ", lines)) + eol + blank + raw[body_start:]
