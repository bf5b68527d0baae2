"""Storing deliveries: one writer thread, group commit, an answer only after COMMIT.

Sessions hand `DeliveryRequest`s to the `Writer`; it commits what has queued up in one
transaction and resolves each request's future only when that transaction is durable.
A batch that fails is retried one request at a time, so a single bad request cannot
fail its neighbours; a database fault fails the requests (the sender gets 451).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import logging
import queue
import threading

import zstandard
from peewee import Database, IntegrityError, InterfaceError, OperationalError

from receiver import faults, metrics
from receiver.delivery import STORED, DeliveryRequest, DeliveryResult
from receiver.parse.record import ParsedMessage
from receiver.stages import Stage
from receiver.store.db import write_transaction
from receiver.store.models import Blob, Delivery, Message
from receiver.store import credentials, folders, sql, thread_state
from receiver.threads.links import ThreadLinks, links_of
from receiver.threads.subject import SubjectRule

log = logging.getLogger(__name__)

# PostgreSQL aborts a transaction with these when concurrent writers collide; the
# whole transaction is simply run again.
# SQLSTATEs serialization_failure and deadlock_detected, spelled out so that a SQLite-only
# install needs no psycopg2.
RETRYABLE_PGCODES = {"40001", "40P01"}
TRANSACTION_ATTEMPTS = 5


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
    if value is None or (value.isascii() and "\x00" not in value):
        return value
    return value.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")


def _json_list(values: list) -> str:
    # Most of these lists are empty: "[]" without the encoder, for bulk inserts.
    return json.dumps(values) if values else "[]"


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
        to_addrs=_json_list(rec.to),
        cc_addrs=_json_list(rec.cc),
        reply_to=_json_list(rec.reply_to),
        in_reply_to=" ".join(rec.in_reply_to) or None,
        references=_json_list(rec.references),
        parent_msgid=links.parent_id,
        thread_index=db_text(rec.thread_index),
        text_body=db_text(rec.text_body),
        html_body=db_text(rec.html_body),
        attachments=_json_list(rec.attachments),
        defects=_json_list(rec.defects),
        parse_error=db_text(rec.parse_error),
        blob=blob_sha,
    )


def delivery_fields(req: DeliveryRequest, message_pk: int) -> dict:
    """The Delivery row of a request: the one place a delivery's fields are written."""
    env, verdict = req.envelope, req.verdict
    return dict(
        mailbox=req.mailbox_id,
        message=message_pk,
        blob=req.sha256,
        received_at=env.received_at,
        status=str(req.status),
        source=env.source,
        session_id=db_text(env.session_id),
        mail_from=db_text(env.mail_from),
        rcpt_to=db_text(req.rcpt_to),
        peer=db_text(env.peer),
        helo=db_text(env.helo),
        tls=json.dumps(env.tls) if env.tls else None,
        auth_user=db_text(env.auth_user),
        verdict=str(verdict.kind),
        reasons=json.dumps(verdict.reasons),
        verify_detail=json.dumps(verdict.detail),
        auth_results=db_text(verdict.auth_results),
        smtp_defects=json.dumps(env.smtp_defects),
        wrapper_blob=req.wrapper[0] if req.wrapper else None,
        confirmation=json.dumps(verdict.confirmation) if verdict.confirmation else None,
    )


def insert_messages(
    records: list[tuple[ParsedMessage, ThreadLinks, str | None]],
) -> tuple[dict[tuple[str, str], tuple[int, int | None]], set[tuple[str, str]]]:
    """Message rows for (record, links, blob sha256) triples, inserting the ones not stored
    yet with one statement per chunk. Returns (message_id, content_hash) → (row id, thread
    id) for every record, and the keys inserted now."""
    wanted: dict[tuple[str, str], tuple] = {}
    for rec, links, blob in records:
        wanted.setdefault((rec.message_id, rec.content_hash), (rec, links, blob))
    ids = list(dict.fromkeys(mid for mid, _ in wanted))

    def stored() -> dict[tuple[str, str], tuple[int, int | None]]:
        return {
            (mid, chash): (pk, tid)
            for pk, mid, chash, tid in sql.select_in(
                Message, ["id", "message_id", "content_hash", "thread_id"], "message_id", ids
            )
            if (mid, chash) in wanted
        }

    rows = stored()
    new = {key for key in wanted if key not in rows}
    if new:
        fields = [message_fields(*wanted[key]) for key in wanted if key in new]
        # Every dict has message_fields' keys in one order.
        sql.insert_rows(Message, list(fields[0]), [tuple(f.values()) for f in fields])
        rows = stored()
    return rows, new


def store_deliveries(requests: list[DeliveryRequest], rule: SubjectRule) -> list[DeliveryResult]:
    """Store many deliveries with a few set-wise statements; call inside a transaction
    holding `thread_state.lock_threading`.

    Idempotent per (mailbox, bytes), also within the list: a repeat gets the first
    one's delivery id. The rows and threads are those of storing the requests one by
    one, in order; plain SQL because peewee's query building per row was most of a
    delivery's cost (bench/RESULTS.md). A request's placement (IMAP APPEND) becomes its
    folder entry in the same transaction, a duplicate's too: its result carries the UID.
    A session's login (SMTP AUTH, IMAP) that no longer holds (disabled, revoked,
    removed) fails the whole call with LoginEnded, before anything is written: a
    `mailbox disable` committed before this transaction is never overtaken by a DATA or
    APPEND already on its way.
    """
    for login in dict.fromkeys(r.envelope.login for r in requests):
        why = login and credentials.standing(*login, lock=True).ended
        if why:
            raise credentials.LoginEnded(why)
    results = _store(requests, rule)
    placed = [(i, r.placement) for i, r in enumerate(requests) if r.placement is not None]
    if placed:
        uids = folders.place([(p, results[i].delivery_id) for i, p in placed])
        for (i, _), uid in zip(placed, uids):
            results[i] = dataclasses.replace(results[i], uid=uid)
    return results


def _store(requests: list[DeliveryRequest], rule: SubjectRule) -> list[DeliveryResult]:
    results: list[DeliveryResult | None] = [None] * len(requests)
    known = {
        (mb, sha): DeliveryResult(did, mid, True, status)
        for did, mb, sha, mid, status in sql.select_in(
            Delivery,
            ["id", "mailbox", "blob", "message", "status"],
            "blob",
            list(dict.fromkeys(r.sha256 for r in requests)),
        )
    }
    fresh: list[int] = []
    first: dict[tuple[int, str], int] = {}
    for i, r in enumerate(requests):
        key = (r.mailbox_id, r.sha256)
        if key in known:
            results[i] = known[key]
        elif key not in first:
            first[key] = i
            fresh.append(i)
    if not fresh:
        return results
    blobs: dict[str, tuple] = {}
    for i in fresh:
        r = requests[i]
        blobs.setdefault(r.sha256, (r.sha256, r.size, "zstd", r.compressed))
        if r.wrapper:
            blobs.setdefault(r.wrapper[0], (*r.wrapper[:2], "zstd", r.wrapper[2]))
    sql.insert_rows(
        Blob, ["sha256", "size", "codec", "data"], list(blobs.values()), ignore_conflicts=True
    )

    links = {i: links_of(requests[i].record) for i in fresh}
    rows, _ = insert_messages([(requests[i].record, links[i], requests[i].sha256) for i in fresh])

    db = Delivery._meta.database
    columns = [Delivery._meta.fields[n] for n in delivery_fields(requests[fresh[0]], 0)]
    names = ", ".join(f'"{c.column_name}"' for c in columns)
    insert = (
        f'INSERT INTO "{Delivery._meta.table_name}" ({names}) '
        f'VALUES ({", ".join([db.param] * len(columns))}) RETURNING "id"'
    )
    cursor = db.cursor()
    to_thread: dict[int, tuple[Message, ThreadLinks]] = {}
    for i in fresh:
        r = requests[i]
        pk, tid = rows[(r.record.message_id, r.record.content_hash)]
        values = delivery_fields(r, pk).values()
        cursor.execute(insert, tuple(c.db_value(v) for c, v in zip(columns, values)))
        results[i] = DeliveryResult(cursor.fetchone()[0], pk, False, r.status)
        if r.status == STORED and tid is None and pk not in to_thread:
            to_thread[pk] = (Message(id=pk), links[i])
    thread_state.attach_many(list(to_thread.values()), rule)

    for i, r in enumerate(requests):
        if results[i] is None:
            done = results[first[(r.mailbox_id, r.sha256)]]
            results[i] = DeliveryResult(done.delivery_id, done.message_id, True, done.status)
    return results


class WriterStopped(Exception):
    """The writer is shutting down; the request was not stored."""


class WriterFailed(Exception):
    """The writer died or got stuck with the request; it may or may not be committed.
    The sender is told to retry; a retry of a committed copy is an idempotent duplicate."""


def _settle(
    fut: concurrent.futures.Future,
    result=None,
    error: BaseException | None = None,
) -> None:
    """Resolve a request's future unless the watchdog already failed it."""
    try:
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(result)
    except concurrent.futures.InvalidStateError:
        # Failed by the watchdog while this thread was stuck; the sender was told 451.
        log.info("a request finished after it was given up on; its sender retries")


class Writer:
    """The single writer thread of this process (SQLite allows one; PG batches gain).

    The thread never ends on a fault in one batch: the batch's senders get the error
    (451) and the next batch goes on. A request, once taken from the queue, can no longer
    be cancelled (a client that vanished does not touch it): it is committed or not as
    a unit. `stage` tells the watchdog how it is doing (receiver.stages).
    """

    def __init__(self, db: Database, batch_max: int, subject_rule: SubjectRule):
        self.db = db
        self.subject_rule = subject_rule
        self.batch_max = max(1, batch_max)
        # SimpleQueue: a put from the loop is one C call, not a Python lock and Condition.
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._stopping = False
        self._current: list = []  # the batch being committed now
        self.stage = Stage(
            "writer",
            alive=lambda: self._stopping or self._thread.is_alive(),
            restart=self._start,
            fail_waiting=self._fail_waiting,
        )
        self._start()

    def _start(self) -> None:
        lost, self._current = self._current, []
        for _, fut in lost:
            _settle(fut, error=WriterFailed("the store writer died during the commit"))
            self.stage.done()
        thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
        thread.start()
        self._thread = thread  # started before stop() can see it

    def submit(self, requests: list[DeliveryRequest]) -> concurrent.futures.Future:
        """Future of list[DeliveryResult], resolved after COMMIT (or with the error)."""
        fut: concurrent.futures.Future = concurrent.futures.Future()
        if self._stopping:
            fut.set_exception(WriterStopped("the receiver is shutting down"))
        else:
            # Owed until this writer's thread has finished with it, whoever settles the
            # future: a stalled commit stays stuck work after its sender was told 451.
            self.stage.taken()
            self._queue.put((requests, fut))
        return fut

    def stop(self, timeout: float = 30.0) -> None:
        """Finish what is queued, then end the thread."""
        self._stopping = True
        self._queue.put(None)
        self._thread.join(timeout)

    def _take(self, item) -> bool:
        # False: cancelled while queued (nobody waits for it); never cancellable after.
        if item[1].set_running_or_notify_cancel():
            return True
        self.stage.done()
        return False

    def _next_batch(self) -> list | None:
        """Up to batch_max queued requests; None when it is time to stop."""
        batch: list = []
        while not batch:
            item = self._queue.get()
            if item is None:
                return None
            if self._take(item):
                batch.append(item)
        while len(batch) < self.batch_max:
            try:
                nxt = self._queue.get_nowait()
            except queue.Empty:
                break
            if nxt is None:
                self._queue.put(None)
                break
            if self._take(nxt):
                batch.append(nxt)
        return batch

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            self._current = batch
            try:
                self._commit(batch)
            except Exception as e:  # a bug met in one batch: its senders retry, we go on
                log.exception("store writer: a batch of %d failed", len(batch))
                self._fail(batch, e)
            if self._current is batch:  # not already given up by the watchdog
                self._current = []
                for _ in batch:
                    self.stage.done()
        self._close()

    def _fail_waiting(self, why: str) -> None:
        """The watchdog found this writer stuck: fail what waits so its senders retry."""
        error = WriterFailed(why)
        for _, fut in self._current:  # still owed by the stuck thread: the stage stays stuck
            _settle(fut, error=error)
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self._queue.put(None)
                break
            _settle(item[1], error=error)
            self.stage.done()

    @metrics.timed_commit
    def _transaction(self, jobs) -> list[list[DeliveryResult]]:
        attempt = 1
        while True:
            try:
                # SQLite: take the write lock up front. A deferred transaction that reads
                # first cannot wait for another process's writer (`serve --workers`).
                with write_transaction(self.db):
                    thread_state.lock_threading(self.db)
                    flat = store_deliveries(
                        [r for reqs, _ in jobs for r in reqs], self.subject_rule
                    )
                    faults.hit("writer")
                    out, at = [], 0
                    for reqs, _ in jobs:
                        out.append(flat[at : at + len(reqs)])
                        at += len(reqs)
                    return out
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
            _settle(fut, res)

    def _fail(self, batch, error: Exception) -> None:
        log.error("store failed for %d deliveries: %r", len(batch), error)
        self._close()
        for _, fut in batch:
            _settle(fut, error=error)

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
