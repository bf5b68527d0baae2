"""Large base64 parts measured here and left out of what mail-parser reads.

mail-parser (through the email package) reads a base64 attachment line by line and keeps
it several times over as text: most of the parse's time on ordinary mail with files
attached, and about ten times a 20 MB attachment's size in a parse worker's memory. What
the record keeps of an attachment is its name, type, decoded size and SHA-256, so a part
whose body is plain base64 of at least `threshold` octets is decoded and hashed here,
and mail-parser gets a view of the message in which that body is a short marker (the
part's headers stay, so its name and type come out as before). The record then takes
size and hash from the marker's entry. The stored bytes are never touched.

Only bodies made of nothing but base64 characters and blanks are replaced: they cannot
hold a boundary line, so the view has the same MIME structure as the message.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets

from receiver.mail import RawMail

MARK = b"threads-receiver omitted part "
# mail-parser keeps a part as an attachment (its payload untouched) when it has a name;
# an unnamed one it decodes as body text, where the marker would change its defects.
_NAMED = re.compile(rb"(?i)\b(?:file)?name\*?[ \t]*=")
_BASE64_BODY = re.compile(rb"[A-Za-z0-9+/=\r\n\t ]*")
_CTE_BASE64 = re.compile(rb"(?im)^content-transfer-encoding[ \t]*:[ \t]*base64[ \t]*\r?$")
_ANY_CTE = re.compile(rb"(?im)^content-transfer-encoding[ \t]*:")
_CONTENT_TYPE = re.compile(rb"(?im)^content-type[ \t]*:[ \t]*([!-~]+?)[ \t]*/")


# Base64 text decoded and hashed at a time: a 20 MB body decoded at once was a 20 MB copy
# and 15 MB of data in a parse worker.
_DECODE_SLICE = 1 << 20
_BLANKS = b" \t\r\n"


def confirmed(
    omitted: dict[bytes, tuple[int, str]], texts: list[str], attachments: list[bytes]
) -> bool:
    """Whether the parser saw each slimmed part where slim did: every marker exactly once,
    as an attachment of its own, and no marker (nor its base64) in any text. Otherwise
    the view must not be used."""
    if sorted(a for a in attachments if a in omitted) != sorted(omitted):
        return False
    prefix = next(iter(omitted))[: len(MARK) + 16]  # the mark and this message's nonce
    signs = [prefix.decode(), base64.b64encode(prefix).decode()[:60]]
    return not any(sign in t for t in texts for sign in signs) and not any(
        prefix in a and a not in omitted for a in attachments
    )


def _slimmable(header: bytes, size: int, threshold: int) -> bool:
    if size < threshold or len(_ANY_CTE.findall(header)) != 1 or not _CTE_BASE64.search(header):
        return False
    ctype = _CONTENT_TYPE.search(header)
    return (
        ctype is not None
        and _NAMED.search(header) is not None
        and ctype.group(1).lower() not in (b"text", b"multipart", b"message")
    )


def _measure(raw: bytes, start: int, end: int) -> tuple[int, str]:
    """Size and SHA-256 of what base64.b64decode(raw[start:end]) gives, a slice at a time,
    for a body of base64 characters and blanks; binascii.Error where it raises.

    The decoder skips blanks, and after a multiple of 4 characters without "=" it holds
    nothing over: decoding from there on is decoding afresh. So up to the first "=" the
    body is cut at such points; the rest, padding and all, is decoded in one go.
    """
    view = memoryview(raw)
    h = hashlib.sha256()
    size = 0
    pad = raw.find(b"=", start, end)
    last = end if pad < 0 else pad
    pos = start
    while last - pos > _DECODE_SLICE:
        stop = pos + _DECODE_SLICE
        # (find is a memchr: it spares a counting pass for each blank the slice lacks)
        chars = (
            stop
            - pos
            - sum(raw.count(b, pos, stop) for b in _BLANKS if raw.find(b, pos, stop) >= 0)
        )
        while chars % 4 and stop < last:
            chars += raw[stop] not in _BLANKS
            stop += 1
        if chars % 4:
            break
        data = base64.b64decode(view[pos:stop])
        h.update(data)
        size += len(data)
        pos = stop
    data = base64.b64decode(view[pos:end])
    h.update(data)
    return size + len(data), h.hexdigest()


def slim(mail: RawMail, threshold: int) -> tuple[bytes, dict[bytes, tuple[int, str]]]:
    """The view for mail-parser, and per marker the decoded size and SHA-256 of the body
    it stands for. Without large base64 parts the view is `mail.raw` itself."""
    raw = mail.raw
    pieces: list[bytes | memoryview] = []
    omitted: dict[bytes, tuple[int, str]] = {}
    view = memoryview(raw)
    done = 0
    nonce = secrets.token_hex(8).encode()
    leaves = []
    for part in mail.parts():
        if part.reused:  # a boundary reused inside its own multipart: parsers disagree
            return raw, {}
        if part.kind is None:
            end = part.end
            if end < len(raw):  # the line break in front of a boundary line is not body
                end -= 2 if raw[end - 2 : end] == b"\r\n" else 1
            leaves.append((part.header, part.body, max(part.body, end)))
    for header, start, end in leaves:
        if (
            not _slimmable(header, end - start, threshold)
            or _BASE64_BODY.fullmatch(raw, start, end) is None
        ):
            continue
        try:
            measured = _measure(raw, start, end)
        except binascii.Error:
            continue  # not valid base64: left to mail-parser, which keeps it as text
        marker = MARK + nonce + b" %d" % len(omitted)
        omitted[marker] = measured
        pieces += [view[done:start], base64.b64encode(marker)]
        if end == len(raw):
            pieces.append(b"\r\n")
        done = end
    if not omitted:
        return raw, {}
    pieces.append(view[done:])
    return b"".join(pieces), omitted
