"""Verification throughput: Verifier.verify over a stream of copies, 70% DKIM-signed.

Keys come from a local test DNS server (as in the tests); every message has distinct
bytes (a unique Received line on top of a signed original), so the per-DATA evidence
cache does not hide the work. Prints messages per second and latency percentiles.

    PYTHONPATH=. python bench/verify_bench.py [--messages 3000] [--concurrency 100]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from receiver import config as configmod  # noqa: E402
from receiver.mail import read  # noqa: E402
from receiver.verify import Verifier  # noqa: E402
from tests import mailfixtures as F  # noqa: E402
from tests.dns_server import DnsServer  # noqa: E402


def corpus(n: int) -> list[bytes]:
    body = b"Hello Alice,\r\n\r\n" + b"the numbers for this quarter are in, see below.\r\n" * 40
    templates = [F.sign(F.original(msgid=f"t{i}@author.example", body=body)) for i in range(7)]
    templates += [
        F.sign(
            F.original(msgid="ed@author.example", body=body),
            "ed1",
            key=F.ED_KEY,
            algorithm=b"ed25519-sha256",
        )
    ]
    unsigned = F.original(body=body)
    out = []
    for i in range(n):
        base = templates[i % len(templates)] if i % 10 < 7 else unsigned
        out.append(F.received(f"hop{i}.example") + base)
    return out


async def run(messages: list[bytes], concurrency: int, verifier: Verifier) -> list[float]:
    latencies: list[float] = []
    queue = list(reversed(messages))
    now = dt.datetime.now(dt.UTC)

    async def worker():
        while queue:
            raw = queue.pop()
            t = time.perf_counter()
            await verifier.verify(read(raw), subscriber=F.SUBSCRIBER, received_at=now)
            latencies.append(time.perf_counter() - t)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=3000)
    ap.add_argument("--concurrency", type=int, default=100)
    args = ap.parse_args()
    dns = DnsServer(dict(F.DNS_RECORDS))
    cfg = configmod.load(None, {"THREADS_RECEIVER_DNS_SERVERS": dns.address})
    messages = corpus(args.messages)
    verifier = Verifier(cfg)

    async def go():
        await run(messages[:50], 10, verifier)  # warm the key cache
        t = time.perf_counter()
        lat = await run(messages, args.concurrency, verifier)
        elapsed = time.perf_counter() - t
        await verifier.close()
        return lat, elapsed

    lat, elapsed = asyncio.run(go())
    lat.sort()
    print(
        f"{len(messages)} messages (70% DKIM-signed, {sum(map(len, messages)) // len(messages)} "
        f"bytes avg), concurrency {args.concurrency}"
    )
    print(f"throughput  {len(messages) / elapsed:8.0f} msg/s")
    print(
        f"latency     p50 {statistics.median(lat) * 1000:.1f} ms  "
        f"p99 {lat[int(len(lat) * 0.99)] * 1000:.1f} ms"
    )
    dns.stop()


if __name__ == "__main__":
    main()
