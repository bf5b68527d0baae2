"""What a message links to (pure): its parent and every key that joins it to a thread."""

from __future__ import annotations

from dataclasses import dataclass

from receiver.parse.record import ParsedMessage
from receiver.threads.subject import SubjectFacts, is_subject_orphan, normalize_subject
from receiver.threads.thread_index import conversation_key


@dataclass(frozen=True)
class ThreadLinks:
    own_id: str
    parent_id: str | None
    # Every key joining this message's thread: own id, referenced ids, conversation key.
    keys: tuple[str, ...]
    subject: SubjectFacts


def parent_of(in_reply_to: list[str], references: list[str]) -> str | None:
    """In-Reply-To when it holds exactly one clean id, else the last References id."""
    if len(in_reply_to) == 1:
        return in_reply_to[0]
    if references:
        return references[-1]
    return None


def links_of(rec: ParsedMessage) -> ThreadLinks:
    keys = dict.fromkeys([rec.message_id, *rec.references, *rec.in_reply_to])
    ti = conversation_key(rec.thread_index)
    if ti:
        keys[ti] = None
    facts = SubjectFacts(
        norm_subject=normalize_subject(rec.subject),
        orphan=is_subject_orphan(rec.subject, rec.in_reply_to, rec.references),
        date=rec.date,
        participants=frozenset(rec.participants),
    )
    return ThreadLinks(own_id=rec.message_id, parent_id=parent_of(rec.in_reply_to, rec.references),
                       keys=tuple(keys), subject=facts)
