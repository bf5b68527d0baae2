"""Verdict × the mailbox's policy → accept, quarantine, reject or tempfail (pure).

A refusal carries its SMTP code and a sentence the sender's admin can act on: what was
done to the copy and what to change in the rule that sends it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from receiver.verify.verdict import ALTERED, UNALTERED, UNVERIFIABLE, Verdict


class Action(StrEnum):
    """What a policy does with a copy; the first three are also what the config names."""

    ACCEPT = "accept"
    QUARANTINE = "quarantine"
    REJECT = "reject"
    TEMPFAIL = "tempfail"


ACCEPT, QUARANTINE, REJECT, TEMPFAIL = (
    Action.ACCEPT,
    Action.QUARANTINE,
    Action.REJECT,
    Action.TEMPFAIL,
)

REJECT_CODE = "5.7.1"
DNS_TEMPFAIL_CODE = "4.4.3"

# Verdict.cause → what happened and what the sender's admin should change.
REPLIES = {
    "forwarded_inline": "this copy was forwarded, not redirected: the original headers were "
    "replaced; set the rule to redirect",
    "body_changed": "the message body was changed on the way (DKIM body hash mismatch): turn "
    "off footers, disclaimers or content rewriting for mail this rule copies",
    "headers_changed": "the signed headers were changed on the way (DKIM signature "
    "mismatch): turn off subject tags or header rewriting for mail this "
    "rule copies",
    "headers_added": "a header field the signature covers was added again, unsigned, above "
    "the signed one: remove the rule or gateway that adds it",
    "body_appended": "text was appended after the signed part of the body (DKIM l=): turn "
    "off footers or disclaimers for mail this rule copies",
}
DNS_TEMPFAIL = (
    "the DKIM key could not be looked up (DNS failure) and this mailbox requires "
    "verified copies: try again later"
)


@dataclass(frozen=True)
class Policy:
    altered: Action = QUARANTINE  # reject | quarantine | accept
    unverifiable: Action = ACCEPT  # accept | quarantine


@dataclass(frozen=True)
class Decision:
    action: Action
    # The sentence for the sender's admin on reject / tempfail.
    reason: str = ""
    # Enhanced status code (RFC 3463) of a reject / tempfail reply.
    code: str = ""


def reject_sentence(verdict: Verdict) -> str:
    if verdict.cause in REPLIES:
        return REPLIES[verdict.cause]
    why = "; ".join(verdict.reasons[:1]) or "the copy was altered on its way"
    return f"this copy was altered, not redirected: {why}"


def decide(verdict: Verdict, policy: Policy) -> Decision:
    if verdict.confirmation is not None:
        return Decision(ACCEPT)
    if verdict.kind == UNALTERED:
        return Decision(ACCEPT)
    if verdict.kind == UNVERIFIABLE:
        if policy.unverifiable != QUARANTINE:
            return Decision(ACCEPT)
        # A DNS failure is no verdict: the sender retries and the key may answer then.
        if verdict.temperror:
            return Decision(TEMPFAIL, DNS_TEMPFAIL, DNS_TEMPFAIL_CODE)
        return Decision(QUARANTINE)
    if verdict.kind == ALTERED:
        if policy.altered == REJECT:
            return Decision(REJECT, reject_sentence(verdict), REJECT_CODE)
        return Decision(QUARANTINE if policy.altered == QUARANTINE else ACCEPT)
    raise ValueError(f"unknown verdict {verdict.kind!r}")
