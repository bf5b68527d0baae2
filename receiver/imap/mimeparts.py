"""A message parsed into its parts as pymap parses it, each part's extent as Dovecot gives
it: a part of a multipart ends before the CRLF that precedes the next delimiter line (RFC
2046 5.1.1: "The CRLF preceding the boundary delimiter line is conceptually attached to
the boundary"), and a header or body that is empty is empty.

pymap 0.36 keeps that CRLF in the part, so BODY[1] of a part "hi" was "hi<CRLF>",
BINARY[n] of an 8bit or binary attachment had two bytes more than the file, and
BODYSTRUCTURE's sizes and lines (written from the parts) said so too; Dovecot answers
"hi". And pymap gives a header or body of no lines the bytes of the whole message but
its last octet: a part with an empty body (its header, then the next delimiter line),
one with no header either, a message/rfc822 part whose message has no body, and a
message of a header only (whose BODY[] lost its last octet).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pymap.mime import MessageBody, MessageContent, MessageHeader

# pymap's parsed content (MessageContent.json) is a tree of header and body, each with the
# lines it spans as (start, end of text, start of the next line) offsets into the message;
# a range of lines is the bytes from its first's start to its last's next line.
Json = Mapping[str, Any]
Line = tuple[int, int, int]


def parse(raw: bytes) -> MessageContent:
    """`raw`, parsed by pymap, each content of it (the message, each part and each
    part's message) spanning the bytes Dovecot gives it."""
    content = MessageContent.parse(raw)
    return _rebuilt(raw, content, content.json)


def _rebuilt(raw: bytes, content: MessageContent, json: Json) -> MessageContent:
    """`content`, parsed from `raw` (its `json`), ending before the CRLF of the delimiter
    line that follows it, if one does, and with no header or body of no lines."""
    header_lines: Sequence[Line] = json["header"]["lines"]
    body_lines: Sequence[Line] = json["body"]["lines"]
    lines = [*header_lines, *body_lines]
    if not lines:
        # A part of nothing (a delimiter line right after another).
        return _empty()
    start, end, after = lines[-1]
    if after < len(raw):
        # pymap ends a content at a delimiter line, or where an enclosing one ends (the
        # message, or a part, at a delimiter line in turn): that line's CRLF is its.
        lines[-1] = (start, end, end)
    end = lines[-1][2]
    nested = [
        _rebuilt(raw, part, part_json)
        for part, part_json in zip(content.body.nested, json["body"]["nested"], strict=True)
    ]
    content_type = content.body.content_type
    if header_lines and body_lines:
        header = content.header
        body = lines[len(header_lines) :]
        if content.is_rfc822 and not len(nested[0].body):
            # Dovecot's size of a message/rfc822 part whose message has no body keeps
            # the delimiter's CRLF (its message's header does not).
            body = list(body_lines)
    elif header_lines:
        # A header, its blank line (whose CRLF may be the delimiter's), no body.
        header = MessageHeader(raw, lines, json["header"]["folded"])
        body = [(end, end, end)]
    else:
        # No blank line: pymap reads the lines as a body of no header, Dovecot as a
        # header of no body. pymap parses a header's fields from all its lines but the
        # last, its blank line; an empty one stands for it.
        header = MessageHeader._parse(raw, memoryview(raw), [*lines, (end, end, end)])
        body = [(end, end, end)]
        content_type = header.parsed.content_type or content_type
        # The body is empty: a message/rfc822 part's message is empty, a multipart has
        # no parts.
        nested = [_empty()] if content_type.content_type == "message/rfc822" else []
    return MessageContent(raw, header, MessageBody(raw, body, content_type, nested))


def _empty() -> MessageContent:
    """A content of no octets: no header, no body."""
    return MessageContent(b"", MessageHeader.empty(), MessageBody.empty())
