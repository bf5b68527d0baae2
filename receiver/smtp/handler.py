"""The aiosmtpd handler: thin on purpose. RCPT asks the store, DATA hands the raw bytes
to the pipeline, and each outcome becomes a reply line.

No path lets aiosmtpd's own "500 Error: (Exception)" reach a client: a fault anywhere is
logged with the session id and answered 451, so the sender keeps the message.
"""

from __future__ import annotations

import logging
import secrets

from receiver import allowlist, logs
from receiver.pipeline import (
    DUPLICATE,
    QUARANTINED,
    REJECTED,
    STORED,
    TEMPFAILED,
    Envelope,
    Outcome,
    Pipeline,
)
from receiver.smtp import auth
from receiver.smtp.limits import FailureLimiter

log = logging.getLogger(__name__)

RCPT_REPLIES = {
    "unknown": "550 5.1.1 No such receiver address here",
    "disabled": "550 5.2.1 This receiver address is disabled",
    "relay": "550 5.7.1 Relaying denied: this host accepts mail for its receiver domains only",
}
TEMPFAIL_RCPT = "451 4.3.0 Temporary failure looking up the recipient, try again later"
TEMPFAIL_DATA = "451 4.3.0 Temporary failure storing the message, try again later"
TOO_MANY_RCPTS = "452 4.5.3 Too many recipients"
NOT_OWN_MAILBOX = "550 5.7.1 These credentials may deliver to their own mailbox only"
NOT_ALLOWED = "550 5.7.1 This sender is not on the receiver address's allow-list"
# An authenticated session whose mailbox was disabled or removed, or whose credential
# was revoked or reissued, by the CLI since its AUTH. 421 closes the connection
# (protocol.Hardened.push): a submission client queues and retries, and its next AUTH
# gets the 535 a person reads. A 530 would leave the session open to AUTH again in;
# 535 answers AUTH only (RFC 4954).
LOGGED_OUT = "421 4.7.0 {why}: logged out by the receiver's admin"
# Advertised on top of aiosmtpd's: the session reads pipelined commands in order
# (protocol.py), and every reply carries an enhanced status code (replies.py).
EXTENSIONS = ["250-PIPELINING", "250-ENHANCEDSTATUSCODES"]


def session_id(session) -> str:
    sid = getattr(session, "receiver_id", None)
    if sid is None:
        sid = session.receiver_id = new_session_id()
    return sid


def new_session_id() -> str:
    return secrets.token_hex(6)


def outcome_line(o: Outcome) -> str:
    if o.status in (STORED, DUPLICATE, QUARANTINED):
        return f"250 2.0.0 Ok: stored as {o.delivery_id}"
    if o.status == REJECTED:
        return f"550 {o.code or '5.7.1'} {o.reason}"
    if o.status == TEMPFAILED:
        # A policy's tempfail says its own cause; every other one is the store's, and has
        # one text over SMTP and LMTP alike, whatever the pipeline's reason says.
        return f"451 {o.code} {o.reason}" if o.code else TEMPFAIL_DATA
    raise ValueError(f"unknown outcome {o.status}")


def combined_reply(outcomes: list[Outcome]) -> str:
    """One SMTP reply for every recipient of the transaction."""
    tempfailed = [o for o in outcomes if o.status == TEMPFAILED]
    if tempfailed:
        # The sender retries the whole transaction; copies already stored are then
        # byte-identical redeliveries and are acknowledged without storing again.
        policy_said = [o for o in tempfailed if o.code]
        return outcome_line(policy_said[0]) if policy_said else TEMPFAIL_DATA
    if all(o.status == REJECTED for o in outcomes):
        return outcome_line(outcomes[0])
    ids = ", ".join(str(o.delivery_id) for o in outcomes if o.delivery_id is not None)
    return f"250 2.0.0 Ok: stored as {ids}"


class ReceiverHandler:
    def __init__(
        self,
        pipeline: Pipeline,
        *,
        max_recipients: int,
        lmtp: bool = False,
        failed_logins: FailureLimiter | None = None,
    ):
        self.pipeline = pipeline
        self.max_recipients = max_recipients
        self.lmtp = lmtp
        # Not named auth_*: aiosmtpd takes every handler attribute so named for an AUTH
        # mechanism, advertises it and accepts it.
        self.failed_logins = failed_logins or FailureLimiter(5, 300.0)

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        """What aiosmtpd does for EHLO and LHLO, plus the extensions the receiver has."""
        session.host_name = hostname
        return [*responses[:-1], *EXTENSIONS, responses[-1]]

    async def handle_AUTH(self, server, session, envelope, args):
        return await auth.authenticate(
            server,
            session,
            args,
            self.pipeline.grant,
            self.failed_logins,
            session_id(session),
        )

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        """What aiosmtpd does for MAIL, once an authenticated session's login is known
        to hold: the CLI that revokes or disables runs in another process, so it is the
        database that says (one primary-key lookup a transaction)."""
        if session.authenticated:
            ended = await self._logged_out(session)
            if ended:
                return ended
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def _logged_out(self, session) -> str | None:
        """The 421 for an authenticated session whose login no longer holds, or None."""
        standing = await self.pipeline.standing(session.auth_data)
        if standing.ended is None:
            return None
        log.info("session %s: %s, session ended", session_id(session), standing.ended)
        return LOGGED_OUT.format(why=standing.ended.capitalize())

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        sid = session_id(session)
        if len(envelope.rcpt_tos) >= self.max_recipients:
            return TOO_MANY_RCPTS
        try:
            res = await self.pipeline.resolve_rcpt(address)
        except Exception as e:
            # One line, no traceback: during an outage every RCPT lands here.
            log.error("session %s: RCPT lookup for %r failed: %r", sid, address, e)
            return TEMPFAIL_RCPT
        if res.status != "ok":
            log.info("session %s: RCPT %r refused (%s)", sid, address, res.status)
            return RCPT_REPLIES[res.status]
        if session.authenticated and res.mailbox.id != session.auth_data.mailbox.id:
            log.info("session %s: RCPT %r is not the authenticated mailbox", sid, address)
            return NOT_OWN_MAILBOX
        allow = res.mailbox.allow_from
        if (
            allow
            and not allowlist.has_domains(allow)
            and not allowlist.network_allows(allow, logs.peer_text(session.peer))
        ):
            # Networks only: the answer is known now. Signing domains wait for DATA.
            log.info("session %s: RCPT %r refused by its allow-list", sid, address)
            return NOT_ALLOWED
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        if not hasattr(envelope, "mailboxes"):
            envelope.mailboxes = []
        envelope.mailboxes.append(res.mailbox)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server, session, envelope):
        sid = session_id(session)
        try:
            return await self._data(session, envelope, sid)
        except Exception:
            log.exception("session %s: DATA failed", sid)
            if self.lmtp:
                return "\r\n".join(TEMPFAIL_DATA for _ in envelope.rcpt_tos)
            return TEMPFAIL_DATA

    async def _data(self, session, envelope, sid: str) -> str:
        mail = envelope.mail
        env = Envelope(
            source="lmtp" if self.lmtp else "smtp",
            session_id=sid,
            mail_from=envelope.mail_from,
            peer=logs.peer_text(session.peer),
            helo=session.host_name,
            tls=_tls(session),
            auth_user=session.auth_data.mailbox.email if session.authenticated else None,
            login=session.auth_data.issue if session.authenticated else None,
            smtp_defects=list(mail.defects),
        )
        rcpts = list(zip(envelope.rcpt_tos, envelope.mailboxes))
        outcomes = await self.pipeline.deliver(mail, env, rcpts, per_recipient=self.lmtp)
        logs.delivery_lines(session, env, outcomes)
        if session.authenticated and any(o.status == TEMPFAILED for o in outcomes):
            # The store refuses a copy whose login ended since MAIL (LoginEnded, in the
            # commit itself): that is a 421 too, not a 451 to try again with.
            ended = await self._logged_out(session)
            if ended:
                return ended
        if self.lmtp:
            return "\r\n".join(outcome_line(o) for o in outcomes)
        return combined_reply(outcomes)


def _tls(session) -> dict | None:
    info = session.ssl
    if not info:
        return None
    cipher = info.get("cipher") if isinstance(info, dict) else None
    if cipher:
        return {"cipher": cipher[0], "version": cipher[1], "bits": cipher[2]}
    return {"cipher": None, "version": None}
