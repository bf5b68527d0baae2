"""Mailboxes and their receiver addresses: create, rotate, disable, resolve at RCPT time."""

from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass

from peewee import fn

from receiver.store.models import Delivery, Mailbox, MailboxAddress, database, utcnow

# 15 random bytes = 120 bits, comfortably above the 96 bits an address must carry.
TOKEN_BYTES = 15
_SLUG_CHARS = re.compile(r"[^a-z0-9]+")


class MailboxError(Exception):
    """A mailbox command that cannot be done; the message says why and what to do."""


@dataclass(frozen=True)
class MailboxInfo:
    """What the SMTP side needs to know about a mailbox after RCPT."""

    id: int
    email: str
    state: str
    policy_altered: str | None
    policy_unverifiable: str | None
    allow_from: tuple[str, ...] | None


@dataclass(frozen=True)
class RcptResult:
    # ok | unknown | disabled | relay
    status: str
    mailbox: MailboxInfo | None = None


def token_hash(token: str) -> str:
    return hashlib.sha256(token.lower().encode()).hexdigest()


def _new_local_part(email: str) -> tuple[str, str]:
    token = base64.b32encode(secrets.token_bytes(TOKEN_BYTES)).decode().lower()
    # A readable prefix helps the sender's admin recognise the rule; the token is the secret.
    slug = _SLUG_CHARS.sub("", email.split("@", 1)[0].lower())[:16] or "mbox"
    return f"{slug}-{token}", token


# The Mailbox columns a MailboxInfo is made of, in `_info_of`'s order: a query that
# selects them hands its row to `_info_of`.
INFO_FIELDS = (
    Mailbox.id,
    Mailbox.email,
    Mailbox.state,
    Mailbox.policy_altered,
    Mailbox.policy_unverifiable,
    Mailbox.allow_from,
)


def _info(mb: Mailbox) -> MailboxInfo:
    return _info_of(*(getattr(mb, f.name) for f in INFO_FIELDS))


def _info_of(
    pk: int,
    email: str,
    state: str,
    policy_altered: str | None,
    policy_unverifiable: str | None,
    allow_from: str | None,
) -> MailboxInfo:
    """A MailboxInfo from the Mailbox columns (allow_from as stored: JSON text)."""
    return MailboxInfo(
        pk,
        email,
        state,
        policy_altered,
        policy_unverifiable,
        tuple(json.loads(allow_from)) if allow_from else None,
    )


def normalize_email(email: str) -> str:
    email = email.strip()
    local, at, domain = email.rpartition("@")
    if not at or not local or not domain or any(c.isspace() for c in email):
        raise MailboxError(f"not an email address: {email!r}")
    return f"{local}@{domain.lower()}"


def get(email: str) -> Mailbox:
    mb = Mailbox.get_or_none(Mailbox.email == normalize_email(email))
    if mb is None:
        raise MailboxError(f"no mailbox {email}: see `threads-receiver mailbox list`")
    return mb


def info(email: str) -> MailboxInfo:
    return _info(get(email))


def add(email: str) -> tuple[Mailbox, MailboxAddress]:
    email = normalize_email(email)
    with database.atomic():
        if Mailbox.select().where(Mailbox.email == email).exists():
            raise MailboxError(
                f"mailbox {email} exists already: see `threads-receiver mailbox show {email}`"
            )
        mb = Mailbox.create(email=email)
        return mb, _add_address(mb)


def _add_address(mb: Mailbox) -> MailboxAddress:
    local, token = _new_local_part(mb.email)
    return MailboxAddress.create(mailbox=mb, local_part=local, token_hash=token_hash(token))


def current_address(mb: Mailbox) -> MailboxAddress:
    return (
        MailboxAddress.select()
        .where((MailboxAddress.mailbox == mb) & MailboxAddress.expires_at.is_null())
        .order_by(MailboxAddress.id.desc())
        .first()
    )


def addresses(mb: Mailbox) -> list[MailboxAddress]:
    return list(
        MailboxAddress.select().where(MailboxAddress.mailbox == mb).order_by(MailboxAddress.id)
    )


def set_state(email: str, state: str) -> Mailbox:
    mb = get(email)
    mb.state = state
    mb.save()
    return mb


def rotate(email: str, grace_days: float) -> tuple[MailboxAddress, MailboxAddress]:
    """A new address; the current one keeps working for `grace_days`, then is refused."""
    with database.atomic():
        mb = get(email)
        old = current_address(mb)
        old.expires_at = utcnow() + dt.timedelta(days=grace_days)
        old.save()
        return old, _add_address(mb)


def remove(email: str, purge: bool) -> int:
    """Delete a mailbox; with deliveries it needs `purge`. Returns deliveries removed."""
    from receiver.store.retention import delete_deliveries

    with database.atomic():
        mb = get(email)
        if mb.legal_hold:
            raise MailboxError(
                f"mailbox {mb.email} is under legal hold: lift it first with "
                f"`threads-receiver mailbox set {mb.email} --no-legal-hold`"
            )
        count = Delivery.select().where(Delivery.mailbox == mb).count()
        if count and not purge:
            raise MailboxError(
                f"mailbox {mb.email} holds {count} deliveries: add --purge to delete them too"
            )
        delete_deliveries(Delivery.select(Delivery.id).where(Delivery.mailbox == mb))
        MailboxAddress.delete().where(MailboxAddress.mailbox == mb).execute()
        mb.delete_instance(recursive=True)
        return count


@functools.cache
def _rcpt_sql(param: str) -> str:
    """The RCPT lookup, built once per placeholder style: plain SQL, because building the
    peewee query and its model rows was most of a RCPT's cost (bench/RESULTS.md)."""
    a, m = MailboxAddress._meta, Mailbox._meta
    return (
        f'SELECT a."local_part", a."expires_at", m."id", m."email", m."state", '
        f'm."policy_altered", m."policy_unverifiable", m."allow_from" '
        f'FROM "{a.table_name}" AS a JOIN "{m.table_name}" AS m '
        f'ON m."id" = a."{a.fields["mailbox"].column_name}" '
        f'WHERE a."token_hash" = {param}'
    )


def resolve_rcpt(address: str, domains: list[str]) -> RcptResult:
    """Map a RCPT address to a mailbox. Domains are matched case-insensitively.

    Read from the store at every RCPT, with no cache: a mailbox the CLI disables, rotates
    or removes in another process is refused from the next RCPT on.
    """
    local, at, domain = address.rpartition("@")
    if not at or domain.lower().rstrip(".") not in domains:
        return RcptResult("relay")
    _, dash, token = local.rpartition("-")
    if not dash or not token:
        return RcptResult("unknown")
    # fetchall runs the statement to its end: an unfinished SQLite statement holds its read
    # snapshot for as long as it lives, and RCPTs would miss the CLI's changes meanwhile.
    rows = database.execute_sql(_rcpt_sql(database.param), (token_hash(token),)).fetchall()
    if not rows:
        return RcptResult("unknown")
    local_part, expires_at, *mailbox = rows[0]
    # As bytes: compare_digest refuses str with non-ASCII (an SMTPUTF8 local part).
    if not hmac.compare_digest(local_part.lower().encode(), local.lower().encode()):
        return RcptResult("unknown")
    expires_at = MailboxAddress.expires_at.python_value(expires_at)
    if expires_at is not None and expires_at <= utcnow():
        return RcptResult("unknown")
    info = _info_of(*mailbox)
    if info.state != "active":
        return RcptResult("disabled", info)
    return RcptResult("ok", info)


def delivery_counts() -> dict[int, dict[str, int]]:
    rows = (
        Delivery.select(Delivery.mailbox, Delivery.status, fn.COUNT(Delivery.id).alias("n"))
        .group_by(Delivery.mailbox, Delivery.status)
        .tuples()
    )
    out: dict[int, dict[str, int]] = {}
    for mailbox_id, status, n in rows:
        out.setdefault(mailbox_id, {})[status] = n
    return out
