"""The one pipeline every copy goes through, whether it came by SMTP, LMTP or `import`.

verify → policy → parse → store (threading inside the store's transaction). The caller
gets one `Outcome` per mailbox and turns it into a reply; nothing here speaks SMTP.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

from receiver import allowlist, metrics
from receiver import policy as policies
from receiver.config import Config
from receiver.parse.record import ParsedMessage
from receiver.store import credentials, mailboxes
from receiver.store.db import run_read
from receiver.store.deliveries import DeliveryRequest, Writer, compress
from receiver.store.mailboxes import MailboxInfo, RcptResult
from receiver.store.models import utcnow
from receiver.verify import Verifier
from receiver.verify.verdict import Verdict

log = logging.getLogger(__name__)

# From this size on a copy's parse takes long enough to hold up others (bench/RESULTS.md).
LARGE_MESSAGE = 1 << 20

STORED = "stored"
DUPLICATE = "duplicate"
QUARANTINED = "quarantined"
REJECTED = "rejected"
TEMPFAILED = "tempfailed"


@dataclass
class Envelope:
    """Where a copy came from; recorded in columns, never written into the bytes."""

    source: str = "smtp"  # smtp | lmtp | import
    session_id: str | None = None
    mail_from: str | None = None
    peer: str | None = None
    helo: str | None = None
    tls: dict | None = None
    auth_user: str | None = None
    smtp_defects: list[str] = field(default_factory=list)
    received_at: dt.datetime = field(default_factory=utcnow)


@dataclass(frozen=True)
class Outcome:
    mailbox: MailboxInfo
    rcpt: str
    status: str
    delivery_id: int | None = None
    reason: str = ""
    # Enhanced status code of a refusal decided by policy (e.g. 5.7.1, 4.4.3).
    code: str = ""
    # The logical message (`messages show ID`), once stored.
    message_id: int | None = None


@dataclass
class _Prepared:
    sha256: str
    size: int
    compressed: bytes
    record: object
    wrapper: tuple[str, int, bytes] | None


class Pipeline:
    def __init__(self, config: Config, writer: Writer, verifier: Verifier,
                 executor: ThreadPoolExecutor, parser: Callable[[bytes], ParsedMessage]):
        self.config = config
        self.writer = writer
        self.verifier = verifier
        self.executor = executor
        # The worker pool (receiver.wiring.build), or an in-process parse in tests.
        self.parser = parser
        # Large copies hold a parse worker for seconds each: they may take all workers but
        # one, so the small copies arriving meanwhile are not queued behind the burst.
        self._large_lane = asyncio.Semaphore(max(1, config.parse.workers - 1))

    async def _off_loop(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def resolve_rcpt(self, address: str) -> RcptResult:
        return await self._off_loop(run_read, self.writer.db, mailboxes.resolve_rcpt, address,
                                    self.config.domains)

    async def authenticate(self, login: str, password: str) -> MailboxInfo | None:
        """The mailbox SMTP AUTH credentials open, or None."""
        return await self._off_loop(run_read, self.writer.db, credentials.authenticate, login,
                                    password)

    def _policy(self, mb: MailboxInfo) -> policies.Policy:
        return policies.Policy(
            altered=mb.policy_altered or self.config.policy.altered,
            unverifiable=mb.policy_unverifiable or self.config.policy.unverifiable,
        )

    def _prepare(self, raw: bytes, inner: bytes | None) -> _Prepared:
        kept = inner if inner is not None else raw
        wrapper = None
        if inner is not None:
            wrapper = (hashlib.sha256(raw).hexdigest(), len(raw), compress(raw))
        return _Prepared(hashlib.sha256(kept).hexdigest(), len(kept), compress(kept),
                         self.parser(kept), wrapper)

    async def _prepare_off_loop(self, raw: bytes, inner: bytes | None) -> _Prepared:
        if len(inner if inner is not None else raw) < LARGE_MESSAGE:
            return await self._off_loop(self._prepare, raw, inner)
        async with self._large_lane:
            return await self._off_loop(self._prepare, raw, inner)

    @metrics.observe_delivery
    async def deliver(self, raw: bytes, envelope: Envelope,
                      rcpts: list[tuple[str, MailboxInfo]], per_recipient: bool = True,
                      ) -> list[Outcome]:
        """Check, decide and store one copy for each (rcpt address, mailbox).

        `per_recipient` is False for SMTP, where one DATA reply answers every recipient.
        """
        checks = [self.verifier.verify(raw, subscriber=mb.email,
                                       received_at=envelope.received_at) for _, mb in rcpts]
        # One recipient, the usual case, is awaited in place: gather would make it a task.
        verdicts: list[Verdict] = ([await checks[0]] if len(checks) == 1
                                   else await asyncio.gather(*checks))
        metrics.verdicts_seen(envelope.source, verdicts)
        decisions = [policies.decide(v, self._policy(mb)) for (_, mb), v in zip(rcpts, verdicts)]
        decisions = [allowlist.refusal(mb.allow_from, envelope.peer, v) or d
                     for (_, mb), v, d in zip(rcpts, verdicts, decisions)]
        if not per_recipient and len({d.action == policies.REJECT for d in decisions}) > 1:
            # One reply covers every recipient: a refusal for one would silently drop
            # the copy the others accept, so hold it for the admin instead.
            decisions = [policies.Decision(policies.QUARANTINE) if d.action == policies.REJECT
                         else d for d in decisions]
        outcomes: list[Outcome | None] = [None] * len(rcpts)
        requests: list[tuple[int, DeliveryRequest]] = []
        prepared: dict[bytes | None, _Prepared] = {}
        for i, ((rcpt, mb), verdict, decision) in enumerate(zip(rcpts, verdicts, decisions)):
            if decision.action in (policies.REJECT, policies.TEMPFAIL):
                status = REJECTED if decision.action == policies.REJECT else TEMPFAILED
                outcomes[i] = Outcome(mb, rcpt, status, reason=decision.reason,
                                      code=decision.code)
                continue
            key = verdict.inner
            if key not in prepared:
                prepared[key] = await self._prepare_off_loop(raw, verdict.inner)
            p = prepared[key]
            requests.append((i, DeliveryRequest(
                mailbox_id=mb.id, sha256=p.sha256, size=p.size, compressed=p.compressed,
                record=p.record,
                status="quarantined" if decision.action == policies.QUARANTINE else "stored",
                source=envelope.source, session_id=envelope.session_id,
                mail_from=envelope.mail_from, rcpt_to=rcpt, peer=envelope.peer,
                helo=envelope.helo, tls=envelope.tls, auth_user=envelope.auth_user,
                verdict=verdict.kind, reasons=verdict.reasons, verify_detail=verdict.detail,
                auth_results=verdict.auth_results, smtp_defects=envelope.smtp_defects,
                wrapper=p.wrapper,
            )))
        if requests:
            try:
                results = await asyncio.wrap_future(self.writer.submit([r for _, r in requests]))
            except Exception as e:  # any storage fault: the sender keeps the copy and retries
                log.error("session %s: storing failed: %r", envelope.session_id, e)
                for i, _ in requests:
                    mb = rcpts[i][1]
                    outcomes[i] = Outcome(mb, rcpts[i][0], TEMPFAILED,
                                          reason="storage is unavailable, try again later")
            else:
                for (i, _), res in zip(requests, results):
                    status = (DUPLICATE if res.duplicate
                              else QUARANTINED if res.status == "quarantined" else STORED)
                    outcomes[i] = Outcome(rcpts[i][1], rcpts[i][0], status, res.delivery_id,
                                          message_id=res.message_id)
        return [o for o in outcomes if o is not None]
