"""How deep and how many MIME parts a message has, found with one pass over its lines.

Runs before the real parser so that a message over the budget (Postfix stops at 100
levels; CPython's parser recurses and takes seconds on 100,000 parts) is never handed to
it. Bounded work: one regex per header block, one comparison per boundary candidate line
against at most `max_depth` open boundaries.
"""

from __future__ import annotations

import re

_CONTENT_TYPE = re.compile(rb"(?im)^content-type[ \t]*:([^\n]*(?:\n[ \t][^\n]*)*)")
_BOUNDARY = re.compile(rb'(?i)boundary[ \t]*=[ \t]*(?:"([^"\r\n]*)"|([^\s;"]+))')
_MULTIPART = re.compile(rb"(?i)^\s*multipart/")
_MESSAGE = re.compile(rb"(?i)^\s*message/(rfc822|global)\b")
# Header text kept per part while looking for its Content-Type.
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


def over_budget(raw: bytes, max_depth: int, max_parts: int) -> str | None:
    """Why `raw` must not be parsed (nesting or part count over the limit), or None."""
    stack: list[bytes | None] = []  # open boundaries; None for an embedded message
    parts = 0
    in_header = True
    header = bytearray()
    for line in raw.split(b"\n"):
        if in_header:
            if line.strip(b"\r"):
                if len(header) < _HEADER_CAP:
                    header += line + b"\n"
                continue
            in_header = False
            nested = nested_kind(bytes(header))
            header.clear()
            if nested is not None:
                kind, boundary = nested
                stack.append(b"--" + boundary if kind == "multipart" else None)
                if len(stack) > max_depth:
                    return f"MIME nesting deeper than {max_depth} levels"
                if kind == "message":
                    in_header = True
            continue
        if not line.startswith(b"--") or not stack:
            continue
        text = line.rstrip(b" \t\r")
        for level in range(len(stack) - 1, -1, -1):
            delim = stack[level]
            if delim is None or not text.startswith(delim):
                continue
            rest = text[len(delim):]
            if rest == b"--":
                del stack[level:]
            elif rest == b"":
                del stack[level + 1:]
                parts += 1
                if parts > max_parts:
                    return f"more than {max_parts} MIME parts"
                in_header = True
            else:
                continue
            break
    return None
