"""The one MIME walk: the parts of a message, found without reading every line (`parts`),
whether they are too deep or too many to parse (`over_budget`), and the parts of a
multipart message's own body (`top_parts`).

Runs before the real parser so that a message over the budget (Postfix stops at 100
levels; CPython's parser recurses and takes seconds on 100,000 parts) is never handed to
it. Bounded work: one regex per header block, and inside bodies only the lines that
start with "--" are looked at (bytes.find jumps to them), each compared against at most
`max_depth` open boundaries. Nothing is copied but header blocks (a 20 MB attachment
used to become a list of 270,000 line objects, 30 MB in a parse worker).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import NamedTuple

from receiver.mail.block import blank_line

_CONTENT_TYPE = re.compile(rb"(?im)^content-type[ \t]*:([^\n]*(?:\n[ \t][^\n]*)*)")
_BOUNDARY = re.compile(rb'(?i)boundary[ \t]*=[ \t]*(?:"([^"\r\n]*)"|([^\s;"]+))')
_MULTIPART = re.compile(rb"(?i)^\s*multipart/")
_MESSAGE = re.compile(rb"(?i)^\s*message/(rfc822|global)\b")
# Header text kept per part while looking for its Content-Type: the lines up to the one
# that reaches this size.
_HEADER_CAP = 64 * 1024


def nested_kind(header: bytes) -> tuple[str, bytes | None] | None:
    m = _CONTENT_TYPE.search(header)
    if not m:
        return None
    value = m.group(1)
    if _MULTIPART.match(value):
        b = _BOUNDARY.search(value)
        if b:
            return "multipart", b.group(1) if b.group(1) is not None else b.group(2)
        return None
    if _MESSAGE.match(value):
        return "message", None
    return None


Delimiter = tuple[int, int, int, bool]


def next_delimiter(raw: bytes, pos: int, stack: list[bytes | None]) -> Delimiter | None:
    """The first boundary line of an open multipart from `pos`: (line start, line end,
    stack level, closing?), or None. `stack` holds "--" + boundary per open multipart,
    None per embedded message; a line is tried against the innermost level first."""
    if not any(stack):
        return None
    # Boundary lines start with "--": looking for "\n--" visits each line at most once.
    i = pos if raw.startswith(b"--", pos) and (pos == 0 or raw[pos - 1] == 0x0A) else -1
    while True:
        if i < 0:
            i = raw.find(b"\n--", pos)
            if i < 0:
                return None
            i += 1
        end = raw.find(b"\n", i)
        end = len(raw) if end < 0 else end + 1
        text = raw[i:end].rstrip(b" \t\r\n")
        for level in range(len(stack) - 1, -1, -1):
            delim = stack[level]
            if delim is not None and text.startswith(delim):
                rest = text[len(delim) :]
                if rest in (b"", b"--"):
                    return i, end, level, rest == b"--"
        pos, i = end - 1, -1


class Part(NamedTuple):
    """One part of a message as `parts` finds it."""

    header: bytes  # its header block (up to the line that reaches _HEADER_CAP)
    body: int  # where its body starts
    end: int  # where the next boundary line starts (or the message ends)
    kind: str | None  # "multipart", "message" (an embedded one follows at once), None
    depth: int  # multiparts and messages open, this one included
    after_boundary: bool  # it starts after an opening boundary line
    reused: bool  # a multipart whose boundary is open already (parsers disagree there)


def parts(raw: bytes) -> Iterator[Part]:
    """Every part of `raw` in order, found with the searches the module docstring names.
    The caller stops when it has seen enough: the walk is lazy."""
    stack: list[bytes | None] = []  # open boundaries; None for an embedded message
    pos = 0  # where the header block of the next part starts
    after_boundary = False
    while True:
        blank = blank_line(raw, pos)
        if blank is None:  # headers to the end: no body, nothing more opens
            yield Part(raw[pos:], len(raw), len(raw), None, len(stack), after_boundary, False)
            return
        header_end = blank[0]
        cut = raw.find(b"\n", pos + _HEADER_CAP - 1, header_end)
        header = raw[pos : header_end if cut < 0 else cut + 1]
        nested = nested_kind(header)
        pos = blank[1]
        kind, reused = None, False
        if nested is not None:
            kind, boundary = nested
            delim = b"--" + boundary if boundary is not None else None
            reused = delim is not None and delim in stack
            stack.append(delim)
        if kind == "message":  # its header block follows at once
            yield Part(header, pos, pos, kind, len(stack), after_boundary, False)
            after_boundary = False
            continue
        found = next_delimiter(raw, pos, stack)
        yield Part(
            header,
            pos,
            len(raw) if found is None else found[0],
            kind,
            len(stack),
            after_boundary,
            reused,
        )
        while found is not None and found[3]:  # closing lines, then epilogues
            del stack[found[2] :]
            found = next_delimiter(raw, found[1], stack)
        if found is None:
            return
        del stack[found[2] + 1 :]
        pos, after_boundary = found[1], True


def over_budget(raw: bytes, max_depth: int, max_parts: int) -> str | None:
    """Why `raw` must not be parsed (nesting or part count over the limit), or None."""
    count = 0
    for part in parts(raw):
        # The boundary line that opened the part counts before its header block is read.
        count += part.after_boundary
        if count > max_parts:
            return f"more than {max_parts} MIME parts"
        if part.depth > max_depth:
            return f"MIME nesting deeper than {max_depth} levels"
    return None


def top_parts(raw: bytes, header: bytes, body_start: int) -> list[tuple[int, int]]:
    """Where each part of a multipart message's own body lies in `raw` ([] when the
    message, whose header block is `header`, is not multipart). Boundary lines are the
    walk's; the line break before one belongs to it, not to the part. A part that no
    boundary line ends is left out."""
    nested = nested_kind(header)
    if nested is None or nested[0] != "multipart" or nested[1] is None:
        return []
    stack: list[bytes | None] = [b"--" + nested[1]]
    spans = []
    found = next_delimiter(raw, body_start, stack)
    while found is not None and not found[3]:
        start = found[1]
        found = next_delimiter(raw, start, stack)
        if found is None:
            break
        end = found[0] - (2 if raw[found[0] - 2 : found[0]] == b"\r\n" else 1)
        spans.append((start, max(start, end)))
    return spans
