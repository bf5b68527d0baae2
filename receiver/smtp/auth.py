"""SMTP AUTH PLAIN and LOGIN against the receiver's per-mailbox credentials.

aiosmtpd has already refused AUTH without TLS (538), twice (503) or with another
mechanism (504) when this runs. The password check (scrypt) runs off the event loop;
failures are counted per client address and, past the limit, refused with 454 before
any check, so guessing is slow. Every failure gets the same reply whether or not the
user name exists.
"""

from __future__ import annotations

import base64
import binascii
import logging

from aiosmtpd.smtp import MISSING

from receiver.smtp.limits import FailureLimiter
from receiver.store.mailboxes import MailboxInfo

log = logging.getLogger(__name__)

SUCCESS = "235 2.7.0 Authentication successful"
INVALID = "535 5.7.8 Authentication credentials invalid"
BLOCKED = "454 4.7.0 Too many failed authentications, try again later"
BAD_BASE64 = "501 5.5.2 Cannot decode base64"
BAD_PLAIN = "501 5.5.2 Cannot split the PLAIN credentials"


def _b64(text: str) -> bytes | None:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        return None


async def _credentials(server, args: list[str]) -> tuple[bytes, bytes] | str | None:
    """(login, password), or a reply line, or None when aiosmtpd already replied."""
    mechanism = args[0].upper()
    if mechanism == "PLAIN":
        if len(args) == 1:
            blob = await server.challenge_auth("")
            if blob is MISSING:
                return None
        else:
            blob = _b64(args[1])
            if blob is None:
                return BAD_BASE64
        parts = blob.split(b"\0")
        if len(parts) != 3:
            return BAD_PLAIN
        return parts[1], parts[2]
    if len(args) == 1:
        login = await server.challenge_auth(server.AuthLoginUsernameChallenge)
        if login is MISSING:
            return None
    else:
        login = _b64(args[1])
        if login is None:
            return BAD_BASE64
    password = await server.challenge_auth(server.AuthLoginPasswordChallenge)
    if password is MISSING:
        return None
    return login, password


async def authenticate(server, session, args: list[str], check, limiter: FailureLimiter,
                       sid: str) -> str | None:
    """The AUTH exchange; `check(login, password)` is awaited and returns a mailbox."""
    ip = str(session.peer[0]) if isinstance(session.peer, tuple) else str(session.peer)
    if limiter.blocked(ip):
        log.warning("session %s: AUTH from %s blocked after repeated failures", sid, ip)
        return BLOCKED
    got = await _credentials(server, args)
    if not isinstance(got, tuple):
        return got
    try:
        login, password = got[0].decode("utf-8"), got[1].decode("utf-8")
    except UnicodeDecodeError:
        mailbox = None
    else:
        mailbox: MailboxInfo | None = await check(login, password)
    if mailbox is None:
        limiter.fail(ip)
        log.info("session %s: AUTH failed from %s", sid, ip)
        return INVALID
    session.authenticated = True
    session.auth_data = mailbox
    log.info("session %s: authenticated for %s", sid, mailbox.email)
    return SUCCESS
