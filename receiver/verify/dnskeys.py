"""DKIM/ARC public keys from DNS: async (dnspython), cached with their TTL, bounded by a timeout.

Keys are fetched before any CPU work starts, so the checks that follow (in a thread)
answer their lookups from the prefetched `KeyAnswer`s and never block on the network.
A missing key is cached briefly; a DNS failure is not cached at all.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from collections.abc import Sequence

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.resolver

from receiver.config import parse_hostport

log = logging.getLogger(__name__)

FOUND = "found"
NXDOMAIN = "nxdomain"  # no such name: the key was never published or was removed
EMPTY = "empty"  # the name exists but holds no TXT record
TEMPERROR = "temperror"  # timeout or server failure: try again later

# Seconds a negative answer is kept: short, so a key published now is seen soon.
NEGATIVE_TTL = 60
# Keys change rarely, but a rotated key must not linger for days.
MAX_TTL = 3600
CACHE_MAX = 10000


@dataclass(frozen=True)
class KeyAnswer:
    status: str
    txt: bytes | None = None
    error: str = ""


def key_name(selector: str, domain: str) -> str:
    """The DNS name of a key: selector._domainkey.domain, lower case, no trailing dot."""
    return f"{selector}._domainkey.{domain}".lower().rstrip(".")


def _resolver(servers: Sequence[str], timeout: float) -> dns.asyncresolver.Resolver | None:
    """The configured resolver; None when no servers are set and the system has none."""
    if servers:
        r = dns.asyncresolver.Resolver(configure=False)
        nameservers = []
        for s in servers:
            host, port = parse_hostport(s if ":" in s else f"{s}:53", "dns.servers")
            nameservers.append(dns.nameserver.Do53Nameserver(host, port))
        r.nameservers = nameservers
    else:
        try:
            r = dns.asyncresolver.Resolver()
        except dns.resolver.NoResolverConfiguration:
            # Unsigned mail still flows; signed mail is unverifiable (temperror) until fixed.
            log.error(
                "no system DNS resolver: DKIM keys cannot be fetched; "
                'set [dns] servers = ["HOST:PORT"]'
            )
            return None
    r.timeout = timeout
    r.lifetime = timeout
    return r


def _pick_txt(answer: dns.resolver.Answer) -> bytes | None:
    """The DKIM key record among the TXT records of a name (strings joined per RFC 6376)."""
    texts = [b"".join(rd.strings) for rd in answer]
    for t in texts:
        if b"p=" in t:
            return t
    return texts[0] if texts else None


class KeyResolver:
    def __init__(self, servers: Sequence[str], timeout: float):
        self._resolver = _resolver(servers, timeout)
        self._cache: dict[str, tuple[float, KeyAnswer]] = {}
        self._inflight: dict[str, asyncio.Future] = {}

    async def fetch(self, names: list[str]) -> dict[str, KeyAnswer]:
        """Answers for every name, looked up concurrently (cached ones at once)."""
        unique = list(dict.fromkeys(names))
        answers = await asyncio.gather(*(self._one(n) for n in unique))
        return dict(zip(unique, answers))

    def cached(self, names: list[str]) -> dict[str, KeyAnswer] | None:
        """The answers `fetch` would give now if every name is cached and fresh, else None.
        Safe to call from a thread: it only reads the cache, which the loop alone writes."""
        now = time.monotonic()
        answers = {}
        for name in names:
            hit = self._cache.get(name)
            if not hit or hit[0] <= now:
                return None
            answers[name] = hit[1]
        return answers

    async def _one(self, name: str) -> KeyAnswer:
        now = time.monotonic()
        hit = self._cache.get(name)
        if hit and hit[0] > now:
            return hit[1]
        fut = self._inflight.get(name)
        if fut is not None:
            # One lookup per name however many messages ask at once.
            return await asyncio.shield(fut)
        fut = asyncio.get_running_loop().create_future()
        self._inflight[name] = fut
        try:
            answer, ttl = await self._lookup(name)
            if ttl > 0:
                if len(self._cache) >= CACHE_MAX:
                    self._cache.clear()
                self._cache[name] = (time.monotonic() + ttl, answer)
            fut.set_result(answer)
            return answer
        finally:
            if not fut.done():
                fut.set_result(KeyAnswer(TEMPERROR, error="lookup cancelled"))
            del self._inflight[name]

    async def _lookup(self, name: str) -> tuple[KeyAnswer, float]:
        if self._resolver is None:
            return KeyAnswer(TEMPERROR, error="no DNS resolver configured ([dns] servers)"), 0
        try:
            answer = await self._resolver.resolve(
                name, "TXT", raise_on_no_answer=False, search=False
            )
        except dns.resolver.NXDOMAIN:
            return KeyAnswer(NXDOMAIN, error="no such name (NXDOMAIN)"), NEGATIVE_TTL
        except dns.exception.Timeout:
            return KeyAnswer(TEMPERROR, error="DNS timeout"), 0
        except dns.resolver.NoNameservers as e:
            return KeyAnswer(TEMPERROR, error=f"DNS server failure ({e.msg or 'SERVFAIL'})"), 0
        except dns.exception.DNSException as e:
            return KeyAnswer(TEMPERROR, error=f"DNS error ({e})"), 0
        if answer.rrset is None:
            return KeyAnswer(EMPTY, error="no TXT record"), NEGATIVE_TTL
        txt = _pick_txt(answer)
        return KeyAnswer(FOUND, txt), min(max(answer.rrset.ttl, 1), MAX_TTL)
