"""Storing and threading many parsed messages at once (imports, benchmarks).

Same rows and the same threads as delivering them one by one, in fewer statements:
the Message rows go in with one INSERT per chunk and `threading.attach_many` threads
the whole set. No Delivery rows: callers that keep deliveries use store_delivery.
Call inside a transaction holding `threading.lock_threading`.
"""

from __future__ import annotations

from receiver.parse.record import ParsedMessage
from receiver.store.deliveries import message_fields
from receiver.store.models import Message
from receiver.store.threading import DEFAULT_RULE, attach_many, chunks, insert_rows
from receiver.threads.links import links_of
from receiver.threads.subject import SubjectRule


def store_messages(records: list[ParsedMessage], rule: SubjectRule = DEFAULT_RULE,
                   ) -> list[Message]:
    """Insert the records not stored yet and thread them; returns the new Message rows."""
    wanted = {(r.message_id, r.content_hash): r for r in records}
    for chunk in chunks(list(wanted)):
        ids = [mid for mid, _ in chunk]
        for key in Message.select(Message.message_id, Message.content_hash).where(
                Message.message_id.in_(ids)).tuples():
            wanted.pop(key, None)
    links = {key: links_of(rec) for key, rec in wanted.items()}
    rows = [message_fields(rec, links[key], None) for key, rec in wanted.items()]
    if rows:
        fields = list(rows[0])
        insert_rows(Message, fields, [tuple(r[f] for f in fields) for r in rows])
    made: list[Message] = []
    for chunk in chunks(list(wanted)):
        ids = [mid for mid, _ in chunk]
        made.extend(m for m in Message.select(Message.id, Message.message_id, Message.content_hash)
                    .where(Message.message_id.in_(ids) & Message.thread_id.is_null())
                    if (m.message_id, m.content_hash) in links)
    attach_many([(m, links[(m.message_id, m.content_hash)]) for m in made], rule)
    return made
