"""The threading store: unions with ghosts, merges, the subject rule in both arrival orders,
quarantine, and (hypothesis) the same threads for every arrival order, also with two
writer processes on one PostgreSQL."""

from __future__ import annotations

import base64
import datetime as dt
import multiprocessing
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from receiver.parse import parse_message
from receiver.store import thread_queries
from receiver.store.db import is_postgres, open_database
from receiver.store.deliveries import Writer
from receiver.store.models import Message, MsgId, ThreadMerge
from receiver.store.threading import attach, lock_threading, resolve_thread_id
from receiver.threads.links import links_of
from receiver.threads.subject import SubjectRule
from tests.helpers import DEFAULT_RULE, LOCK_TIMEOUT
from tests.threading_support import fresh_store, ingest, ingest_bulk, partition, request_for

BASE = dt.datetime(2024, 3, 1, 9, 0)


def mail(msgid: str | None, subject: str = "plans", irt: str = "", refs: str = "",
         frm: str = "bob@example.org", to: str = "alice@corp.example", day: float = 0,
         body: str = "text", extra: str = "") -> bytes:
    date = (BASE + dt.timedelta(days=day)).strftime("%a, %d %b %Y %H:%M:%S +0000")
    head = [f"From: {frm}", f"To: {to}", f"Subject: {subject}", f"Date: {date}"]
    if msgid:
        head.append(f"Message-ID: <{msgid}>")
    if irt:
        head.append(f"In-Reply-To: {irt}")
    if refs:
        head.append(f"References: {refs}")
    if extra:
        head.append(extra)
    return ("\r\n".join(head) + "\r\n\r\n" + body + "\r\n").encode()


def threads_of(db) -> list[set[str]]:
    return sorted((sorted(mid for mid, _ in g) for g in partition(db)), key=lambda g: g[0])


def test_late_parent_slots_into_its_ghost_and_threads_merge_into_the_smaller_id(db_url):
    db = fresh_store(db_url)
    ingest(db, [parse_message(mail("c@x", irt="<b@x>", refs="<a@x> <b@x>")),
                parse_message(mail("d@x", irt="<q@x>"))])
    with db.connection_context():
        ghost = MsgId.get_by_id("b@x")
        assert ghost.ghost and MsgId.get_by_id("a@x").ghost
        first, second = sorted({m.thread_id for m in Message.select()})
    # e answers both conversations: one thread remains, the smaller id survives.
    ingest(db, [parse_message(mail("b@x", irt="<a@x>", refs="<a@x>")),
                parse_message(mail("e@x", refs="<b@x> <q@x>"))])
    assert threads_of(db) == [["b@x", "c@x", "d@x", "e@x"]]
    with db.connection_context():
        assert not MsgId.get_by_id("b@x").ghost and MsgId.get_by_id("a@x").ghost
        assert {m.thread_id for m in Message.select()} == {first}
        assert ThreadMerge.get_by_id(second).new_id == first
        assert resolve_thread_id(second) == first
        tree = thread_queries.thread_tree(second)
    shape = []
    stack = [(0, n) for n in reversed(tree["tree"])]
    while stack:
        d, n = stack.pop()
        shape.append("  " * d + ("?" if n["ghost"] else "") + n["message_id"])
        stack.extend((d + 1, c) for c in reversed(n["children"]))
    # A merged-away id is never handed out again (it still resolves to the survivor).
    ingest(db, [parse_message(mail("new@x"))])
    with db.connection_context():
        assert Message.get(Message.message_id == "new@x").thread_id > second
    # e's parent is its last References id, q: a ghost, which e's References put under b.
    assert shape == ["?a@x", "  b@x", "    c@x", "    ?q@x", "      d@x", "      e@x"]


def test_duplicate_message_ids_with_different_content_are_two_messages_in_one_thread(db_url):
    db = fresh_store(db_url)
    ingest(db, [parse_message(mail("same@x", body="one")), parse_message(mail("same@x", body="two")),
                parse_message(mail("same@x", body="one", extra="Received: by relay"))])
    with db.connection_context():
        rows = list(Message.select().where(Message.message_id == "same@x"))
    assert len(rows) == 2 and len({r.thread_id for r in rows}) == 1


def _subject_case():
    root = parse_message(mail("r@x", subject="Invoice 7", frm="carol@example.org",
                              to="alice@corp.example", day=0))
    orphan = parse_message(mail("o@x", subject="RE: Invoice 7", frm="alice@corp.example",
                                to="carol@example.org", day=3))
    stranger = parse_message(mail("s@x", subject="Re: Invoice 7", frm="eve@example.net",
                                  to="mallory@example.net", day=3))
    late = parse_message(mail("l@x", subject="Re: Invoice 7", frm="carol@example.org",
                              to="alice@corp.example", day=40))
    plain = parse_message(mail("p@x", subject="Invoice 7", frm="carol@example.org",
                               to="alice@corp.example", day=1))
    return [root, orphan, stranger, late, plain]


@pytest.mark.parametrize("order", [[0, 1, 2, 3, 4], [4, 3, 2, 1, 0], [1, 3, 2, 4, 0]])
def test_subject_rule_joins_orphans_in_any_arrival_order(db_url, order):
    # o joins r and p (shared participant, 3 days); s shares nobody; l is 40 days out
    # of the 30-day window (37 from p); r and p have no reply subject, so stay apart...
    # except through o, which joins both.
    recs = _subject_case()
    db = fresh_store(db_url)
    ingest(db, [recs[i] for i in order])
    assert threads_of(db) == [["l@x"], ["o@x", "p@x", "r@x"], ["s@x"]]


def test_subject_rule_switched_off_and_widened(db_url):
    db = fresh_store(db_url)
    ingest(db, _subject_case(), SubjectRule(enabled=False, window_days=30))
    assert len(threads_of(db)) == 5
    db = fresh_store(db_url)
    ingest(db, _subject_case(), SubjectRule(enabled=True, window_days=60))
    assert threads_of(db) == [["l@x", "o@x", "p@x", "r@x"], ["s@x"]]


def test_quarantined_messages_stay_out_of_threads_until_released(db_url):
    db = fresh_store(db_url)
    held = parse_message(mail("b@x", irt="<a@x>"))
    with db.connection_context(), db.atomic():
        from receiver.store.deliveries import store_delivery
        store_delivery(request_for(held, status="quarantined"), DEFAULT_RULE)
    ingest(db, [parse_message(mail("a@x")), parse_message(mail("c@x", irt="<b@x>"))])
    with db.connection_context():
        assert Message.get(Message.message_id == "b@x").thread_id is None
        assert MsgId.get_by_id("b@x").ghost
        assert len(thread_queries.list_threads()) == 2
        # Release: exactly what arriving now would do.
        with db.atomic():
            lock_threading(db)
            msg = Message.get(Message.message_id == "b@x")
            attach(msg, links_of(held), DEFAULT_RULE)
    assert threads_of(db) == [["a@x", "b@x", "c@x"]]


# ---- property: arrival order never changes the threads ------------------------------

TOPICS = ["Budget", "Release plan", "Hello", "Invoice"]
PEOPLE = ["ann@a.example", "ben@b.example", "cat@c.example", "dan@d.example"]


@st.composite
def forests(draw):
    """Conversations with truncated, missing, looping and garbage headers, duplicate and
    missing Message-IDs, Outlook Thread-Index and reply subjects without links."""
    n = draw(st.integers(2, 12))
    raws, ids, topic_of = [], [], []
    for i in range(n):
        parent = draw(st.one_of(st.none(), st.integers(0, i - 1))) if i else None
        topic = topic_of[parent] if parent is not None else draw(st.sampled_from(TOPICS))
        topic_of.append(topic)
        kind = draw(st.sampled_from(["ok", "ok", "missing", "dup"]))
        msgid = (None if kind == "missing" else ids[draw(st.integers(0, i - 1))]
                 if kind == "dup" and i else f"m{i}@h.example")
        ids.append(msgid or f"m{i}@h.example")
        # References: some earlier messages of the topic, then the parent.
        chain = []
        if parent is not None:
            chain = [ids[j] for j in range(parent) if topic_of[j] == topic][-2:] + [ids[parent]]
        style = draw(st.sampled_from(["full", "irt", "truncated", "none", "loop", "garbage"]))
        irt = refs = ""
        if chain and style in ("full", "irt", "garbage"):
            irt = f"<{chain[-1]}>"
        if chain and style in ("full", "garbage"):
            refs = " ".join(f"<{c}>" for c in chain)
        if chain and style == "truncated":
            refs = f"<{chain[-1]}>"
        if style == "loop":
            refs = " ".join(f"<m{j}@h.example>" for j in draw(
                st.lists(st.integers(0, n - 1), min_size=1, max_size=3)))
            irt = f"<{ids[-1]}>"
        if style == "garbage":
            refs += " <> <not an id> <" + "z" * 260 + "@h.example>"
            irt += " your message of Tuesday"
        reply = parent is not None and draw(st.booleans())
        subject = ("Re: " if reply else "") + topic
        frm, to = draw(st.sampled_from(PEOPLE)), draw(st.sampled_from(PEOPLE))
        extra = ""
        if draw(st.integers(0, 5)) == 0:
            conv = topic.encode().ljust(22, b".")
            extra = "Thread-Index: " + base64.b64encode(conv + b"\x00" * 5 * draw(
                st.integers(0, 2))).decode()
        raws.append(mail(msgid, subject, irt, refs, frm, to, day=draw(st.integers(0, 50)),
                         body=f"body {i}", extra=extra))
    return [parse_message(r) for r in raws]


def expected_partition(records, rule=DEFAULT_RULE) -> set[frozenset]:
    """Reference model: union-find over each message's keys and the subject rule's pairs."""
    parent: dict = {}

    def find(x):
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    def union(a, b):
        parent[find(a)] = find(b)

    links = [(("msg", r.message_id, r.content_hash), links_of(r)) for r in records]
    for node, link in links:
        for k in link.keys:
            union(node, ("key", k))
    for i, (a, la) in enumerate(links):
        for b, lb in links[i + 1:]:
            if rule.joins(la.subject, lb.subject):
                union(a, b)
    groups: dict = {}
    for node, _ in links:
        groups.setdefault(find(node), set()).add(node[1:])
    return {frozenset(g) for g in groups.values()}


def shapes(db) -> set[tuple]:
    """Every thread's display tree, without database ids: comparable across stores."""
    out = set()
    with db.connection_context():
        for tid in {m.thread_id for m in Message.select(Message.thread_id)}:
            tree = thread_queries.thread_tree(tid)
            rows, stack = [], [(0, n) for n in reversed(tree["tree"])]
            while stack:
                d, n = stack.pop()
                rows.append((d, n["message_id"], n["ghost"], n["date"]))
                stack.extend((d + 1, c) for c in reversed(n["children"]))
            out.add(tuple(rows))
    return out


def parents(db) -> set[tuple]:
    with db.connection_context():
        return set(Message.select(Message.message_id, Message.content_hash,
                                  Message.parent_msgid).tuples())


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(records=forests(), seed=st.integers(0, 2**32 - 1))
def test_every_arrival_order_gives_the_same_threads_and_trees(db_url, records, seed):
    shuffled = records[:]
    random.Random(seed).shuffle(shuffled)
    results = []
    # One by one (as SMTP delivers), and set-wise in batches (store_messages).
    for order, batch, store in ((records, 2, ingest), (records[::-1], 5, ingest),
                                (shuffled, 3, ingest_bulk), (shuffled[::-1], 4, ingest_bulk)):
        db = fresh_store(db_url)
        store(db, order, batch=batch)
        results.append((partition(db), parents(db), shapes(db)))
    assert results[0][0] == expected_partition(records)
    for name, k in (("partition", 0), ("parents", 1), ("trees", 2)):
        assert all(r[k] == results[0][k] for r in results), name


def _writer_process(db_url: str, records, seed: int) -> None:
    """One receiver's store writer, fed its own shuffle of the corpus."""
    order = records[:]
    random.Random(seed).shuffle(order)
    db = open_database(db_url, LOCK_TIMEOUT)
    writer = Writer(db, 4, DEFAULT_RULE)
    futures = [writer.submit([request_for(r)]) for r in order]
    for f in futures:
        f.result(timeout=60)
    writer.stop()


@settings(max_examples=4, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(records=forests(), seed=st.integers(0, 2**16))
def test_two_writer_processes_on_postgresql_agree_with_one(db_url, records, seed):
    if not db_url.startswith("postgresql"):
        pytest.skip("several writer processes share one database only on PostgreSQL")
    db = fresh_store(db_url)
    ingest(db, records)
    single = (partition(db), parents(db), shapes(db))
    db = fresh_store(db_url)
    assert is_postgres(db) and db.is_closed()
    fork = multiprocessing.get_context("fork")
    procs = [fork.Process(target=_writer_process, args=(db_url, records, seed + i))
             for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert (partition(db), parents(db), shapes(db)) == single
    with db.connection_context():
        assert Message.select().count() == len({(r.message_id, r.content_hash) for r in records})
