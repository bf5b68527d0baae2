"""A message parsed into its parts as pymap parses it, each part of a multipart ending
where RFC 2046 5.1.1 ends it: before the CRLF that precedes the next delimiter line ("The
CRLF preceding the boundary delimiter line is conceptually attached to the boundary").

pymap 0.36 keeps that CRLF in the part, so BODY[1] of a part "hi" was "hi<CRLF>",
BINARY[n] of an 8bit or binary attachment had two bytes more than the file, and
BODYSTRUCTURE's sizes and lines (written from the parts) said so too; Dovecot answers
"hi". The message as a whole is left as it is: BODY[] and BODY[TEXT] are its bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pymap.mime import MessageBody, MessageContent

# pymap's parsed content (MessageContent.json) is a tree of header and body, each with the
# lines it spans as (start, end of text, start of the next line) offsets into the message;
# a range of lines is the bytes from its first's start to its last's next line.
Json = Mapping[str, Any]


def parse(raw: bytes) -> MessageContent:
    """`raw`, parsed by pymap, with no part of a multipart ending in its delimiter's CRLF."""
    content = MessageContent.parse(raw)
    json = content.json
    ends = _part_ends(json, len(raw))
    return _ended(raw, content, json, ends) if ends else content


def _part_ends(json: Json, size: int) -> set[int]:
    """Where the last lines of the nested contents' bodies in `json` start, but for one
    that ends the message of `size` octets. Each such line is followed by a delimiter
    line: pymap ends a part of a multipart at one (or where the multipart ends, which is
    where a part of an enclosing one or the message ends), and a message/rfc822 part's
    message where the part ends."""
    ends: set[int] = set()
    for nested in json["body"]["nested"]:
        lines = nested["body"]["lines"]
        if lines and lines[-1][2] < size:
            ends.add(lines[-1][0])
        ends |= _part_ends(nested, size)
    return ends


def _ended(raw: bytes, content: MessageContent, json: Json, ends: set[int]) -> MessageContent:
    """`content`, parsed from `raw` (its `json`), with each body whose last line starts at
    one of `ends` ending at that line's text; its headers are pymap's, parsed once."""
    body = content.body
    lines = json["body"]["lines"]
    if lines and lines[-1][0] in ends:
        # A body's bytes run from its first line to its last: the lines between are kept.
        start, end, _ = lines[-1]
        lines = [*lines[:-1], (start, end, end)]
    nested = [
        _ended(raw, part, part_json, ends)
        for part, part_json in zip(body.nested, json["body"]["nested"], strict=True)
    ]
    return MessageContent(raw, content.header, MessageBody(raw, lines, body.content_type, nested))
