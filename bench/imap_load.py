#!/usr/bin/env python3
"""IMAP APPEND load benchmark: the receiver's IMAP side beside bench/smtp_load.py's rows.

The same corpus as smtp_load.py (same --messages, --seed, --mailboxes: its cache is
reused) and the same number of concurrent connections, each a Python imaplib client
(a thread) that logs in over STARTTLS as one mailbox and APPENDs that mailbox's
messages. Rows:

  p   pymap's own in-memory server (dict backend), imaplib as it is (Nagle on)
  pn  the same, the client with TCP_NODELAY
  i   the receiver on SQLite, imaplib as it is
  in  the receiver on SQLite, the client with TCP_NODELAY
  j   the receiver on PostgreSQL, imaplib as it is

and prints APPENDs per second, latency from the command to the tagged OK (p50/p99), the
server's CPU per message and peak RSS, and after i/in/j whether every APPEND answered OK
is in the store with the right thread count. The p rows show the Nagle / delayed-ACK
stall around the literal that a server without TCP_QUICKACK leaves to clients which keep
Nagle on; the receiver acknowledges a literal's segments at once (receiver/imap/server.py).

    .venv/bin/python bench/imap_load.py [--messages N] [--sessions C] [--targets p,pn,i,in,j]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import imaplib
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from smtp_load import (
    ROOT,
    Corpus,
    KeyServer,
    PgTempDatabase,
    ReceiverSetup,
    RssMonitor,
    build_corpus,
    free_port,
    percentile,
    pg_available,
    stop_process,
    wait_port,
)

TLS = ROOT / "tests" / "tls"
CERT, KEY = TLS / "loopback-cert.pem", TLS / "loopback-key.pem"


def raw_of(wire: bytes | tuple[bytes, ...]) -> bytes:
    """The message itself from smtp_load's dot-stuffed DATA form."""
    data = b"".join(wire) if isinstance(wire, tuple) else wire
    data = data[:-3]  # ".\r\n"
    if data.startswith(b".."):
        data = data[1:]
    return data.replace(b"\r\n..", b"\r\n.")


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.acked: list[int] = []
        self.codes: collections.Counter[str] = collections.Counter()
        self.errors: list[str] = []
        self.bytes = 0


def _client(port: int, nodelay: bool) -> imaplib.IMAP4:
    c = imaplib.IMAP4("127.0.0.1", port, timeout=120)
    c.starttls(ssl.create_default_context(cafile=str(CERT)))
    if nodelay:
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return c


def send_all(
    port: int,
    corpus: Corpus,
    indices: list[int],
    sessions: int,
    logins: list[tuple[str, str]],
    nodelay: bool,
    max_seconds: float | None,
) -> tuple[Stats, float]:
    """Every message over `sessions` connections; connection k logs in as mailbox
    k % len(logins) and appends that mailbox's messages."""
    stats = Stats()
    queues: dict[int, collections.deque[int]] = collections.defaultdict(collections.deque)
    for i in indices:
        queues[corpus.mails[i].mailbox % len(logins)].append(i)
    start = time.monotonic()

    def session(k: int) -> None:
        mailbox = k % len(logins)
        queue = queues[mailbox]
        try:
            c = _client(port, nodelay)
            c.login(*logins[mailbox])
        except (imaplib.IMAP4.error, OSError) as e:
            with stats.lock:
                stats.errors.append(f"login: {e}")
            return
        while max_seconds is None or time.monotonic() - start < max_seconds:
            try:
                i = queue.popleft()
            except IndexError:
                break
            raw = raw_of(corpus.mails[i].wire)
            t0 = time.monotonic()
            try:
                typ, data = c.append("INBOX", None, None, raw)
            except (imaplib.IMAP4.error, OSError) as e:
                with stats.lock:
                    stats.errors.append(repr(e))
                    stats.codes["error"] += 1
                break
            with stats.lock:
                stats.latencies.append(time.monotonic() - t0)
                stats.codes[typ] += 1
                if typ == "OK":
                    stats.acked.append(i)
                    stats.bytes += len(raw)
        with contextlib.suppress(Exception):
            c.logout()

    threads = [threading.Thread(target=session, args=(k,)) for k in range(sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return stats, time.monotonic() - start


@contextlib.contextmanager
def pymap_dict_server(work: Path):
    port = free_port()
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "pymap"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--cert",
            str(CERT),
            "--key",
            str(KEY),
            "dict",
            "--demo-user",
            "bench",
            "--demo-password",
            "bench",
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(work / "pymap.log", "wb"),
    )
    try:
        wait_port(port, proc)
        yield port, proc.pid, [("bench", "bench")], None
    finally:
        stop_process(proc)


@contextlib.contextmanager
def receiver_server(setup: ReceiverSetup):
    creds = [
        json.loads(setup._cli("mailbox", "credentials", f"user{i}@corp.bench.test", "--json"))
        for i in range(len(setup.addresses))
    ]
    shutil.copy(CERT, setup.dir / "cert.pem")
    shutil.copy(KEY, setup.dir / "key.pem")
    port = free_port()
    setup.env.update(
        {
            "THREADS_RECEIVER_TLS_CERT_FILE": "cert.pem",
            "THREADS_RECEIVER_TLS_KEY_FILE": "key.pem",
            "THREADS_RECEIVER_IMAP_LISTEN": f"127.0.0.1:{port}",
            # Every connection comes from 127.0.0.1, as a copy tool's from its host.
            "THREADS_RECEIVER_IMAP_MAX_SESSIONS_PER_IP": "1000",
        }
    )
    with setup.serve() as (_, pid, check):
        yield port, pid, [(c["username"], c["password"]) for c in creds], check


def run_target(
    name: str, label: str, server_cm, corpus: Corpus, indices: list[int], args, nodelay: bool, log
) -> dict:
    with server_cm as (port, pid, logins, check):
        rss = RssMonitor(pid)
        cpu0 = rss.cpu_seconds
        stats, elapsed = send_all(
            port, corpus, indices, args.sessions, logins, nodelay, args.row_seconds or None
        )
        peak = rss.stop()
        cpu = rss.cpu_seconds - cpu0
        verdict = check(corpus, stats.acked) if check else None
    row = {
        "target": name,
        "label": label,
        "acked": len(stats.acked),
        "codes": dict(stats.codes),
        "seconds": round(elapsed, 2),
        "msgs_per_s": round(len(stats.acked) / elapsed, 1),
        "p50_ms": round(percentile(stats.latencies, 0.5) * 1000, 1),
        "p99_ms": round(percentile(stats.latencies, 0.99) * 1000, 1),
        "server_cpu_ms_per_msg": round(1000 * cpu / max(1, len(stats.acked)), 2),
        "peak_rss_mb": round(peak / 1e6, 1),
        "errors": stats.errors[:3],
    }
    if verdict is not None:
        row["check"] = verdict
    check_text = ""
    if verdict is not None:
        check_text = (
            f"  stored {verdict['deliveries']} lost {verdict['lost']} threads "
            f"{verdict['threads']}/{verdict['threads_expected']}"
            + ("" if verdict["ok"] else "  FAILED")
        )
    log(
        f"{name:3} {label:44} {row['msgs_per_s']:8.1f} msg/s  p50 {row['p50_ms']:7.1f} ms  "
        f"p99 {row['p99_ms']:7.1f} ms  cpu {row['server_cpu_ms_per_msg']:6.2f} ms/msg  "
        f"rss {row['peak_rss_mb']:6.1f} MB{check_text}"
    )
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--messages",
        type=int,
        default=20_000,
        help="corpus size (smtp_load.py's default: its cache is reused)",
    )
    p.add_argument("--sessions", type=int, default=20, help="concurrent connections")
    p.add_argument("--mailboxes", type=int, default=10)
    p.add_argument("--targets", default="p,pn,i,in,j")
    p.add_argument(
        "--row-seconds",
        type=float,
        default=60,
        help="stop appending to a target after this long (0: the whole corpus)",
    )
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    targets = args.targets.split(",")

    def log(line: str) -> None:
        print(line, file=sys.stderr if args.json else sys.stdout, flush=True)

    log(
        f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}; "
        f"{args.sessions} connections, STARTTLS, imaplib"
    )
    corpus = build_corpus(args.messages, args.seed, args.mailboxes, log)
    dns = KeyServer(corpus.dns_txt)
    work = Path(tempfile.mkdtemp(prefix="trbench-imap-"))
    indices = list(range(len(corpus.mails)))
    rows: dict[str, dict] = {}
    try:
        for t, nodelay in (("p", False), ("pn", True)):
            if t in targets:
                rows[t] = run_target(
                    t,
                    "pymap dict backend" + (", client TCP_NODELAY" if nodelay else ""),
                    pymap_dict_server(work),
                    corpus,
                    indices,
                    args,
                    nodelay,
                    log,
                )
        for t, nodelay in (("i", False), ("in", True)):
            if t in targets:
                setup = ReceiverSetup(
                    work / t, f"sqlite:///{work / t / 'receiver.db'}", args.mailboxes, dns.port
                )
                rows[t] = run_target(
                    t,
                    "receiver, SQLite" + (", client TCP_NODELAY" if nodelay else ""),
                    receiver_server(setup),
                    corpus,
                    indices,
                    args,
                    nodelay,
                    log,
                )
        if "j" in targets and pg_available():
            with PgTempDatabase() as url:
                setup = ReceiverSetup(work / "j", url, args.mailboxes, dns.port)
                rows["j"] = run_target(
                    "j",
                    "receiver, PostgreSQL",
                    receiver_server(setup),
                    corpus,
                    indices,
                    args,
                    False,
                    log,
                )
    finally:
        dns.stop()
        shutil.rmtree(work, ignore_errors=True)
    failed = [t for t, r in rows.items() if r.get("check") and not r["check"]["ok"]]
    if args.json:
        print(json.dumps({"rows": rows, "failed": failed}, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
