"""IMAP folders over the store: per-folder UIDs, flags and visibility of deliveries.

A folder entry points at a delivery; the delivery (bytes, verdict, thread) belongs to
the pipeline and stays whatever happens here: EXPUNGE and MOVE only hide an entry from
its folder's view. A folder's name is a label on the deliveries in it, never an input
to threading. Every function here blocks (database): callers run them off the loop.

Every change to a folder's entries raises the folder's `highestmodseq` and stamps the
changed entries with it, holding the folder's row lock until the commit: changes become
visible in modseq order, so `changes` can hand a session just what is new to it.
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
    recent_uid: int = 0  # UIDs above it are \Recent to the next session to see them


@dataclass(frozen=True)
class EntryInfo:
    uid: int
    delivery_id: int
    flags: frozenset[str]
    internal_date: dt.datetime
    thread_id: int | None


@dataclass(frozen=True)
class Changes:
    """What a session applies to its view of a folder to be current (`changes`)."""

    modseq: int  # ask again from here
    whole: bool  # `shown` is the whole folder: the view is replaced
    shown: list[EntryInfo]  # else the entries added or changed since
    hidden: list[int]  # and the UIDs no longer shown


def canonical(name: str) -> str:
    """INBOX is case-insensitive (RFC 3501 5.1); every other name is kept as given."""
    return INBOX if name.upper() == INBOX else name


def _info(f: Folder) -> FolderInfo:
    return FolderInfo(f.id, f.name, f.uidvalidity, f.uidnext, f.subscribed, f.recent_uid)


def _new_uidvalidity(mailbox_id: int) -> int:
    # Strictly greater than any earlier folder's: a name deleted and created again must
    # not let a client take the new folder's UIDs for the old one's (RFC 3501 2.3.1.1).
    last = (
        Folder.select(fn.MAX(Folder.uidvalidity)).where(Folder.mailbox == mailbox_id).scalar()
    ) or 0
    return max(int(time.time()), last + 1) & 0xFFFFFFFF


def get(mailbox_id: int, name: str) -> FolderInfo | None:
    name = canonical(name)
    # Every APPEND looks its folder up: a raw query is a quarter of peewee's get's CPU.
    p = database.obj.param
    f = next(
        iter(
            Folder.raw(
                f'SELECT * FROM "folder" WHERE "mailbox_id" = {p} AND "name" = {p}',
                mailbox_id,
                name,
            )
        ),
        None,
    )
    if f is None and name == INBOX:
        return create(mailbox_id, INBOX)
    return _info(f) if f else None


def create(
    mailbox_id: int, name: str, special_use: frozenset[str] = frozenset()
) -> FolderInfo | None:
    """The new folder, or None if the name is taken."""
    try:
        with write_transaction(database.obj):
            f = Folder.create(
                mailbox=mailbox_id,
                name=canonical(name),
                uidvalidity=_new_uidvalidity(mailbox_id),
                special_use=" ".join(sorted(special_use)) or None,
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


def special_uses(mailbox_id: int) -> list[tuple[str, frozenset[str]]]:
    """Every folder's name and the uses given at CREATE, in the order they were made."""
    q = (
        Folder.select(Folder.name, Folder.special_use)
        .where(Folder.mailbox == mailbox_id)
        .order_by(Folder.id)
    )
    return [(name, frozenset((use or "").split())) for name, use in q.tuples()]


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


def subscribe(mailbox_id: int, name: str, on: bool) -> bool:
    """False if there is no such folder."""
    matched = (
        Folder.update(subscribed=on)
        .where((Folder.mailbox == mailbox_id) & (Folder.name == canonical(name)))
        .execute()
    )
    return matched > 0


def claim_recent(folder_id: int, up_to: int) -> int:
    """Mark the folder's UIDs up to `up_to` as shown \\Recent; returns the mark before,
    so the caller shows (mark before, up_to] as \\Recent. The row is read and written
    under the write lock: two sessions, in one daemon or in two, never both claim a UID."""
    with write_transaction(database.obj):
        q = Folder.select(Folder.recent_uid).where(Folder.id == folder_id)
        # SQLite's IMMEDIATE transaction holds the only write lock already.
        before = (q.for_update() if is_postgres(database.obj) else q).scalar()
        if before is None or before >= up_to:
            return up_to
        Folder.update(recent_uid=up_to).where(Folder.id == folder_id).execute()
    return before


# The statements an APPEND runs (place, changes) are plain SQL: peewee's query building
# was a tenth of the IMAP process's CPU per message (bench/RESULTS.md).


def _lock(folder_ids: list[int]) -> dict[int, tuple[int, int]]:
    """{folder id: (uidnext, highestmodseq)} of the folders that exist, their rows locked
    in one order until the caller's transaction ends (PostgreSQL; a SQLite write
    transaction holds the whole database)."""
    db = database.obj
    marks = ", ".join([db.param] * len(folder_ids))
    lock = ' ORDER BY "id" FOR UPDATE' if is_postgres(db) else ""
    rows = db.execute_sql(
        f'SELECT "id", "uidnext", "highestmodseq" FROM "folder" WHERE "id" IN ({marks}){lock}',
        folder_ids,
    )
    return {f: (nxt, modseq) for f, nxt, modseq in rows}


def _set_folder(folder_id: int, **values: int) -> None:
    db = database.obj
    sets = ", ".join(f'"{name}" = {db.param}' for name in values)
    db.execute_sql(
        f'UPDATE "folder" SET {sets} WHERE "id" = {db.param}', (*values.values(), folder_id)
    )


def _stamp(folder_id: int, where, **changes) -> int:
    """Apply `changes` to the folder's entries matching `where`, stamped with a new
    modseq; returns how many changed. Call inside a write transaction."""
    locked = _lock([folder_id])
    if not locked:
        return 0
    modseq = locked[folder_id][1] + 1
    n = (
        FolderEntry.update(modseq=modseq, **changes)
        .where((FolderEntry.folder == folder_id) & where)
        .execute()
    )
    if n:
        _set_folder(folder_id, highestmodseq=modseq)
    return n


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
    # Every placer into a folder waits here for the one before it to commit, so the
    # entries read below are current and two placers never pick one UID.
    locked = _lock(folder_ids)
    if len(locked) < len(folder_ids):
        raise FolderGone(f"folders {sorted(set(folder_ids) - locked.keys())} were deleted")
    uidnext = {f: nxt for f, (nxt, _) in locked.items()}
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
            modseq = locked[p.folder_id][1] + 1
            fields = (uid, " ".join(sorted(p.flags - {QUARANTINED})), p.internal_date, modseq)
            if hidden_pk is None:
                added.append((p.folder_id, delivery_id, *fields))
            else:
                revived.append((hidden_pk, p.folder_id, *fields))
        uids.append(uid)
    # A revived entry's old UID leaves no hidden row behind: who saw it reads whole.
    revived_in = {folder_id for _, folder_id, *_ in revived}
    for folder_id, (nxt, modseq) in locked.items():
        if uidnext[folder_id] != nxt:
            changed = {"uidnext": uidnext[folder_id], "highestmodseq": modseq + 1}
            if folder_id in revived_in:
                changed["deletedmodseq"] = modseq + 1
            _set_folder(folder_id, **changed)
    sql.insert_rows(
        FolderEntry, ["folder", "delivery", "uid", "flags", "internal_date", "modseq"], added
    )
    for pk, _, uid, flags, internal_date, modseq in revived:
        (
            FolderEntry.update(
                uid=uid, hidden=False, flags=flags, internal_date=internal_date, modseq=modseq
            )
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


def _rows(where):
    return (
        FolderEntry.select(
            FolderEntry.uid,
            Delivery.id,
            FolderEntry.flags,
            FolderEntry.internal_date,
            Message.thread_id,
            Delivery.status,
            FolderEntry.hidden,
        )
        .join(Delivery)
        .join(Message)
        .where(where)
        .order_by(FolderEntry.uid)
        .tuples()
    )


def _entry_info(row: tuple) -> EntryInfo:
    uid, delivery_id, flags, internal_date, thread_id, status, _ = row
    shown = frozenset(flags.split())
    if status == "quarantined":
        shown |= {QUARANTINED}
    return EntryInfo(uid, delivery_id, shown, internal_date, thread_id)


def entries(folder_id: int) -> list[EntryInfo]:
    """The folder's visible entries, by UID."""
    return [_entry_info(r) for r in _rows((FolderEntry.folder == folder_id) & ~FolderEntry.hidden)]


def entry(folder_id: int, uid: int) -> EntryInfo | None:
    row = _rows(
        (FolderEntry.folder == folder_id) & ~FolderEntry.hidden & (FolderEntry.uid == uid)
    ).first()
    return _entry_info(row) if row else None


def changes(folder_id: int, since: int | None) -> Changes | None:
    """What changed in the folder after modseq `since` (None: a first look), or None if
    the folder is gone. A thread id is the one read when its entry last changed."""
    # The counters first: every change up to them is committed (modseq order), so the
    # entries read after them miss none; a change read twice is harmless.
    db = database.obj
    row = db.execute_sql(
        f'SELECT "highestmodseq", "deletedmodseq" FROM "folder" WHERE "id" = {db.param}',
        (folder_id,),
    ).fetchone()
    if row is None:
        return None
    highest, deleted = row
    if since is None or deleted > since:
        return Changes(highest, True, entries(folder_id), [])
    if highest == since:
        return Changes(since, False, [], [])
    shown, hidden = [], []
    for r in _rows((FolderEntry.folder == folder_id) & (FolderEntry.modseq > since)):
        if r[-1]:
            hidden.append(r[0])
        else:
            shown.append(_entry_info(r))
    return Changes(highest, False, shown, hidden)


def set_flags(folder_id: int, uid: int, flags: frozenset[str]) -> None:
    # The quarantine keyword mirrors the delivery's status; it is not the client's to keep.
    kept = " ".join(sorted(flags - {QUARANTINED}))
    with write_transaction(database.obj):
        _stamp(folder_id, (FolderEntry.uid == uid) & (FolderEntry.flags != kept), flags=kept)


def hide(folder_id: int, uids: list[int]) -> None:
    with write_transaction(database.obj):
        _stamp(folder_id, FolderEntry.uid.in_(uids) & ~FolderEntry.hidden, hidden=True)


def touch(delivery_id: int) -> None:
    """The delivery's entries changed in every folder (its quarantine keyword): sessions
    read them again. Call inside a write transaction."""
    q = FolderEntry.select(FolderEntry.folder).where(FolderEntry.delivery == delivery_id)
    for (folder_id,) in sorted(q.tuples()):
        _stamp(folder_id, FolderEntry.delivery == delivery_id)


def forget(delivery_ids: list[int]) -> None:
    """The deliveries are about to be deleted, their entries with them: sessions that
    looked at their folders before now read them whole. Call inside a write transaction."""
    q = FolderEntry.select(FolderEntry.folder).where(FolderEntry.delivery.in_(delivery_ids))
    folder_ids = sorted({f for (f,) in q.tuples()})
    if not folder_ids:
        return
    for folder_id, (_, modseq) in _lock(folder_ids).items():
        _set_folder(folder_id, highestmodseq=modseq + 1, deletedmodseq=modseq + 1)


def raw_of(delivery_id: int) -> tuple[bytes, str]:
    """(compressed bytes, codec) of the delivery's stored copy."""
    b = (
        Blob.select(Blob.data, Blob.codec)
        .join(Delivery, on=(Delivery.blob == Blob.sha256))
        .where(Delivery.id == delivery_id)
        .get()
    )
    return bytes(b.data), b.codec
