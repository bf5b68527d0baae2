"""Counters shared by every session of one daemon, SMTP and IMAP alike: sessions per
client, bytes in flight, failed logins; and the networks a rule applies to (trusted
proxies, front MTAs). All of them run on the event loop, so no locks are needed.
"""

from __future__ import annotations

import collections
import ipaddress
import time

# Seconds a trusted proxy has to send its PROXY header.
PROXY_TIMEOUT = 10.0


def client_ip(peer) -> str:
    """The key counters use for a client: its address without the port."""
    return str(peer[0]) if isinstance(peer, tuple) and peer else str(peer)


def networks(names: tuple[str, ...]) -> tuple:
    return tuple(ipaddress.ip_network(n, strict=False) for n in names)


def in_networks(ip: str, nets: tuple) -> bool:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(address in net for net in nets)


class SessionSlots:
    """Concurrent sessions, in total and per client address."""

    def __init__(self, total: int, per_ip: int):
        self.total = total
        self.per_ip = per_ip
        self._by_ip: collections.Counter[str] = collections.Counter()
        self._count = 0

    def acquire(self, ip: str, per_ip_cap: bool = True) -> bool:
        """Take a slot; `per_ip_cap` False for a front MTA, held to the total cap only."""
        if self._count >= self.total or (per_ip_cap and self._by_ip[ip] >= self.per_ip):
            return False
        self._count += 1
        self._by_ip[ip] += 1
        return True

    def release(self, ip: str) -> None:
        self._count -= 1
        self._by_ip[ip] -= 1
        if self._by_ip[ip] <= 0:
            del self._by_ip[ip]

    @property
    def count(self) -> int:
        return self._count


class ByteBudget:
    """Message bytes held in memory across all sessions (piler's max_smtp_memory)."""

    def __init__(self, limit: int):
        self.limit = limit
        self.used = 0
        # The most ever held at once: what an admin sizes the budget by (and tests
        # check that it was never exceeded).
        self.peak = 0

    def fits(self, n: int) -> bool:
        """Whether n more bytes would fit now (nothing is taken)."""
        return self.used + n <= self.limit

    def take(self, n: int) -> bool:
        if self.used + n > self.limit:
            return False
        self.used += n
        self.peak = max(self.peak, self.used)
        return True

    def give_back(self, n: int) -> None:
        self.used -= n


class FailureLimiter:
    """Failed attempts per key in a sliding window; blocked once the window is full."""

    def __init__(self, max_failures: int, window: float, clock=time.monotonic):
        self.max_failures = max_failures
        self.window = window
        self.clock = clock
        self._failures: dict[str, collections.deque[float]] = {}

    def _recent(self, key: str) -> collections.deque[float]:
        q = self._failures.get(key)
        if q is None:
            return collections.deque()
        horizon = self.clock() - self.window
        while q and q[0] < horizon:
            q.popleft()
        if not q:
            del self._failures[key]
        return q

    def blocked(self, key: str) -> bool:
        return len(self._recent(key)) >= self.max_failures

    def fail(self, key: str) -> None:
        self._recent(key)
        self._failures.setdefault(key, collections.deque()).append(self.clock())
