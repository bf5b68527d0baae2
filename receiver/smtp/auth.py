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

from receiver.smtp.limits import FailureLimiter, client_ip
from receiver.store.credentials import Grant

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


async def _first_response(server, args: list[str], challenge: str) -> bytes | str | None:
    """The client's first response: on the AUTH line, or asked for with `challenge`.
    A reply line when it is not base64; None when aiosmtpd already replied."""
    if len(args) > 1:
        decoded = _b64(args[1])
        return BAD_BASE64 if decoded is None else decoded
    got = await server.challenge_auth(challenge)
    return None if got is MISSING else got


async def _credentials(server, args: list[str]) -> tuple[bytes, bytes] | str | None:
    """(login, password), or a reply line, or None when aiosmtpd already replied."""
    plain = args[0].upper() == "PLAIN"
    first = await _first_response(server, args, "" if plain else server.AuthLoginUsernameChallenge)
    if not isinstance(first, bytes):
        return first
    if plain:
        parts = first.split(b"\0")
        return (parts[1], parts[2]) if len(parts) == 3 else BAD_PLAIN
    password = await server.challenge_auth(server.AuthLoginPasswordChallenge)
    if password is MISSING:
        return None
    return first, password


async def authenticate(
    server, session, args: list[str], check, limiter: FailureLimiter, sid: str
) -> str | None:
    """The AUTH exchange; `check(login, password)` is awaited and returns the login (a
    Grant, kept as the session's auth_data: each MAIL asks whether it still holds)."""
    ip = client_ip(session.peer)
    if limiter.blocked(ip):
        log.warning("session %s: AUTH from %s blocked after repeated failures", sid, ip)
        return BLOCKED
    got = await _credentials(server, args)
    if not isinstance(got, tuple):
        return got
    try:
        login, password = got[0].decode("utf-8"), got[1].decode("utf-8")
    except UnicodeDecodeError:
        granted: Grant | None = None
    else:
        granted = await check(login, password)
    if granted is None:
        limiter.fail(ip)
        log.info("session %s: AUTH failed from %s", sid, ip)
        return INVALID
    session.authenticated = True
    session.auth_data = granted
    log.info("session %s: authenticated for %s", sid, granted.mailbox.email)
    return SUCCESS
