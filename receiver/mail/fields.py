"""Header fields on the raw bytes, without the email package's rewriting.

Used where the exact octets matter (content hashes, copy-path checks, DKIM's h= list): a
field is its name, its raw value (folding and line ends kept) and where it lies.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import NamedTuple

# A field name is printable ASCII up to the colon, with nothing between: dkimpy and the
# email package take no other line for a field (a blank before the colon included).
_FIELD_START = re.compile(rb"([!-9;-~]+):")


class Field(NamedTuple):
    name: str  # as written
    value: bytes  # after the colon, up to and including the last line end
    start: int  # offset of its first line in the message
    end: int  # offset just past its last line


class Block(NamedTuple):
    fields: list[Field]
    junk: list[tuple[int, int]]  # lines that are neither a field nor a continuation


def read_fields(raw: bytes, end: int, start: int = 0) -> Block:
    """The fields of the header block raw[start:end] in order (lines end at LF). A line
    that starts with a blank continues the field above it. Any other line is junk: one
    that is not a field ends the field above it, and continuations after it (or with no
    field above) are junk too. A first line "From ..." (an mbox envelope line, passed
    over by dkimpy and the email package) is junk that ends nothing."""
    block = Block([], [])
    name, first, value_at = "", -1, -1  # the open field, if first >= 0
    pos = start
    if raw.startswith(b"From ", pos):
        nl = raw.find(b"\n", pos, end)
        pos = end if nl < 0 else nl + 1
        block.junk.append((start, pos))
    while pos < end:
        nl = raw.find(b"\n", pos, end)
        stop = end if nl < 0 else nl + 1
        if raw[pos] in b" \t":
            if first < 0:
                block.junk.append((pos, stop))
            pos = stop
            continue
        if first >= 0:
            block.fields.append(Field(name, raw[value_at:pos], first, pos))
        m = _FIELD_START.match(raw, pos, stop)
        if m:
            name, first, value_at = m.group(1).decode("ascii"), pos, m.end()
        else:
            first = -1
            block.junk.append((pos, stop))
        pos = stop
    if first >= 0:
        block.fields.append(Field(name, raw[value_at:end], first, end))
    return block


def decode_text(value: bytes) -> str:
    """Raw header text as a str, nothing dropped: UTF-8 when it is (RFC 6532), else the
    8-bit text of older mailers, read as cp1252 (Latin-1 with printable characters where
    it has controls), and as Latin-1 when a byte is one cp1252 leaves undefined."""
    for encoding in ("utf-8", "cp1252"):
        try:
            return value.decode(encoding)
        except UnicodeDecodeError:
            pass
    return value.decode("latin-1")


def unfold(value: bytes) -> str:
    """One-line text of a raw value (undecoded encoded-words kept)."""
    text = decode_text(value)
    return re.sub(r"\r?\n[ \t]+", " ", text).strip()


def get_all(fields: Sequence[Field], name: str) -> list[str]:
    lname = name.lower()
    return [unfold(f.value) for f in fields if f.name.lower() == lname]


def get_first(fields: Sequence[Field], name: str) -> str | None:
    values = get_all(fields, name)
    return values[0] if values else None
