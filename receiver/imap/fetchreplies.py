"""FETCH answers written as the RFCs (and Dovecot) write them where pymap 0.36 does not.

- BINARY.PEEK[1] is answered as BINARY[1]: RFC 3516 4.2's response item has no ".PEEK"
  (pymap drops it from BODY.PEEK only, and echoed "BINARY.PEEK[1]", which a client
  matching its answers to BINARY[1] does not find).
- An ENVELOPE address is written with the header's own bytes: pymap reads a header's
  8-bit bytes as surrogate escapes and wrote each of a name's as "?" (From: Jürgen, in
  raw UTF-8, became "J??rgen", while the Subject beside it came out right). A name,
  mailbox or domain with 8-bit bytes is now a literal of the bytes the header has, as
  Dovecot writes it; this goes for the envelope of a message/rfc822 part in
  BODYSTRUCTURE too.
- ENVELOPE's date is the Date field's own text (RFC 3501 7.4.2's env-date), unfolded, as
  Dovecot writes it: pymap wrote the date it parsed in INTERNALDATE's form, and failed
  the FETCH on a Date it could not parse.
- A BODYSTRUCTURE part's size (body-fld-octets) and, for a text or message/rfc822 part,
  lines (body-fld-lines) are its body's (RFC 3501 7.4.2), as BODY[n] answers it: pymap
  counted the part's own MIME header in, and clients showed an attachment that much
  larger.
- A BODYSTRUCTURE part's Content-Disposition is body-fld-dsp, ("attachment" ("filename"
  "a.pdf")), where pymap wrote the field as one string that no client reads as an
  attachment. Its parameters, and Content-Type's (body-fld-param), are 7-bit: a value
  that is not ASCII once decoded is in RFC 2231's form ("name*" "utf-8''r%C3%A9sum%C3%A9
  .pdf", as Dovecot writes an RFC 2231 value), where pymap wrote 8-bit text that says no
  charset.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from email.headerregistry import AddressHeader, ContentDispositionHeader
from email.utils import encode_rfc2231
from typing import SupportsBytes, cast

from pymap.message import BaseLoadedMessage
from pymap.mime import MessageContent
from pymap.parsing.primitives import List, LiteralString, Nil, String
from pymap.parsing.response.fetch import (
    BodyStructure,
    ContentBodyStructure,
    EnvelopeStructure,
    MessageBodyStructure,
    MultipartBodyStructure,
    TextBodyStructure,
)
from pymap.parsing.specials import FetchAttribute


class BinaryPeek(FetchAttribute):
    """BINARY.PEEK[...]: fetched without setting \\Seen, as pymap does, and answered as
    BINARY[...]."""

    @property
    def for_response(self) -> FetchAttribute:
        return FetchAttribute(b"BINARY", self.section, self.partial).for_response


def as_answered(attrs: Sequence[FetchAttribute]) -> list[FetchAttribute]:
    """`attrs`, each written in the answer as the RFCs name it."""
    return [
        BinaryPeek(a.value, a.section, a.partial) if a.value == b"BINARY.PEEK" else a for a in attrs
    ]


def header_string(text: str) -> Nil | String:
    """`text`, read from a header (8-bit bytes as surrogate escapes), as the bytes the
    header has: 8-bit ones as a literal (RFC 3501's quoted strings are 7-bit)."""
    raw = text.encode("utf-8", "surrogateescape")
    return String.build(raw) if raw.isascii() else LiteralString(raw)


def body_params(params: Mapping[str, str] | None) -> List | Nil:
    """body-fld-param: `params`, as the email package decodes them, each name and value
    a string; a value that is not ASCII (RFC 2231's, an encoded-word's, a header's raw
    UTF-8) in RFC 2231's form, name* and UTF-8, which says its charset."""
    if not params:
        return Nil()
    strings: list[Nil | String] = []
    for name, value in params.items():
        if value.isascii():
            strings += [String.build(name), String.build(value)]
        else:
            strings += [String.build(name + "*"), String.build(encode_rfc2231(value, "utf-8"))]
    return List(strings)


def body_disposition(field: ContentDispositionHeader | None) -> List | Nil:
    """body-fld-dsp: a Content-Disposition field's type and parameters."""
    if field is None:
        return Nil()
    return List([String.build(field.content_disposition or ""), body_params(field.params)])


class BodyFields(BodyStructure):
    """pymap's body structure `built`, with `params` for its body-fld-param and
    `disposition` for its body-fld-dsp: the third of its fields and the third from the
    end of its extended ones, in every kind of part (RFC 3501 7.4.2)."""

    def __init__(self, built: BodyStructure, params: List | Nil, disposition: List | Nil):
        super().__init__(
            built.maintype,
            built.subtype,
            built.content_type_params,
            built.content_disposition,
            built.content_language,
            built.content_location,
        )
        self.built, self.params, self.disposition = built, params, disposition

    @property
    def _value(self) -> List:
        fields = list(self.built._value.value)
        # A multipart's non-extended fields are its parts and subtype alone.
        if not isinstance(self.built, MultipartBodyStructure):
            fields[2] = self.params
        return List(fields)

    @property
    def extended(self) -> List:
        fields = list(self.built.extended.value)
        fields[2], fields[-3] = self.params, self.disposition
        return List(fields)


def date_field(msg: MessageContent) -> str | None:
    """The text of `msg`'s (first) Date field, unfolded and without the blanks after the
    colon, as read from a header; None if it has none."""
    for name, raw in msg.header.folded:
        if name == b"date":
            value = b"".join(bytes(raw).splitlines()).partition(b":")[2]
            return value.lstrip(b" \t").decode("ascii", "surrogateescape")
    return None


class Envelope(EnvelopeStructure):
    """pymap's ENVELOPE with `date_text` for its date and each address written by
    `header_string`; pymap's own date (a parsed Date field) is left None."""

    date_text: str | None = None

    @property
    def _value(self) -> List:
        _, *fields = cast(List, super()._value).value
        date = Nil() if self.date_text is None else header_string(self.date_text)
        return List([date, *fields])

    def _addresses(
        self,
        headers: Sequence[AddressHeader] | None,
        fallback: Sequence[AddressHeader] | None = None,
    ) -> SupportsBytes:
        # Sender and Reply-To are From's when the message has none (RFC 3501 7.4.2).
        headers = headers or fallback
        if not headers:
            return Nil()
        return List(
            [
                List(
                    [
                        header_string(a.display_name),
                        Nil(),
                        header_string(a.username),
                        header_string(a.domain),
                    ]
                )
                for h in headers
                for a in h.addresses
            ]
        )


class LoadedMessage(BaseLoadedMessage):
    """pymap's loaded message, its envelopes (ENVELOPE, and a message/rfc822 part's in
    BODYSTRUCTURE) an `Envelope`, each part's size its body's and its parameters and
    disposition `BodyFields`'."""

    @classmethod
    def _get_body_structure(cls, msg: MessageContent) -> BodyStructure:
        # pymap builds each part's structure here (a multipart's parts through this
        # method again) with the size of the whole part, header and all.
        struct = super()._get_body_structure(msg)
        if isinstance(struct, ContentBodyStructure):
            struct.size = len(msg.body)
        if isinstance(struct, TextBodyStructure | MessageBodyStructure):
            # A line is one that ends (RFC 5322 2.1), as Dovecot counts them: pymap's
            # own count takes the nothing after a message's last CRLF for one more.
            struct.lines = bytes(msg.body).count(b"\n")
        disposition = body_disposition(msg.header.parsed.content_disposition)
        return BodyFields(struct, body_params(cls._get_params(msg)), disposition)

    @classmethod
    def _get_envelope_structure(cls, msg: MessageContent) -> EnvelopeStructure:
        parsed = msg.header.parsed
        envelope = Envelope(
            None,
            parsed.subject,
            parsed.from_,
            parsed.sender,
            parsed.reply_to,
            parsed.to,
            parsed.cc,
            parsed.bcc,
            parsed.in_reply_to,
            parsed.message_id,
        )
        envelope.date_text = date_field(msg)
        return envelope
