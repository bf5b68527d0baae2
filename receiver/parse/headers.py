"""Raw header access on bytes, without the email package's rewriting.

Used where the exact octets matter (content hashes, copy-path checks): a field is
(name, raw value bytes with folding kept).
"""

from __future__ import annotations

import re

_FIELD_START = re.compile(rb"^([!-9;-~]+)[ \t]*:", re.M)


def message_split(raw: bytes) -> tuple[int, int]:
    """Where the header block ends and the body starts: at the first empty line (CRLF or
    bare LF). For callers that read a large body in place instead of copying it out."""
    if raw.startswith(b"\r\n"):
        return 0, 2
    if raw.startswith(b"\n"):
        return 0, 1
    crlf = raw.find(b"\r\n\r\n")
    # Only a bare-LF blank line before the CRLF one matters; stopping the search there
    # spares a scan of the whole body.
    lf = raw.find(b"\n\n", 0, len(raw) if crlf == -1 else crlf + 2)
    if crlf == -1 and lf == -1:
        return len(raw), len(raw)
    if lf == -1 or (crlf != -1 and crlf < lf):
        return crlf + 2, crlf + 4
    return lf + 1, lf + 2


def split_message(raw: bytes) -> tuple[bytes, bytes]:
    """Header block and body, split at the first empty line (CRLF or bare LF)."""
    block_end, body_start = message_split(raw)
    return raw[:block_end], raw[body_start:]


def header_fields(block: bytes) -> list[tuple[str, bytes]]:
    """Fields in order; a continuation line belongs to the field above it."""
    fields: list[tuple[str, bytes]] = []
    for line in block.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t") and fields:
            name, value = fields[-1]
            fields[-1] = (name, value + line)
            continue
        m = _FIELD_START.match(line)
        if m:
            fields.append((m.group(1).decode("ascii"), line[m.end():]))
    return fields


def unfold(value: bytes) -> str:
    """One-line text of a raw value (undecoded encoded-words kept)."""
    text = value.decode("utf-8", errors="replace")
    return re.sub(r"\r?\n[ \t]+", " ", text).strip()


def get_all(fields: list[tuple[str, bytes]], name: str) -> list[str]:
    lname = name.lower()
    return [unfold(v) for n, v in fields if n.lower() == lname]


def get_first(fields: list[tuple[str, bytes]], name: str) -> str | None:
    values = get_all(fields, name)
    return values[0] if values else None
