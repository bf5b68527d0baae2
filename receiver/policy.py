"""Verdict × the mailbox's policy → accept, quarantine or reject (pure)."""

from __future__ import annotations

from dataclasses import dataclass

from receiver.verify.verdict import ALTERED, UNALTERED, UNVERIFIABLE, Verdict

ACCEPT = "accept"
QUARANTINE = "quarantine"
REJECT = "reject"
TEMPFAIL = "tempfail"


@dataclass(frozen=True)
class Policy:
    altered: str = QUARANTINE  # reject | quarantine | accept
    unverifiable: str = ACCEPT  # accept | quarantine


@dataclass(frozen=True)
class Decision:
    action: str
    # The sentence for the sender's admin on reject / tempfail.
    reason: str = ""


def decide(verdict: Verdict, policy: Policy) -> Decision:
    if verdict.confirmation is not None:
        return Decision(ACCEPT)
    if verdict.kind == UNALTERED:
        return Decision(ACCEPT)
    if verdict.kind == UNVERIFIABLE:
        return Decision(QUARANTINE if policy.unverifiable == QUARANTINE else ACCEPT)
    if verdict.kind == ALTERED:
        if policy.altered == REJECT:
            why = "; ".join(verdict.reasons) or "the copy was altered on its way"
            return Decision(REJECT, f"this copy was altered, not redirected: {why}")
        return Decision(QUARANTINE if policy.altered == QUARANTINE else ACCEPT)
    raise ValueError(f"unknown verdict {verdict.kind!r}")
