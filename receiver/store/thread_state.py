"""Incremental threading state: a union over link keys, kept as MsgId rows.

Which messages share a thread depends only on the set of links, never on the order they
arrive in: a key seen first as a reference is a ghost row carrying a thread id, and a
message that links two threads merges them into the smaller id (recorded in ThreadMerge
so an old id still resolves). The subject rule (receiver/threads/subject.py) is a
predicate on pairs of messages; `attach` looks for partners in both directions (this
message an orphan joining earlier messages, or earlier orphans joining this message),
so the pair is joined whichever of the two arrives second. Weak ids
(receiver/threads/weak.py) join through slot keys, which a message creates for its own
slot and joins in the neighbouring slots when they exist, and to the message whose
Message-ID they are: looked up by the referring message, or by that message (a scan of
the referring columns, only for a Message-ID without `@`).

`attach` runs inside the caller's transaction. On PostgreSQL the caller holds
`lock_threading()` for that transaction, which serialises threading across every
receiver process on the database; SQLite has one writer at a time anyway.
"""

from __future__ import annotations

import json

from peewee import Database

from receiver import metrics
from receiver.parse.ids import is_weak_id
from receiver.store.db import is_postgres
from receiver.store.sql import chunks, insert_rows, select_in
from receiver.store.models import Message, MsgId, Thread, ThreadMerge, utcnow
from receiver.threads.links import ThreadLinks
from receiver.threads.subject import SubjectFacts, SubjectRule

# One lock id for every receiver writing to one PostgreSQL: threading merges must see
# each other's rows, and a transaction-scoped advisory lock serialises exactly that.
PG_THREADING_LOCK = 0x7468726561647300
# Subjects a subject-rule query looks up, each an OR term: SQLite refuses an expression
# nested deeper than 1000.
SUBJECTS_A_QUERY = 200


def lock_threading(db: Database) -> None:
    """Take the threading lock until the current transaction ends (PostgreSQL only)."""
    if is_postgres(db):
        db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (PG_THREADING_LOCK,))


def attach(message: Message, links: ThreadLinks, rule: SubjectRule) -> int:
    """Put `message` into the thread its links lead to; returns the thread id.

    Call inside a transaction holding `lock_threading`. Queries: one lookup of the keys,
    one subject lookup (when the message has a normalised subject), one insert of new
    keys, one update of the message, plus the merge statements when threads join.
    """
    return attach_many([(message, links)], rule)[0]


def attach_many(items: list[tuple[Message, ThreadLinks]], rule: SubjectRule) -> list[int]:
    """`attach` for many stored, unthreaded messages at once, with the same few statements."""
    tids = assign_threads([links for _, links in items], rule)
    for (message, _), tid in zip(items, tids):
        message.thread_id = tid
    db = Message._meta.database
    db.cursor().executemany(
        f'UPDATE "{Message._meta.table_name}" SET "thread_id" = {db.param} WHERE "id" = {db.param}',
        [(m.thread_id, m.id) for m, _ in items],
    )
    return tids


def assign_threads(batch: list[ThreadLinks], rule: SubjectRule) -> list[int]:
    """The thread of each message of `batch` (none of them threaded yet), its MsgId rows,
    new threads and merges written; the caller sets the Message rows' thread_id (or
    inserts them with it: store.bulk), as no row of the batch is read here.

    The batch is united in memory first (its messages' keys, the rows they hit, subject
    partners inside and outside the batch), then written set-wise: the result is the
    same as attaching them one by one, in any order.
    """
    # Union-find nodes: message i of the batch is -1 - i, a thread id is itself (> 0), a
    # link key is its string (ints and strings hash faster than tagged tuples).
    uf = _UnionFind()
    keys = list(dict.fromkeys(k for links in batch for k in links.keys))
    in_batch = set(keys)
    weak = {w for links in batch for w in links.weak_ids}
    probes = [
        k
        for k in dict.fromkeys(k for links in batch for k in (*links.near_keys, *links.weak_ids))
        if k not in in_batch
    ]
    rows = select_in(MsgId, ["msgid", "thread_id", "ghost"], "msgid", keys + probes)
    existing = {k: tid for k, tid, _ in rows if k in in_batch}
    # A neighbouring slot key joins when it exists; a weak id only when it is the
    # Message-ID of a received message (its row is no ghost, or a message of this batch).
    joinable = {k: tid for k, tid, ghost in rows if k not in in_batch and not (ghost and k in weak)}
    union = uf.union
    for i, links in enumerate(batch):
        for k in links.keys:
            union(-1 - i, k)
        for k in (*links.near_keys, *links.weak_ids):
            if k in in_batch or k in joinable:
                union(-1 - i, k)
    for k, tid in (*existing.items(), *joinable.items()):
        union(k, tid)
    tids = {*existing.values(), *joinable.values()}
    for i, tid in (*_weak_referrers(batch), *_subject_partners(batch, rule)):
        union(-1 - i, tid)
        tids.add(tid)
    for i, j in _subject_pairs(batch, rule):
        union(-1 - i, -1 - j)

    find = uf.find
    found: dict[object, set[int]] = {find(-1 - i): set() for i in range(len(batch))}
    for tid in tids:
        found[find(tid)].add(tid)
    fresh = iter(_new_threads(sum(1 for group in found.values() if not group)))
    target: dict[object, int] = {}
    merged: list[tuple[int, int]] = []
    for root, group in found.items():
        target[root] = min(group) if group else next(fresh)
        merged += [(old, target[root]) for old in sorted(group - {target[root]})]
    if merged:
        _merge(merged)

    own = {links.own_id for links in batch}
    missing = [(k, target[find(k)], k not in own) for k in keys if k not in existing]
    insert_rows(MsgId, ["msgid", "thread_id", "ghost"], missing)
    db = MsgId._meta.database
    revived = [k for k in own if k in existing]
    for chunk in chunks(revived):
        # Plain SQL: building it with peewee cost more than running it, once per batch.
        db.execute_sql(
            f'UPDATE "{MsgId._meta.table_name}" SET "ghost" = {db.param} '
            f'WHERE "ghost" AND "msgid" IN ({", ".join([db.param] * len(chunk))})',
            [MsgId.ghost.db_value(False), *chunk],
        )
    return [target[find(-1 - i)] for i in range(len(batch))]


def _new_threads(n: int) -> list[int]:
    """Ids of n new Thread rows, made with one statement per chunk."""
    ids: list[int] = []
    db = Thread._meta.database
    now = Thread.created_at.db_value(utcnow())
    for chunk in chunks([now] * n):
        values = ", ".join(f"({db.param})" for _ in chunk)
        cursor = db.execute_sql(
            f'INSERT INTO "{Thread._meta.table_name}" ("created_at") VALUES {values} RETURNING "id"',
            chunk,
        )
        ids.extend(row[0] for row in cursor.fetchall())
    return ids


def _subject_partners(batch: list[ThreadLinks], rule: SubjectRule):
    """(index in batch, thread id) for each threaded message the subject rule joins."""
    if not rule.enabled:
        return []
    mine = [
        (i, links.subject)
        for i, links in enumerate(batch)
        if links.subject.norm_subject and links.subject.date is not None
    ]
    # The SQL narrows to candidates (unthreaded rows, this batch included, have no thread
    # yet and drop out); `rule.joins` decides. Orphans may join any same-subject message,
    # messages with links only orphans: for each kind, one query per SUBJECTS_A_QUERY of
    # the batch's subjects (a query per orphan was a fifth of a bulk import's time), each
    # subject with the dates of its own messages, widened by the window (one date range
    # for the whole batch fetched every message of a long thread).
    db = Message._meta.database
    date_value = Message.date.db_value
    out: set[tuple[int, int]] = set()
    for orphans in (True, False):
        by_subject: dict[str, list[int]] = {}
        for i, f in mine:
            if f.orphan == orphans:
                by_subject.setdefault(f.norm_subject, []).append(i)
        # subject_orphan inside each term: so SQLite takes the partial index of orphans.
        term = (
            f'("norm_subject" = {db.param} AND "date" BETWEEN {db.param} AND {db.param}'
            + ("" if orphans else ' AND "subject_orphan"')
            + ")"
        )
        for chunk in chunks(sorted(by_subject), SUBJECTS_A_QUERY):
            params = []
            for subject in chunk:
                dates = [batch[i].subject.date for i in by_subject[subject]]
                params += [
                    subject,
                    date_value(min(dates) - rule.window),
                    date_value(max(dates) + rule.window),
                ]
            sql = (
                f'SELECT "norm_subject", "thread_id", "subject_orphan", "date", "participants" '
                f'FROM "{Message._meta.table_name}" WHERE "thread_id" IS NOT NULL '
                f"AND ({' OR '.join([term] * len(chunk))})"
            )
            for subject, tid, orphan, date, people in db.execute_sql(sql, params).fetchall():
                candidates = [i for i in by_subject[subject] if (i, tid) not in out]
                if candidates:
                    other = SubjectFacts(
                        subject,
                        bool(orphan),
                        Message.date.python_value(date),
                        frozenset(people.split()),
                    )
                    out.update((i, tid) for i in candidates if rule.joins(batch[i].subject, other))
    return sorted(out)


def _weak_referrers(batch: list[ThreadLinks]):
    """(index in batch, thread id) of threaded messages naming a weak Message-ID of the
    batch. A scan of the referring columns, but such Message-IDs are rare."""
    db = Message._meta.database
    out = []
    for i, links in enumerate(batch):
        w = links.own_id
        if not is_weak_id(w):
            continue
        like = "%" + _like_escape(json.dumps(w)) + "%"
        rows = db.execute_sql(
            f'SELECT "thread_id", "references", "in_reply_to" FROM "{Message._meta.table_name}" '
            f'WHERE "thread_id" IS NOT NULL AND ("references" LIKE {db.param} ESCAPE \'!\' '
            f"OR \"in_reply_to\" LIKE {db.param} ESCAPE '!')",
            [like, "%" + _like_escape(w) + "%"],
        ).fetchall()
        out += [
            (i, tid) for tid, refs, irt in rows if w in json.loads(refs) or w in (irt or "").split()
        ]
    return out


def _like_escape(text: str) -> str:
    return text.replace("!", "!!").replace("%", "!%").replace("_", "!_")


def _subject_pairs(batch: list[ThreadLinks], rule: SubjectRule):
    """Pairs inside the batch that the subject rule joins."""
    groups: dict[str, list[int]] = {}
    for i, links in enumerate(batch):
        if links.subject.norm_subject:
            groups.setdefault(links.subject.norm_subject, []).append(i)
    return [
        (a, b)
        for group in groups.values()
        if len(group) > 1
        for n, a in enumerate(group)
        for b in group[n + 1 :]
        if rule.joins(batch[a].subject, batch[b].subject)
    ]


class _UnionFind:
    def __init__(self):
        self.parent: dict = {}

    def find(self, x):
        root = x
        while self.parent.setdefault(root, root) != root:
            root = self.parent[root]
        while x != root:
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a, b) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[ra] = rb


def _merge(merged: list[tuple[int, int]]) -> None:
    """Merge each (old, new) pair's old thread into new: plain statements, each run for
    every pair at once (the groups of one batch are disjoint, so the order is free)."""
    metrics.threads_merged(len(merged))
    db = Thread._meta.database
    mark = db.param
    cursor = db.cursor()
    moves = [(new, old) for old, new in merged]
    for table, column in ((MsgId, "thread_id"), (Message, "thread_id"), (ThreadMerge, "new_id")):
        cursor.executemany(
            f'UPDATE "{table._meta.table_name}" SET "{column}" = {mark} WHERE "{column}" = {mark}',
            moves,
        )
    insert_rows(ThreadMerge, ["old_id", "new_id"], merged)
    cursor.executemany(
        f'DELETE FROM "{Thread._meta.table_name}" WHERE "id" = {mark}',
        [(old,) for old, _ in merged],
    )


def resolve_thread_id(thread_id: int) -> int:
    """The current id of a thread that may since have been merged away."""
    row = ThreadMerge.get_or_none(ThreadMerge.old_id == thread_id)
    return row.new_id if row else thread_id
