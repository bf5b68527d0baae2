"""LOGIN / AUTHENTICATE: the mailbox's receiver-issued credential, as for SMTP AUTH.

The user name is the mailbox's email or one of its receiver addresses. Failures count
in the same per-address limiter as SMTP AUTH; the store's check is constant-time and
takes as long for an unknown name as for a wrong password.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime

from pymap.exceptions import AuthorizationFailure, InvalidAuth, NotSupportedError
from pymap.interfaces.login import IdentityInterface, LoginInterface
from pymap.token import AllTokens
from pymap.user import UserMetadata
from pysasl.creds.server import ServerCredentials

from receiver import metrics
from receiver.imap.backend import Backend, Session
from receiver.imap.connection import client_ip, session_id
from receiver.smtp.limits import FailureLimiter
from receiver.store.credentials import Grant

log = logging.getLogger(__name__)


class _Secret:
    """pysasl hands a credential's secret only to an identity's compare_secret; the
    check itself is the store's (scrypt, off the loop), so the secret is taken here."""

    secret: str | None = None
    authcid = ""

    def get_clear_secret(self) -> str | None:
        return None

    def compare_authcid(self, authcid: str) -> bool:
        return True

    def compare_secret(self, secret: str) -> bool:
        self.secret = secret
        return True


class Login(LoginInterface):
    def __init__(self, backend: Backend, limiter: FailureLimiter):
        self.backend = backend
        self.limiter = limiter
        self._tokens = AllTokens(backend.settings)

    @property
    def tokens(self) -> AllTokens:
        return self._tokens

    async def authenticate(self, credentials: ServerCredentials) -> Identity:
        ip = client_ip()
        if self.limiter.blocked(ip):
            log.warning("imap %s: login from %s blocked after repeated failures", session_id(), ip)
            metrics.imap_login("blocked")
            raise InvalidAuth("Too many failed logins from your address, try again later.")
        taken = _Secret()
        credentials.verify(taken)
        granted = await self._check(credentials.authcid, taken.secret or "")
        if granted is None:
            self.limiter.fail(ip)
            metrics.imap_login("failed")
            log.info("imap %s: login failed from %s", session_id(), ip)
            raise InvalidAuth()
        metrics.imap_login("ok")
        log.info("imap %s: logged in for %s from %s", session_id(), granted.mailbox.email, ip)
        return Identity(credentials.authcid, granted, self.backend)

    async def _check(self, username: str, password: str) -> Grant | None:
        pipeline = self.backend.pipeline
        if "@" in username:
            # A receiver address names its mailbox; the credential is the mailbox's.
            found = await pipeline.resolve_rcpt(username)
            if found.status == "ok" and found.mailbox is not None:
                username = found.mailbox.email
        return await pipeline.grant(username, password)

    async def authorize(self, authenticated: IdentityInterface, authzid: str) -> IdentityInterface:
        if authzid and authzid != authenticated.name:
            raise AuthorizationFailure()
        return authenticated


class Identity(IdentityInterface):
    def __init__(self, name: str, granted: Grant, backend: Backend):
        self._name = name
        self.granted = granted
        self.backend = backend

    @property
    def name(self) -> str:
        return self._name

    @property
    def roles(self) -> frozenset[str]:
        return frozenset()

    @asynccontextmanager
    async def new_session(self) -> AsyncIterator[Session]:
        yield Session(self._name, self.backend, self.granted)

    async def new_token(self, *, expiration: datetime | None = None) -> str | None:
        return None

    async def get(self) -> UserMetadata:
        return UserMetadata(self.backend.settings, self._name)

    async def set(self, metadata: UserMetadata) -> int | None:
        raise NotSupportedError("Credentials are issued by the receiver's admin.")

    async def delete(self) -> None:
        raise NotSupportedError("Credentials are issued by the receiver's admin.")
