"""A mailbox's optional allow-list: who may push to it (pure).

Entries are networks ("192.0.2.0/24", "2001:db8::/32", a single address) or signing
domains ("google.com"). A copy is allowed when its client address is in one of the
networks, or when a DKIM signature or an ARC seal that verified was made by one of the
domains (or a subdomain of one). No list (None) means anyone may push.
"""

from __future__ import annotations

import ipaddress

from receiver.policy import REJECT, Decision
from receiver.verify.verdict import Verdict

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def split_entries(entries) -> tuple[list[Network], list[str]]:
    """(networks, domains); raises ValueError for an entry that is neither."""
    networks, domains = [], []
    for entry in entries:
        entry = entry.strip()
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
            continue
        except ValueError:
            pass
        domain = entry.lower().rstrip(".")
        if not domain or "." not in domain or any(c in domain for c in " /@:"):
            raise ValueError(f"not a network or a domain: {entry!r}")
        domains.append(domain)
    return networks, domains


def peer_ip(peer: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address of a recorded peer ("ip:port", "[v6]:port" or a bare address)."""
    if not peer:
        return None
    for text in (peer, peer.rpartition(":")[0]):
        try:
            return ipaddress.ip_address(text.strip("[]"))
        except ValueError:
            continue
    return None


def network_allows(entries, peer: str | None) -> bool:
    networks, _ = split_entries(entries)
    ip = peer_ip(peer)
    return ip is not None and any(ip in net for net in networks)


def has_domains(entries) -> bool:
    return bool(split_entries(entries)[1])


def _domain_allows(domains: list[str], signers: set[str]) -> bool:
    return any(s == d or s.endswith("." + d) for s in signers for d in domains)


def refusal(entries, peer: str | None, verdict: Verdict) -> Decision | None:
    """A reject decision when the copy is not from an allowed sender; None when it is."""
    if not entries:
        return None
    networks, domains = split_entries(entries)
    ip = peer_ip(peer)
    if ip is not None and any(ip in net for net in networks):
        return None
    if (
        domains
        and verdict.evidence is not None
        and _domain_allows(domains, verdict.evidence.signing_domains())
    ):
        return None
    return Decision(REJECT, "this sender is not on the receiver address's allow-list")
