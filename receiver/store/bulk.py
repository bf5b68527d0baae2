"""Storing and threading many parsed messages at once (imports, benchmarks).

Same rows and the same threads as delivering them one by one, in fewer statements:
`thread_state.assign_threads` threads the new messages first, then their Message rows
go in with their thread ids, one INSERT per chunk (no UPDATE of every new row after).
No Delivery rows: callers that keep deliveries use store_delivery.
Call inside a transaction holding `thread_state.lock_threading`.
"""

from __future__ import annotations

from receiver.parse.record import ParsedMessage
from receiver.store.deliveries import message_fields
from receiver.store.models import Message
from receiver.store.sql import insert_rows, select_in
from receiver.store.thread_state import assign_threads
from receiver.threads.links import links_of
from receiver.threads.subject import SubjectRule


def store_messages(records: list[ParsedMessage], rule: SubjectRule) -> int:
    """Insert the records not stored yet and thread them; returns how many were new.

    A (Message-ID, content hash) seen twice is one message: the first record's fields.
    """
    first: dict[tuple[str, str], ParsedMessage] = {}
    for r in records:
        first.setdefault((r.message_id, r.content_hash), r)
    ids = list(dict.fromkeys(mid for mid, _ in first))
    stored = {
        key
        for key in select_in(Message, ["message_id", "content_hash"], "message_id", ids)
        if key in first
    }
    new = [(r, links_of(r)) for key, r in first.items() if key not in stored]
    if not new:
        return 0
    tids = assign_threads([links for _, links in new], rule)
    fields = [message_fields(r, links, None) for r, links in new]
    # Every dict has message_fields' keys in one order.
    insert_rows(
        Message,
        [*fields[0], "thread_id"],
        [(*f.values(), tid) for f, tid in zip(fields, tids)],
    )
    return len(new)
