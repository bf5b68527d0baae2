"""Storing deliveries: one writer thread, group commit, an answer only after COMMIT.

Sessions hand `DeliveryRequest`s to the `Writer`; it commits what has queued up in one
transaction and resolves each request's future only when that transaction is durable.
A batch that fails is retried one request at a time, so a single bad request cannot
fail its neighbours; a database fault fails the requests (the sender gets 451).
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import queue
import threading
from dataclasses import dataclass, field

import zstandard
from peewee import Database, IntegrityError, InterfaceError, OperationalError
from psycopg2 import errorcodes

from receiver import metrics
from receiver.parse.record import ParsedMessage
from receiver.store.db import is_postgres
from receiver.store.models import Blob, Delivery, Message
from receiver.store import threading as threadstore
from receiver.threads.links import ThreadLinks, links_of
from receiver.threads.subject import SubjectRule

log = logging.getLogger(__name__)

# PostgreSQL aborts a transaction with these when concurrent writers collide; the
# whole transaction is simply run again.
RETRYABLE_PGCODES = {errorcodes.SERIALIZATION_FAILURE, errorcodes.DEADLOCK_DETECTED}
TRANSACTION_ATTEMPTS = 5


@dataclass
class DeliveryRequest:
    mailbox_id: int
    sha256: str
    size: int
    compressed: bytes
    record: ParsedMessage
    status: str = "stored"  # stored | quarantined
    source: str = "smtp"
    session_id: str | None = None
    mail_from: str | None = None
    rcpt_to: str | None = None
    peer: str | None = None
    helo: str | None = None
    tls: dict | None = None
    auth_user: str | None = None
    verdict: str = "unverifiable"
    reasons: list[str] = field(default_factory=list)
    verify_detail: dict = field(default_factory=dict)
    auth_results: str | None = None
    smtp_defects: list[str] = field(default_factory=list)
    wrapper: tuple[str, int, bytes] | None = None  # (sha256, size, compressed)


@dataclass(frozen=True)
class DeliveryResult:
    delivery_id: int
    message_id: int
    duplicate: bool
    status: str


_compressor = threading.local()


def compress(raw: bytes) -> bytes:
    c = getattr(_compressor, "c", None)
    if c is None:
        c = _compressor.c = zstandard.ZstdCompressor(level=3)
    return c.compress(raw)


def decompress(data: bytes, codec: str = "zstd") -> bytes:
    if codec != "zstd":
        raise ValueError(f"unknown blob codec {codec}")
    return zstandard.ZstdDecompressor().decompress(bytes(data))


def db_text(value: str | None) -> str | None:
    """Text a database column can hold: no NUL (PostgreSQL refuses it) and no lone
    surrogates (undecodable bytes). The raw bytes keep the original either way."""
    if value is None:
        return None
    return value.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")


def _put_blob(sha256: str, size: int, compressed: bytes) -> None:
    Blob.insert(sha256=sha256, size=size, codec="zstd", data=compressed).on_conflict_ignore().execute()


def message_fields(rec: ParsedMessage, links: ThreadLinks, blob_sha: str | None) -> dict:
    """The Message row of a parsed record (thread_id stays unset until it is threaded)."""
    return dict(
        message_id=db_text(rec.message_id),
        content_hash=rec.content_hash,
        synthetic_id=rec.synthetic_id,
        subject=db_text(rec.subject),
        norm_subject=db_text(links.subject.norm_subject),
        subject_orphan=links.subject.orphan,
        participants=db_text(" ".join(sorted(links.subject.participants))),
        date=rec.date,
        date_raw=db_text(rec.date_raw),
        from_addr=db_text(rec.from_addr),
        from_name=db_text(rec.from_name),
        to_addrs=json.dumps(rec.to),
        cc_addrs=json.dumps(rec.cc),
        reply_to=json.dumps(rec.reply_to),
        in_reply_to=" ".join(rec.in_reply_to) or None,
        references=json.dumps(rec.references),
        parent_msgid=links.parent_id,
        thread_index=db_text(rec.thread_index),
        text_body=db_text(rec.text_body),
        html_body=db_text(rec.html_body),
        attachments=json.dumps(rec.attachments),
        defects=json.dumps(rec.defects),
        parse_error=db_text(rec.parse_error),
        blob=blob_sha,
    )


def _message_row(rec: ParsedMessage, links: ThreadLinks, blob_sha: str) -> tuple[Message, bool]:
    # Only the columns used here: building the SELECT of every column costs more than the
    # query itself (bulk import stores thousands of messages a second through this).
    existing = (Message.select(Message.id, Message.thread_id)
                .where((Message.message_id == rec.message_id)
                       & (Message.content_hash == rec.content_hash)).first())
    if existing:
        return existing, False
    return Message.create(**message_fields(rec, links, blob_sha)), True


def store_delivery(req: DeliveryRequest, rule: SubjectRule = threadstore.DEFAULT_RULE,
                   ) -> DeliveryResult:
    """Store one delivery; call inside a transaction holding `threadstore.lock_threading`.
    Idempotent per (mailbox, bytes)."""
    dup = (Delivery.select(Delivery.id, Delivery.message, Delivery.status)
           .where((Delivery.mailbox == req.mailbox_id) & (Delivery.blob == req.sha256)).first())
    if dup is not None:
        return DeliveryResult(dup.id, dup.message_id, True, dup.status)
    _put_blob(req.sha256, req.size, req.compressed)
    if req.wrapper:
        _put_blob(*req.wrapper)
    links = links_of(req.record)
    msg, _ = _message_row(req.record, links, req.sha256)
    d = Delivery.create(
        mailbox=req.mailbox_id,
        message=msg,
        blob=req.sha256,
        status=req.status,
        source=req.source,
        session_id=db_text(req.session_id),
        mail_from=db_text(req.mail_from),
        rcpt_to=db_text(req.rcpt_to),
        peer=db_text(req.peer),
        helo=db_text(req.helo),
        tls=json.dumps(req.tls) if req.tls else None,
        auth_user=db_text(req.auth_user),
        verdict=req.verdict,
        reasons=json.dumps(req.reasons),
        verify_detail=json.dumps(req.verify_detail),
        auth_results=db_text(req.auth_results),
        smtp_defects=json.dumps(req.smtp_defects),
        wrapper_blob=req.wrapper[0] if req.wrapper else None,
    )
    if req.status == "stored" and msg.thread_id is None:
        threadstore.attach(msg, links, rule)
    return DeliveryResult(d.id, msg.id, False, req.status)


class WriterStopped(Exception):
    """The writer is shutting down; the request was not stored."""


class Writer:
    """The single writer thread of this process (SQLite allows one; PG batches gain)."""

    def __init__(self, db: Database, batch_max: int = 64,
                 subject_rule: SubjectRule = threadstore.DEFAULT_RULE):
        self.db = db
        self.subject_rule = subject_rule
        self.batch_max = max(1, batch_max)
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
        self._stopping = False
        self._thread.start()

    def submit(self, requests: list[DeliveryRequest]) -> concurrent.futures.Future:
        """Future of list[DeliveryResult], resolved after COMMIT (or with the error)."""
        fut: concurrent.futures.Future = concurrent.futures.Future()
        if self._stopping:
            fut.set_exception(WriterStopped("the receiver is shutting down"))
        else:
            self._queue.put((requests, fut))
        return fut

    def stop(self, timeout: float = 30.0) -> None:
        """Finish what is queued, then end the thread."""
        self._stopping = True
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                break
            batch = [item]
            while len(batch) < self.batch_max:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)
                    break
                batch.append(nxt)
            self._commit(batch)
        self._close()

    @metrics.timed_commit
    def _transaction(self, jobs) -> list[list[DeliveryResult]]:
        attempt = 1
        while True:
            try:
                # SQLite: take the write lock up front. A deferred transaction that reads
                # first cannot wait for another process's writer (`serve --workers`).
                with self.db.atomic() if is_postgres(self.db) else self.db.atomic("IMMEDIATE"):
                    threadstore.lock_threading(self.db)
                    return [[store_delivery(r, self.subject_rule) for r in reqs]
                            for reqs, _ in jobs]
            except Exception as e:
                if attempt == TRANSACTION_ATTEMPTS or not _is_retryable(e):
                    raise
                log.info("transaction attempt %d collided (%r); running it again", attempt, e)
                attempt += 1

    def _commit(self, batch) -> None:
        try:
            results = self._transaction(batch)
        except Exception as e:
            if len(batch) == 1 or _is_connection_fault(e):
                self._fail(batch, e)
                return
            log.warning("batch of %d failed (%r); retrying one by one", len(batch), e)
            for job in batch:
                self._commit([job])
            return
        for (_, fut), res in zip(batch, results):
            fut.set_result(res)

    def _fail(self, batch, error: Exception) -> None:
        log.error("store failed for %d deliveries: %r", len(batch), error)
        self._close()
        for _, fut in batch:
            fut.set_exception(error)

    def _close(self) -> None:
        # A broken connection must not be reused: the next batch reconnects.
        try:
            self.db.close()
        except Exception as e:  # closing a dead connection can raise; nothing to save
            log.debug("closing the database connection: %r", e)


def _is_retryable(e: Exception) -> bool:
    # peewee passes some psycopg2 errors through and wraps others (original in args[0]).
    for err in (e, *e.args[:1]):
        if getattr(err, "pgcode", None) in RETRYABLE_PGCODES:
            return True
    return False


def _is_connection_fault(e: Exception) -> bool:
    return isinstance(e, (InterfaceError, OperationalError)) and not isinstance(e, IntegrityError)
