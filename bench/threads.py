"""Benchmark: threading N messages, shuffled, through the store; and threadweave in memory.

    python bench/threads.py [-n 100000] [--batch 500] [--pg postgresql://...|--no-pg]

Generates realistic conversations (heavy-tailed thread sizes, replies to random earlier
messages with References chains, some truncated or missing, reply subjects without
links, Outlook Thread-Index), shuffles them, and stores every message as the receiver
does (Message row, Delivery row, blob, threading attach) in transactions of --batch
messages, with durable commits (SQLite WAL with synchronous=FULL, as the receiver opens
it). Then threads the same corpus in memory with the `threadweave` package (JWZ) and
prints the ratio. Parsing is left out: records are built directly, so the figure is the
store's and the threading's. Needs the `bench` extra (pip install -e '.[bench]').
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import random
import resource
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from receiver.parse.record import ParsedMessage  # noqa: E402
from receiver.store.db import create_schema, open_database  # noqa: E402
from receiver.store.bulk import store_messages  # noqa: E402
from receiver.delivery import DeliveryRequest  # noqa: E402
from tests.threading_support import store_delivery  # noqa: E402
from receiver.store.models import MODELS, Mailbox, Message, SchemaInfo, utcnow  # noqa: E402
from receiver.store.thread_state import lock_threading  # noqa: E402
from receiver import config as configmod  # noqa: E402
from receiver.wiring import subject_rule  # noqa: E402

# The defaults: the benchmark measures what a fresh install does.
CONFIG = configmod.load(None, {})
RULE = subject_rule(CONFIG)

START = dt.datetime(2024, 1, 1)
WORDS = (
    "budget release plan invoice meeting review build server patch outage contract "
    "design draft hiring offsite quarterly roadmap migration security audit"
).split()


def generate(n: int, seed: int = 1) -> list[ParsedMessage]:
    """n messages in conversations; thread sizes are heavy-tailed (most 1-5, a few 100s)."""
    rng = random.Random(seed)
    people = [f"user{i}@org{i % 50}.example" for i in range(2000)]
    out: list[ParsedMessage] = []
    t = 0
    while len(out) < n:
        t += 1
        size = min(n - len(out), int(rng.paretovariate(1.3)))
        subject = " ".join(rng.sample(WORDS, 3)) + f" #{t}"
        crew = rng.sample(people, rng.randint(2, 6))
        outlook = rng.random() < 0.05
        conv = hashlib.sha256(f"conv{t}".encode()).digest()[:22]
        when = START + dt.timedelta(minutes=rng.randint(0, 365 * 24 * 60))
        thread: list[tuple[str, list[str], bytes]] = []  # (id, references, thread-index)
        for i in range(size):
            msgid = f"{uuid.UUID(int=rng.getrandbits(128)).hex}@{rng.choice(crew).split('@')[1]}"
            refs: list[str] = []
            irt: list[str] = []
            index = conv
            if thread:
                pid, prefs, pindex = thread[rng.randrange(len(thread))]
                index = pindex + rng.randbytes(5)
                style = rng.random()
                if outlook and style < 0.7:
                    pass  # Outlook: Thread-Index only
                elif style < 0.05:
                    pass  # a reply that lost its headers: the subject rule's case
                elif style < 0.15:
                    irt = [pid]
                else:
                    refs = (prefs + [pid])[-rng.choice((3, 10, 20)) :]
                    irt = [pid]
            when += dt.timedelta(minutes=rng.randint(1, 600))
            frm, to = rng.sample(crew, 2)
            rec = ParsedMessage(
                message_id=msgid,
                synthetic_id=False,
                content_hash=hashlib.sha256(msgid.encode()).hexdigest(),
                subject=("Re: " if i else "") + subject,
                date=when,
                from_addr=frm,
                to=[("", to)],
                in_reply_to=irt,
                references=refs,
                thread_index=base64.b64encode(index).decode() if outlook else None,
                text_body="x" * rng.randint(200, 2000),
            )
            thread.append((msgid, refs, index))
            out.append(rec)
    return out


def request(rec: ParsedMessage) -> DeliveryRequest:
    return DeliveryRequest(
        mailbox_id=1,
        sha256=hashlib.sha256(rec.content_hash.encode()).hexdigest(),
        size=len(rec.text_body or ""),
        compressed=b"",
        record=rec,
    )


def content_digest() -> str:
    """sha256 over every row of every data table, in key order, the clock's columns (and
    the schema version) left out: two runs that store the same corpus must give the same
    digest (a speed change must not change a row, a thread id or a parent)."""
    h = hashlib.sha256()
    for model in (m for m in MODELS if m is not SchemaInfo):
        fields = [f for f in model._meta.sorted_fields if f.default is not utcnow]
        query = model.select(*fields).order_by(model._meta.primary_key).tuples()
        h.update(f"{model._meta.table_name} {query.count()}\n".encode())
        for row in query.iterator():
            h.update(repr(row).encode())
    return h.hexdigest()


def ingest(url: str, records: list[ParsedMessage], batch: int, per_delivery: bool) -> float:
    """Messages per second: set-wise (store_messages) or one store_delivery each."""
    db = open_database(url, CONFIG.database.lock_timeout)
    create_schema(db)
    with db.connection_context():
        Mailbox.create(email="bench@corp.example")
        started, cpu, written = time.perf_counter(), time.process_time(), bytes_written()
        for i in range(0, len(records), batch):
            with db.atomic():
                lock_threading(db)
                if per_delivery:
                    for rec in records[i : i + batch]:
                        store_delivery(request(rec), RULE)
                else:
                    store_messages(records[i : i + batch], RULE)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        written = bytes_written() - written
        threads = Message.select(Message.thread_id).distinct().count()
        digest = content_digest()
    db.close()
    how = "store_delivery per message" if per_delivery else f"store_messages, {batch} a batch"
    # CPU seconds of this process (SQLite runs in it; PostgreSQL's server work is not
    # counted): the figure that other load on the machine does not distort.
    print(
        f"  {how}: {len(records)} messages into {threads} threads in {elapsed:.1f} s: "
        f"{len(records) / elapsed:,.0f} msg/s ({cpu:.1f} s CPU here: "
        f"{len(records) / cpu:,.0f} msg per CPU second, "
        f"{cpu / len(records) * 1e6:.0f} µs CPU a message; {written / 2**20:,.0f} MB written)\n"
        f"    database content sha256 {digest}"
    )
    return len(records) / elapsed


def threadweave_rate(records: list[ParsedMessage]) -> float:
    import threadweave

    msgs = [
        threadweave.Message(
            message_id=r.message_id,
            in_reply_to=" ".join(r.in_reply_to),
            references=r.references,
            subject=r.subject,
        )
        for r in records
    ]
    started = time.perf_counter()
    roots = threadweave.thread_messages(msgs)
    elapsed = time.perf_counter() - started
    print(
        f"  threadweave {threadweave.__version__} (JWZ, in memory, no storage): "
        f"{len(records)} messages into {len(roots)} roots in {elapsed:.2f} s: "
        f"{len(records) / elapsed:,.0f} msg/s"
    )
    return len(records) / elapsed


def bytes_written() -> int:
    """Bytes this process has handed to write calls (Linux), the WAL and checkpoints
    included: what durable commits cost besides CPU."""
    try:
        with open("/proc/self/io") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("wchar:"))
    except OSError:
        return 0


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def pg_database(dsn: str) -> str | None:
    """A fresh database next to `dsn`, or None when PostgreSQL is not reachable."""
    try:
        conn = psycopg2.connect(dsn, connect_timeout=3)
    except psycopg2.OperationalError:
        return None
    name = "tr_bench_" + uuid.uuid4().hex[:8]
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    return f"{dsn.rsplit('/', 1)[0]}/{name}"


def drop_pg_database(dsn: str, url: str) -> None:
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
    conn.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=100_000, help="messages (default 100000)")
    ap.add_argument("--batch", type=int, default=500, help="messages per transaction")
    ap.add_argument(
        "--pg",
        default="postgresql://postgres@127.0.0.1:5432/test",
        help="PostgreSQL to benchmark too (a temporary database is made there)",
    )
    ap.add_argument("--no-pg", action="store_true", help="SQLite only")
    ap.add_argument(
        "--per-delivery",
        type=int,
        default=5000,
        help="messages for the one-store_delivery-each figure (the SMTP path)",
    )
    args = ap.parse_args()

    records = generate(args.n)
    random.Random(2).shuffle(records)
    sample = records[: args.per_delivery]
    print(f"corpus: {len(records)} messages, shuffled; {args.batch} per transaction")
    print("SQLite (WAL, synchronous=FULL):")
    with tempfile.TemporaryDirectory() as tmp:
        sqlite_rate = ingest(f"sqlite:///{tmp}/bench.db", records, args.batch, False)
        if sample:
            ingest(f"sqlite:///{tmp}/deliveries.db", sample, args.batch, True)
    print(f"  peak RSS so far: {peak_rss_mb():.0f} MB")
    if not args.no_pg:
        url = pg_database(args.pg)
        if url is None:
            print("PostgreSQL: not reachable, skipped")
        else:
            print("PostgreSQL:")
            try:
                ingest(url, records, args.batch, False)
            finally:
                drop_pg_database(args.pg, url)
            if sample:
                url = pg_database(args.pg)
                try:
                    ingest(url, sample, args.batch, True)
                finally:
                    drop_pg_database(args.pg, url)
    tw = threadweave_rate(records)
    print(
        f"ratio: the threading store on SQLite runs at {sqlite_rate / tw:.2f}x "
        f"threadweave's in-memory rate"
    )
    print(f"peak RSS: {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
