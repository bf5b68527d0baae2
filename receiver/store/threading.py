"""Incremental threading state: a union over link keys, kept as MsgId rows.

Which messages share a thread depends only on the set of links, never on the order they
arrive in: a key seen first as a reference is a ghost row carrying a thread id, and a
message that links two threads merges them into the smaller id (recorded in ThreadMerge
so an old id still resolves). Runs inside the writer's transaction.
"""

from __future__ import annotations

from receiver import metrics
from receiver.store.models import Message, MsgId, Thread, ThreadMerge
from receiver.threads.links import ThreadLinks


def attach(message: Message, links: ThreadLinks) -> int:
    """Put `message` into the thread its links lead to; returns the thread id."""
    keys = list(dict.fromkeys(links.keys))
    existing = {r.msgid: r.thread_id for r in MsgId.select().where(MsgId.msgid.in_(keys))}
    found = set(existing.values())
    target = min(found) if found else Thread.create().id
    merged = sorted(found - {target})
    if merged:
        metrics.threads_merged(len(merged))
        MsgId.update(thread_id=target).where(MsgId.thread_id.in_(merged)).execute()
        Message.update(thread_id=target).where(Message.thread_id.in_(merged)).execute()
        ThreadMerge.update(new_id=target).where(ThreadMerge.new_id.in_(merged)).execute()
        ThreadMerge.insert_many([(old, target) for old in merged],
                                fields=[ThreadMerge.old_id, ThreadMerge.new_id]).execute()
        Thread.delete().where(Thread.id.in_(merged)).execute()
    missing = [k for k in keys if k not in existing]
    if missing:
        MsgId.insert_many([(k, target, True) for k in missing],
                          fields=[MsgId.msgid, MsgId.thread_id, MsgId.ghost]).execute()
    MsgId.update(ghost=False).where(MsgId.msgid == links.own_id).execute()
    message.thread_id = target
    Message.update(thread_id=target).where(Message.id == message.id).execute()
    return target


def resolve_thread_id(thread_id: int) -> int:
    """The current id of a thread that may since have been merged away."""
    row = ThreadMerge.get_or_none(ThreadMerge.old_id == thread_id)
    return row.new_id if row else thread_id
