"""The verdict on one copy: unaltered, unverifiable or altered, with its reasons."""

from __future__ import annotations

from dataclasses import dataclass, field

UNALTERED = "unaltered"
UNVERIFIABLE = "unverifiable"
ALTERED = "altered"


@dataclass
class Verdict:
    kind: str
    reasons: list[str] = field(default_factory=list)
    # JSON-ready evidence: per-signature DKIM results, ARC, alignment, copy path.
    detail: dict = field(default_factory=dict)
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
