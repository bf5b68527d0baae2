"""FETCH answers written as the RFCs (and Dovecot) write them where pymap 0.36 does not.

- BINARY.PEEK[1] is answered as BINARY[1]: RFC 3516 4.2's response item has no ".PEEK"
  (pymap drops it from BODY.PEEK only, and echoed "BINARY.PEEK[1]", which a client
  matching its answers to BINARY[1] does not find).
"""

from __future__ import annotations

from collections.abc import Sequence

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
