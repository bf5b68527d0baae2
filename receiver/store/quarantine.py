"""The quarantine: deliveries stored byte-exact but held back from threads.

Release threads the message exactly as if it had arrived then, from the record the
delivery path built and stored in the Message row: never from a new parse of the bytes,
which would skip that path's clean-up (bare CR/LF in the header block) and parse
budgets. It attaches inside one transaction, under the same PostgreSQL advisory lock
the delivery writer takes, so a release never races a merge of another receiver.
"""

from __future__ import annotations

import json

from peewee import Database

from receiver.parse.record import ParsedMessage
from receiver.store import folders, thread_state
from receiver.store.models import Delivery, Mailbox, Message
from receiver.store.queries import NotFound, deliveries_json, message_summary
from receiver.store.retention import delete_deliveries
from receiver.threads.links import links_of
from receiver.threads.subject import SubjectRule

QUARANTINED = "quarantined"


def _quarantined(delivery_id: int) -> Delivery:
    d = (
        Delivery.select(Delivery, Mailbox)
        .join(Mailbox)
        .where((Delivery.id == delivery_id) & (Delivery.status == QUARANTINED))
        .first()
    )
    if d is None:
        raise NotFound(
            f"no quarantined delivery {delivery_id}: see `threads-receiver quarantine list`"
        )
    return d


def _row(d: Delivery, m: Message) -> dict:
    return {
        "delivery_id": d.id,
        "mailbox": d.mailbox.email,
        "received_at": d.received_at.replace(microsecond=0).isoformat() + "Z",
        "verdict": d.verdict,
        "reasons": json.loads(d.reasons),
        "message_id": m.message_id,
        "message": m.id,
        "subject": m.subject,
        "from": m.from_addr,
    }


def _held(mailbox_email: str | None):
    q = (
        Delivery.select(Delivery, Mailbox, Message)
        .join(Mailbox)
        .switch(Delivery)
        .join(Message)
        .where(Delivery.status == QUARANTINED)
    )
    if mailbox_email:
        q = q.where(Mailbox.email == mailbox_email)
    return q


def count_quarantined(mailbox_email: str | None = None) -> int:
    return _held(mailbox_email).count()


def list_quarantined(mailbox_email: str | None = None, limit: int = 100) -> list[dict]:
    """Oldest first: the order an admin works through them; limit 0 means all."""
    q = _held(mailbox_email).order_by(Delivery.id)
    if limit:
        q = q.limit(limit)
    return [_row(d, d.message) for d in q]


def show(delivery_id: int) -> dict:
    d = _quarantined(delivery_id)
    m = Message.get_by_id(d.message_id)
    [data] = deliveries_json([d])
    data["message"] = message_summary(m, [d.mailbox.email])
    return data


def _stored_record(m: Message) -> ParsedMessage:
    """The threading fields of the record the delivery path parsed, as stored."""
    return ParsedMessage(
        message_id=m.message_id,
        synthetic_id=m.synthetic_id,
        content_hash=m.content_hash,
        subject=m.subject,
        date=m.date,
        date_raw=m.date_raw,
        from_addr=m.from_addr,
        from_name=m.from_name,
        to=[tuple(p) for p in json.loads(m.to_addrs)],
        cc=[tuple(p) for p in json.loads(m.cc_addrs)],
        in_reply_to=(m.in_reply_to or "").split(),
        references=json.loads(m.references),
        thread_index=m.thread_index,
    )


def release(db: Database, delivery_id: int, rule: SubjectRule) -> dict:
    """Mark the delivery stored and thread its message (if no other delivery did)."""
    with db.atomic():
        thread_state.lock_threading(db)
        d = _quarantined(delivery_id)
        Delivery.update(status="stored").where(Delivery.id == d.id).execute()
        folders.touch(d.id)  # its folder entries lose the quarantine keyword
        msg = Message.get_by_id(d.message_id)
        if msg.thread_id is None:
            thread_state.attach(msg, links_of(_stored_record(msg)), rule)
        return {
            "delivery_id": d.id,
            "message": msg.id,
            "thread_id": msg.thread_id,
            "released": True,
        }


def delete(db: Database, delivery_id: int) -> dict:
    """Delete the delivery, and its message and bytes when nothing else holds them."""
    with db.atomic():
        thread_state.lock_threading(db)
        d = _quarantined(delivery_id)
        delete_deliveries(Delivery.select(Delivery.id).where(Delivery.id == d.id))
        return {"delivery_id": d.id, "deleted": True}
