"""Incremental threading state: a union over link keys, kept as MsgId rows.

Which messages share a thread depends only on the set of links, never on the order they
arrive in: a key seen first as a reference is a ghost row carrying a thread id, and a
message that links two threads merges them into the smaller id (recorded in ThreadMerge
so an old id still resolves). The subject rule (receiver/threads/subject.py) is a
predicate on pairs of messages; `attach` looks for partners in both directions (this
message an orphan joining earlier messages, or earlier orphans joining this message),
so the pair is joined whichever of the two arrives second.

`attach` runs inside the caller's transaction. On PostgreSQL the caller holds
`lock_threading()` for that transaction, which serialises threading across every
receiver process on the database; SQLite has one writer at a time anyway.
"""

from __future__ import annotations

from peewee import Database

from receiver.store.db import is_postgres
from receiver.store.models import Message, MsgId, Thread, ThreadMerge
from receiver.threads.links import ThreadLinks
from receiver.threads.subject import SubjectFacts, SubjectRule

# One lock id for every receiver writing to one PostgreSQL: threading merges must see
# each other's rows, and a transaction-scoped advisory lock serialises exactly that.
PG_THREADING_LOCK = 0x7468726561647300

DEFAULT_RULE = SubjectRule()


def lock_threading(db: Database) -> None:
    """Take the threading lock until the current transaction ends (PostgreSQL only)."""
    if is_postgres(db):
        db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (PG_THREADING_LOCK,))


def attach(message: Message, links: ThreadLinks, rule: SubjectRule = DEFAULT_RULE) -> int:
    """Put `message` into the thread its links lead to; returns the thread id.

    Call inside a transaction holding `lock_threading`. Queries: one lookup of the keys,
    one subject lookup (when the message has a normalised subject), one insert of new
    keys, one update of the message, plus the merge statements when threads join.
    """
    keys = list(dict.fromkeys(links.keys))
    existing = dict(MsgId.select(MsgId.msgid, MsgId.thread_id)
                    .where(MsgId.msgid.in_(keys)).tuples())
    found = set(existing.values())
    found.update(_subject_partners(message.id, links, rule))
    target = min(found) if found else Thread.insert().execute()
    merged = sorted(found - {target})
    if merged:
        _merge(merged, target)
    missing = [k for k in keys if k not in existing]
    if missing:
        MsgId.insert_many([(k, target, k != links.own_id) for k in missing],
                          fields=[MsgId.msgid, MsgId.thread_id, MsgId.ghost]).execute()
    if links.own_id in existing:
        MsgId.update(ghost=False).where((MsgId.msgid == links.own_id) & MsgId.ghost).execute()
    message.thread_id = target
    Message.update(thread_id=target).where(Message.id == message.id).execute()
    return target


def _subject_partners(message_pk: int, links: ThreadLinks, rule: SubjectRule) -> set[int]:
    """Thread ids of threaded messages the subject rule joins with this one."""
    facts = links.subject
    if not (rule.enabled and facts.norm_subject and facts.date is not None):
        return set()
    # The SQL narrows to candidates; `rule.joins` decides.
    q = (Message.select(Message.thread_id, Message.subject_orphan, Message.date,
                        Message.participants)
         .where((Message.norm_subject == facts.norm_subject)
                & Message.date.between(facts.date - rule.window, facts.date + rule.window)
                & Message.thread_id.is_null(False) & (Message.id != message_pk)))
    if not facts.orphan:
        q = q.where(Message.subject_orphan)
    return {tid for tid, orphan, date, people in q.tuples()
            if rule.joins(facts, SubjectFacts(facts.norm_subject, orphan, date,
                                              frozenset(people.split())))}


def _merge(merged: list[int], target: int) -> None:
    MsgId.update(thread_id=target).where(MsgId.thread_id.in_(merged)).execute()
    Message.update(thread_id=target).where(Message.thread_id.in_(merged)).execute()
    ThreadMerge.update(new_id=target).where(ThreadMerge.new_id.in_(merged)).execute()
    ThreadMerge.insert_many([(old, target) for old in merged],
                            fields=[ThreadMerge.old_id, ThreadMerge.new_id]).execute()
    Thread.delete().where(Thread.id.in_(merged)).execute()


def resolve_thread_id(thread_id: int) -> int:
    """The current id of a thread that may since have been merged away."""
    row = ThreadMerge.get_or_none(ThreadMerge.old_id == thread_id)
    return row.new_id if row else thread_id
