"""Every DKIM-Signature of a message, checked one by one (pure: keys come prefetched).

dkimpy's `DKIM.verify()` answers a bare False for a missing key, a revoked key and a
bad signature alike, and refuses an expired signature before looking at anything. Mail
copied years later needs those told apart, so each step is run here on its own, with
dkimpy's own parsing, canonicalization and crypto: the fields, the body hash (computed
even when the key is gone: "body intact, key gone"), the key record, the header
signature. Results are RFC 8601 words with a reason.
"""

from __future__ import annotations

import base64
import functools
import datetime as dt
import re
from dataclasses import dataclass, field

import dkim
from dkim.canonicalization import CanonicalizationPolicy, InvalidCanonicalizationPolicyError
from dkim.crypto import HASH_ALGORITHMS
from dkim.util import InvalidTagValueList, parse_tag_value

from receiver.mail import RawMail
from receiver.verify.dnskeys import EMPTY, FOUND, NXDOMAIN, TEMPERROR, KeyAnswer, key_name

PASS = "pass"
FAIL = "fail"
NEUTRAL = "neutral"
PERMERROR = "permerror"
TEMPERROR_RESULT = "temperror"

# What the signature must cover for the copy to count as the author's unaltered message.
AUTHOR_HEADERS = ("from", "date", "message-id", "subject")
# Trace fields each hop prepends (RFC 5321 §4.4, RFC 8601, RFC 8617): a signature that
# lists one cannot cover the instances added after it, and they are no alteration.
TRACE_HEADERS = frozenset(
    {
        "received",
        "return-path",
        "authentication-results",
        "dkim-signature",
        "arc-seal",
        "arc-message-signature",
        "arc-authentication-results",
    }
)


@dataclass
class SigResult:
    index: int
    d: str = ""
    s: str = ""
    a: str = ""
    i: str | None = None
    headers: list[str] = field(default_factory=list)
    length: int | None = None  # l=, when the signer limited the signed body
    body_length: int | None = None  # the canonical body as received
    key_bits: int | None = None
    expires: str | None = None  # x= as ISO time
    result: str = NEUTRAL
    reason: str = ""
    body: str = "unknown"  # intact | changed | unknown
    header_signature: str = "unknown"  # valid | invalid | unknown
    key: str = "unknown"  # found | missing | revoked | bad | temperror
    # Signed headers present more often than h= lists them: {name: [present, signed]}.
    # DKIM signs the bottom-most instances, so the extra ones (above) are unsigned.
    unsigned_instances: dict[str, list[int]] = field(default_factory=dict)

    @property
    def key_name(self) -> str:
        return key_name(self.s, self.d)

    def missing_headers(self) -> list[str]:
        return [h for h in AUTHOR_HEADERS if h not in self.headers]

    def covered(self) -> list[str]:
        """The names h= lists whose every instance the signature must cover."""
        return [h for h in dict.fromkeys(self.headers) if h not in TRACE_HEADERS]

    def count_instances(self, names: list[str]) -> None:
        """Fill `unsigned_instances` from the lower-cased field names of the message."""
        for name in self.covered():
            present, signed = names.count(name), self.headers.count(name)
            if present > signed:
                self.unsigned_instances[name] = [present, signed]

    def appended_bytes(self) -> int:
        """Body bytes after the signed length l= (e.g. a list footer)."""
        if self.length is None or self.body_length is None:
            return 0
        return max(0, self.body_length - self.length)

    def to_json(self) -> dict:
        return {**vars(self), "headers": list(self.headers)}


SIGNATURE_HEADERS = (b"dkim-signature", b"arc-seal", b"arc-message-signature")


_LINE_END = re.compile(rb"\r?\n")


def parse_header_block(mail: RawMail) -> dkim.DKIM:
    """dkimpy's parse of the header block alone, as the reader ends it.

    `dkim.DKIM(raw)` splits the whole message into lines and joins the body again, holding
    the GIL: a quarter of a second and two more copies for a 20 MB message, while the
    event loop waits. The fields and the key names need only the header block; the body
    is read (`dkim_body`) only for a message that has signatures to check.
    """
    return dkim.DKIM(mail.header)


def dkim_body(mail: RawMail) -> bytes:
    """The body as `dkim.DKIM(raw)` holds it: its lines joined by CRLF."""
    body = mail.body()
    if body.count(b"\n") != body.count(b"\r\n"):  # a bare LF; SMTP DATA rarely has one
        body = _LINE_END.sub(b"\r\n", body)
    return body


def signature_key_names(
    headers: list[tuple[bytes, bytes]], kinds: tuple[bytes, ...] = SIGNATURE_HEADERS
) -> list[str]:
    """The key names the signature headers of these kinds need (all kinds by default)."""
    names = []
    for name, value in headers:
        if name.lower() in kinds:
            try:
                tags = parse_tag_value(value)
            except InvalidTagValueList:
                continue
            if b"s" in tags and b"d" in tags:
                names.append(
                    key_name(
                        tags[b"s"].decode("ascii", "replace"), tags[b"d"].decode("ascii", "replace")
                    )
                )
    return names


@functools.lru_cache(maxsize=1024)
def parsed_key(name: str, txt: bytes | None) -> tuple:
    """dkimpy's parse of a key record, kept: the ASN.1 parse costs more than the verify.
    The parsed key is only read, so threads may share it."""
    return dkim.evaluate_pk(name.encode(), txt)


def make_dnsfunc(keys: dict[str, KeyAnswer]):
    """A dkimpy dnsfunc answering from prefetched keys (None where there is none)."""

    def dnsfunc(name, timeout=5):
        answer = keys.get(
            name.decode("ascii", "replace").lower().rstrip(".")
            if isinstance(name, bytes)
            else name.lower().rstrip(".")
        )
        return answer.txt if answer is not None and answer.status == FOUND else None

    return dnsfunc


class _BodyHashes:
    """Canonical bodies per c= and hash per (c=, a=, l=): several signatures share them."""

    def __init__(self, body: bytes):
        self.body = body
        self._canon: dict[str, bytes] = {}
        self._hash: dict[tuple, bytes] = {}

    def canonical(self, policy: CanonicalizationPolicy) -> bytes:
        key = policy.to_c_value()
        if key not in self._canon:
            self._canon[key] = policy.canonicalize_body(self.body)
        return self._canon[key]

    def digest(self, policy: CanonicalizationPolicy, algorithm: bytes, length: int | None) -> bytes:
        key = (policy.to_c_value(), algorithm, length)
        if key not in self._hash:
            body = self.canonical(policy)
            self._hash[key] = HASH_ALGORITHMS[algorithm](
                body if length is None else body[:length]
            ).digest()
        return self._hash[key]


def _decode(v: bytes) -> str:
    return v.decode("ascii", "replace").strip()


def _fields(res: SigResult, sig: dict) -> None:
    res.d = _decode(sig.get(b"d", b"")).lower()
    res.s = _decode(sig.get(b"s", b""))
    res.a = _decode(sig.get(b"a", b""))
    res.i = _decode(sig[b"i"]) if b"i" in sig else None
    res.headers = [h.lower() for h in re.split(r"\s*:\s*", _decode(sig.get(b"h", b""))) if h]


def _expiry(sig: dict, res: SigResult, first_receipt: dt.datetime) -> bool:
    """True when x= had passed by the time the message was first received."""
    x = sig.get(b"x", b"")
    if not re.fullmatch(rb"\d+", x):
        return False
    expires = dt.datetime.fromtimestamp(int(x), dt.UTC)
    res.expires = expires.replace(tzinfo=None).isoformat() + "Z"
    return expires < first_receipt


def check_signature(
    d: dkim.DKIM,
    sig_header: tuple[bytes, bytes],
    index: int,
    keys: dict[str, KeyAnswer],
    bodies: _BodyHashes,
    first_receipt: dt.datetime,
) -> SigResult:
    res = SigResult(index)
    try:
        sig = parse_tag_value(sig_header[1])
    except InvalidTagValueList as e:
        res.result, res.reason = NEUTRAL, f"malformed signature: {e}"
        return res
    _fields(res, sig)
    res.count_instances([n.lower().decode("ascii", "replace") for n, _ in d.headers])
    try:
        # x= is judged against the first receipt below, not against today.
        dkim.validate_signature_fields({k: v for k, v in sig.items() if k != b"x"})
        policy = CanonicalizationPolicy.from_c_value(sig.get(b"c", b"simple/simple"))
    except (dkim.ValidationError, InvalidCanonicalizationPolicyError) as e:
        res.result, res.reason = NEUTRAL, f"malformed signature: {e}"
        return res
    res.length = int(sig[b"l"]) if b"l" in sig else None
    res.body_length = len(bodies.canonical(policy))
    expected_bh = base64.b64decode(re.sub(rb"\s+", b"", sig[b"bh"]))
    res.body = (
        "intact" if bodies.digest(policy, sig[b"a"], res.length) == expected_bh else "changed"
    )
    expired = _expiry(sig, res, first_receipt)

    answer = keys.get(res.key_name) or KeyAnswer(TEMPERROR, error="key not looked up")
    if answer.status != FOUND:
        res.key = {NXDOMAIN: "missing", EMPTY: "missing", TEMPERROR: "temperror"}[answer.status]
        res.result = TEMPERROR_RESULT if answer.status == TEMPERROR else PERMERROR
        what = "DNS failure looking up" if answer.status == TEMPERROR else "key not found"
        res.reason = f"{what} {res.key_name}: {answer.error}"
        return _body_verdict(res)
    try:
        d.pk, d.keysize, d.ktag, d.seqtlsrpt = parsed_key(res.key_name, answer.txt)
    except (dkim.KeyFormatError, ValueError) as e:
        revoked = re.search(rb"(^|;)\s*p=\s*(;|$)", answer.txt or b"") is not None
        res.key = "revoked" if revoked else "bad"
        res.result = PERMERROR
        res.reason = (
            f"key {res.key_name} revoked (empty p=)"
            if revoked
            else f"bad key record at {res.key_name}: {e}"
        )
        return _body_verdict(res)
    res.key = "found"
    res.key_bits = d.keysize
    # The body hash is settled above; the header hash covers bh= as signed.
    header_only = {k: v for k, v in sig.items() if k != b"bh"}
    # dkimpy verifies From once more than h= lists it, so a From added above the signed
    # one breaks the signature (RFC 6376 §8.15, §5.4.2). The same for every name h=
    # lists: the extra pass selects nothing when the signer oversigned (h= naming an
    # absent instance), and the unsigned instance when one was added.
    include = [h.encode() for h in [*res.headers, *res.covered()]]
    try:
        valid = d.verify_sig_process(header_only, include, sig_header, make_dnsfunc(keys))
    except dkim.KeyFormatError as e:
        res.result, res.reason = PERMERROR, f"key {res.key_name}: {e}"
        return res
    except dkim.DKIMException as e:
        res.result, res.reason = NEUTRAL, f"malformed signature: {e}"
        return res
    res.header_signature = "valid" if valid else "invalid"
    if res.body == "changed":
        res.result = FAIL
        res.reason = "body hash mismatch" + ("" if valid else "; signed headers changed too")
    elif not valid and res.unsigned_instances:
        res.result = FAIL
        res.reason = (
            "signature mismatch: unsigned "
            + ", ".join(res.unsigned_instances)
            + " added above the signed one"
        )
    elif not valid:
        res.result, res.reason = (
            FAIL,
            "signature mismatch: signed headers were changed (or the key does not match)",
        )
    elif expired:
        res.result = NEUTRAL
        res.reason = f"signature expired (x={res.expires}) before the message was first received"
    else:
        res.result, res.reason = PASS, "signature verifies"
    return res


def _body_verdict(res: SigResult) -> SigResult:
    res.reason += "; body intact" if res.body == "intact" else "; body hash mismatch (body changed)"
    return res


def check_all(
    d: dkim.DKIM, keys: dict[str, KeyAnswer], first_receipt: dt.datetime
) -> list[SigResult]:
    """Every DKIM-Signature of the message parsed into `d`, top to bottom."""
    sig_headers = [(n, v) for n, v in d.headers if n.lower() == b"dkim-signature"]
    bodies = _BodyHashes(d.body)
    return [
        check_signature(d, h, i, keys, bodies, first_receipt) for i, h in enumerate(sig_headers)
    ]
