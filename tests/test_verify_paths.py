"""Every copy path a subscriber's rule or tool can take, signed with test keys, verified
with keys from the test DNS server: the verdict, the cause and the reason each must get."""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import authres
import authres.arc
import pytest

from receiver import config as configmod
from receiver.mail import read
from receiver.verify import Verifier, dnskeys
from receiver.verify.dkimcheck import SigResult
from tests import mailfixtures as F
from tests.dns_server import SERVFAIL, TIMEOUT, TTL

NOW = dt.datetime.now(dt.UTC)
Y2019 = dt.datetime(2019, 1, 1, tzinfo=dt.UTC)


def verifier(dns, **env) -> Verifier:
    cfg = configmod.load(
        None,
        {"THREADS_RECEIVER_DNS_SERVERS": dns.address, "THREADS_RECEIVER_DNS_TIMEOUT": "0.5", **env},
    )
    return Verifier(cfg)


def run(v: Verifier, raw: bytes, subscriber: str | None = F.SUBSCRIBER, **kw):
    async def go():
        try:
            return await v.verify(read(raw), subscriber=subscriber, received_at=NOW, **kw)
        finally:
            await v.close()

    return asyncio.run(go())


def expired_signature() -> bytes:
    # Signed 2019-01-01, valid a week, first received in March: expired on arrival.
    return F.received("author.example", "Fri, 01 Mar 2019 10:00:00 +0000") + F.sign(
        F.original(), t=Y2019, x=Y2019 + dt.timedelta(days=7)
    )


def historic_within_expiry() -> bytes:
    # x= is long past today, but the message was first received before it.
    return F.received("author.example", "Wed, 02 Jan 2019 10:00:00 +0000") + F.sign(
        F.original(), t=Y2019, x=Y2019 + dt.timedelta(days=7)
    )


CASES = [
    # name, message, verdict, cause, a reason must contain
    (
        "gmail forwarding",
        lambda: F.gmail_forwarding(F.signed()),
        "unaltered",
        None,
        "d=author.example s=s1 verifies",
    ),
    (
        "exchange redirect with SRS",
        lambda: F.exchange_redirect(F.signed()),
        "unaltered",
        None,
        "aligned (strict)",
    ),
    ("sieve redirect", lambda: F.sieve_redirect(F.signed()), "unaltered", None, "verifies"),
    ("inline Fwd:", F.inline_forward, "altered", "forwarded_inline", "forwarded inline"),
    (
        "forward as attachment",
        lambda: F.forward_as_attachment(F.signed()),
        "unaltered",
        None,
        "wrapped copy (forwarded as attachment)",
    ),
    (
        "exchange journal report",
        lambda: F.journal_report(F.signed()),
        "unaltered",
        None,
        "wrapped copy (Exchange journal report)",
    ),
    (
        "list footer",
        lambda: F.list_footer(F.signed()),
        "altered",
        "body_changed",
        "body hash mismatch (d=author.example",
    ),
    (
        "footer past l=",
        lambda: F.sign(F.original(), length=True) + b"--\r\nfooter\r\n",
        "altered",
        "body_appended",
        "appended after the signed body length",
    ),
    (
        "subject tag",
        lambda: F.subject_tag(F.signed()),
        "altered",
        "headers_changed",
        "signature mismatch (d=author.example",
    ),
    (
        "rotated key",
        lambda: F.sign(F.original(), "gone2019"),
        "unverifiable",
        None,
        "body intact, key gone",
    ),
    (
        "revoked key",
        lambda: F.sign(F.original(), "revoked"),
        "unverifiable",
        None,
        "revoked (empty p=)",
    ),
    ("expired signature", expired_signature, "unverifiable", None, "signature expired"),
    ("historic, valid when received", historic_within_expiry, "unaltered", None, "verifies"),
    (
        "two signatures, one failing",
        lambda: F.sign(F.signed(), "wrong"),
        "unaltered",
        None,
        "s=wrong: fail (signature mismatch",
    ),
    (
        "ed25519",
        lambda: F.sign(F.original(), "ed1", key=F.ED_KEY, algorithm=b"ed25519-sha256"),
        "unaltered",
        None,
        "s=ed1 verifies",
    ),
    (
        "RFC 8463 Appendix A",
        lambda: F.RFC8463_MESSAGE,
        "unaltered",
        None,
        "d=football.example.com s=brisbane verifies",
    ),
    ("unsigned", F.original, "unverifiable", None, "no DKIM signature"),
    # RFC 6376 §8.15: an unsigned instance above the signed one is what a reader sees.
    *[
        (
            f"unsigned {name} on top",
            lambda f=field: F.prepended(F.signed(), f),
            "altered",
            "headers_added",
            (f"header added: 2 {name}: fields, the signature d=author.example s=s1 covers 1"),
        )
        for name, field in [
            ("Subject", b"Subject: Urgent: new bank details"),
            ("From", b"From: Ann Author <ann@attacker.example>"),
            ("Date", b"Date: Mon, 07 Oct 2024 10:00:00 +0000"),
            ("Message-ID", b"Message-ID: <forged@attacker.example>"),
            ("To", b"To: Bob <bob@corp.example>"),
            ("Content-Type", b"Content-Type: text/html"),
        ]
    ],
    ("oversigned", F.oversigned, "unaltered", None, "d=author.example s=s1 verifies"),
    # The oversigned slot now selects the added Subject: the signature breaks.
    (
        "oversigned, subject added",
        lambda: F.prepended(F.oversigned(), b"Subject: x"),
        "altered",
        "headers_changed",
        "signature mismatch (d=author.example",
    ),
    (
        "malformed signature",
        lambda: b"DKIM-Signature: v=1; a=rsa-sha256; d=author.example; s=s1\r\n" + F.original(),
        "unverifiable",
        None,
        "malformed signature: missing b'b'=",
    ),
    (
        "only the forwarder signs",
        lambda: F.sign(F.original(), "list", "lists.example", F.OTHER_KEY),
        "unverifiable",
        None,
        "no signature from the author's domain author.example",
    ),
]


@pytest.mark.parametrize("name,make,kind,cause,reason", CASES, ids=[c[0] for c in CASES])
def test_copy_path_verdict(dns, name, make, kind, cause, reason):
    v = run(verifier(dns), make())
    assert v.kind == kind, v.reasons
    assert v.cause == cause
    assert any(reason in r for r in v.reasons), v.reasons
    # The recorded Authentication-Results value is valid RFC 8601: it parses back, one
    # dkim result per signature (or dkim=none).
    parsed = authres.FeatureContext(authres.arc).parse_value(v.auth_results)
    assert parsed.authserv_id == "localhost"
    dkim_results = [r.result for r in parsed.results if r.method == "dkim"]
    assert dkim_results == ([s["result"] for s in v.detail["dkim"]] or ["none"])


def test_instances_counted_against_h_oversigning_and_trace_fields():
    sig = SigResult(0, headers=["from", "subject", "subject", "received", "to"])
    sig.count_instances(["received", "received", "subject", "from", "to", "to", "date"])
    # Subject oversigned, Received prepended by each hop: neither counts; the second To does.
    assert sig.unsigned_instances == {"to": [2, 1]}
    assert sig.covered() == ["from", "subject", "to"]


def test_wrapped_copy_is_unwrapped_to_the_exact_original(dns):
    inner = F.signed()
    for wrapped in (F.forward_as_attachment(inner), F.journal_report(inner)):
        v = run(verifier(dns), wrapped)
        assert v.inner == inner
        assert v.detail["wrapper"]["path"]["kind"] == "wrapped"


def test_unwrap_off_keeps_the_wrapper_unverifiable(dns):
    v = run(
        verifier(dns, THREADS_RECEIVER_POLICY_UNWRAP="false"), F.forward_as_attachment(F.signed())
    )
    assert (v.kind, v.inner) == ("unverifiable", None)
    assert "unwrapping is off" in v.reasons[0]


def test_per_signature_detail_tells_missing_key_from_bad_signature(dns):
    raw = F.sign(F.sign(F.signed(), "wrong"), "gone2019")
    v = run(verifier(dns), raw)
    by_selector = {s["s"]: s for s in v.detail["dkim"]}
    assert by_selector["gone2019"]["key"] == "missing"
    assert by_selector["gone2019"]["result"] == "permerror"
    assert by_selector["gone2019"]["body"] == "intact"
    assert by_selector["wrong"]["key"] == "found"
    assert by_selector["wrong"]["header_signature"] == "invalid"
    assert by_selector["wrong"]["result"] == "fail"
    assert by_selector["s1"] | {"result": "pass", "key_bits": 2048} == by_selector["s1"]
    assert by_selector["s1"]["headers"][:5] == ["from", "to", "subject", "date", "message-id"]
    assert "dkim=permerror" in v.auth_results and "dkim=fail" in v.auth_results


def test_gmail_forwarding_records_the_arc_chain(dns):
    v = run(verifier(dns), F.gmail_forwarding(F.signed()))
    arc = v.detail["arc"]
    assert (arc["cv"], arc["sets"], arc["sealers"]) == ("pass", 1, ["forwarder.example"])
    assert arc["first_hop_dkim_pass"] == ["author.example"]
    assert "arc=pass" in v.auth_results
    assert v.detail["path"]["how"] == ["Gmail forwarding"]


def test_arc_evidence_counts_for_mail_whose_key_is_gone(dns):
    raw = F.gmail_forwarding(F.sign(F.original(), "gone2019"))
    v = run(verifier(dns), raw)
    assert v.kind == "unverifiable"
    assert any(
        r.startswith("ARC evidence: forwarder.example saw dkim=pass for author.example")
        for r in v.reasons
    ), v.reasons


def test_exchange_redirect_path_signs(dns):
    v = run(verifier(dns), F.exchange_redirect(F.signed()))
    assert v.detail["path"] == {
        "kind": "copied",
        "wrapper": None,
        "how": ["Exchange inbox rule", "SRS envelope sender"],
    }
    assert [a["relaxed"] for a in v.detail["alignment"]] == [False, True]


@pytest.mark.parametrize("failure", [SERVFAIL, TIMEOUT], ids=["servfail", "timeout"])
def test_dns_failure_is_unverifiable_with_temperror(dns, failure):
    dns.records["s1._domainkey.author.example"] = failure
    v = run(verifier(dns), F.signed())
    assert (v.kind, v.temperror) == ("unverifiable", True)
    assert v.detail["dkim"][0]["result"] == "temperror"


def test_keys_are_cached_and_one_data_is_verified_once(dns):
    v = verifier(dns)
    raw = F.signed()

    async def go():
        first = await asyncio.gather(
            *(
                v.verify(read(raw), subscriber=f"u{i}@corp.example", received_at=NOW)
                for i in range(5)
            )
        )
        other = await v.verify(
            read(F.sieve_redirect(raw)), subscriber=F.SUBSCRIBER, received_at=NOW
        )
        await v.close()
        return first, other

    first, other = asyncio.run(go())
    assert {x.kind for x in first} | {other.kind} == {"unaltered"}
    assert dns.resolver.queries == ["s1._domainkey.author.example"]


def test_cached_keys_are_all_or_nothing_and_expire(dns, monkeypatch):
    keys = verifier(dns).keys
    name, other = "s1._domainkey.author.example", "nope._domainkey.author.example"
    answers = asyncio.run(keys.fetch([name, other]))
    assert keys.cached([name, other, name]) == answers
    assert keys.cached([]) == {}
    assert keys.cached([name, "unseen._domainkey.author.example"]) is None
    later = time.monotonic() + TTL + 1
    monkeypatch.setattr(dnskeys.time, "monotonic", lambda: later)
    assert keys.cached([name]) is None


def test_inline_forward_needs_the_subscriber_as_author(dns):
    # The same bytes copied from a third party's mailbox are that party's own message.
    v = run(verifier(dns), F.inline_forward(), subscriber="bob@elsewhere.example")
    assert v.kind == "unaltered"


def test_gmail_confirmation_is_recognised(dns):
    v = run(verifier(dns), F.gmail_confirmation("612842311"))
    assert v.confirmation["provider"] == "gmail"
    assert v.confirmation["code"] == "612842311"
    assert v.confirmation["link"].startswith("https://mail-settings.google.com/mail/vf-")


def test_malformed_header_block_is_unverifiable(dns):
    v = run(verifier(dns), b"From me\r\nnot a header\r\n\r\nbody\r\n")
    assert v.kind == "unverifiable"


def test_dns_servers_from_the_config_file(dns, tmp_path):
    path = tmp_path / "receiver.toml"
    path.write_text(f'[dns]\nservers = ["{dns.address}"]\ntimeout = 0.5\n')
    cfg = configmod.load(path, {})
    assert run(Verifier(cfg), F.signed()).kind == "unaltered"
    path.write_text('[dns]\nservers = ["127.0.0.1:fifty-three"]\n')
    with pytest.raises(configmod.ConfigError, match="dns.servers: expected HOST:PORT"):
        configmod.load(path, {})


def test_own_message_carrying_an_eml_is_not_unwrapped(dns):
    raw = F.forward_as_attachment(F.signed()).replace(
        b"Subject: Fwd: Quarterly numbers", b"Subject: the mail I mentioned", 1
    )
    v = run(verifier(dns), raw)
    assert v.inner is None and v.detail["path"]["kind"] == "copied"


def test_a_large_copy_is_verified_like_a_small_one(dns):
    big = F.sign(F.original(body=(b"y" * 76 + b"\r\n") * 5000))
    assert len(big) > 256 * 1024
    assert run(verifier(dns), F.sieve_redirect(big)).kind == "unaltered"
