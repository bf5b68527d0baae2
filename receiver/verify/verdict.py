"""The verdict on one copy: unaltered, unverifiable or altered, with its reasons."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from receiver.verify.evidence import Evidence


class Kind(StrEnum):
    UNALTERED = "unaltered"
    UNVERIFIABLE = "unverifiable"
    ALTERED = "altered"


UNALTERED, UNVERIFIABLE, ALTERED = Kind.UNALTERED, Kind.UNVERIFIABLE, Kind.ALTERED


@dataclass
class Verdict:
    kind: Kind
    reasons: list[str] = field(default_factory=list)
    # What the checks found (typed); None when nothing could be checked.
    evidence: Evidence | None = None
    # RFC 8601 Authentication-Results value, recorded beside (never inside) the bytes.
    auth_results: str | None = None
    # A wrapped copy the policy allows unwrapping: the original message's bytes.
    inner: bytes | None = None
    # A DNS failure made the check incomplete (policy may answer 451 4.4.3).
    temperror: bool = False
    # Gmail/Outlook forwarding confirmation: always accepted, shown in `mailbox show`.
    confirmation: dict | None = None
    # What went wrong, for the policy's reply sentence: forwarded_inline, body_changed,
    # headers_changed, headers_added, body_appended (see receiver.policy.REPLIES).
    cause: str | None = None

    @property
    def detail(self) -> dict:
        """The evidence as stored and shown (JSON-ready)."""
        out = self.evidence.to_json() if self.evidence is not None else {}
        if self.confirmation is not None:
            out["confirmation"] = self.confirmation
        return out
