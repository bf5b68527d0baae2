"""How a copy got here, from its bytes alone (pure): copied, forwarded inline, or wrapped.

- copied: a redirect or bulk copy. The author's From, Date, Message-ID and Subject are
  intact; redirect traces (X-Forwarded-To/For, Resent-*, X-Sieve-Redirected-From,
  X-MS-Exchange-Inbox-Rules-Loop, an SRS Return-Path) are expected and fine.
- forwarded: a new message by the subscriber quoting the original (Fwd: subject and a
  forward banner in the body, From is the subscriber): the original headers are gone.
- wrapped: the original travels whole inside a message/rfc822 part (forward as
  attachment by the subscriber, with a Fwd: subject; an Exchange journal report);
  `inner` holds its exact bytes.

The signs are the ones rspamd's rules/forwarding.lua looks for, plus the banners mail
clients write. Decoding the body is only done on the rare paths that need it.
"""

from __future__ import annotations

import base64
import binascii
import email
import email.policy
import re
from dataclasses import dataclass, field
from email.utils import getaddresses

from receiver.mail import RawMail

COPIED = "copied"
FORWARDED = "forwarded"
WRAPPED = "wrapped"

# Header → what it says about the path (all of them leave the author's message intact).
REDIRECT_TRACES = {
    "x-forwarded-to": "Gmail forwarding",
    "x-forwarded-for": "Gmail forwarding",
    "x-sieve-redirected-from": "Sieve redirect",
    "x-ms-exchange-inbox-rules-loop": "Exchange inbox rule",
    "resent-from": "Resent (redirect)",
    "resent-to": "Resent (redirect)",
    "resent-date": "Resent (redirect)",
    "x-yandex-forward": "Yandex forwarding",
    "x-original-to": "alias expansion",
}

FWD_SUBJECT = re.compile(r"^\s*(?:\[[^\]]*\]\s*)?(?:fwd?|fw|wg|tr|rv|enc)\s*:", re.I)
BANNERS = re.compile(
    r"-{2,}\s*(?:forwarded message|original message|weitergeleitete nachricht|"
    r"urspr(?:ü|ue)ngliche nachricht|message transf(?:é|e)r(?:é|e)|message d'origine|"
    r"mensaje reenviado|mensaje original|messaggio inoltrato)\s*-{2,}"
    r"|begin forwarded message:"
    r"|^\s*\**from:\**[^\n]*\n\s*\**sent:\**",
    re.I | re.M,
)
SRS = re.compile(r"^<?SRS[01][=+-]", re.I)


@dataclass
class CopyPath:
    kind: str
    how: list[str] = field(default_factory=list)
    wrapper: str | None = None  # attachment | journal
    inner: bytes | None = None

    def to_json(self) -> dict:
        return {"kind": self.kind, "how": self.how, "wrapper": self.wrapper}


_SIMPLE_ADDRESS = re.compile(
    r'^(?:[^<>,;:"()\\@]*<)?\s*([^\s<>,;:"()\\@]+@[^\s<>,;:"()\\@]+)\s*>?$'
)


def address_of(value: str | None) -> str | None:
    """The single address of a From header value, lower case (None when not exactly one)."""
    if not value:
        return None
    simple = _SIMPLE_ADDRESS.match(value.strip())
    if simple:  # "Name <a@b>" or "a@b": most mail, without the full RFC 5322 parser
        return simple.group(1).lower()
    addrs = [a for _, a in getaddresses([value]) if "@" in a]
    return addrs[0].lower() if len(addrs) == 1 else None


def domain_of(address: str | None) -> str | None:
    return address.rpartition("@")[2].rstrip(">").lower() if address and "@" in address else None


def message_texts(mail: RawMail) -> str:
    """The decoded text of the inline text parts (for banners, codes and links)."""
    msg = email.message_from_bytes(mail.for_parser.raw, policy=email.policy.default)
    out = []
    for part in msg.walk():
        if part.get_content_maintype() != "text" or part.is_attachment():
            continue
        try:
            out.append(part.get_content())
        except (LookupError, ValueError, AssertionError):
            payload = part.get_payload(decode=True)  # bytes for a part that is not multipart
            out.append(payload.decode("utf-8", "replace") if isinstance(payload, bytes) else "")
    return "\n".join(out)


def _part_type(part: RawMail) -> str:
    ctype = part.get_first("Content-Type") or "text/plain"
    return ctype.split(";", 1)[0].strip().lower()


def enclosed_message(mail: RawMail) -> bytes | None:
    """The exact bytes of the single message/rfc822 part of a multipart/mixed|report."""
    found = [part for part in mail.top_parts() if _part_type(part) == "message/rfc822"]
    if len(found) != 1:
        return None
    part = found[0]
    body = part.body()
    cte = (part.get_first("Content-Transfer-Encoding") or "").lower()
    if cte == "base64":  # not allowed by RFC 2046, but some clients do it
        try:
            return base64.b64decode(body, validate=False)
        except (binascii.Error, ValueError):
            return None
    return body


def classify(mail: RawMail, subscriber: str | None) -> CopyPath:
    names = {f.name.lower() for f in mail.fields}
    from_addr = address_of(mail.get_first("From"))
    subject = mail.get_first("Subject") or ""
    sub = subscriber.lower() if subscriber else None
    by_subscriber = sub is not None and from_addr == sub

    if "x-ms-journal-report" in names:
        inner = enclosed_message(mail)
        if inner is not None:
            return CopyPath(WRAPPED, ["Exchange journal report"], "journal", inner)
    fwd_subject = FWD_SUBJECT.match(subject) is not None
    # A message of the subscriber's own that merely carries an .eml (a sent-items copy)
    # is theirs to keep whole: only a forward (Fwd:/FW: subject) is unwrapped.
    if fwd_subject and (by_subscriber or sub is None):
        inner = enclosed_message(mail)
        if inner is not None:
            return CopyPath(WRAPPED, ["forwarded as attachment"], "attachment", inner)
    if fwd_subject and (by_subscriber or sub is None) and BANNERS.search(message_texts(mail)):
        return CopyPath(FORWARDED, [f"forwarded inline (Subject: {subject[:80]})"])

    how = sorted({label for name, label in REDIRECT_TRACES.items() if name in names})
    rp = mail.get_all("Return-Path")
    if rp and SRS.match(rp[0]):
        how.append("SRS envelope sender")
    return CopyPath(COPIED, how or ["direct"])
