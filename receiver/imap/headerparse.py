"""Header fields as pymap parses them, read undecoded where the email package cannot
decode them.

pymap parses a field the first time it is asked for it (a part's Content-Type when a
message is loaded, the fields of ENVELOPE and BODYSTRUCTURE), with the email package's
HeaderRegistry. That decodes each encoded-word (RFC 2047) and RFC 2231 parameter value
in the charset it names, and raises UnicodeEncodeError when the text it gets has a lone
surrogate (`=?utf-7?Q?+2AA-?=` is U+D800). Anyone can send such a field, and it cost
every FETCH of the message's content, and the connection with it. Such a field is read
again with its charsets left alone: an encoded-word is its own text, as Dovecot (and
receiver.parse) show it, and an RFC 2231 value its octets, as US-ASCII with the 8-bit
ones escaped as the email package escapes a raw header's.
"""

from __future__ import annotations

import base64
import email.headerregistry
import re
from email.headerregistry import BaseHeader

# Every token the email package may take for an encoded-word: "=?" charset "?" encoding
# "?" text "?=" (it splits the word at "?" into exactly these parts); and a run of them
# with blanks between, which it would drop (RFC 2047 6.2): a run is kept as one word.
_WORD = r"=\?[^?\s]*\?[^?\s]*\?[^?]*\?="
_ENCODED_WORDS = re.compile(rf"{_WORD}(?:[ \t]+{_WORD})*")
# The charset of an RFC 2231 value: ; name*=charset'language'%xx... (name*0*= when the
# value is in pieces; the first holds the charset).
_PARAMETER_CHARSET = re.compile(r"""(;\s*[^\s;=*]+\*(?:0\*)?=[ \t]*"?)[^'";\s]*'""")


def _as_itself(words: re.Match[str]) -> str:
    # An encoded-word that decodes to the text of `words`, so that the field keeps its
    # syntax (a word in a display name or a quoted parameter stays where it is).
    text = words.group().encode("utf-8", "surrogateescape")
    return "=?utf-8?b?" + base64.b64encode(text).decode("ascii") + "?="


def undecoded(value: str) -> str:
    """`value`, a field's text, with its encoded-words and RFC 2231 values made to
    decode to their own text and octets."""
    return _PARAMETER_CHARSET.sub(r"\1us-ascii'", _ENCODED_WORDS.sub(_as_itself, value))


class HeaderRegistry(email.headerregistry.HeaderRegistry):
    """The email package's registry, reading a field that it cannot decode `undecoded`."""

    def __call__(self, name: str, value: str) -> BaseHeader:
        try:
            return super().__call__(name, value)
        except UnicodeEncodeError:
            return super().__call__(name, undecoded(value))
