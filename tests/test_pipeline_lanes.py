"""Large copies may hold every parse worker but one: small copies keep a worker."""

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from receiver import config as configmod
from receiver.mail import read
from receiver.parse.worker import parse_within
from receiver.pipeline import LARGE_MESSAGE, STORED, Envelope, Pipeline
from receiver.store import mailboxes
from receiver.store.db import create_schema, open_database
from receiver.store.deliveries import Writer
from receiver.verify import Verifier
from tests.helpers import DEFAULT_BUDGET, DEFAULT_RULE


def _raw(n: int, size: int) -> bytes:
    head = (
        f"From: bob@example.org\r\nTo: alice@corp.example\r\nSubject: n{n}\r\n"
        f"Message-ID: <lane{n}@example.org>\r\n\r\n"
    ).encode()
    return head + b"x" * 76 + b"\r\n" + (b"y" * 76 + b"\r\n") * (size // 78)


def test_large_copies_leave_one_parse_worker_to_small_ones(tmp_path):
    cfg = configmod.load(None, environ={})
    assert cfg.parse.workers == 2
    db = open_database(f"sqlite:///{tmp_path / 'r.db'}", cfg.database.lock_timeout)
    create_schema(db)
    mb = mailboxes._info(mailboxes.add("alice@corp.example")[0])
    lock = threading.Lock()
    running = {"large": 0, "small": 0}
    peak = {"large": 0, "small": 0}

    def parser(raw: bytes):
        kind = "large" if len(raw) >= LARGE_MESSAGE else "small"
        with lock:
            running[kind] += 1
            peak[kind] = max(peak[kind], running[kind])
        time.sleep(0.1)  # a slow parse, so that overlaps show
        with lock:
            running[kind] -= 1
        return parse_within(raw, DEFAULT_BUDGET)

    writer = Writer(db, cfg.database.batch_max, DEFAULT_RULE)
    executor = ThreadPoolExecutor(8)
    pipeline = Pipeline(cfg, writer, Verifier(cfg), executor, parser=parser)

    async def main():
        raws = [_raw(n, LARGE_MESSAGE + 1000) for n in range(4)]
        raws += [_raw(n, 2000) for n in range(4, 8)]
        return await asyncio.gather(
            *(pipeline.deliver(read(raw), Envelope(), [("a@push.example.com", mb)]) for raw in raws)
        )

    try:
        outcomes = asyncio.run(main())
    finally:
        writer.stop()
        executor.shutdown()
    assert [o[0].status for o in outcomes] == [STORED] * 8
    assert peak["large"] == 1  # four large ones arrived together, one parsed at a time
    assert peak["small"] >= 2  # small ones ran beside it and beside each other
