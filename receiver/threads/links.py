"""What a message links to (pure): its parent and every key that joins it to a thread."""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass

from receiver.parse.ids import is_weak_id
from receiver.parse.record import ParsedMessage
from receiver.threads.subject import SubjectFacts, is_subject_orphan, normalize_subject
from receiver.threads.thread_index import conversation_key
from receiver.threads.weak import weak_keys


@dataclass(frozen=True)
class ThreadLinks:
    own_id: str
    parent_id: str | None
    # Every key joining this message's thread: own id, referenced ids, conversation key,
    # the slot keys of its weak ids.
    keys: tuple[str, ...]
    subject: SubjectFacts
    # Weak ids it references: they join the message that has one as its Message-ID.
    weak_ids: tuple[str, ...] = ()
    # Its weak ids' keys in the neighbouring slots: joined when they exist.
    near_keys: tuple[str, ...] = ()


def _local(msgid: str) -> str:
    return msgid.rpartition("@")[0]


def _rewritten_from(rewritten: str, original: str) -> bool:
    """An archive's rewrite keeps the original's local part as a prefix followed by a
    separator (`cover.1.git.joe-<hash>@public.gmane.org` for `cover.1.git.joe@perches.com`)."""
    old, new = _local(original), _local(rewritten)
    return (
        bool(old)
        and new.startswith(old)
        and rewritten != original
        and (len(new) == len(old) or not new[len(old)].isalnum())
    )


def choose_parent(
    in_reply_to: list[str] | tuple[str, ...],
    references: list[str] | tuple[str, ...],
    received: Container[str] = frozenset(),
) -> str | None:
    """Who a message replies to, given the ids of the messages received (README, Threading).

    Without In-Reply-To, the last References id. A received In-Reply-To id wins.
    Otherwise a received References id: the original of a rewritten In-Reply-To, else
    the last one after the In-Reply-To id (the last one when References does not name
    In-Reply-To). With none received: In-Reply-To when References names it, the
    original of a rewritten one, the last References id, then In-Reply-To. A weak id
    counts only when received.
    """
    irt = [i for i in in_reply_to if not is_weak_id(i) or i in received]
    refs = [r for r in references if not is_weak_id(r) or r in received]
    if not irt:
        return refs[-1] if refs else None
    for i in irt:
        if i in received:
            return i
    unnamed = [i for i in irt if i not in refs]
    originals = [r for r in refs for i in unnamed if _rewritten_from(i, r)]
    named = [n for n, r in enumerate(refs) if r in irt]
    after = refs[named[-1] + 1 :] if named else refs
    for pool in (originals, after):
        seen = [r for r in pool if r in received]
        if seen:
            return seen[-1]
    if named:
        return refs[named[-1]]
    if originals:
        return originals[-1]
    if refs:
        return refs[-1]
    return irt[0] if irt else None


def links_of(rec: ParsedMessage) -> ThreadLinks:
    refs = dict.fromkeys([*rec.references, *rec.in_reply_to])
    weak = tuple(r for r in refs if is_weak_id(r))
    keys = dict.fromkeys([rec.message_id, *(r for r in refs if not is_weak_id(r))])
    ti = conversation_key(rec.thread_index)
    if ti:
        keys[ti] = None
    own_slots, near = weak_keys(weak, rec.from_addr, rec.date)
    keys.update(dict.fromkeys(own_slots))
    facts = SubjectFacts(
        norm_subject=normalize_subject(rec.subject),
        # A Thread-Index ties the message to its conversation: it is no orphan.
        orphan=ti is None and is_subject_orphan(rec.subject, rec.in_reply_to, rec.references),
        date=rec.date,
        participants=frozenset(rec.participants),
    )
    return ThreadLinks(
        own_id=rec.message_id,
        parent_id=choose_parent(rec.in_reply_to, rec.references),
        keys=tuple(keys),
        subject=facts,
        weak_ids=weak,
        near_keys=near,
    )
