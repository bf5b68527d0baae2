"""From the evidence (copy path, DKIM results, ARC, alignment) to one verdict (pure).

unaltered    an aligned passing signature covers From, Date, Message-ID and Subject,
             and no l= leaves appended text unsigned
altered      forwarded inline; a body hash mismatch; a failing signature whose key is
             there (named when it failed on more instances of a signed header than
             it covers: an unsigned Subject: above the signed one); text appended
             past l=
unverifiable the rest: no signature, key gone, expired, DNS failure, only the
             forwarder's domain signs, ARC evidence alone
"""

from __future__ import annotations

from receiver.verify.alignment import aligned
from receiver.verify.arccheck import ArcResult
from receiver.verify.copypath import FORWARDED, CopyPath
from receiver.verify.dkimcheck import FAIL, PASS, TEMPERROR_RESULT, SigResult
from receiver.verify.verdict import ALTERED, UNALTERED, UNVERIFIABLE, Verdict


def _sig_name(s: SigResult) -> str:
    return f"d={s.d} s={s.s}"


def _display_name(header: str) -> str:
    return (
        "Message-ID"
        if header == "message-id"
        else "-".join(w.capitalize() for w in header.split("-"))
    )


def _added_headers(s: SigResult) -> list[str]:
    """One reason per header with unsigned instances (RFC 6376 §8.15, §5.4.2)."""
    return [
        f"header added: {present} {_display_name(h)}: fields, the signature "
        f"{_sig_name(s)} covers {signed} (the one above is unsigned, and a reader shows it)"
        for h, (present, signed) in s.unsigned_instances.items()
    ]


def _arc_evidence(arc: ArcResult, from_domain: str | None) -> str | None:
    if arc.cv != "pass":
        return None
    seen = [d for d in arc.first_hop_dkim_pass if aligned(d, from_domain)]
    if not seen:
        return None
    sealer = arc.sealers[0] if arc.sealers else "the first hop"
    return (
        f"ARC evidence: {sealer} saw dkim=pass for {', '.join(seen)} on arrival "
        f"(chain of {arc.sets} set(s) intact)"
    )


def judge(
    path: CopyPath, sigs: list[SigResult], arc: ArcResult, from_domain: str | None
) -> Verdict:
    detail_notes = [f"{_sig_name(s)}: {s.result} ({s.reason})" for s in sigs]

    if path.kind == FORWARDED:
        return Verdict(
            ALTERED,
            [
                "forwarded inline, not redirected: the original headers "
                "were replaced by the subscriber's",
                *detail_notes,
            ],
            cause="forwarded_inline",
        )

    own = [s for s in sigs if aligned(s.d, from_domain)]
    for s in own:
        if s.result != PASS:
            continue
        if s.appended_bytes():
            return Verdict(
                ALTERED,
                [
                    f"{s.appended_bytes()} bytes were appended after the "
                    f"signed body length l={s.length} ({_sig_name(s)})",
                    *detail_notes,
                ],
                cause="body_appended",
            )
    good = [s for s in own if s.result == PASS and not s.missing_headers()]
    if good:
        s = good[0]
        strict = "strict" if aligned(s.d, from_domain, strict=True) else "relaxed"
        return Verdict(
            UNALTERED,
            [
                f"DKIM signature {_sig_name(s)} verifies, aligned "
                f"({strict}) with the From domain {from_domain}",
                *[n for n, x in zip(detail_notes, sigs) if x is not s],
            ],
        )

    changed = [s for s in sigs if s.body == "changed"]
    if changed:
        s = next((x for x in changed if x in own), changed[0])
        return Verdict(
            ALTERED,
            [f"body changed: body hash mismatch ({_sig_name(s)})", *detail_notes],
            cause="body_changed",
        )
    broken = [s for s in sigs if s.result == FAIL and s.header_signature == "invalid"]
    if broken:
        s = next((x for x in broken if x in own), broken[0])
        if s.unsigned_instances:
            return Verdict(ALTERED, [*_added_headers(s), *detail_notes], cause="headers_added")
        return Verdict(
            ALTERED,
            [f"headers changed: signature mismatch ({_sig_name(s)})", *detail_notes],
            cause="headers_changed",
        )

    reasons: list[str] = []
    passing_own = [s for s in own if s.result == PASS]
    if passing_own:
        s = passing_own[0]
        reasons.append(
            f"the signature {_sig_name(s)} verifies but does not cover "
            f"{', '.join(s.missing_headers())}"
        )
    elif not sigs:
        reasons.append("no DKIM signature")
    elif not own:
        domains = ", ".join(sorted({s.d for s in sigs}))
        reasons.append(
            f"no signature from the author's domain {from_domain or '(none)'}: "
            f"d={domains} proves only that it sent the copy"
        )
    for s in own:
        if s.result == PASS:
            continue
        if s.body == "intact" and s.key in ("missing", "revoked"):
            reasons.append(f"body intact, key gone ({_sig_name(s)}): {s.reason}")
        else:
            reasons.append(f"{_sig_name(s)}: {s.reason}")
    evidence = _arc_evidence(arc, from_domain)
    if evidence:
        reasons.append(evidence)
    reasons += [n for n, s in zip(detail_notes, sigs) if s not in own]
    temperror = any(s.result == TEMPERROR_RESULT for s in sigs)
    return Verdict(UNVERIFIABLE, reasons, temperror=temperror)
