"""The one rule for where a header block ends (the message's own, and each MIME part's).

A line ends at LF (a CR before it is part of the line end). The header block ends at
the first line that holds nothing but CRs: an empty line, a CRLF, or CRs before the LF
(the email package reads a lone CR as a line end, so to it that line is empty too; a
line of CRs can only be a blank line). The message's end after a complete line ends it
as well; a message without either is all header.

A bare LF ends a line here, as it does for dkimpy and for mail read from files; a bare
CR does not. Both are recorded as defects (receiver.mail.defects).
"""

from __future__ import annotations

import re

_BLANK_AT_START = re.compile(rb"\r*(?:\n|\Z)")
_LATER_BLANK = re.compile(rb"\n\r*(?:\n|\Z)")


def blank_line(raw: bytes, pos: int = 0) -> tuple[int, int] | None:
    """Where the line that ends the header block starting at `pos` begins and ends, or
    None when the block runs to the end of `raw` without a complete last line."""
    m = _BLANK_AT_START.match(raw, pos)
    if m is not None:
        return pos, m.end()
    m = _LATER_BLANK.search(raw, pos)
    if m is None:
        return None
    return m.start() + 1, m.end()


def header_span(raw: bytes, pos: int = 0) -> tuple[int, int]:
    """(header end, body start) of the block starting at `pos`: the header block is
    raw[pos:header end] (its last line end included), the body raw[body start:]."""
    blank = blank_line(raw, pos)
    return (len(raw), len(raw)) if blank is None else blank
