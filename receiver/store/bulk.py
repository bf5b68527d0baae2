"""Storing and threading many parsed messages at once (imports, benchmarks).

Same rows and the same threads as delivering them one by one, in fewer statements:
the Message rows go in with one INSERT per chunk and `threading.attach_many` threads
the whole set. No Delivery rows: callers that keep deliveries use store_delivery.
Call inside a transaction holding `threading.lock_threading`.
"""

from __future__ import annotations

from receiver.parse.record import ParsedMessage
from receiver.store.deliveries import insert_messages
from receiver.store.models import Message
from receiver.store.thread_state import attach_many
from receiver.threads.links import links_of
from receiver.threads.subject import SubjectRule


def store_messages(records: list[ParsedMessage], rule: SubjectRule) -> list[Message]:
    """Insert the records not stored yet and thread them; returns the new Message rows."""
    links = {(r.message_id, r.content_hash): links_of(r) for r in records}
    rows, new = insert_messages([(r, links[(r.message_id, r.content_hash)], None) for r in records])
    made = [
        Message(id=rows[key][0], message_id=key[0], content_hash=key[1])
        for key in links
        if key in new
    ]
    attach_many([(m, links[(m.message_id, m.content_hash)]) for m in made], rule)
    return made
