"""What one delivery is, as every edge, the pipeline and the store see it.

An edge (SMTP, LMTP, IMAP, `import`) describes where a copy came from in an `Envelope`
(and IMAP APPEND where it goes in a `Placement`); the pipeline adds the mailbox, the
verdict and the prepared bytes, making one `DeliveryRequest` per mailbox; the store maps
that request to its row in one place (`receiver.store.deliveries.delivery_fields`), its
placement to a folder entry in the same transaction, and answers a `DeliveryResult`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum

from receiver.parse.record import ParsedMessage
from receiver.verify.verdict import UNVERIFIABLE, Verdict


def _now() -> dt.datetime:
    # Naive UTC, the form both backends store (store.models.utcnow); the record sits
    # below the store and does not import it.
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class Status(StrEnum):
    """What became of a copy for one mailbox. A delivery row holds the first three."""

    STORED = "stored"
    DUPLICATE = "duplicate"
    QUARANTINED = "quarantined"
    REJECTED = "rejected"
    TEMPFAILED = "tempfailed"


STORED, DUPLICATE, QUARANTINED, REJECTED, TEMPFAILED = (
    Status.STORED,
    Status.DUPLICATE,
    Status.QUARANTINED,
    Status.REJECTED,
    Status.TEMPFAILED,
)


@dataclass(frozen=True)
class Envelope:
    """Where a copy came from; recorded in columns, never written into the bytes."""

    source: str = "smtp"  # smtp | lmtp | import
    session_id: str | None = None
    mail_from: str | None = None
    peer: str | None = None
    helo: str | None = None
    tls: dict | None = None
    auth_user: str | None = None
    # The session's login (SMTP AUTH, IMAP), (credential id, issued at): the copy is
    # stored only if, in that same transaction, the login still holds
    # (receiver.store.credentials.standing).
    login: tuple[int, dt.datetime] | None = None
    smtp_defects: list[str] = field(default_factory=list)
    # When the end of data (or the file) was read: the delivery's received_at.
    received_at: dt.datetime = field(default_factory=_now)


@dataclass(frozen=True)
class Placement:
    """The IMAP folder an APPEND puts its copy in, with the client's flags and internal
    date. The entry is written in the delivery's own transaction: both or neither."""

    folder_id: int
    flags: frozenset[str] = frozenset()
    internal_date: dt.datetime = field(default_factory=_now)


@dataclass
class DeliveryRequest:
    """One copy for one mailbox, ready to store: the bytes kept, their parsed record,
    the envelope and the verdict."""

    mailbox_id: int
    sha256: str
    size: int
    compressed: bytes
    record: ParsedMessage
    status: Status = STORED  # STORED or QUARANTINED
    rcpt_to: str | None = None
    envelope: Envelope = field(default_factory=Envelope)
    verdict: Verdict = field(default_factory=lambda: Verdict(UNVERIFIABLE))
    wrapper: tuple[str, int, bytes] | None = None  # (sha256, size, compressed)
    placement: Placement | None = None  # IMAP APPEND only


@dataclass(frozen=True)
class DeliveryResult:
    delivery_id: int
    message_id: int
    duplicate: bool
    status: Status
    uid: int | None = None  # in the request's placement folder
