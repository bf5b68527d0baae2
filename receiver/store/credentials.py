"""SMTP AUTH credentials for bulk copy tools: one per mailbox, issued, checked, revoked.

The password is random, shown once, and kept only as a scrypt hash (stdlib hashlib), so
a copy of the database does not give anyone a way in.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from receiver.store.db import is_postgres
from receiver.store.mailboxes import INFO_FIELDS, MailboxInfo, _info, _info_of, get
from receiver.store.models import Credential, Mailbox, database, utcnow

# scrypt cost: 16 MiB and 50-250 ms per check (2 cores); failures are rate-limited too.
_N, _R, _P = 2**14, 8, 1
PASSWORD_BYTES = 18


def _hash(password: str, salt: bytes, n: int = _N, r: int = _R, p: int = _P) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=256 * 1024 * 1024, dklen=32
    )


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    b64 = base64.b64encode
    return f"scrypt${_N}${_R}${_P}${b64(salt).decode()}${b64(_hash(password, salt)).decode()}"


def check_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        got = _hash(password, base64.b64decode(salt), int(n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(got, base64.b64decode(digest))


# A fixed hash checked when the user name is unknown, so that the reply takes as long
# as for a known name with a wrong password (no account enumeration by timing).
_DUMMY = hash_password(secrets.token_urlsafe(PASSWORD_BYTES))


def issue(email: str) -> tuple[str, str]:
    """A fresh password for the mailbox (replacing any earlier one): (username, password)."""
    password = secrets.token_urlsafe(PASSWORD_BYTES)
    with database.atomic():
        mb = get(email)
        cred = Credential.get_or_none(Credential.mailbox == mb)
        if cred is None:
            cred = Credential(mailbox=mb, username=mb.email.lower())
        cred.secret_hash = hash_password(password)
        cred.created_at = utcnow()
        cred.revoked_at = None
        cred.save()
    return cred.username, password


def revoke(email: str) -> bool:
    """Revoke the mailbox's credential; False when it had none in force."""
    mb = get(email)
    n = (
        Credential.update(revoked_at=utcnow())
        .where((Credential.mailbox == mb) & Credential.revoked_at.is_null())
        .execute()
    )
    return bool(n)


def status(mb: Mailbox) -> dict | None:
    cred = Credential.get_or_none(Credential.mailbox == mb)
    if cred is None:
        return None
    return {"username": cred.username, "created_at": cred.created_at, "revoked_at": cred.revoked_at}


@dataclass(frozen=True)
class Grant:
    """A login: the mailbox it opened, and which issue of which credential opened it.
    A session holds on to it and asks `standing` whether it still holds."""

    mailbox: MailboxInfo
    credential_id: int
    issued_at: dt.datetime

    @property
    def issue(self) -> tuple[int, dt.datetime]:
        """(credential id, issued at): what `standing` and Envelope.login take."""
        return self.credential_id, self.issued_at


class LoginEnded(Exception):
    """A session's login no longer holds (the message says why); nothing was stored."""


def grant(username: str, password: str) -> Grant | None:
    """The login these credentials make, or None (unknown, wrong, revoked, disabled)."""
    row = (
        Credential.select(Credential, Mailbox)
        .join(Mailbox)
        .where(Credential.username == username.strip().lower())
        .first()
    )
    if row is None:
        check_password(password, _DUMMY)
        return None
    ok = check_password(password, row.secret_hash)
    if not ok or row.revoked_at is not None or row.mailbox.state != "active":
        return None
    return Grant(_info(row.mailbox), row.id, row.created_at)


@dataclass(frozen=True)
class Standing:
    """A login as the database has it now: why it ended, or else its mailbox as it is
    now (policy and allow-list included, which the CLI may have changed since)."""

    ended: str | None
    mailbox: MailboxInfo | None = None


def standing(credential_id: int, issued_at: dt.datetime, lock: bool = False) -> Standing:
    """Whether a login by that issue of that credential still holds, and why not
    ("mailbox disabled", "credentials revoked", ...). One primary-key lookup: the CLI
    changes these rows in another process, so a session asks the database each time.

    `lock` (inside a write transaction) keeps both rows as read until it commits: on
    PostgreSQL a `disable` or `--revoke` then waits for it, or it sees theirs; a SQLite
    write transaction holds the whole database anyway."""
    q = (
        Credential.select(Credential.created_at, Credential.revoked_at, *INFO_FIELDS)
        .join(Mailbox)
        .where(Credential.id == credential_id)
    )
    if lock and is_postgres(database.obj):
        q = q.for_update("FOR SHARE")
    row = q.tuples().first()
    # A credential goes only with its mailbox (`mailbox remove`).
    if row is None:
        return Standing("mailbox removed")
    created_at, revoked_at, *columns = row
    mailbox = _info_of(*columns)
    if mailbox.state != "active":
        return Standing("mailbox disabled")
    if revoked_at is not None:
        return Standing("credentials revoked")
    if created_at != issued_at:
        return Standing("credentials reissued")
    return Standing(None, mailbox)
