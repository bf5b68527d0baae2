"""Reading a mailbox's deliveries back out, bytes exactly as stored, in arrival order."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from collections.abc import Iterator

from peewee import fn

from receiver.store.deliveries import decompress
from receiver.store.models import Blob, Delivery, Message
from receiver.store.thread_state import resolve_thread_id

BATCH = 200


@dataclass(frozen=True)
class Exported:
    delivery_id: int
    sha256: str
    mail_from: str | None
    received_at: dt.datetime
    raw: bytes


def deliveries(
    mailbox_id: int,
    thread_id: int | None = None,
    since: dt.datetime | None = None,
    include_quarantined: bool = False,
) -> Iterator[Exported]:
    """The mailbox's copies; `since` compares the message's Date (arrival when it has none)."""
    q = (
        Delivery.select(
            Delivery.id,
            Delivery.blob,
            Delivery.mail_from,
            Delivery.received_at,
            Blob.data,
            Blob.codec,
        )
        .join(Blob, on=(Delivery.blob == Blob.sha256))
        .switch(Delivery)
        .join(Message, on=(Delivery.message == Message.id))
        .where(Delivery.mailbox == mailbox_id)
    )
    if not include_quarantined:
        q = q.where(Delivery.status != "quarantined")
    if thread_id is not None:
        q = q.where(Message.thread_id == resolve_thread_id(thread_id))
    if since is not None:
        q = q.where(fn.COALESCE(Message.date, Delivery.received_at) >= since)
    last = 0
    while True:
        rows = list(q.where(Delivery.id > last).order_by(Delivery.id).limit(BATCH).tuples())
        for did, sha, mail_from, received_at, data, codec in rows:
            yield Exported(did, sha, mail_from, received_at, decompress(data, codec))
        if len(rows) < BATCH:
            return
        last = rows[-1][0]
