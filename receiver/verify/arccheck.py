"""The ARC chain (RFC 8617) of a message and what its first hop saw (pure: keys prefetched).

A valid chain whose first hop recorded dkim=pass for the author's domain is evidence for
historic mail whose own key is gone; it never makes a copy `unaltered` on its own.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

import dkim

from receiver.mail import RawMail, unfold
from receiver.verify.dkimcheck import make_dnsfunc, signature_key_names
from receiver.verify.dnskeys import TEMPERROR, KeyAnswer

log = logging.getLogger(__name__)

ARC_HEADERS = (b"arc-seal", b"arc-message-signature", b"arc-authentication-results")
ARC_SIGNERS = (b"arc-seal", b"arc-message-signature")
_INSTANCE = re.compile(r"^\s*i\s*=\s*(\d+)\s*;", re.I)
_DKIM_PASS = re.compile(r"\bdkim\s*=\s*pass\b([^;]*)", re.I)
_HEADER_D = re.compile(r"\bheader\.(?:d\s*=\s*|i\s*=\s*[^@\s;]*@)([A-Za-z0-9.-]+)", re.I)


@dataclass
class ArcResult:
    cv: str = "none"  # pass | fail | none
    sets: int = 0
    reason: str = ""
    sealers: list[str] = field(default_factory=list)  # d= of each ARC-Seal, i=1 first
    first_hop_results: str | None = None  # ARC-Authentication-Results of i=1
    first_hop_dkim_pass: list[str] = field(default_factory=list)  # domains it saw pass

    def to_json(self) -> dict:
        return {
            **vars(self),
            "sealers": list(self.sealers),
            "first_hop_dkim_pass": list(self.first_hop_dkim_pass),
        }


def first_hop(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name.lower() == b"arc-authentication-results":
            text = unfold(value)
            m = _INSTANCE.match(text)
            if m and m.group(1) == "1":
                return text
    return None


def dkim_pass_domains(results: str) -> list[str]:
    """Domains an Authentication-Results text says passed DKIM."""
    out = []
    for m in _DKIM_PASS.finditer(results):
        d = _HEADER_D.search(m.group(1))
        if d and d.group(1).lower() not in out:
            out.append(d.group(1).lower())
    return out


def check_arc(
    mail: RawMail, headers: list[tuple[bytes, bytes]], keys: dict[str, KeyAnswer]
) -> ArcResult:
    if not any(n.lower() in ARC_HEADERS for n, _ in headers):
        return ArcResult(reason="no ARC sets")
    res = ArcResult()
    try:
        cv, sets, reason = dkim.arc_verify(mail.plain_blank_line, dnsfunc=make_dnsfunc(keys))
    except Exception as e:  # dkimpy raises assorted errors on malformed sets
        log.debug("ARC validation raised %r", e)
        cv, sets, reason = dkim.CV_Fail, [], f"malformed ARC set: {e}"
    res.cv = (cv or dkim.CV_Fail).decode().lower() if isinstance(cv, bytes) else "fail"
    res.reason = reason
    unreachable = sorted(
        {
            n
            for n in signature_key_names(headers, ARC_SIGNERS)
            if keys.get(n) is not None and keys[n].status == TEMPERROR
        }
    )
    if res.cv == "fail" and unreachable:
        res.reason = f"ARC keys not fetched (DNS failure: {', '.join(unreachable)}): {reason}"
    res.sets = max((int(s.get("instance", 0)) for s in sets), default=0) or _count_sets(headers)
    res.sealers = [
        s.get("as-domain", b"").decode("ascii", "replace")
        for s in sorted(sets, key=lambda s: s.get("instance", 0))
    ]
    res.first_hop_results = first_hop(headers)
    if res.first_hop_results:
        res.first_hop_dkim_pass = dkim_pass_domains(res.first_hop_results)
    return res


def _count_sets(headers: list[tuple[bytes, bytes]]) -> int:
    return sum(1 for n, _ in headers if n.lower() == b"arc-seal")
