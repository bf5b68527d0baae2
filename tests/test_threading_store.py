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
from receiver.store.thread_state import attach, lock_threading, resolve_thread_id
from receiver.threads.links import links_of
from receiver.threads.subject import SubjectRule
from receiver.threads.thread_index import conversation_key
from receiver.threads.weak import slot_of
from tests.helpers import DEFAULT_RULE, LOCK_TIMEOUT
from tests.threading_support import fresh_store, ingest, ingest_bulk, partition, request_for

BASE = dt.datetime(2024, 3, 1, 9, 0)


def mail(
    msgid: str | None,
    subject: str = "plans",
    irt: str = "",
    refs: str = "",
    frm: str = "bob@example.org",
    to: str = "alice@corp.example",
    day: float = 0,
    body: str = "text",
    extra: str = "",
) -> bytes:
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
    ingest(
        db,
        [
            parse_message(mail("c@x", irt="<b@x>", refs="<a@x> <b@x>")),
            parse_message(mail("d@x", irt="<q@x>")),
        ],
    )
    with db.connection_context():
        ghost = MsgId.get_by_id("b@x")
        assert ghost.ghost and MsgId.get_by_id("a@x").ghost
        first, second = sorted({m.thread_id for m in Message.select()})
    # e answers both conversations: one thread remains, the smaller id survives.
    ingest(
        db,
        [
            parse_message(mail("b@x", irt="<a@x>", refs="<a@x>")),
            parse_message(mail("e@x", refs="<b@x> <q@x>")),
        ],
    )
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
    ingest(
        db,
        [
            parse_message(mail("same@x", body="one")),
            parse_message(mail("same@x", body="two")),
            parse_message(mail("same@x", body="one", extra="Received: by relay")),
        ],
    )
    with db.connection_context():
        rows = list(Message.select().where(Message.message_id == "same@x"))
    assert len(rows) == 2 and len({r.thread_id for r in rows}) == 1


def _subject_case():
    root = parse_message(
        mail("r@x", subject="Invoice 7", frm="carol@example.org", to="alice@corp.example", day=0)
    )
    orphan = parse_message(
        mail(
            "o@x", subject="RE: Invoice 7", frm="alice@corp.example", to="carol@example.org", day=3
        )
    )
    stranger = parse_message(
        mail("s@x", subject="Re: Invoice 7", frm="eve@example.net", to="mallory@example.net", day=3)
    )
    late = parse_message(
        mail(
            "l@x", subject="Re: Invoice 7", frm="carol@example.org", to="alice@corp.example", day=40
        )
    )
    plain = parse_message(
        mail("p@x", subject="Invoice 7", frm="carol@example.org", to="alice@corp.example", day=1)
    )
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


def _ti_header(conv: bytes, blocks: int) -> str:
    return "Thread-Index: " + base64.b64encode(conv.ljust(22, b".") + b"\0" * 5 * blocks).decode()


@pytest.mark.parametrize("reverse", [False, True])
def test_a_thread_index_reply_is_not_joined_by_subject_to_an_older_conversation(db_url, reverse):
    old = parse_message(
        mail("old@x", subject="Budget", frm="carol@example.org", to="alice@corp.example", day=0)
    )
    first = parse_message(
        mail(
            "t1@x",
            subject="Budget",
            frm="dave@example.org",
            to="alice@corp.example",
            day=2,
            extra=_ti_header(b"conv", 0),
        )
    )
    reply = parse_message(
        mail(
            "t2@x",
            subject="RE: Budget",
            frm="alice@corp.example",
            to="carol@example.org",
            day=3,
            extra=_ti_header(b"conv", 1),
        )
    )
    recs = [old, first, reply]
    db = fresh_store(db_url)
    ingest(db, recs[::-1] if reverse else recs)
    assert threads_of(db) == [["old@x"], ["t1@x", "t2@x"]]


@st.composite
def weak_series(draw):
    """git send-email series answered `In-Reply-To: <yes>`: each series one sender, its
    messages minutes apart; the series months apart, some from one sender."""
    series: list[list[bytes]] = []
    for k in range(draw(st.integers(2, 4))):
        sender = draw(st.sampled_from(PEOPLE[:2]))
        start = 60 * k + draw(st.integers(0, 20))
        minutes = 0.0
        msgs = []
        for j in range(draw(st.integers(1, 4))):
            minutes += draw(st.integers(0, 90))
            head = draw(st.sampled_from(["irt", "both", "refs"]))
            msgs.append(
                mail(
                    f"s{k}.{j}@h.example",
                    f"[PATCH {j}] part {k}",
                    irt="<yes>" if head != "refs" else "",
                    refs="<yes>" if head != "irt" else "",
                    frm=sender,
                    day=start + minutes / 1440,
                    body=f"patch {k} {j}",
                )
            )
        series.append(msgs)
    return series


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(series=weak_series(), seed=st.integers(0, 2**16))
def test_a_weak_id_joins_a_series_but_not_conversations_months_apart(db_url, series, seed):
    records = [parse_message(m) for msgs in series for m in msgs]
    random.Random(seed).shuffle(records)
    expected = sorted(
        sorted(f"s{k}.{j}@h.example" for j in range(len(msgs))) for k, msgs in enumerate(series)
    )
    for store, batch in ((ingest, 1), (ingest_bulk, 3)):
        db = fresh_store(db_url)
        store(db, records, batch=batch)
        assert threads_of(db) == expected
    # Once a message whose Message-ID is the weak id arrives, it joins everything naming it.
    yes = parse_message(mail("yes", "yes", day=500))
    for order in ([yes, *records], [*records, yes]):
        db = fresh_store(db_url)
        ingest(db, order, batch=2)
        assert threads_of(db) == [sorted(["yes", *(m for g in expected for m in g)])]


def test_a_weak_id_joins_the_same_sender_only_within_the_neighbouring_slot(db_url):
    # Slots are 3 hours (UTC): 09:00-11:59, 12:00-14:59, ...; 18:00 is two slots on.
    recs = [
        parse_message(mail(f"w{i}@x", irt="<yes>", frm=frm, day=hours / 24))
        for i, (frm, hours) in enumerate(
            [
                ("bob@example.org", 0),
                ("bob@example.org", 2.9),
                ("eve@example.org", 1),
                ("bob@example.org", 5.9),
                ("bob@example.org", 9),
            ]
        )
    ]
    db = fresh_store(db_url)
    ingest(db, recs[::-1])
    assert threads_of(db) == [["w0@x", "w1@x", "w3@x"], ["w2@x"], ["w4@x"]]


def test_quarantined_messages_stay_out_of_threads_until_released(db_url):
    db = fresh_store(db_url)
    held = parse_message(mail("b@x", irt="<a@x>"))
    with db.connection_context(), db.atomic():
        from tests.threading_support import store_delivery

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
    missing Message-IDs, Outlook Thread-Index and reply subjects without links, archive-
    rewritten In-Reply-To ids and the weak id <yes> (also as a Message-ID)."""
    n = draw(st.integers(2, 12))
    raws, ids, topic_of = [], [], []
    for i in range(n):
        parent = draw(st.one_of(st.none(), st.integers(0, i - 1))) if i else None
        topic = topic_of[parent] if parent is not None else draw(st.sampled_from(TOPICS))
        topic_of.append(topic)
        kind = draw(st.sampled_from(["ok", "ok", "missing", "dup", "weak"]))
        msgid = (
            None
            if kind == "missing"
            else ids[draw(st.integers(0, i - 1))]
            if kind == "dup" and i
            else "yes"
            if kind == "weak"
            else f"m{i}@h.example"
        )
        ids.append(msgid or f"m{i}@h.example")
        # References: some earlier messages of the topic, then the parent.
        chain = []
        if parent is not None:
            chain = [ids[j] for j in range(parent) if topic_of[j] == topic][-2:] + [ids[parent]]
        style = draw(
            st.sampled_from(
                ["full", "irt", "truncated", "none", "loop", "garbage", "rewritten", "weak"]
            )
        )
        irt = refs = ""
        if chain and style in ("full", "irt", "garbage"):
            irt = f"<{chain[-1]}>"
        if chain and style in ("full", "garbage"):
            refs = " ".join(f"<{c}>" for c in chain)
        if chain and style == "truncated":
            refs = f"<{chain[-1]}>"
        if style == "loop":
            refs = " ".join(
                f"<m{j}@h.example>"
                for j in draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=3))
            )
            irt = f"<{ids[-1]}>"
        if style == "garbage":
            refs += " <> <not an id> <" + "z" * 260 + "@h.example>"
            irt += " your message of Tuesday"
        if chain and style == "rewritten":
            irt = f"<{chain[-1].split('@')[0]}-Zq9@gmane.example>"
            refs = " ".join(f"<{c}>" for c in draw(st.permutations(chain)))
        if style == "weak":
            irt = "<yes>"
            refs = " ".join(["<yes>"] + [f"<{c}>" for c in chain])
        reply = parent is not None and draw(st.booleans())
        subject = ("Re: " if reply else "") + topic
        frm, to = draw(st.sampled_from(PEOPLE)), draw(st.sampled_from(PEOPLE))
        extra = ""
        if draw(st.integers(0, 5)) == 0:
            conv = topic.encode().ljust(22, b".")
            extra = (
                "Thread-Index: "
                + base64.b64encode(conv + b"\x00" * 5 * draw(st.integers(0, 2))).decode()
            )
        # Days, or hours (series-like) apart: the weak id's slots see both.
        day = draw(st.one_of(st.integers(0, 50), st.integers(0, 30).map(lambda h: h / 24)))
        raws.append(
            mail(msgid, subject, irt, refs, frm, to, day=day, body=f"body {i}", extra=extra)
        )
    return [parse_message(r) for r in raws]


def expected_partition(records, rule=DEFAULT_RULE) -> set[frozenset]:
    """Reference model: union-find over each message's Message-ID, the ids it references
    that have an `@`, its Thread-Index conversation, the subject rule's pairs, and the weak
    ids' rule: the message that carries one as its Message-ID, or the same sender within
    one slot (receiver/threads/weak.py)."""
    parent: dict = {}

    def find(x):
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    def union(a, b):
        parent[find(a)] = find(b)

    links = [(("msg", r.message_id, r.content_hash), links_of(r)) for r in records]
    received = {r.message_id for r in records}
    for (node, _link), r in zip(links, records):
        named = {*r.references, *r.in_reply_to}
        for k in [
            r.message_id,
            conversation_key(r.thread_index),
            *(i for i in named if "@" in i or i in received),
        ]:
            if k:
                union(node, ("key", k))
    for i, ((a, la), ra) in enumerate(zip(links, records)):
        for (b, lb), rb in zip(links[i + 1 :], records[i + 1 :]):
            weak_a = {w for w in [*ra.references, *ra.in_reply_to] if "@" not in w}
            weak_b = {w for w in [*rb.references, *rb.in_reply_to] if "@" not in w}
            if rule.joins(la.subject, lb.subject) or (
                weak_a & weak_b
                and ra.from_addr
                and ra.from_addr == rb.from_addr
                and ra.date
                and rb.date
                and abs(slot_of(ra.date) - slot_of(rb.date)) <= 1
            ):
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
        return set(
            Message.select(Message.message_id, Message.content_hash, Message.parent_msgid).tuples()
        )


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(records=forests(), seed=st.integers(0, 2**32 - 1))
def test_every_arrival_order_gives_the_same_threads_and_trees(db_url, records, seed):
    shuffled = records[:]
    random.Random(seed).shuffle(shuffled)
    results = []
    # One by one (as SMTP delivers), and set-wise in batches (store_messages).
    for order, batch, store in (
        (records, 2, ingest),
        (records[::-1], 5, ingest),
        (shuffled, 3, ingest_bulk),
        (shuffled[::-1], 4, ingest_bulk),
    ):
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


@settings(
    max_examples=4,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
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
    procs = [
        fork.Process(target=_writer_process, args=(db_url, records, seed + i)) for i in range(2)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert (partition(db), parents(db), shapes(db)) == single
    with db.connection_context():
        assert Message.select().count() == len({(r.message_id, r.content_hash) for r in records})
