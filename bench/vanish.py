"""The hostile client of issue 11, hundreds of times in a row against `serve`: the end of
data, then a TCP reset within a few milliseconds, before the reply. After every batch of
resets a normal delivery must still get its 250; its latency is printed.

Prints figures for bench/RESULTS.md; asserts nothing but the 250. Run from the repository
root:
    PYTHONPATH=$PWD .venv/bin/python bench/vanish.py [--resets 500] [--db URL] [--lmtp]
(--db: an empty PostgreSQL database of its own, e.g. `createdb bench_vanish`.)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.helpers import Receiver  # noqa: E402
from tests.rawsmtp import deliveries  # noqa: E402
from tests.test_never_stop import Client, vanish_at  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resets", type=int, default=500)
    ap.add_argument("--every", type=int, default=50, help="resets between normal deliveries")
    ap.add_argument("--db", help="database URL (default: SQLite in a temporary folder)")
    ap.add_argument("--lmtp", action="store_true")
    args = ap.parse_args()
    transport = "lmtp" if args.lmtp else "smtp"
    with tempfile.TemporaryDirectory() as tmp:
        rx = Receiver(Path(tmp) / "rx", args.db or f"sqlite:///{tmp}/receiver.db")
        address = rx.add_mailbox("alice@corp.example")
        port = rx.start(*(["--lmtp"] if args.lmtp else []))
        latencies = []
        started = time.monotonic()
        try:
            for n in range(args.resets):
                vanish_at(port, transport, address, "after the dot", n)
                if (n + 1) % args.every == 0:
                    c = Client(port, transport, timeout=5.0)
                    t0 = time.monotonic()
                    code, text = c.deliver(
                        address,
                        b"Subject: normal "
                        + str(n).encode()
                        + b"\r\nMessage-ID: <normal"
                        + str(n).encode()
                        + b"@example.org>\r\n\r\nhello\r\n",
                    )
                    latencies.append(time.monotonic() - t0)
                    c.quit()
                    if code != 250:
                        sys.exit(f"after {n + 1} resets a normal delivery got {text}")
            elapsed = time.monotonic() - started
            stored = len(deliveries(rx.db_url))
        finally:
            rx.stop()
    normals = len(latencies)
    print(
        f"{transport} on {'PostgreSQL' if args.db else 'SQLite'}: {args.resets} resets after "
        f"the dot in {elapsed:.1f}s; {normals} normal deliveries all 250, latency p50 "
        f"{statistics.median(latencies) * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms; "
        f"{stored - normals} of the reset copies committed (each once), "
        f"{args.resets - stored + normals} not"
    )


if __name__ == "__main__":
    main()
