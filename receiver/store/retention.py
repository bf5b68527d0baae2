"""Deleting deliveries and what no delivery holds any more (messages, blobs, thread ids),
and the retention rules that pick which deliveries have expired.

A message goes when its last delivery goes; its Message-ID stays as a ghost while its
thread keeps other messages, so those keep their shape and a later copy rejoins them.
A thread left with no message loses its rows entirely, ghosts included.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field

from receiver.store import folders
from receiver.store.sql import chunks
from receiver.store.models import Blob, Delivery, Mailbox, Message, MsgId, Thread, ThreadMerge


def delete_deliveries(delivery_ids_query) -> int:
    """Delete the deliveries selected by `delivery_ids_query` (a SELECT of Delivery.id) and
    every message, blob and empty thread left without them. Call inside a transaction."""
    return delete_delivery_ids([row[0] for row in delivery_ids_query.tuples()])["deliveries"]


def delete_delivery_ids(ids: list[int]) -> Counter:
    """As `delete_deliveries`, for a list of ids; returns counts of what went."""
    gone: Counter = Counter()
    if not ids:
        return gone
    message_ids: set[int] = set()
    for part in chunks(ids):
        folders.forget(part)
        message_ids.update(
            m for (m,) in Delivery.select(Delivery.message).where(Delivery.id.in_(part)).tuples()
        )
        gone["deliveries"] += Delivery.delete().where(Delivery.id.in_(part)).execute()
    held: set[int] = set()
    for part in chunks(sorted(message_ids)):
        held.update(
            m
            for (m,) in Delivery.select(Delivery.message)
            .where(Delivery.message.in_(part))
            .distinct()
            .tuples()
        )
    orphans = sorted(message_ids - held)
    threads: set[int] = set()
    msgids: set[str] = set()
    for part in chunks(orphans):
        for mid, tid in (
            Message.select(Message.message_id, Message.thread_id)
            .where(Message.id.in_(part))
            .tuples()
        ):
            msgids.add(mid)
            if tid is not None:
                threads.add(tid)
        gone["messages"] += Message.delete().where(Message.id.in_(part)).execute()
    _ghost_ids(sorted(msgids))
    gone.update(_drop_empty_threads(sorted(threads)))
    gone["blobs"] += _drop_unreferenced_blobs()
    return gone


def _ghost_ids(msgids: list[str]) -> None:
    """Ids whose last threaded message went become ghosts again."""
    for part in chunks(msgids):
        still = {
            m
            for (m,) in Message.select(Message.message_id)
            .where(Message.message_id.in_(part) & Message.thread_id.is_null(False))
            .tuples()
        }
        ghosts = [m for m in part if m not in still]
        if ghosts:
            MsgId.update(ghost=True).where(MsgId.msgid.in_(ghosts)).execute()


def _drop_empty_threads(thread_ids: list[int]) -> Counter:
    gone: Counter = Counter()
    for part in chunks(thread_ids):
        kept = {
            t
            for (t,) in Message.select(Message.thread_id)
            .where(Message.thread_id.in_(part))
            .distinct()
            .tuples()
        }
        empty = [t for t in part if t not in kept]
        if not empty:
            continue
        gone["ghosts"] += MsgId.delete().where(MsgId.thread_id.in_(empty)).execute()
        ThreadMerge.delete().where(ThreadMerge.new_id.in_(empty)).execute()
        gone["threads"] += Thread.delete().where(Thread.id.in_(empty)).execute()
    return gone


def _drop_unreferenced_blobs() -> int:
    referenced = (
        Delivery.select(Delivery.blob)
        .union(Delivery.select(Delivery.wrapper_blob).where(Delivery.wrapper_blob.is_null(False)))
        .union(Message.select(Message.blob).where(Message.blob.is_null(False)))
    )
    return Blob.delete().where(Blob.sha256.not_in(referenced)).execute()


@dataclass
class MailboxPrune:
    email: str
    legal_hold: bool
    keep_days: int | None
    quarantine_days: int  # the one in force: the mailbox's own, else the default
    expired: int = 0
    quarantine_expired: int = 0


@dataclass
class PruneReport:
    mailboxes: list[MailboxPrune] = field(default_factory=list)
    removed: Counter = field(default_factory=Counter)


def quarantine_days(own: int | None, default: int) -> int:
    """A mailbox's quarantine retention in force: its own setting, else the config's."""
    return own if own is not None else default


def expired_ids(
    mb: Mailbox, now: dt.datetime, quarantine_default: int
) -> tuple[list[int], list[int]]:
    """(stored, quarantined) delivery ids of `mb` past their retention; none under legal hold.

    keep_days None keeps stored copies forever; quarantine days 0 keeps quarantine forever.
    """
    if mb.legal_hold:
        return [], []
    stored: list[int] = []
    if mb.keep_days is not None:
        cutoff = now - dt.timedelta(days=mb.keep_days)
        stored = [
            i
            for (i,) in Delivery.select(Delivery.id)
            .where(
                (Delivery.mailbox == mb.id)
                & (Delivery.status != "quarantined")
                & (Delivery.received_at < cutoff)
            )
            .tuples()
        ]
    qdays = quarantine_days(mb.quarantine_days, quarantine_default)
    quarantined: list[int] = []
    if qdays > 0:
        cutoff = now - dt.timedelta(days=qdays)
        quarantined = [
            i
            for (i,) in Delivery.select(Delivery.id)
            .where(
                (Delivery.mailbox == mb.id)
                & (Delivery.status == "quarantined")
                & (Delivery.received_at < cutoff)
            )
            .tuples()
        ]
    return stored, quarantined


def prune(now: dt.datetime, quarantine_default: int) -> PruneReport:
    """Delete every expired delivery and what it leaves behind. Call inside a transaction
    (roll it back for a dry run: the report then tells what would go)."""
    report = PruneReport()
    for mb in Mailbox.select().order_by(Mailbox.email):
        stored, quarantined = expired_ids(mb, now, quarantine_default)
        report.mailboxes.append(
            MailboxPrune(
                mb.email,
                mb.legal_hold,
                mb.keep_days,
                quarantine_days(mb.quarantine_days, quarantine_default),
                len(stored),
                len(quarantined),
            )
        )
        report.removed.update(delete_delivery_ids(stored + quarantined))
        if not mb.legal_hold:
            Mailbox.update(pruned_at=now).where(Mailbox.id == mb.id).execute()
    return report
