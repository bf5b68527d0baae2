"""Copy checks on the raw bytes → one Verdict (headers, DKIM, ARC, alignment).

The order per message: parse the header block once (in a thread), fetch every key it
names (async DNS, cached), run the crypto (in a thread), then classify the copy path
and judge. The DKIM/ARC evidence is cached by the sha256 of the bytes for a minute, so
the several mailboxes of one DATA share one verification.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import hashlib
import logging
import time
from collections import OrderedDict
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from collections.abc import Callable

import dkim

from receiver import faults
from receiver.config import Config
from receiver.stages import Stage
from receiver.mail import RawMail, read
from receiver.verify.arccheck import ArcResult, check_arc
from receiver.verify.authresults import auth_results
from receiver.verify.confirmation import find_confirmation, may_confirm
from receiver.verify.copypath import WRAPPED, address_of, classify, domain_of
from receiver.verify.dkimcheck import (
    TEMPERROR_RESULT,
    SigResult,
    check_all,
    dkim_body,
    parse_header_block,
    signature_key_names,
)
from receiver.verify.dnskeys import KeyAnswer, KeyResolver
from receiver.verify.evidence import Evidence
from receiver.verify.judge import judge
from receiver.verify.verdict import UNVERIFIABLE, Verdict

log = logging.getLogger(__name__)
# dkimpy logs every signature that fails at ERROR; failing signatures are ordinary input
# here, and their results are reported in the verdict, not in the daemon's log.
logging.getLogger("dkimpy").setLevel(logging.CRITICAL)

EVIDENCE_CACHE_SECONDS = 60
EVIDENCE_CACHE_MAX = 512
# A journal report of a forward-as-attachment is two wrappers deep; more is not a copy path.
MAX_UNWRAP_DEPTH = 2
HASH_ON_LOOP_MAX = 256 * 1024


def _sha256(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


@dataclass
class _Parsed:
    """The message read once, its header block parsed by dkimpy, and what the checks need."""

    mail: RawMail
    dkim: dkim.DKIM | None
    key_names: list[str]
    from_domain: str | None
    first_receipt: dt.datetime
    error: str = ""


@dataclass
class _Checks:
    """The DKIM/ARC results of one byte string, shared by the mailboxes it was sent to."""

    sigs: list[SigResult]
    arc: ArcResult
    from_domain: str | None
    first_receipt: dt.datetime
    error: str = ""


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def first_receipt(mail: RawMail, fallback: dt.datetime) -> dt.datetime:
    """When the message was first received: the date of its bottom-most Received field."""
    for text in reversed(mail.get_all("Received")):
        if ";" in text:
            try:
                when = email.utils.parsedate_to_datetime(text.rsplit(";", 1)[1].strip())
            except (TypeError, ValueError, IndexError):
                continue
            if when is not None:
                return _aware(when)
    return _aware(fallback)


def parse_for_checks(mail: RawMail, received_at: dt.datetime) -> _Parsed:
    try:
        d = parse_header_block(mail)
    except (dkim.DKIMException, IndexError) as e:
        # IndexError: dkimpy appends a first line that starts with a blank to the field
        # above it, and there is none.
        return _Parsed(mail, None, [], None, _aware(received_at), f"malformed header block: {e}")
    # The bottom-most From is the one a signature covers; a second one above it is an
    # unsigned instance, which the verdict names (dkimcheck.SigResult.unsigned_instances).
    from_values = mail.get_all("From")
    from_domain = domain_of(address_of(from_values[-1])) if from_values else None
    if any(n.lower() == b"dkim-signature" for n, _ in d.headers):
        d.body = dkim_body(mail)  # check_all hashes it
    return _Parsed(
        mail, d, signature_key_names(d.headers), from_domain, first_receipt(mail, received_at)
    )


def run_checks(parsed: _Parsed, keys: dict[str, KeyAnswer]) -> _Checks:
    if parsed.dkim is None:
        return _Checks([], ArcResult(reason=parsed.error), None, parsed.first_receipt, parsed.error)
    sigs = check_all(parsed.dkim, keys, parsed.first_receipt)
    arc = check_arc(parsed.mail, parsed.dkim.headers, keys)
    return _Checks(sigs, arc, parsed.from_domain, parsed.first_receipt)


def check_and_conclude(
    parsed: _Parsed, keys: dict[str, KeyAnswer], subscriber: str | None, authserv_id: str
) -> tuple:
    ev = run_checks(parsed, keys)
    return ev, conclude(parsed.mail, ev, subscriber, authserv_id)


def first_pass(
    mail: RawMail,
    received_at: dt.datetime,
    subscriber: str | None,
    authserv_id: str,
    cached_keys: Callable[[list[str]], dict | None],
) -> tuple:
    """The parse, and the whole check when no key needs fetching: none is named, or
    `cached_keys` has every one (the usual case once a signer's key has been seen)."""
    faults.hit("verifier")
    parsed = parse_for_checks(mail, received_at)
    keys = cached_keys(parsed.key_names)
    if keys is None:
        return parsed, None
    return parsed, check_and_conclude(parsed, keys, subscriber, authserv_id)


def conclude(mail: RawMail, ev: _Checks, subscriber: str | None, authserv_id: str) -> tuple:
    """The copy path, and the verdict on this copy as it stands with its evidence."""
    path = classify(mail, subscriber)
    verdict = judge(path, ev.sigs, ev.arc, ev.from_domain)
    if ev.error:
        verdict.reasons.insert(0, ev.error)
    verdict.auth_results = auth_results(authserv_id, ev.sigs, ev.arc)
    verdict.evidence = Evidence(path, ev.from_domain, ev.first_receipt, ev.sigs, ev.arc)
    verdict.confirmation = find_confirmation(mail) if may_confirm(ev.from_domain) else None
    return path, verdict


class Verifier:
    """Runs every check on one copy; DNS is async and cached, CPU work off the loop."""

    def __init__(self, config: Config, executor: Executor | None = None):
        self.config = config
        self.keys = KeyResolver(config.dns.servers, config.dns.timeout)
        self._own_executor = executor is None
        # Two threads: the crypto holds the GIL, more would only queue.
        self._executor = executor or ThreadPoolExecutor(max_workers=2, thread_name_prefix="verify")
        self._evidence_cache: OrderedDict[str, tuple[float, asyncio.Future]] = OrderedDict()
        # Its threads are a pool that outlives any exception; it can only hang.
        self.stage = Stage("verifier")

    def reconfigure(self, config: Config) -> None:
        """A reload: policy.unwrap and the authserv-id apply to the next copy; new DNS
        servers get a fresh resolver, and evidence checked with the old keys is dropped."""
        if (config.dns.servers, config.dns.timeout) != (
            self.config.dns.servers,
            self.config.dns.timeout,
        ):
            self.keys = KeyResolver(config.dns.servers, config.dns.timeout)
            self._evidence_cache.clear()
        self.config = config

    async def _off_loop(self, fn, *args):
        # Counted from the threads' side: a check still running after its sender left
        # is still work the stage owes (a hung one must show as stuck).
        self.stage.taken()
        job = self._executor.submit(self.stage.run, fn, *args)
        job.add_done_callback(lambda _: self.stage.done())
        return await asyncio.wrap_future(job)

    async def verify(
        self,
        mail: RawMail,
        *,
        subscriber: str | None,
        received_at: dt.datetime,
        unwrap: bool | None = None,
    ) -> Verdict:
        """The verdict on one copy, as the edge read it (receiver.mail.read)."""
        if unwrap is None:
            unwrap = self.config.policy.unwrap
        return await self._verify(mail, subscriber, received_at, unwrap, 0)

    async def _verify(
        self,
        mail: RawMail,
        subscriber: str | None,
        received_at: dt.datetime,
        unwrap: bool,
        depth: int,
    ) -> Verdict:
        path, verdict = await self._checked(mail, subscriber, received_at)
        if path.kind != WRAPPED:
            return verdict
        what = f"wrapped copy ({path.how[0]})"
        if not unwrap or depth >= MAX_UNWRAP_DEPTH:
            why = "unwrapping is off (policy.unwrap = false)" if not unwrap else "nested too deep"
            return Verdict(
                UNVERIFIABLE,
                [f"{what}, not unwrapped: {why}", *verdict.reasons],
                evidence=verdict.evidence,
                auth_results=verdict.auth_results,
            )
        inner = await self._verify(read(path.inner), subscriber, received_at, unwrap, depth + 1)
        inner.reasons.insert(
            0,
            f"{what}: the enclosed original was checked, stored and "
            f"threaded; the wrapper is kept as evidence",
        )
        assert inner.evidence is not None  # conclude() always sets it
        inner.evidence.wrapper = verdict.evidence
        if inner.inner is None:
            inner.inner = path.inner
        return inner

    async def _checked(
        self, mail: RawMail, subscriber: str | None, received_at: dt.datetime
    ) -> tuple:
        """(copy path, verdict); the DKIM/ARC evidence is shared by copies of equal bytes."""
        authserv = self.config.authserv_id
        raw = mail.raw
        # Hashing a large message would hold the loop for milliseconds: do it in a thread.
        key = _sha256(raw) if len(raw) <= HASH_ON_LOOP_MAX else await self._off_loop(_sha256, raw)
        now = time.monotonic()
        hit = self._evidence_cache.get(key)
        if hit and hit[0] > now:
            ev = await asyncio.shield(hit[1])
            return await self._off_loop(conclude, mail, ev, subscriber, authserv)
        shared = asyncio.get_running_loop().create_future()
        self._evidence_cache[key] = (now + EVIDENCE_CACHE_SECONDS, shared)
        while len(self._evidence_cache) > EVIDENCE_CACHE_MAX:
            self._evidence_cache.popitem(last=False)
        try:
            # At most two trips to the threads: parse (and, with no key to fetch, finish),
            # then after the DNS answers the crypto and the verdict together. Each trip
            # costs the loop a handoff, so the cached keys are looked at in the first one.
            parsed, done = await self._off_loop(
                first_pass, mail, received_at, subscriber, authserv, self.keys.cached
            )
            if done is None:
                keys = await self.keys.fetch(parsed.key_names)
                done = await self._off_loop(check_and_conclude, parsed, keys, subscriber, authserv)
        except BaseException as e:
            self._evidence_cache.pop(key, None)
            if isinstance(e, asyncio.CancelledError):
                shared.cancel()
            else:
                shared.set_exception(e)
                shared.exception()  # retrieved: waiters (if any) get it through their await
            raise
        ev, concluded = done
        shared.set_result(ev)
        if any(s.result == TEMPERROR_RESULT for s in ev.sigs):
            # The sender's retry must look the key up again, not reuse the failure.
            self._evidence_cache.pop(key, None)
        return concluded

    async def close(self) -> None:
        """Release the verification threads."""
        if self._own_executor:
            self._executor.shutdown(wait=False)
