"""A DNS server for tests: dnslib on 127.0.0.1, an ephemeral UDP port, TXT records from a dict.

`records` maps a name (no trailing dot) to its TXT text, or to SERVFAIL / TIMEOUT to
play a broken DNS; any other name is NXDOMAIN. The dict may be changed while it runs
(a key rotated away, a key published).
"""

from __future__ import annotations

import threading

from dnslib import QTYPE, RCODE, RR, TXT, DNSError
from dnslib.server import BaseResolver, DNSLogger, DNSServer

SERVFAIL = object()
TIMEOUT = object()
TTL = 300


def txt_strings(text: str) -> list[bytes]:
    """A long TXT value as the 255-byte strings a zone file would hold."""
    data = text.encode()
    return [data[i : i + 255] for i in range(0, len(data), 255)] or [b""]


class DictResolver(BaseResolver):
    def __init__(self, records: dict):
        self.records = records
        self.queries: list[str] = []

    def resolve(self, request, handler):
        reply = request.reply()
        name = str(request.q.qname).rstrip(".").lower()
        self.queries.append(name)
        value = self.records.get(name)
        if value is TIMEOUT:
            # dnslib's handler sends nothing on a DNSError: the client times out.
            raise DNSError(f"no answer for {name} (playing a timeout)")
        if value is SERVFAIL:
            reply.header.rcode = RCODE.SERVFAIL
        elif value is None:
            reply.header.rcode = RCODE.NXDOMAIN
        elif request.q.qtype == QTYPE.TXT:
            reply.add_answer(RR(request.q.qname, QTYPE.TXT, ttl=TTL, rdata=TXT(txt_strings(value))))
        return reply


class DnsServer:
    """Running server: `.address` is "127.0.0.1:PORT" for THREADS_RECEIVER_DNS_SERVERS."""

    def __init__(self, records: dict | None = None):
        self.records = {} if records is None else records
        self.resolver = DictResolver(self.records)
        self.server = DNSServer(
            self.resolver,
            port=0,
            address="127.0.0.1",
            logger=DNSLogger("-request,-reply,-truncated,-error,-recv,-send,-data"),
        )
        # A short poll interval: shutdown() waits for it, and every test stops a server.
        self._thread = threading.Thread(
            target=self.server.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        self.port = self.server.server.server_address[1]
        self.address = f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.stop()
        self.server.server.server_close()
