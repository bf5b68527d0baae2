"""Verdict × policy → action and the reply a sender's admin reads (pure)."""

from __future__ import annotations

from hypothesis import given, strategies as st

from receiver.policy import ACCEPT, QUARANTINE, REJECT, REPLIES, TEMPFAIL, Decision, Policy, decide
from receiver.verify.verdict import ALTERED, UNALTERED, UNVERIFIABLE, Verdict


def test_forwarded_inline_rejection_tells_the_admin_to_redirect():
    d = decide(
        Verdict(ALTERED, ["forwarded inline"], cause="forwarded_inline"), Policy(altered=REJECT)
    )
    assert d == Decision(
        REJECT,
        "this copy was forwarded, not redirected: the original headers "
        "were replaced; set the rule to redirect",
        "5.7.1",
    )


def test_every_cause_has_its_own_sentence():
    for cause, sentence in REPLIES.items():
        d = decide(Verdict(ALTERED, ["x"], cause=cause), Policy(altered=REJECT))
        assert (d.action, d.code, d.reason) == (REJECT, "5.7.1", sentence)


def test_altered_defaults_to_quarantine_and_can_be_accepted():
    v = Verdict(ALTERED, ["body changed"], cause="body_changed")
    assert decide(v, Policy()).action == QUARANTINE
    assert decide(v, Policy(altered=ACCEPT)).action == ACCEPT


def test_dns_temperror_never_rejects():
    v = Verdict(UNVERIFIABLE, ["DNS timeout"], temperror=True)
    assert decide(v, Policy()).action == ACCEPT
    d = decide(v, Policy(unverifiable=QUARANTINE))
    assert (d.action, d.code) == (TEMPFAIL, "4.4.3")
    assert "try again later" in d.reason


def test_unverifiable_without_dns_failure_is_quarantined_when_asked():
    assert (
        decide(Verdict(UNVERIFIABLE, ["no DKIM signature"]), Policy(unverifiable=QUARANTINE)).action
        == QUARANTINE
    )


@given(
    kind=st.sampled_from([UNALTERED, UNVERIFIABLE, ALTERED]),
    altered=st.sampled_from([REJECT, QUARANTINE, ACCEPT]),
    unverifiable=st.sampled_from([ACCEPT, QUARANTINE]),
    temperror=st.booleans(),
    cause=st.sampled_from([None, *REPLIES]),
)
def test_confirmations_are_always_accepted(kind, altered, unverifiable, temperror, cause):
    v = Verdict(
        kind,
        ["r"],
        temperror=temperror,
        cause=cause,
        confirmation={"provider": "gmail", "code": "1", "link": None},
    )
    assert decide(v, Policy(altered=altered, unverifiable=unverifiable)).action == ACCEPT


@given(
    altered=st.sampled_from([REJECT, QUARANTINE, ACCEPT]),
    unverifiable=st.sampled_from([ACCEPT, QUARANTINE]),
    temperror=st.booleans(),
)
def test_only_altered_copies_are_ever_rejected(altered, unverifiable, temperror):
    for kind in (UNALTERED, UNVERIFIABLE):
        d = decide(Verdict(kind, ["r"], temperror=temperror), Policy(altered, unverifiable))
        assert d.action != REJECT
