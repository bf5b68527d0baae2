"""`import`: mail files through the same pipeline as SMTP (verify, policy, parse, thread, store).

Many deliveries are in flight at once so the store's writer commits them in groups. A copy
already stored for the mailbox (same bytes) is counted as a duplicate before any work is
spent on it, so running an import again, or after an interruption, resumes quickly and
stores nothing twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from collections.abc import Callable, Iterable

from peewee import Database

from receiver.config import Config
from receiver.exits import EX_TEMPFAIL
from receiver.mail import read
from receiver.mailfiles import MailItem, is_message
from receiver.pipeline import DUPLICATE, QUARANTINED, REJECTED, STORED, TEMPFAILED, Envelope
from receiver.stages import exit_for_restart, watch
from receiver.store import mailboxes
from receiver.store.db import check_schema, open_database, run_read
from receiver.store.models import Delivery
from receiver.wiring import build

log = logging.getLogger(__name__)

# Deliveries in flight: enough to fill several group commits while others are parsed.
CONCURRENCY = 256
# Messages whose "already stored?" question is asked in one query.
LOOKUP_CHUNK = 256
# Seconds between progress reports (a terminal redraw per message would cost more).
PROGRESS_EVERY = 0.25


class ImportRefused(Exception):
    """The import cannot start (no such mailbox, disabled...); the message says why."""


@dataclass
class ImportSummary:
    seen: int = 0
    counts: Counter = field(default_factory=Counter)  # stored, duplicate, quarantined, ...
    reasons: Counter = field(default_factory=Counter)  # "rejected: why" / "failed: why"
    failures: list[str] = field(default_factory=list)  # where, for the first few
    not_messages: list[str] = field(default_factory=list)  # where: files that are not mail
    elapsed: float = 0.0

    @property
    def done(self) -> int:
        return sum(self.counts.values())

    def as_dict(self) -> dict:
        return {
            "messages": self.seen,
            **{
                k: self.counts.get(k, 0)
                for k in (STORED, DUPLICATE, QUARANTINED, REJECTED, TEMPFAILED, "failed")
            },
            "reasons": dict(self.reasons.most_common()),
            "failed_at": self.failures,
            "not_messages": self.not_messages,
            "seconds": round(self.elapsed, 3),
            "rate": round(self.seen / self.elapsed, 1) if self.elapsed else None,
        }


def _already_stored(mailbox_id: int, shas: list[str]) -> set[str]:
    # The (mailbox, blob) index answers this. A wrapped copy (stored as its inner message)
    # is not found here; the pipeline then finds it a duplicate, at the price of a check.
    return {
        sha
        for (sha,) in Delivery.select(Delivery.blob)
        .where((Delivery.mailbox == mailbox_id) & Delivery.blob.in_(shas))
        .tuples()
    }


def _target(email: str) -> tuple[mailboxes.MailboxInfo, str | None]:
    info = mailboxes.info(email)
    mb = mailboxes.get(email)
    addr = mailboxes.current_address(mb)
    return info, addr.local_part if addr else None


class Importer:
    def __init__(self, config: Config, email: str, concurrency: int = CONCURRENCY):
        self.config = config
        self.email = email
        self.concurrency = concurrency

    async def run(
        self,
        items: Iterable[MailItem],
        source_name: str,
        progress: Callable[[int, ImportSummary], None] = lambda p, s: None,
    ) -> ImportSummary:
        loop = asyncio.get_running_loop()
        db: Database = open_database(self.config.database_url, self.config.database.lock_timeout)
        executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="import")
        await loop.run_in_executor(executor, check_schema, db)
        mb, local = await loop.run_in_executor(executor, run_read, db, _target, self.email)
        if mb.state != "active":
            executor.shutdown()
            raise ImportRefused(
                f"mailbox {mb.email} is {mb.state}: "
                f"`threads-receiver mailbox enable {mb.email}` first"
            )
        rcpt = f"{local}@{self.config.domains[0]}" if local else mb.email
        # The daemon's pipeline: parsing runs in other processes, beside the writer.
        stack = await build(self.config, db, executor)
        pipeline = stack.pipeline
        # An import is resumable: one whose store writer hangs ends (75, try again) and
        # the next run skips what was committed.
        watchdog = watch(stack.stages, self.config, exit_for_restart(EX_TEMPFAIL))
        summary = ImportSummary()
        slots = asyncio.Semaphore(self.concurrency)
        session = "import-" + secrets.token_hex(4)
        tasks: set[asyncio.Task] = set()

        async def one(item: MailItem) -> None:
            try:
                env = Envelope(source="import", session_id=session, peer=source_name)
                outcome = (await pipeline.deliver(read(item.raw), env, [(rcpt, mb)]))[0]
                summary.counts[outcome.status] += 1
                if outcome.status in (REJECTED, TEMPFAILED):
                    summary.reasons[f"{outcome.status}: {outcome.reason}"] += 1
                    self._note_failure(summary, item, outcome.reason)
                else:
                    log.debug(
                        "%s: %s delivery %s message %s",
                        item.where,
                        outcome.status,
                        outcome.delivery_id,
                        outcome.message_id,
                    )
            except Exception as e:  # one bad message must not stop the other 99,999
                summary.counts["failed"] += 1
                summary.reasons[f"failed: {type(e).__name__}: {e}"] += 1
                self._note_failure(summary, item, repr(e))
            finally:
                slots.release()

        started = time.monotonic()
        position = 0

        async def tick() -> None:
            while True:
                await asyncio.sleep(PROGRESS_EVERY)
                progress(position, summary)

        ticker = asyncio.create_task(tick())
        try:
            for chunk in _chunks(items, LOOKUP_CHUNK):
                shas = [hashlib.sha256(i.raw).hexdigest() for i in chunk]
                known = await loop.run_in_executor(
                    executor, run_read, db, _already_stored, mb.id, shas
                )
                for item, sha in zip(chunk, shas):
                    summary.seen += 1
                    position = item.progress
                    if not is_message(item.raw):
                        summary.counts["failed"] += 1
                        summary.reasons["failed: not a message"] += 1
                        summary.not_messages.append(item.where)
                        continue
                    if sha in known:
                        summary.counts[DUPLICATE] += 1
                        continue
                    known.add(sha)  # the same bytes twice in one file: one delivery
                    await slots.acquire()
                    task = asyncio.create_task(one(item))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
            if tasks:
                await asyncio.gather(*tasks)
            progress(position, summary)
        finally:
            ticker.cancel()
            watchdog.stop()
            summary.elapsed = time.monotonic() - started
            await stack.close()
            executor.shutdown()
        return summary

    @staticmethod
    def _note_failure(summary: ImportSummary, item: MailItem, reason: str) -> None:
        log.warning("%s: not stored: %s", item.where, reason)
        if len(summary.failures) < 20:
            summary.failures.append(f"{item.where}: {reason}")


def _chunks(items: Iterable[MailItem], size: int):
    chunk: list[MailItem] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
