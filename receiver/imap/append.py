"""APPEND: one appended message through the same pipeline as an SMTP delivery.

The tagged OK (with APPENDUID) is sent only after the commit, as the SMTP 250 is; the
folder entry is written in that same commit (the request's `Placement`), so a copy is
never stored without it. A refusal says what the SMTP reply would say. A byte-identical
re-append is the store's duplicate: the folder shows the copy it already has under its
UID (or under a new one, if it came by SMTP or into another folder).
"""

from __future__ import annotations

import datetime as dt
import logging

from pymap.exceptions import MailboxError
from pymap.parsing.message import AppendMessage
from pymap.parsing.response import ResponseCode

from receiver.delivery import REJECTED, TEMPFAILED, Envelope, Placement
from receiver.imap import connection
from receiver.mail import RawMail, read
from receiver.pipeline import UNAVAILABLE, Outcome, Pipeline
from receiver.store.folders import FolderInfo
from receiver.store.credentials import Grant
from receiver.store.models import utcnow

log = logging.getLogger(__name__)


def refusal(outcome: Outcome) -> MailboxError | None:
    """The NO that answers an outcome which stored nothing, or None once committed."""
    if outcome.status == REJECTED:
        return MailboxError(None, outcome.reason.encode("utf-8", "replace"))
    if outcome.status == TEMPFAILED:
        return MailboxError(
            None,
            (outcome.reason or UNAVAILABLE).encode("utf-8", "replace"),
            ResponseCode.of(b"UNAVAILABLE"),
        )
    return None


def unavailable() -> MailboxError:
    return MailboxError(None, UNAVAILABLE.encode(), ResponseCode.of(b"UNAVAILABLE"))


def tls_of(cipher) -> dict | None:
    """The TLS columns of a delivery, from the connection's (name, version, bits)."""
    if not cipher:
        return None
    return {"cipher": cipher[0], "version": cipher[1], "bits": cipher[2]}


def internal_date(when: dt.datetime | None) -> dt.datetime:
    """Naive UTC, as the store keeps every time."""
    if when is None:
        return utcnow()
    if when.tzinfo is None:
        return when
    return when.astimezone(dt.UTC).replace(tzinfo=None)


class Appender:
    """Appends for one logged-in session: who logged in is fixed; `mailbox` is read
    again before each command (Session.check_login), and each copy is stored only
    while the login holds (Envelope.login)."""

    def __init__(self, pipeline: Pipeline, granted: Grant, login: str):
        self.pipeline = pipeline
        self.mailbox = granted.mailbox
        self.granted = granted.issue
        self.login = login
        # Made at login, in the connection's task, under TLS: none of these changes after.
        self.session_id = connection.session_id()
        self.peer = connection.peer()
        self.tls = tls_of(connection.cipher())

    def envelope(self, mail: RawMail) -> Envelope:
        return Envelope(
            source="imap",
            session_id=self.session_id,
            peer=self.peer,
            tls=self.tls,
            auth_user=self.login,
            login=self.granted,
            smtp_defects=list(mail.defects),
            received_at=utcnow(),
        )

    def _placement(self, folder: FolderInfo, msg: AppendMessage) -> Placement:
        return Placement(
            folder.id,
            frozenset(f.value.decode("ascii", "replace") for f in msg.flag_set),
            internal_date(msg.when),
        )

    def _check(self, folder: FolderInfo, outcomes: list[Outcome]) -> None:
        """Raise the NO of the first refusal (a policy's before a fault's), if any."""
        for outcome in sorted(outcomes, key=lambda o: o.status != REJECTED):
            refused = refusal(outcome)
            if refused is not None:
                log.info(
                    "imap %s: APPEND to %r refused: %s %s",
                    self.session_id,
                    folder.name,
                    outcome.status,
                    outcome.reason,
                )
                raise refused

    async def __call__(self, folder: FolderInfo, msg: AppendMessage) -> tuple[Outcome, Placement]:
        """The committed outcome (its `uid` the copy's in `folder`) and the placement
        asked for; raises the NO otherwise."""
        # The literal exactly as the client sent it: these are the bytes stored.
        mail = read(bytes(msg.literal))
        placement = self._placement(folder, msg)
        [outcome] = await self.pipeline.deliver(
            mail, self.envelope(mail), [(self.mailbox.email, self.mailbox)], placement=placement
        )
        self._check(folder, [outcome])
        # Like an SMTP 250, a stored copy is no log line at INFO (2% of the daemon's CPU
        # in a bulk copy); metrics count it, refusals are logged above.
        log.debug(
            "imap %s: APPEND to %r: %s delivery %s uid %s",
            self.session_id,
            folder.name,
            outcome.status,
            outcome.delivery_id,
            outcome.uid,
        )
        return outcome, placement

    async def all(self, folder: FolderInfo, msgs: list[AppendMessage]) -> list[int]:
        """MULTIAPPEND: the UIDs of every message, committed as a unit; if any is
        refused, none is stored and the NO is that refusal's (RFC 3502)."""
        mails = [read(bytes(m.literal)) for m in msgs]
        outcomes = await self.pipeline.deliver_all(
            [
                (mail, self.envelope(mail), self._placement(folder, m))
                for mail, m in zip(mails, msgs)
            ],
            (self.mailbox.email, self.mailbox),
        )
        self._check(folder, outcomes)
        log.debug("imap %s: MULTIAPPEND of %d to %r", self.session_id, len(msgs), folder.name)
        return [o.uid for o in outcomes if o.uid is not None]
