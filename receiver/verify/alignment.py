"""DMARC-style alignment of a signing domain with the From domain (offline public suffix list).

Relaxed: same organisational domain (example.co.uk for mail.example.co.uk); strict: the
same name. A signature only from a forwarding provider's domain aligns with neither.
"""

from __future__ import annotations

import functools

from publicsuffixlist import PublicSuffixList


@functools.lru_cache(maxsize=1)
def _psl() -> PublicSuffixList:
    return PublicSuffixList()


@functools.lru_cache(maxsize=4096)
def org_domain(domain: str) -> str:
    """The organisational domain (registrable name); the name itself when it is a suffix."""
    domain = domain.lower().rstrip(".")
    return _psl().privatesuffix(domain) or domain


def aligned(signing_domain: str, from_domain: str | None, strict: bool = False) -> bool:
    if not from_domain or not signing_domain:
        return False
    d, f = signing_domain.lower().rstrip("."), from_domain.lower().rstrip(".")
    if strict:
        return d == f
    return org_domain(d) == org_domain(f)
