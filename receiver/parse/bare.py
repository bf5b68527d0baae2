"""Bare CR and bare LF in the header block: what SMTP smuggling and header hiding use.

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


def header_block_end(raw: bytes) -> int:
    """Offset just past the header block's last CRLF (the whole message if no blank line)."""
    if raw.startswith(b"\r\n"):
        return 0
    end = raw.find(b"\r\n\r\n")
    return len(raw) if end == -1 else end + 2


def header_defects(raw: bytes) -> list[str]:
    block = raw[:header_block_end(raw)]
    defects = []
    if _BARE_LF.search(block):
        defects.append("bare LF in header")
    if _BARE_CR.search(block):
        defects.append("bare CR in header")
    if b"\0" in block:
        defects.append("NUL in header")
    return defects


def parse_view(raw: bytes) -> bytes:
    """The bytes the parser sees: bare CR/LF in the header block turned into blanks."""
    end = header_block_end(raw)
    block = raw[:end]
    if not (_BARE_LF.search(block) or _BARE_CR.search(block)):
        return raw
    return _BARE_CR.sub(b" ", _BARE_LF.sub(b" ", block)) + raw[end:]
