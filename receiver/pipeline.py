"""The one pipeline every copy goes through, whether it came by SMTP, LMTP or `import`.

verify → policy → parse → store (threading inside the store's transaction). The caller
gets one `Outcome` per mailbox and turns it into a reply; nothing here speaks SMTP.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from collections.abc import Callable

from receiver import allowlist, metrics
from receiver import policy as policies
from receiver.config import Config
from receiver.delivery import (
    DUPLICATE,
    QUARANTINED,
    REJECTED,
    STORED,
    TEMPFAILED,
    DeliveryRequest,
    DeliveryResult,
    Envelope,
    Placement,
    Status,
)
from receiver.mail import RawMail
from receiver.parse.record import ParsedMessage
from receiver.store import credentials, mailboxes
from receiver.store.db import run_read
from receiver.store.deliveries import Writer, compress
from receiver.store.mailboxes import MailboxInfo, RcptResult
from receiver.verify import Verifier
from receiver.verify.verdict import Verdict

log = logging.getLogger(__name__)

# From this size on a copy's parse takes long enough to hold up others (bench/RESULTS.md).
LARGE_MESSAGE = 1 << 20

# The reason of every temporary failure that is not a policy's: one cause, one text.
UNAVAILABLE = "storage is unavailable, try again later"
# The other copies of a MULTIAPPEND that had one refused: none of them is stored.
NOT_ALONE = "not stored: another message of the same APPEND was refused"


@dataclass(frozen=True)
class Outcome:
    mailbox: MailboxInfo
    rcpt: str
    status: Status
    delivery_id: int | None = None
    reason: str = ""
    # Enhanced status code of a refusal decided by policy (e.g. 5.7.1, 4.4.3).
    code: str = ""
    # The logical message (`messages show ID`), once stored.
    message_id: int | None = None
    # The copy's UID in the placement's folder (IMAP APPEND), once stored.
    uid: int | None = None


@dataclass
class _Prepared:
    sha256: str
    size: int
    compressed: bytes
    record: ParsedMessage
    wrapper: tuple[str, int, bytes] | None


class Pipeline:
    def __init__(
        self,
        config: Config,
        writer: Writer,
        verifier: Verifier,
        executor: ThreadPoolExecutor,
        parser: Callable[[bytes], ParsedMessage],
    ):
        self.config = config
        self.writer = writer
        self.verifier = verifier
        self.executor = executor
        # The worker pool (receiver.wiring.build), or an in-process parse in tests.
        self.parser = parser
        # Large copies hold a parse worker for seconds each: they may take all workers but
        # one, so the small copies arriving meanwhile are not queued behind the burst.
        self._large_lane = asyncio.Semaphore(max(1, config.parse.workers - 1))
        # Past this a waiting sender is told 451 whatever a stage is doing: nobody waits
        # forever on a stage that died or hangs (receiver.stages).
        self.reply_seconds = config.stages.reply_seconds

    async def _off_loop(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def resolve_rcpt(self, address: str) -> RcptResult:
        return await self._off_loop(
            run_read, self.writer.db, mailboxes.resolve_rcpt, address, self.config.domains
        )

    async def grant(self, login: str, password: str) -> credentials.Grant | None:
        """The login SMTP AUTH or IMAP credentials make (the mailbox and the credential's
        issue), or None: a session asks the store whether it still holds (`standing`)."""
        return await self._off_loop(run_read, self.writer.db, credentials.grant, login, password)

    async def standing(self, granted: credentials.Grant) -> credentials.Standing:
        """Whether an SMTP session's login still holds, as the database has it now."""
        return await self._off_loop(run_read, self.writer.db, credentials.standing, *granted.issue)

    def _policy(self, mb: MailboxInfo) -> policies.Policy:
        return policies.Policy(
            altered=policies.Action(mb.policy_altered or self.config.policy.altered),
            unverifiable=policies.Action(mb.policy_unverifiable or self.config.policy.unverifiable),
        )

    def _prepare(self, raw: bytes, inner: bytes | None) -> _Prepared:
        kept = inner if inner is not None else raw
        wrapper = None
        if inner is not None:
            wrapper = (hashlib.sha256(raw).hexdigest(), len(raw), compress(raw))
        return _Prepared(
            hashlib.sha256(kept).hexdigest(), len(kept), compress(kept), self.parser(kept), wrapper
        )

    async def _prepare_off_loop(self, raw: bytes, inner: bytes | None) -> _Prepared:
        if len(inner if inner is not None else raw) < LARGE_MESSAGE:
            return await self._off_loop(self._prepare, raw, inner)
        async with self._large_lane:
            return await self._off_loop(self._prepare, raw, inner)

    @metrics.observe_delivery
    async def deliver(
        self,
        mail: RawMail,
        envelope: Envelope,
        rcpts: list[tuple[str, MailboxInfo]],
        per_recipient: bool = True,
        placement: Placement | None = None,
    ) -> list[Outcome]:
        """Check, decide and store one copy (as its edge read it: receiver.mail.read) for
        each (rcpt address, mailbox).

        `per_recipient` is False for SMTP, where one DATA reply answers every recipient.
        `placement` (IMAP APPEND) puts a stored copy into a folder in the same commit.
        A fault in any stage, or no answer within `stages.reply_seconds`, is a temporary
        failure for every recipient: the sender keeps the copy and retries.
        """
        try:
            async with asyncio.timeout(self.reply_seconds):
                outcomes, requests = await self._decide(
                    mail, envelope, rcpts, per_recipient, placement
                )
                if requests:
                    results = await self._commit([r for _, r in requests])
                    for (i, _), res in zip(requests, results):
                        outcomes[i] = _stored(rcpts[i], res)
                return [o for o in outcomes if o is not None]
        except Exception as e:  # TimeoutError too: the retry finds a committed copy a duplicate
            log.error("session %s: delivery failed: %r", envelope.session_id, e)
            return [Outcome(mb, rcpt, TEMPFAILED, reason=UNAVAILABLE) for rcpt, mb in rcpts]

    async def deliver_all(
        self,
        copies: list[tuple[RawMail, Envelope, Placement]],
        rcpt: tuple[str, MailboxInfo],
    ) -> list[Outcome]:
        """Several copies for one mailbox stored as a unit (IMAP MULTIAPPEND, RFC 3502):
        one commit holds them all, and if any copy is refused none is stored. An outcome
        per copy; with a refusal they are that refusal, or TEMPFAILED for the others."""
        address, mb = rcpt
        try:
            async with asyncio.timeout(self.reply_seconds):
                decided = [await self._decide(m, e, [rcpt], True, p) for m, e, p in copies]
                if any(not requests for _, requests in decided):
                    return [
                        outcomes[0] or Outcome(mb, address, TEMPFAILED, reason=NOT_ALONE)
                        for outcomes, _ in decided
                    ]
                results = await self._commit([requests[0][1] for _, requests in decided])
                return [_stored(rcpt, res) for res in results]
        except Exception as e:  # as in deliver: nothing is half-stored, the client retries
            log.error("session %s: delivery failed: %r", copies[0][1].session_id, e)
            return [Outcome(mb, address, TEMPFAILED, reason=UNAVAILABLE) for _ in copies]

    async def _commit(self, requests: list[DeliveryRequest]) -> list[DeliveryResult]:
        """The requests' results, committed in one transaction."""
        committed = self.writer.submit(requests)
        # shield: a session that goes away (or times out) stops waiting, but the
        # commit it handed on is not cancelled under the writer.
        return await asyncio.shield(asyncio.wrap_future(committed))

    async def _decide(
        self,
        mail: RawMail,
        envelope: Envelope,
        rcpts: list[tuple[str, MailboxInfo]],
        per_recipient: bool,
        placement: Placement | None,
    ) -> tuple[list[Outcome | None], list[tuple[int, DeliveryRequest]]]:
        """Verify, decide and prepare: the refusals by recipient, and the requests (by
        recipient index) to store."""
        raw = mail.raw
        checks = [
            self.verifier.verify(mail, subscriber=mb.email, received_at=envelope.received_at)
            for _, mb in rcpts
        ]
        # One recipient, the usual case, is awaited in place: gather would make it a task.
        verdicts: list[Verdict] = (
            [await checks[0]] if len(checks) == 1 else await asyncio.gather(*checks)
        )
        metrics.verdicts_seen(envelope.source, verdicts)
        decisions = [policies.decide(v, self._policy(mb)) for (_, mb), v in zip(rcpts, verdicts)]
        decisions = [
            allowlist.refusal(mb.allow_from, envelope.peer, v) or d
            for (_, mb), v, d in zip(rcpts, verdicts, decisions)
        ]
        if not per_recipient and len({d.action == policies.REJECT for d in decisions}) > 1:
            # One reply covers every recipient: a refusal for one would silently drop
            # the copy the others accept, so hold it for the admin instead.
            decisions = [
                policies.Decision(policies.QUARANTINE) if d.action == policies.REJECT else d
                for d in decisions
            ]
        outcomes: list[Outcome | None] = [None] * len(rcpts)
        requests: list[tuple[int, DeliveryRequest]] = []
        prepared: dict[bytes | None, _Prepared] = {}
        for i, ((rcpt, mb), verdict, decision) in enumerate(zip(rcpts, verdicts, decisions)):
            if decision.action in (policies.REJECT, policies.TEMPFAIL):
                status = REJECTED if decision.action == policies.REJECT else TEMPFAILED
                outcomes[i] = Outcome(mb, rcpt, status, reason=decision.reason, code=decision.code)
                continue
            key = verdict.inner
            if key not in prepared:
                prepared[key] = await self._prepare_off_loop(raw, verdict.inner)
            p = prepared[key]
            requests.append(
                (
                    i,
                    DeliveryRequest(
                        mailbox_id=mb.id,
                        sha256=p.sha256,
                        size=p.size,
                        compressed=p.compressed,
                        record=p.record,
                        status=QUARANTINED if decision.action == policies.QUARANTINE else STORED,
                        rcpt_to=rcpt,
                        envelope=envelope,
                        verdict=verdict,
                        wrapper=p.wrapper,
                        placement=placement,
                    ),
                )
            )
        return outcomes, requests


def _stored(rcpt: tuple[str, MailboxInfo], res: DeliveryResult) -> Outcome:
    address, mb = rcpt
    status = DUPLICATE if res.duplicate else res.status
    return Outcome(mb, address, status, res.delivery_id, message_id=res.message_id, uid=res.uid)
