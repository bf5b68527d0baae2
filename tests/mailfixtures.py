"""Test mail: messages signed with the test keys in tests/keys/, then put through what each
copy path really does to them (Gmail forwarding, an Exchange redirect with SRS, a Sieve
redirect, an inline Fwd:, forward as attachment, an Exchange journal report, a list
footer, a subject tag, a rotated key, an expired signature, ed25519...).

`DNS_RECORDS` holds the key records a test DNS server serves for them.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dkim

KEYS = Path(__file__).parent / "keys"
AUTHOR_KEY = (KEYS / "author.pem").read_bytes()
OTHER_KEY = (KEYS / "other.pem").read_bytes()
ED_KEY = (KEYS / "ed25519.key").read_bytes()

SUBSCRIBER = "alice@corp.example"
AUTHOR_DOMAIN = "author.example"


def _rsa_record(name: str) -> str:
    return "v=DKIM1; k=rsa; p=" + (KEYS / f"{name}.pub").read_text().strip()


DNS_RECORDS = {
    "s1._domainkey.author.example": _rsa_record("author"),
    "ed1._domainkey.author.example": "v=DKIM1; k=ed25519; p="
    + (KEYS / "ed25519.pub").read_text().strip(),
    # A published key that is not the one the message was signed with.
    "wrong._domainkey.author.example": _rsa_record("other"),
    "revoked._domainkey.author.example": "v=DKIM1; k=rsa; p=",
    "arc._domainkey.forwarder.example": _rsa_record("other"),
    "tenant._domainkey.corp-tenant.example": _rsa_record("other"),
    "corp._domainkey.corp.example": _rsa_record("other"),
    "list._domainkey.lists.example": _rsa_record("other"),
    "google._domainkey.google.com": _rsa_record("other"),
}

# RFC 8463 Appendix A: the message signed with ed25519 (brisbane) and rsa (test), and the
# two key records (Copyright (c) 2018 IETF Trust, Simplified BSD Licence).
RFC8463_MESSAGE = (
    b"DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;\r\n"
    b" d=football.example.com; i=@football.example.com;\r\n"
    b" q=dns/txt; s=brisbane; t=1528637909; h=from : to :\r\n"
    b" subject : date : message-id : from : subject : date;\r\n"
    b" bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n"
    b" b=/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11Bus\r\n"
    b" Fa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw==\r\n"
    b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;\r\n"
    b" d=football.example.com; i=@football.example.com;\r\n"
    b" q=dns/txt; s=test; t=1528637909; h=from : to : subject :\r\n"
    b" date : message-id : from : subject : date;\r\n"
    b" bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n"
    b" b=F45dVWDfMbQDGHJFlXUNB2HKfbCeLRyhDXgFpEL8GwpsRe0IeIixNTe3\r\n"
    b" DhCVlUrSjV4BwcVcOF6+FF3Zo9Rpo1tFOeS9mPYQTnGdaSGsgeefOsk2Jz\r\n"
    b" dA+L10TeYt9BgDfQNZtKdN1WO//KgIqXP7OdEFE4LjFYNcUxZQ4FADY+8=\r\n"
    b"From: Joe SixPack <joe@football.example.com>\r\n"
    b"To: Suzie Q <suzie@shopping.example.net>\r\n"
    b"Subject: Is dinner ready?\r\n"
    b"Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)\r\n"
    b"Message-ID: <20030712040037.46341.5F8J@football.example.com>\r\n"
    b"\r\n"
    b"Hi.\r\n"
    b"\r\n"
    b"We lost the game.  Are you hungry yet?\r\n"
    b"\r\n"
    b"Joe.\r\n"
)
RFC8463_RECORDS = {
    "brisbane._domainkey.football.example.com": "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=",
    "test._domainkey.football.example.com": "v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWRiGs5V6NpP3idY6Wk08a5q"
    "hdR6wy5bdOKb2jLQiY/J16JYi0Qvx/byYzCNb3W91y3FutACDfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqMKrM3r"
    "G4hstT5QjvHO9PzoxZyVYLzBfO2EeC3Ip3G+2kryOTIKT+l/K4w3QIDAQAB",
}


def original(
    subject: str = "Quarterly numbers",
    msgid: str = "q1@author.example",
    body: bytes = b"Hello Alice,\r\n\r\nthe numbers are attached in spirit.\r\n\r\nAnn\r\n",
    date: str = "Tue, 01 Oct 2024 10:00:00 +0000",
) -> bytes:
    return (
        f"From: Ann Author <ann@{AUTHOR_DOMAIN}>\r\n"
        f"To: Alice <{SUBSCRIBER}>\r\n"
        f"Subject: {subject}\r\n"
        f"Date: {date}\r\n"
        f"Message-ID: <{msgid}>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "\r\n"
    ).encode() + body


class _TimedDKIM(dkim.DKIM):
    """dkimpy signs with t=now and no x=; old mail needs both set."""

    def __init__(self, message, t: int, x: int | None):
        super().__init__(message)
        self._t, self._x = t, x

    def gen_header(self, fields, include_headers, canon_policy, header_name, pk, standardize=False):
        fields = [(k, str(self._t).encode()) if k == b"t" else (k, v) for k, v in fields]
        if self._x is not None:
            fields.insert(-1, (b"x", str(self._x).encode()))
        return super().gen_header(
            fields, include_headers, canon_policy, header_name, pk, standardize
        )


SIGNED_HEADERS = [
    b"from",
    b"to",
    b"subject",
    b"date",
    b"message-id",
    b"mime-version",
    b"content-type",
]


def sign(
    msg: bytes,
    selector: str = "s1",
    domain: str = AUTHOR_DOMAIN,
    key: bytes = AUTHOR_KEY,
    algorithm: bytes = b"rsa-sha256",
    length: bool = False,
    t: dt.datetime | None = None,
    x: dt.datetime | None = None,
    include: list[bytes] = SIGNED_HEADERS,
) -> bytes:
    if t is not None:
        signer = _TimedDKIM(msg, int(t.timestamp()), int(x.timestamp()) if x else None)
    else:
        signer = dkim.DKIM(msg)
    header = signer.sign(
        selector.encode(),
        domain.encode(),
        key,
        signature_algorithm=algorithm,
        canonicalize=(b"relaxed", b"relaxed"),
        include_headers=include,
        length=length,
    )
    return header + msg


def signed() -> bytes:
    return sign(original())


def received(by: str, when: str = "Tue, 01 Oct 2024 10:00:05 +0000") -> bytes:
    return f"Received: from mx.{by} by mx.{by} with ESMTPS; {when}\r\n".encode()


def oversigned() -> bytes:
    """Signed the way senders close the prepended-header hole: h= lists each author header
    once more than it occurs, covering an absent instance (RFC 6376 §8.15)."""
    return sign(
        original(), include=SIGNED_HEADERS + [b"from", b"subject", b"date", b"message-id", b"to"]
    )


def prepended(msg: bytes, field: bytes) -> bytes:
    """An unsigned second instance of a header placed on top, where a reader looks first."""
    return field + b"\r\n" + msg


def gmail_forwarding(msg: bytes) -> bytes:
    """Gmail's automatic forwarding: the message intact, an ARC set and X-Forwarded-* on top."""
    ar = (
        b"Authentication-Results: mx.forwarder.example; dkim=pass "
        b"header.d=author.example header.s=s1\r\n"
    )
    arc = dkim.arc_sign(
        ar + msg,
        b"arc",
        b"forwarder.example",
        OTHER_KEY,
        b"mx.forwarder.example",
        timestamp=1727776805,
    )
    return (
        b"".join(arc) + b"X-Forwarded-To: alice-token@push.example.com\r\n"
        b"X-Forwarded-For: alice@corp.example alice-token@push.example.com\r\n"
        + received("forwarder.example")
        + ar
        + msg
    )


def exchange_redirect(msg: bytes) -> bytes:
    """An Exchange redirect rule with SRS: loop header, SRS Return-Path, tenant signature."""
    top = (
        b"Return-Path: <SRS0=h4Xk=QZ=author.example=ann@corp.example>\r\n"
        b"X-MS-Exchange-Inbox-Rules-Loop: alice@corp.example\r\n" + received("corp-tenant.example")
    )
    return sign(top + msg, "tenant", "corp-tenant.example", OTHER_KEY)


def sieve_redirect(msg: bytes) -> bytes:
    return b"X-Sieve-Redirected-From: alice@corp.example\r\n" + received("corp.example") + msg


def inline_forward() -> bytes:
    body = (
        b"FYI\r\n\r\n---------- Forwarded message ---------\r\n"
        b"From: Ann Author <ann@author.example>\r\nDate: Tue, 1 Oct 2024 at 10:00\r\n"
        b"Subject: Quarterly numbers\r\nTo: Alice <alice@corp.example>\r\n\r\n"
        b"Hello Alice,\r\n\r\nthe numbers are attached in spirit.\r\n\r\nAnn\r\n"
    )
    msg = (
        b"From: Alice <alice@corp.example>\r\nTo: alice-token@push.example.com\r\n"
        b"Subject: Fwd: Quarterly numbers\r\nDate: Tue, 01 Oct 2024 11:00:00 +0000\r\n"
        b"Message-ID: <fwd1@corp.example>\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + body
    )
    return sign(msg, "corp", "corp.example", OTHER_KEY)


def _wrapping(headers: bytes, note: bytes, inner: bytes, boundary: bytes = b"wrap42") -> bytes:
    return (
        headers + b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="' + boundary + b'"\r\n\r\n'
        b"--"
        + boundary
        + b"\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        + note
        + b"\r\n--"
        + boundary
        + b"\r\nContent-Type: message/rfc822\r\n"
        b'Content-Disposition: attachment; filename="original.eml"\r\n\r\n'
        + inner
        + b"\r\n--"
        + boundary
        + b"--\r\n"
    )


def forward_as_attachment(inner: bytes) -> bytes:
    return sign(
        _wrapping(
            b"From: Alice <alice@corp.example>\r\nTo: alice-token@push.example.com\r\n"
            b"Subject: Fwd: Quarterly numbers\r\n"
            b"Date: Tue, 01 Oct 2024 11:00:00 +0000\r\n"
            b"Message-ID: <att1@corp.example>\r\n",
            b"see the attached message",
            inner,
        ),
        "corp",
        "corp.example",
        OTHER_KEY,
    )


def journal_report(inner: bytes) -> bytes:
    return _wrapping(
        b"From: Microsoft Outlook <MicrosoftExchange329e71ec@corp.example>\r\n"
        b"To: journal-token@push.example.com\r\n"
        b"Subject: Quarterly numbers\r\n"
        b"Date: Tue, 01 Oct 2024 10:00:07 +0000\r\n"
        b"Message-ID: <journal1@corp.example>\r\n"
        b"X-MS-Journal-Report:\r\n",
        b"Sender: ann@author.example\r\nSubject: Quarterly numbers\r\n"
        b"Message-Id: <q1@author.example>\r\nTo: alice@corp.example",
        inner,
        b"journal-b0undary",
    )


def list_footer(msg: bytes) -> bytes:
    """A mailing list adds a footer and re-signs with its own domain."""
    footered = msg + b"--\r\nquarterly mailing list: https://lists.example/q\r\n"
    return sign(b"List-Id: <q.lists.example>\r\n" + footered, "list", "lists.example", OTHER_KEY)


def subject_tag(msg: bytes) -> bytes:
    return msg.replace(b"Subject: Quarterly numbers", b"Subject: [q] Quarterly numbers", 1)


def gmail_confirmation(code: str = "612842311") -> bytes:
    msg = (
        b"From: Gmail Team <forwarding-noreply@google.com>\r\n"
        b"To: alice-token@push.example.com\r\n"
        b"Subject: (#" + code.encode() + b") Gmail Forwarding Confirmation - Receive Mail "
        b"from alice@corp.example\r\n"
        b"Date: Tue, 01 Oct 2024 09:00:00 +0000\r\nMessage-ID: <conf1@google.com>\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\n"
        b"alice@corp.example has requested to automatically forward mail to your email\r\n"
        b"address alice-token@push.example.com.\r\nConfirmation code: "
        + code.encode()
        + b"\r\n\r\nTo allow alice@corp.example to automatically forward mail to your address,\r\n"
        b"please click the link below to confirm the request:\r\n\r\n"
        b"https://mail-settings.google.com/mail/vf-%5BANGjdJ8abc%5D-"
        b"ZhGcUxyz\r\n\r\nThe Gmail Team\r\n"
    )
    return sign(msg, "google", "google.com", OTHER_KEY)
