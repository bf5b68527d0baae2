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
from receiver.store.threading import DEFAULT_RULE, attach_many, insert_rows, select_in
from receiver.threads.links import links_of
from receiver.threads.subject import SubjectRule


def store_messages(records: list[ParsedMessage], rule: SubjectRule = DEFAULT_RULE,
                   ) -> list[Message]:
    """Insert the records not stored yet and thread them; returns the new Message rows."""
    wanted = {(r.message_id, r.content_hash): r for r in records}
    ids = list(dict.fromkeys(mid for mid, _ in wanted))
    for key in select_in(Message, ["message_id", "content_hash"], "message_id", ids):
        wanted.pop(tuple(key), None)
    links = {key: links_of(rec) for key, rec in wanted.items()}
    rows = [message_fields(rec, links[key], None) for key, rec in wanted.items()]
    if rows:
        fields = list(rows[0])
        insert_rows(Message, fields, [tuple(r[f] for f in fields) for r in rows])
    made = [Message(id=pk, message_id=mid, content_hash=chash) for pk, mid, chash in select_in(
        Message, ["id", "message_id", "content_hash"], "message_id", ids,
        'AND "thread_id" IS NULL') if (mid, chash) in links]
    attach_many([(m, links[(m.message_id, m.content_hash)]) for m in made], rule)
    return made
