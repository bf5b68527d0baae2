"""IMAP folders over the store: per-folder UIDs, flags and visibility of deliveries.

A folder entry points at a delivery; the delivery (bytes, verdict, thread) belongs to
the pipeline and stays whatever happens here: EXPUNGE and MOVE only hide an entry from
its folder's view. A folder's name is a label on the deliveries in it, never an input
to threading. Every function here blocks (database): callers run them off the loop.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass

from peewee import IntegrityError, fn

from receiver import faults
from receiver.delivery import Placement
from receiver.store import sql
from receiver.store.db import is_postgres, write_transaction
from receiver.store.models import Blob, Delivery, Folder, FolderEntry, Message, database

INBOX = "INBOX"
QUARANTINED = "$Quarantined"


@dataclass(frozen=True)
class FolderInfo:
    id: int
    name: str
    uidvalidity: int
    uidnext: int
    subscribed: bool


@dataclass(frozen=True)
class EntryInfo:
    uid: int
    delivery_id: int
    flags: frozenset[str]
    internal_date: dt.datetime
    thread_id: int | None


def canonical(name: str) -> str:
    """INBOX is case-insensitive (RFC 3501 5.1); every other name is kept as given."""
    return INBOX if name.upper() == INBOX else name


def _info(f: Folder) -> FolderInfo:
    return FolderInfo(f.id, f.name, f.uidvalidity, f.uidnext, f.subscribed)


def _new_uidvalidity(mailbox_id: int) -> int:
    # Strictly greater than any earlier folder's: a name deleted and created again must
    # not let a client take the new folder's UIDs for the old one's (RFC 3501 2.3.1.1).
    last = (
        Folder.select(fn.MAX(Folder.uidvalidity)).where(Folder.mailbox == mailbox_id).scalar()
    ) or 0
    return max(int(time.time()), last + 1) & 0xFFFFFFFF


def get(mailbox_id: int, name: str) -> FolderInfo | None:
    name = canonical(name)
    f = Folder.get_or_none((Folder.mailbox == mailbox_id) & (Folder.name == name))
    if f is None and name == INBOX:
        return create(mailbox_id, INBOX)
    return _info(f) if f else None


def create(mailbox_id: int, name: str) -> FolderInfo | None:
    """The new folder, or None if the name is taken."""
    try:
        with write_transaction(database.obj):
            f = Folder.create(
                mailbox=mailbox_id, name=canonical(name), uidvalidity=_new_uidvalidity(mailbox_id)
            )
    except IntegrityError:
        if canonical(name) == INBOX:  # two sessions made it at once: both see the one
            return _info(Folder.get((Folder.mailbox == mailbox_id) & (Folder.name == INBOX)))
        return None
    return _info(f)


def names(mailbox_id: int, subscribed_only: bool = False) -> list[str]:
    q = Folder.select(Folder.name).where(Folder.mailbox == mailbox_id)
    if subscribed_only:
        q = q.where(Folder.subscribed)
    return [f.name for f in q]


def delete(mailbox_id: int, name: str) -> str:
    """ "deleted", "missing" or "not empty" (the archive is never deleted over IMAP)."""
    with write_transaction(database.obj):
        f = Folder.get_or_none((Folder.mailbox == mailbox_id) & (Folder.name == canonical(name)))
        if f is None:
            return "missing"
        visible = FolderEntry.select().where((FolderEntry.folder == f) & ~FolderEntry.hidden)
        if visible.exists():
            return "not empty"
        f.delete_instance()
    return "deleted"


def rename(mailbox_id: int, before: str, after: str, delimiter: str) -> str:
    """ "renamed", "missing" or "exists". Children move along; UIDVALIDITY stays.
    Renaming INBOX moves its messages and leaves a new, empty INBOX (RFC 3501 6.3.5)."""
    before, after = canonical(before), canonical(after)
    with write_transaction(database.obj):
        rows = list(Folder.select().where(Folder.mailbox == mailbox_id))
        prefix = before + delimiter
        names = {f.name for f in rows}
        # A parent that exists only through its children ("Old" of "Old/2019") renames too.
        if before not in names and not any(n.startswith(prefix) for n in names):
            return "missing"
        if after in names or any(n.startswith(after + delimiter) for n in names):
            return "exists"
        for f in rows:
            if f.name == before or (before != INBOX and f.name.startswith(prefix)):
                f.name = after + f.name[len(before) :]
                f.save()
    return "renamed"


def subscribe(mailbox_id: int, name: str, on: bool) -> None:
    (
        Folder.update(subscribed=on)
        .where((Folder.mailbox == mailbox_id) & (Folder.name == canonical(name)))
        .execute()
    )


class FolderGone(Exception):
    """A placement's folder was deleted before the copy was committed into it."""


def place(items: list[tuple[Placement, int]]) -> list[int]:
    """The UID of each (placement, delivery id) in its folder; call inside a write
    transaction, the delivery's own when it comes from the store writer.

    A delivery already shown in the folder keeps its UID (a byte-identical re-append
    changes nothing); else it gets the next one. A copy expunged earlier comes back under
    a new UID: a UID once expunged is never shown again. The quarantine keyword mirrors
    the delivery's status; it is not the client's to set.
    """
    faults.hit("folder_entry")
    folder_ids = sorted({p.folder_id for p, _ in items})
    # The folder rows, locked in one order (PostgreSQL; a SQLite writer holds the whole
    # database): every placer into a folder waits here for the one before it to commit,
    # so the entries read below are current and two placers never pick one UID.
    q = Folder.select(Folder.id, Folder.uidnext).where(Folder.id.in_(folder_ids))
    if is_postgres(database.obj):
        q = q.order_by(Folder.id).for_update()
    uidnext: dict[int, int] = dict(q.tuples())
    if len(uidnext) < len(folder_ids):
        raise FolderGone(f"folders {sorted(set(folder_ids) - uidnext.keys())} were deleted")
    before = dict(uidnext)
    shown: dict[tuple[int, int], tuple[int, int | None]] = {}  # → (uid, hidden row id)
    for pk, folder_id, delivery_id, uid, hidden in sql.select_in(
        FolderEntry,
        ["id", "folder", "delivery", "uid", "hidden"],
        "delivery",
        list(dict.fromkeys(d for _, d in items)),
    ):
        if folder_id in uidnext:
            shown[(folder_id, delivery_id)] = (uid, pk if hidden else None)
    uids, added, revived = [], [], []
    for p, delivery_id in items:
        key = (p.folder_id, delivery_id)
        uid, hidden_pk = shown.get(key, (0, None))
        if uid == 0 or hidden_pk is not None:
            uid = uidnext[p.folder_id]
            uidnext[p.folder_id] = uid + 1
            shown[key] = (uid, None)
            fields = (uid, " ".join(sorted(p.flags - {QUARANTINED})), p.internal_date)
            if hidden_pk is None:
                added.append((p.folder_id, delivery_id, *fields))
            else:
                revived.append((hidden_pk, *fields))
        uids.append(uid)
    for folder_id, nxt in uidnext.items():
        if nxt != before[folder_id]:
            Folder.update(uidnext=nxt).where(Folder.id == folder_id).execute()
    sql.insert_rows(FolderEntry, ["folder", "delivery", "uid", "flags", "internal_date"], added)
    for pk, uid, flags, internal_date in revived:
        (
            FolderEntry.update(uid=uid, hidden=False, flags=flags, internal_date=internal_date)
            .where(FolderEntry.id == pk)
            .execute()
        )
    return uids


def add_entry(
    folder_id: int, delivery_id: int, flags: frozenset[str], internal_date: dt.datetime
) -> int:
    """The UID of a stored delivery in this folder (COPY, MOVE): `place` on its own."""
    with write_transaction(database.obj):
        [uid] = place([(Placement(folder_id, flags, internal_date), delivery_id)])
    return uid


def _entries(folder_id: int):
    return (
        FolderEntry.select(
            FolderEntry.uid,
            Delivery.id,
            FolderEntry.flags,
            FolderEntry.internal_date,
            Message.thread_id,
            Delivery.status,
        )
        .join(Delivery)
        .join(Message)
        .where((FolderEntry.folder == folder_id) & ~FolderEntry.hidden)
        .order_by(FolderEntry.uid)
        .tuples()
    )


def _entry_info(row: tuple) -> EntryInfo:
    uid, delivery_id, flags, internal_date, thread_id, status = row
    shown = frozenset(flags.split())
    if status == "quarantined":
        shown |= {QUARANTINED}
    return EntryInfo(uid, delivery_id, shown, internal_date, thread_id)


def entries(folder_id: int) -> list[EntryInfo]:
    """The folder's visible entries, by UID."""
    return [_entry_info(r) for r in _entries(folder_id)]


def entry(folder_id: int, uid: int) -> EntryInfo | None:
    row = _entries(folder_id).where(FolderEntry.uid == uid).first()
    return _entry_info(row) if row else None


def set_flags(folder_id: int, uid: int, flags: frozenset[str]) -> None:
    # The quarantine keyword mirrors the delivery's status; it is not the client's to keep.
    kept = " ".join(sorted(flags - {QUARANTINED}))
    (
        FolderEntry.update(flags=kept)
        .where((FolderEntry.folder == folder_id) & (FolderEntry.uid == uid))
        .execute()
    )


def hide(folder_id: int, uids: list[int]) -> None:
    (
        FolderEntry.update(hidden=True)
        .where((FolderEntry.folder == folder_id) & FolderEntry.uid.in_(uids))
        .execute()
    )


def raw_of(delivery_id: int) -> tuple[bytes, str]:
    """(compressed bytes, codec) of the delivery's stored copy."""
    b = (
        Blob.select(Blob.data, Blob.codec)
        .join(Delivery, on=(Delivery.blob == Blob.sha256))
        .where(Delivery.id == delivery_id)
        .get()
    )
    return bytes(b.data), b.codec
