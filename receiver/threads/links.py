"""What a message links to (pure): its parent and every key that joins it to a thread."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from receiver.parse.record import ParsedMessage

# Outlook's Thread-Index: 22 bytes identify the conversation, 5 more per reply.
THREAD_INDEX_CONVERSATION_BYTES = 22


@dataclass(frozen=True)
class ThreadLinks:
    own_id: str
    parent_id: str | None
    # Every key joining this message's thread: own id, referenced ids, conversation key.
    keys: tuple[str, ...]


def conversation_key(thread_index: str | None) -> str | None:
    if not thread_index:
        return None
    try:
        raw = base64.b64decode("".join(thread_index.split()), validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(raw) < THREAD_INDEX_CONVERSATION_BYTES:
        return None
    return "ti:" + raw[:THREAD_INDEX_CONVERSATION_BYTES].hex()


def parent_of(rec: ParsedMessage) -> str | None:
    """In-Reply-To when it holds exactly one clean id, else the last References id."""
    if len(rec.in_reply_to) == 1:
        return rec.in_reply_to[0]
    if rec.references:
        return rec.references[-1]
    return None


def links_of(rec: ParsedMessage) -> ThreadLinks:
    keys = [rec.message_id]
    for i in rec.references + rec.in_reply_to:
        if i not in keys:
            keys.append(i)
    ti = conversation_key(rec.thread_index)
    if ti:
        keys.append(ti)
    return ThreadLinks(own_id=rec.message_id, parent_id=parent_of(rec), keys=tuple(keys))
