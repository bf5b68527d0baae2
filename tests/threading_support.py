"""Shared by the threading tests: the Fedora corpus and its archive index, direct ingest
through the store, partitions that compare across databases."""

from __future__ import annotations

import gzip
import hashlib
import re
from html.parser import HTMLParser

from receiver.delivery import DeliveryRequest, DeliveryResult
from receiver.parse.record import ParsedMessage
from receiver.store.bulk import store_messages
from receiver.store.db import create_schema, open_database
from receiver.store.deliveries import store_deliveries
from receiver.store.models import MODELS, Mailbox, Message, SchemaInfo
from receiver.store.thread_state import lock_threading
from receiver.threads.subject import SubjectRule
from tests.helpers import DATA, DEFAULT_RULE, LOCK_TIMEOUT

FEDORA = DATA / "fedora-devel-2010-01"
_MBOX_FROM = re.compile(rb"^From \S+ +\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}\n", re.M)


def store_delivery(req: DeliveryRequest, rule: SubjectRule) -> DeliveryResult:
    """Store one delivery, as the writer stores a batch of one (store_deliveries)."""
    return store_deliveries([req], rule)[0]


def fedora_messages() -> list[bytes]:
    """The month's messages in archive order (msg00000 first), with CRLF line ends."""
    data = gzip.open(FEDORA / "2010-January.txt.gz").read()
    return [p.replace(b"\n", b"\r\n") for p in _MBOX_FROM.split(data) if p.strip()]


class _ThreadIndex(HTMLParser):
    """MHonArc's thread.html: each top-level <li> of the list after <hr> is one thread."""

    def __init__(self):
        super().__init__()
        self.depth = 0
        self.started = False
        self.threads: list[set[int]] = []

    def handle_starttag(self, tag, attrs):
        if tag == "hr":
            self.started = True
        if not self.started:
            return
        if tag == "ul":
            self.depth += 1
        elif tag == "li" and self.depth == 1:
            self.threads.append(set())
        elif tag == "a" and self.threads:
            name = dict(attrs).get("name")
            if name and name.isdigit():
                self.threads[-1].add(int(name))

    def handle_endtag(self, tag):
        if tag == "ul" and self.started:
            self.depth -= 1


def fedora_archive_threads() -> list[set[int]]:
    """The archive's threads as sets of message numbers (indexes into fedora_messages())."""
    p = _ThreadIndex()
    p.feed(gzip.open(FEDORA / "2010-January_thread.html.gz").read().decode("latin-1"))
    return [t for t in p.threads if t]


def fresh_store(db_url: str):
    """Open `db_url` with every table empty and one mailbox (id 1)."""
    db = open_database(db_url, LOCK_TIMEOUT)
    create_schema(db)
    with db.connection_context(), db.atomic():
        # DELETE, not TRUNCATE or DROP: far cheaper on PostgreSQL for a few rows.
        for m in reversed(MODELS):
            if m is not SchemaInfo:
                m.delete().execute()
        Mailbox.create(id=1, email="threads@corp.example")
    return db


def request_for(rec: ParsedMessage, status: str = "stored") -> DeliveryRequest:
    """A delivery of `rec` to the one mailbox; an empty blob stands in for its bytes."""
    sha = hashlib.sha256(f"{rec.message_id} {rec.content_hash}".encode()).hexdigest()
    return DeliveryRequest(
        mailbox_id=1, sha256=sha, size=0, compressed=b"", record=rec, status=status
    )


def ingest(
    db, records: list[ParsedMessage], rule: SubjectRule = DEFAULT_RULE, batch: int = 1
) -> None:
    """Store and thread `records` in this order, `batch` per transaction."""
    with db.connection_context():
        for i in range(0, len(records), batch):
            with db.atomic():
                lock_threading(db)
                for rec in records[i : i + batch]:
                    store_delivery(request_for(rec), rule)


def ingest_bulk(
    db, records: list[ParsedMessage], batch: int, rule: SubjectRule = DEFAULT_RULE
) -> None:
    """Store and thread `records` in this order through store_messages, `batch` at a time."""
    with db.connection_context():
        for i in range(0, len(records), batch):
            with db.atomic():
                lock_threading(db)
                store_messages(records[i : i + batch], rule)


def partition(db) -> set[frozenset[tuple[str, str]]]:
    """The threads as sets of (Message-ID, content hash): comparable across databases."""
    groups: dict[int, set] = {}
    with db.connection_context():
        for mid, chash, tid in Message.select(
            Message.message_id, Message.content_hash, Message.thread_id
        ).tuples():
            groups.setdefault(tid, set()).add((mid, chash))
    return {frozenset(g) for g in groups.values()}
