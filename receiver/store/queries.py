"""Reading the store for the CLI and tools: messages, their deliveries, raw bytes, counts."""

from __future__ import annotations

import json

from peewee import JOIN, fn

from receiver.parse.ids import normalize_id
from receiver.store.deliveries import decompress
from receiver.store.models import Blob, Delivery, Folder, FolderEntry, Mailbox, Message, Thread


class NotFound(Exception):
    """No row with that id; the message says which."""


def _iso(value):
    return value.replace(microsecond=0).isoformat() + "Z" if value else None


def _mailboxes_of(message_ids: list[int]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {m: [] for m in message_ids}
    if not message_ids:
        return out
    rows = (
        Delivery.select(Delivery.message, Mailbox.email)
        .join(Mailbox)
        .where(Delivery.message.in_(message_ids))
        .distinct()
        .tuples()
    )
    for mid, email in rows:
        if email not in out[mid]:
            out[mid].append(email)
    for v in out.values():
        v.sort()
    return out


def message_summary(m: Message, mailboxes: list[str]) -> dict:
    return {
        "id": m.id,
        "message_id": m.message_id,
        "subject": m.subject,
        "date": _iso(m.date),
        "from": m.from_addr,
        "thread_id": m.thread_id,
        "mailboxes": mailboxes,
    }


def _messages(mailbox_email: str | None):
    q = Message.select()
    if mailbox_email:
        q = q.where(
            Message.id.in_(
                Delivery.select(Delivery.message)
                .join(Mailbox)
                .where(Mailbox.email == mailbox_email)
            )
        )
    return q


def count_messages(mailbox_email: str | None = None) -> int:
    return _messages(mailbox_email).count()


def list_messages(mailbox_email: str | None = None, limit: int = 50) -> list[dict]:
    """Newest first (by Date, then arrival); limit 0 means all."""
    q = _messages(mailbox_email).order_by(Message.date.desc(nulls="LAST"), Message.id.desc())
    if limit:
        q = q.limit(limit)
    rows = list(q)
    boxes = _mailboxes_of([m.id for m in rows])
    return [message_summary(m, boxes[m.id]) for m in rows]


def deliveries_json(deliveries: list[Delivery]) -> list[dict]:
    """Deliveries as `messages show` and `quarantine show` print them, with their IMAP
    folders (each selected with its Mailbox.email)."""
    folders = _folders_of([d.id for d in deliveries])
    return [{**_delivery_json(d, d.mailbox.email), "folders": folders[d.id]} for d in deliveries]


def _delivery_json(d: Delivery, email: str) -> dict:
    return {
        "id": d.id,
        "mailbox": email,
        "received_at": _iso(d.received_at),
        "status": d.status,
        "source": d.source,
        "session_id": d.session_id,
        "mail_from": d.mail_from,
        "rcpt_to": d.rcpt_to,
        "peer": d.peer,
        "helo": d.helo,
        "tls": json.loads(d.tls) if d.tls else None,
        "auth_user": d.auth_user,
        "sha256": d.blob_id,
        "verdict": d.verdict,
        "reasons": json.loads(d.reasons),
        "verify_detail": json.loads(d.verify_detail),
        "auth_results": d.auth_results,
        "smtp_defects": json.loads(d.smtp_defects),
        "wrapper_sha256": d.wrapper_blob_id,
    }


def _folders_of(delivery_ids: list[int]) -> dict[int, list[dict]]:
    """The IMAP folders each delivery was appended or copied into, by name: its UID
    there, and whether a client expunged or moved it out of that folder's view (the
    copy itself is kept: nothing is deleted over IMAP)."""
    out: dict[int, list[dict]] = {pk: [] for pk in delivery_ids}
    rows = (
        FolderEntry.select(FolderEntry.delivery, Folder.name, FolderEntry.uid, FolderEntry.hidden)
        .join(Folder)
        .where(FolderEntry.delivery.in_(delivery_ids))
        .order_by(Folder.name)
        .tuples()
    )
    for delivery_id, name, uid, hidden in rows:
        out[delivery_id].append({"name": name, "uid": uid, "expunged": bool(hidden)})
    return out


def get_message(message_pk: int) -> Message:
    m = Message.get_or_none(Message.id == message_pk)
    if m is None:
        raise NotFound(f"no message {message_pk}: see `threads-receiver messages list`")
    return m


def find_message(key: str) -> int:
    """The row of a message named by its row number or its Message-ID (`<id>` or bare)."""
    if key.isdigit():
        return int(key)
    msgid = normalize_id(key) or key.strip()
    rows = [
        pk
        for (pk,) in Message.select(Message.id)
        .where(Message.message_id == msgid)
        .order_by(Message.id)
        .tuples()
    ]
    if not rows:
        raise NotFound(f"no message <{msgid}>: see `threads-receiver messages list`")
    if len(rows) > 1:
        # Two different messages may share an id (both are kept): the admin picks one.
        raise NotFound(
            f"<{msgid}> is the Message-ID of {len(rows)} messages: give one of "
            f"the rows {', '.join(map(str, rows))}"
        )
    return rows[0]


def message_detail(message_pk: int) -> dict:
    m = get_message(message_pk)
    deliveries = list(
        Delivery.select(Delivery, Mailbox.email)
        .join(Mailbox)
        .where(Delivery.message == m)
        .order_by(Delivery.id)
    )
    data = message_summary(m, _mailboxes_of([m.id])[m.id])
    data.update(
        {
            "synthetic_id": m.synthetic_id,
            "date_raw": m.date_raw,
            "from_name": m.from_name,
            "to": json.loads(m.to_addrs),
            "cc": json.loads(m.cc_addrs),
            "reply_to": json.loads(m.reply_to),
            "in_reply_to": m.in_reply_to.split() if m.in_reply_to else [],
            "references": json.loads(m.references),
            "parent": m.parent_msgid,
            "text_body": m.text_body,
            "html_body": m.html_body,
            "attachments": json.loads(m.attachments),
            "defects": json.loads(m.defects),
            "parse_error": m.parse_error,
            "deliveries": deliveries_json(deliveries),
        }
    )
    return data


def blob_bytes(sha256: str) -> bytes:
    b = Blob.get_or_none(Blob.sha256 == sha256)
    if b is None:
        raise NotFound(f"no stored bytes {sha256}")
    return decompress(b.data, b.codec)


def message_raw(message_pk: int, delivery_pk: int | None = None) -> bytes:
    """The exact bytes of a message (its first delivery's, or the delivery named)."""
    m = get_message(message_pk)
    q = Delivery.select().where(Delivery.message == m)
    if delivery_pk is not None:
        q = q.where(Delivery.id == delivery_pk)
    d = q.order_by(Delivery.id).first()
    if d is None:
        raise NotFound(f"message {message_pk} has no delivery {delivery_pk or ''}".strip())
    return blob_bytes(d.blob_id)


def stats() -> dict:
    per: dict[str, dict] = {}
    rows = (
        Mailbox.select(
            Mailbox.email,
            Delivery.status,
            fn.COUNT(Delivery.id),
            fn.COUNT(fn.DISTINCT(Delivery.message)),
        )
        .join(Delivery, JOIN.LEFT_OUTER)
        .group_by(Mailbox.email, Delivery.status)
        .tuples()
    )
    for email, status, n, msgs in rows:
        entry = per.setdefault(
            email, {"email": email, "deliveries": 0, "quarantined": 0, "messages": 0}
        )
        if status == "quarantined":
            entry["quarantined"] += n
        if status is not None:
            entry["deliveries"] += n
            entry["messages"] += msgs
    totals = {
        "mailboxes": Mailbox.select().count(),
        "deliveries": Delivery.select().count(),
        "quarantined": Delivery.select().where(Delivery.status == "quarantined").count(),
        "messages": Message.select().count(),
        "threads": Thread.select().count(),
        # int(): PostgreSQL's SUM is a numeric (Decimal), SQLite's an integer.
        "stored_bytes": int(Blob.select(fn.COALESCE(fn.SUM(Blob.size), 0)).scalar()),
        "compressed_bytes": int(Blob.select(fn.COALESCE(fn.SUM(fn.LENGTH(Blob.data)), 0)).scalar()),
    }
    return {"mailboxes": sorted(per.values(), key=lambda e: e["email"]), "totals": totals}
