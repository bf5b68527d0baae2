"""Reading threads for the CLI and tools: the list, one thread's tree, its raw messages.

Only threaded messages count: a quarantined message has no thread until released.
"""

from __future__ import annotations

import datetime as dt
import json

from peewee import fn

from receiver.store.models import Delivery, Mailbox, Message
from receiver.store.queries import NotFound, _iso, blob_bytes
from receiver.store.thread_state import resolve_thread_id
from receiver.threads.tree import TreeMessage, build_tree, walk


def _thread_messages(thread_id: int) -> list[Message]:
    tid = resolve_thread_id(thread_id)
    rows = list(
        Message.select(
            Message.id,
            Message.message_id,
            Message.content_hash,
            Message.subject,
            Message.norm_subject,
            Message.subject_orphan,
            Message.date,
            Message.from_addr,
            Message.from_name,
            Message.in_reply_to,
            Message.references,
            Message.thread_index,
            Message.participants,
            Message.thread_id,
            Message.blob,
        ).where(Message.thread_id == tid)
    )
    if not rows:
        raise NotFound(f"no thread {thread_id}: see `threads-receiver threads list`")
    return rows


def check_thread(thread_id: int) -> None:
    if not Message.select().where(Message.thread_id == resolve_thread_id(thread_id)).exists():
        raise NotFound(f"no thread {thread_id}: see `threads-receiver threads list`")


def _threads(mailbox_email: str | None, since: dt.datetime | None):
    last = fn.MAX(Message.date)
    q = (
        Message.select(Message.thread_id, fn.MIN(Message.date), last, fn.COUNT(Message.id))
        .where(Message.thread_id.is_null(False))
        .group_by(Message.thread_id)
    )
    if mailbox_email:
        holding = (
            Message.select(Message.thread_id)
            .join(Delivery)
            .join(Mailbox)
            .where(Mailbox.email == mailbox_email)
        )
        q = q.where(Message.thread_id.in_(holding))
    if since:
        q = q.having(last >= since)
    return q, last


def count_threads(mailbox_email: str | None = None, since: dt.datetime | None = None) -> int:
    return _threads(mailbox_email, since)[0].count()


def list_threads(
    mailbox_email: str | None = None, since: dt.datetime | None = None, limit: int = 50
) -> list[dict]:
    """Latest activity first; limit 0 means all."""
    q, last = _threads(mailbox_email, since)
    q = q.order_by(last.desc(nulls="LAST"), Message.thread_id.desc())
    if limit:
        q = q.limit(limit)
    summaries = list(q.tuples())
    members: dict[int, list[Message]] = {tid: [] for tid, *_ in summaries}
    if members:
        for m in Message.select(
            Message.thread_id,
            Message.message_id,
            Message.norm_subject,
            Message.date,
            Message.participants,
        ).where(Message.thread_id.in_(list(members))):
            members[m.thread_id].append(m)
    out = []
    for tid, first, latest, count in summaries:
        msgs = sorted(
            members[tid], key=lambda m: (m.date is None, m.date or dt.datetime.min, m.message_id)
        )
        people = sorted({p for m in msgs for p in m.participants.split()})
        out.append(
            {
                "id": tid,
                "subject": msgs[0].norm_subject if msgs else "",
                "first_date": _iso(first),
                "last_date": _iso(latest),
                "messages": count,
                "participants": people,
                "message_ids": sorted({m.message_id for m in msgs}),
            }
        )
    return out


def thread_tree(thread_id: int) -> dict:
    """One thread as a tree of nodes, ghosts included (see README, "Threading")."""
    rows = _thread_messages(thread_id)
    roots = build_tree(
        [
            TreeMessage(
                msgid=m.message_id,
                in_reply_to=tuple((m.in_reply_to or "").split()),
                references=tuple(json.loads(m.references)),
                date=m.date,
                tiebreak=m.content_hash,
                norm_subject=m.norm_subject or "",
                subject_orphan=m.subject_orphan,
                thread_index=m.thread_index,
                payload=m,
            )
            for m in rows
        ]
    )
    nodes: dict[int, dict] = {}
    top: list[dict] = []
    for _depth, n in walk(roots):
        m = n.message.payload if n.message else None
        node: dict = {
            "id": m.id if m else None,
            "message_id": n.msgid,
            "ghost": m is None,
            "subject": m.subject if m else None,
            "from": m.from_addr if m else None,
            "from_name": m.from_name if m else None,
            "date": _iso(m.date) if m else None,
            "children": [],
        }
        nodes[id(n)] = node
        (nodes[id(n.parent)]["children"] if n.parent else top).append(node)
    ordered = sorted(rows, key=lambda m: (m.date is None, m.date or dt.datetime.min))
    return {
        "id": rows[0].thread_id,
        "subject": ordered[0].norm_subject or "",
        "messages": len(rows),
        "tree": top,
    }


def thread_raw_messages(thread_id: int) -> list[tuple[Message, bytes]]:
    """Each message of the thread with its exact bytes, in date order."""
    rows = sorted(
        _thread_messages(thread_id),
        key=lambda m: (m.date is None, m.date or dt.datetime.min, m.message_id, m.id),
    )
    return [(m, blob_bytes(m.blob_id)) for m in rows]
