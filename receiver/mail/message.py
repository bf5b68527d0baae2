"""A message read once: where its header block ends, its fields, its defects; the rest
(the parser's view, the MIME walk) computed when asked for.

Nothing is copied but the header block's field values: the body stays in `raw` and is
read in place by offset.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property

from receiver.mail import mime
from receiver.mail.block import header_span
from receiver.mail.defects import header_defects, parse_view
from receiver.mail.fields import Field, get_all, get_first, read_fields


@dataclass(frozen=True, eq=False)
class RawMail:
    raw: bytes
    header_end: int  # raw[:header_end] is the header block, its last line end included
    body_start: int  # past the blank line; raw[body_start:] is the body
    fields: tuple[Field, ...]
    defects: tuple[str, ...]  # bare CR, bare LF, NUL in the header block
    junk: tuple[tuple[int, int], ...]  # header lines that are neither field nor continuation

    @property
    def header(self) -> bytes:
        return self.raw[: self.header_end]

    def body(self) -> bytes:
        """A copy of the body: for the callers that need one (it may be 50 MB)."""
        return self.raw[self.body_start :]

    def get_all(self, name: str) -> list[str]:
        return get_all(self.fields, name)

    def get_first(self, name: str) -> str | None:
        return get_first(self.fields, name)

    @cached_property
    def for_parser(self) -> RawMail:
        """The message as mail-parser is to read it (receiver.mail.defects.parse_view):
        this one, unless its header block has junk lines, mixes line ends or holds a
        bare CR."""
        view = parse_view(self.raw, self.header_end, self.body_start, list(self.junk))
        return self if view is self.raw else read(view)

    @cached_property
    def plain_blank_line(self) -> bytes:
        """`raw` with the blank line after the header block written as a CRLF, for a
        library that splits the whole message itself (dkimpy's ARC check): it then ends
        the header block where this reader does. `raw` itself when it already does."""
        if self.raw[self.header_end : self.body_start] in (b"\r\n", b"\n", b""):
            return self.raw
        return self.raw[: self.header_end] + b"\r\n" + self.raw[self.body_start :]

    def parts(self) -> Iterator[mime.Part]:
        """Every MIME part, lazily (receiver.mail.mime.parts)."""
        return mime.parts(self.raw)

    def over_budget(self, max_depth: int, max_parts: int) -> str | None:
        return mime.over_budget(self.raw, max_depth, max_parts)

    def top_parts(self) -> list[RawMail]:
        """Each part of a multipart message's own body, read ([] when not multipart)."""
        return [
            read(self.raw[start:end])
            for start, end in mime.top_parts(self.raw, self.header, self.body_start)
        ]


def read(raw: bytes) -> RawMail:
    """Read the header block of `raw` (the body is not looked at)."""
    header_end, body_start = header_span(raw)
    block = read_fields(raw, header_end)
    return RawMail(
        raw,
        header_end,
        body_start,
        tuple(block.fields),
        header_defects(raw[:body_start]),
        tuple(block.junk),
    )
