#!/usr/bin/env python3
"""SMTP load benchmark: the receiver against bare SMTP servers on this machine.

One run generates (or reuses from its cache) a corpus of distinct, realistic messages:
conversations with References, sizes from 2 KB to 200 KB plus a few multi-MB
attachments, ~70% DKIM-signed with test keys that the bench's own DNS server on
127.0.0.1 serves. It sends the corpus over C concurrent plain SMTP sessions (no
pipelining, several messages per session) to, in turn:

  a  Postfix smtp-sink            the ceiling of this client on loopback
  b  bare aiosmtpd, discarding     the ceiling of Python SMTP
  c  the receiver on SQLite        full pipeline, durable commits
  d  the receiver on PostgreSQL    (a temporary database, dropped after)
  e  the receiver --workers 2 on PostgreSQL

and prints messages/s, MB/s, DATA-to-reply latency p50/p99/max and the server's peak RSS
(summed over its processes), the ratios c/b d/b e/b, and after c-e whether every message
that got a 250 is in the store with the right thread count (FAILED otherwise). Then:
the receiver (SQLite) again at half the rate c reached (p99 there), and the mixed scenario:
50 sessions sending 20 MB messages while 10 sessions send small ones.

    .venv/bin/python bench/smtp_load.py [--messages N] [--json]

Needs the `postfix` package for smtp-sink (installed with apt-get when missing; the postfix
daemon is never started) and PostgreSQL at 127.0.0.1:5432 for d and e (skipped otherwise).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import dataclasses
import json
import os
import pickle
import random
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE_DIR = (
    Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "threads-receiver-bench"
)
CORPUS_VERSION = 3
RECEIVER_DOMAIN = "push.bench.test"
PG_DSN = os.environ.get("TR_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
SMTP_SINK = "/usr/sbin/smtp-sink"
CHUNK = 1 << 20
SELECTOR = "bench"
SENDER_DOMAINS = [f"mail{i}.corp{i % 7}.test" for i in range(24)]
ED25519_DOMAINS = set(SENDER_DOMAINS[:3])

# ---------------------------------------------------------------------------------------
# Corpus


@dataclasses.dataclass
class Mail:
    wire: bytes | tuple[bytes, ...]  # dot-stuffed, CRLF, ending with ".\r\n"; or its parts
    size: int  # bytes of the message itself
    message_id: str  # as the receiver stores it (no brackets, lower case)
    conversation: int
    mailbox: int
    mail_from: str


@dataclasses.dataclass
class Corpus:
    mails: list[Mail]
    dns_txt: dict[str, str]  # "bench._domainkey.<domain>" -> TXT

    @property
    def total_bytes(self) -> int:
        return sum(m.size for m in self.mails)


_SYLLABLES = [
    "ka",
    "lo",
    "mi",
    "ne",
    "ru",
    "sa",
    "te",
    "vo",
    "zu",
    "ba",
    "de",
    "fi",
    "go",
    "ha",
    "ji",
    "pe",
    "qua",
    "ri",
    "so",
    "tu",
    "wen",
    "xi",
    "yo",
    "an",
    "el",
    "or",
]


def _words(rng: random.Random, n: int) -> list[str]:
    return ["".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(1, 4))) for _ in range(n)]


def _text(rng: random.Random, size: int) -> str:
    """Paragraphs of pseudo words, about `size` characters, lines under 78."""
    out, total, line = [], 0, []
    vocab = _words(rng, 400)
    while total < size:
        w = rng.choice(vocab)
        line.append(w)
        if sum(len(x) + 1 for x in line) > 70:
            text = " ".join(line)
            out.append(text)
            total += len(text) + 2
            line = []
            if rng.random() < 0.12:
                out.append("")
                if rng.random() < 0.1:
                    out.append(".a line that starts with a dot")
    return "\r\n".join(out)


def _size(rng: random.Random) -> int:
    if rng.random() < 0.0015:
        return rng.randint(1_500_000, 5_000_000)
    # Log-normal around 9 KB: most mail is small, a long tail reaches 200 KB.
    return int(min(200_000, max(2_000, rng.lognormvariate(9.1, 1.0))))


def _keys(seed: int) -> tuple[dict[str, bytes], dict[str, str]]:
    """Signing keys per domain and their DNS TXT records."""
    import nacl.signing

    rng = random.Random(seed)
    keys, txt = {}, {}
    rsa = subprocess.run(["openssl", "genrsa", "2048"], capture_output=True, check=True).stdout
    pub = subprocess.run(
        ["openssl", "rsa", "-pubout", "-outform", "DER"], input=rsa, capture_output=True, check=True
    ).stdout
    rsa_txt = "v=DKIM1; k=rsa; p=" + base64.b64encode(pub).decode()
    for d in SENDER_DOMAINS:
        if d in ED25519_DOMAINS:
            sk = nacl.signing.SigningKey(bytes(rng.getrandbits(8) for _ in range(32)))
            keys[d] = base64.b64encode(bytes(sk))
            txt[f"{SELECTOR}._domainkey.{d}"] = (
                "v=DKIM1; k=ed25519; p=" + base64.b64encode(bytes(sk.verify_key)).decode()
            )
        else:
            # One RSA key for every domain: key generation is slow and verification
            # costs the same whichever key it is.
            keys[d] = rsa
            txt[f"{SELECTOR}._domainkey.{d}"] = rsa_txt
    return keys, txt


def _plan(n: int, seed: int, mailboxes: int) -> list[dict]:
    """Who writes what to whom, in which conversation, in arrival order."""
    rng = random.Random(seed)
    people = [
        (f"{n1.title()} {n2.title()}", f"{n1}.{n2}@{rng.choice(SENDER_DOMAINS)}")
        for n1, n2 in zip(_words(rng, 600), _words(rng, 600))
    ]
    plans: list[dict] = []
    conv = 0
    base_time = 1_700_000_000
    while len(plans) < n:
        conv += 1
        length = min(n - len(plans), max(1, int(rng.expovariate(1 / 3.5)) + 1), 30)
        members = rng.sample(people, rng.randint(2, 6))
        subject = " ".join(_words(rng, rng.randint(2, 8))).capitalize()
        ids: list[tuple[str, list[str]]] = []
        t = base_time + rng.randint(0, 30_000_000)
        for k in range(length):
            mid = (
                f"{uuid.UUID(int=rng.getrandbits(128)).hex}.{conv}.{k}@{rng.choice(SENDER_DOMAINS)}"
            )
            refs: list[str] = []
            if ids:
                parent_id, parent_refs = rng.choice(ids)
                refs = parent_refs + [parent_id]
            ids.append((mid, refs))
            sender = rng.choice(members)
            t += rng.randint(60, 86_400)
            plans.append(
                {
                    "conversation": conv,
                    "message_id": mid,
                    "references": refs,
                    "subject": ("Re: " if refs else "") + subject,
                    "from": sender,
                    "to": [m for m in members if m != sender],
                    "time": t,
                    "size": _size(rng),
                    "sign": rng.random() < 0.7,
                    "mailbox": rng.randrange(mailboxes),
                    "seed": rng.getrandbits(64),
                }
            )
    rng.shuffle(plans)  # arrival order is not conversation order
    return plans


def _render(plan: dict, keys: dict[str, bytes]) -> Mail:
    import dkim
    from email.utils import format_datetime
    import datetime as dt

    rng = random.Random(plan["seed"])
    name, addr = plan["from"]
    domain = addr.rsplit("@", 1)[1]
    date = format_datetime(dt.datetime.fromtimestamp(plan["time"], dt.UTC))
    to = ", ".join(f'"{n}" <{a}>' for n, a in plan["to"][:3])
    cc = ", ".join(f"{a}" for _, a in plan["to"][3:])
    head = [
        f"Received: from mx.{domain} (mx.{domain} [192.0.2.{rng.randint(1, 250)}])\r\n"
        f"\tby relay.example.net with ESMTPS id {rng.getrandbits(40):x}; {date}",
        f'From: "{name}" <{addr}>',
        f"To: {to}",
    ]
    if cc:
        head.append(f"Cc: {cc}")
    head += [f"Subject: {plan['subject']}", f"Date: {date}", f"Message-ID: <{plan['message_id']}>"]
    if plan["references"]:
        head.append(f"In-Reply-To: <{plan['references'][-1]}>")
        head.append("References: " + "\r\n ".join(f"<{r}>" for r in plan["references"]))
    head.append("MIME-Version: 1.0")
    size = plan["size"]
    boundary = f"=_b{rng.getrandbits(48):x}"
    text = _text(rng, min(size, 60_000) // 2)
    parts = [
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + text,
        "Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        "<html><body><p>" + text.replace("\r\n\r\n", "</p>\r\n<p>") + "</p></body></html>",
    ]
    body = f"--{boundary}\r\n" + f"\r\n--{boundary}\r\n".join(parts) + f"\r\n--{boundary}--\r\n"
    if size > len(body) + 1_000:
        outer = f"=_m{rng.getrandbits(48):x}"
        payload = base64.encodebytes(rng.randbytes((size - len(body)) * 3 // 4)).decode()
        body = (
            f'--{outer}\r\nContent-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n'
            + body
            + f'\r\n--{outer}\r\nContent-Type: application/octet-stream; name="att.bin"\r\n'
            'Content-Disposition: attachment; filename="att.bin"\r\n'
            "Content-Transfer-Encoding: base64\r\n\r\n"
            + payload.replace("\n", "\r\n")
            + f"--{outer}--\r\n"
        )
        head.append(f'Content-Type: multipart/mixed; boundary="{outer}"')
    else:
        head.append(f'Content-Type: multipart/alternative; boundary="{boundary}"')
    raw = ("\r\n".join(head) + "\r\n\r\n" + body).encode()
    if plan["sign"]:
        algo = b"ed25519-sha256" if domain in ED25519_DOMAINS else b"rsa-sha256"
        sig = dkim.sign(
            raw,
            SELECTOR.encode(),
            domain.encode(),
            keys[domain],
            signature_algorithm=algo,
            linesep=b"\r\n",
            include_headers=[
                b"from",
                b"to",
                b"cc",
                b"subject",
                b"date",
                b"message-id",
                b"in-reply-to",
                b"references",
                b"mime-version",
                b"content-type",
            ],
        )
        raw = sig + raw
    return Mail(
        wire=dot_stuff(raw),
        size=len(raw),
        message_id=plan["message_id"].lower(),
        conversation=plan["conversation"],
        mailbox=plan["mailbox"],
        mail_from=addr,
    )


def dot_stuff(raw: bytes) -> bytes:
    if not raw.endswith(b"\r\n"):
        raw += b"\r\n"
    return re.sub(rb"(?m)^\.", b"..", raw) + b".\r\n"


def _render_chunk(args) -> list[Mail]:
    plans, keys = args
    return [_render(p, keys) for p in plans]


def build_corpus(n: int, seed: int, mailboxes: int, log) -> Corpus:
    path = CACHE_DIR / f"corpus-v{CORPUS_VERSION}-{n}-{seed}-{mailboxes}.pickle"
    if path.exists():
        log(f"corpus: {path} (cached)")
        with open(path, "rb") as f:
            return pickle.load(f)
    t = time.monotonic()
    keys, txt = _keys(seed)
    plans = _plan(n, seed, mailboxes)
    chunks = [(plans[i : i + 200], keys) for i in range(0, len(plans), 200)]
    with ProcessPoolExecutor(os.cpu_count() or 2) as pool:
        mails = [m for chunk in pool.map(_render_chunk, chunks) for m in chunk]
    corpus = Corpus(mails, txt)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        pickle.dump(corpus, f, protocol=pickle.HIGHEST_PROTOCOL)
    tmp.replace(path)
    log(
        f"corpus: {n} messages, {corpus.total_bytes / 1e6:.0f} MB, built in "
        f"{time.monotonic() - t:.0f}s, cached in {path}"
    )
    return corpus


# ---------------------------------------------------------------------------------------
# DNS: the DKIM keys, served on 127.0.0.1


class KeyServer:
    def __init__(self, txt: dict[str, str]):
        from dnslib import QTYPE, RR, TXT
        from dnslib.server import BaseResolver, DNSLogger, DNSServer

        records = {k.lower().rstrip("."): v for k, v in txt.items()}

        class Resolver(BaseResolver):
            def resolve(self, request, handler):
                reply = request.reply()
                name = str(request.q.qname).lower().rstrip(".")
                if request.q.qtype == QTYPE.TXT and name in records:
                    value = records[name].encode()
                    chunks = [value[i : i + 255] for i in range(0, len(value), 255)]
                    reply.add_answer(RR(request.q.qname, QTYPE.TXT, rdata=TXT(chunks), ttl=3600))
                else:
                    reply.header.rcode = 3  # NXDOMAIN
                return reply

        quiet = DNSLogger(logf=lambda s: None)
        # The UDP port the system picks may be taken for TCP: pick again until both bind.
        for _ in range(50):
            self.udp = DNSServer(Resolver(), port=0, address="127.0.0.1", logger=quiet)
            self.port = self.udp.server.server_address[1]
            try:
                self.tcp = DNSServer(
                    Resolver(), port=self.port, address="127.0.0.1", tcp=True, logger=quiet
                )
                break
            except OSError:
                self.udp.server.server_close()
        else:
            raise RuntimeError("no port free for DNS over both UDP and TCP")
        self.udp.start_thread()
        self.tcp.start_thread()

    def stop(self) -> None:
        self.udp.stop()
        self.tcp.stop()


# ---------------------------------------------------------------------------------------
# The load client


@dataclasses.dataclass
class Stats:
    latencies: list[float] = dataclasses.field(default_factory=list)
    acked: list[int] = dataclasses.field(default_factory=list)
    codes: dict[str, int] = dataclasses.field(default_factory=dict)
    bytes: int = 0
    taken: int = 0  # messages the sessions took to send
    errors: list[str] = dataclasses.field(default_factory=list)


class SMTPClientError(Exception):
    pass


async def _reply(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    lines = []
    while True:
        line = await reader.readline()
        if not line:
            raise SMTPClientError("connection closed")
        lines.append(line)
        if line[3:4] != b"-":
            return int(line[:3]), b"".join(lines)


async def _command(reader, writer, cmd: bytes, expect: int) -> None:
    writer.write(cmd)
    code, text = await _reply(reader)
    if code != expect:
        raise SMTPClientError(f"{cmd[:20]!r} -> {text[:200]!r}")


async def send_all(
    host: str,
    port: int,
    jobs,
    sessions: int,
    per_session: int,
    rcpt_of,
    rate: float | None = None,
    max_seconds: float | None = None,
    retry_after: float | None = None,
) -> tuple[Stats, float]:
    """Send every (index, Mail) of `jobs` over `sessions` concurrent sessions (or what
    fits in `max_seconds`). With `retry_after`, a message answered 4xx is sent again
    that many seconds later, as a sending MTA would (sooner)."""
    stats = Stats()
    it = iter(jobs)
    lock = asyncio.Lock()
    start = time.monotonic()
    sent = 0

    async def next_job():
        nonlocal sent
        async with lock:
            if max_seconds is not None and time.monotonic() - start > max_seconds:
                return None
            job = next(it, None)
            if job is None:
                return None
            k = sent
            sent += 1
            stats.taken = sent
        if rate:
            delay = start + k / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        return job

    async def session():
        while True:
            job = await next_job()
            if job is None:
                return
            try:
                reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
            except OSError as e:
                stats.errors.append(f"connect: {e}")
                stats.codes["conn"] = stats.codes.get("conn", 0) + 1
                continue
            try:
                code, text = await _reply(reader)
                if code != 220:
                    raise SMTPClientError(f"greeting {text!r}")
                await _command(reader, writer, b"EHLO load.bench.test\r\n", 250)
                for n in range(per_session):
                    if n:
                        job = await next_job()
                        if job is None:
                            break
                    code = await _transaction(reader, writer, job, stats, rcpt_of)
                    while retry_after is not None and 400 <= code < 500:
                        await asyncio.sleep(retry_after)
                        code = await _transaction(reader, writer, job, stats, rcpt_of)
                writer.write(b"QUIT\r\n")
                await writer.drain()
            except (SMTPClientError, OSError, asyncio.IncompleteReadError) as e:
                stats.errors.append(repr(e))
                stats.codes["conn"] = stats.codes.get("conn", 0) + 1
            finally:
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()

    await asyncio.gather(*(session() for _ in range(sessions)))
    return stats, time.monotonic() - start


async def _transaction(reader, writer, job, stats: Stats, rcpt_of) -> int:
    """One message; the code of its last reply (RCPT's or MAIL's when refused there)."""
    index, mail = job
    for command in (
        b"MAIL FROM:<%s> SIZE=%d\r\n" % (mail.mail_from.encode(), mail.size),
        b"RCPT TO:<%s>\r\n" % rcpt_of(mail).encode(),
    ):
        writer.write(command)
        code, text = await _reply(reader)
        if code != 250:
            stats.codes[str(code)] = stats.codes.get(str(code), 0) + 1
            await _command(reader, writer, b"RSET\r\n", 250)
            return code
    await _command(reader, writer, b"DATA\r\n", 354)
    for part in mail.wire if isinstance(mail.wire, tuple) else (mail.wire,):
        view = memoryview(part)
        for at in range(0, len(view), CHUNK):
            # Chunks with drain: 50 sessions of 20 MB must not sit in the client's buffers.
            writer.write(view[at : at + CHUNK])
            await writer.drain()
    t0 = time.monotonic()
    code, _ = await _reply(reader)
    stats.latencies.append(time.monotonic() - t0)
    stats.codes[str(code)] = stats.codes.get(str(code), 0) + 1
    if code == 250:
        stats.acked.append(index)
        stats.bytes += mail.size
    return code


# ---------------------------------------------------------------------------------------
# Servers under test


class RssMonitor:
    """Peak of the summed RSS of a process and its descendants, sampled every 20 ms."""

    def __init__(self, pid: int):
        self.pid = pid
        self.peak = 0
        self.peak_of: dict[int, int] = {}  # per process: where the memory goes
        self.parent_of: dict[int, int] = {}
        self.cpu_ticks: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _pids(self) -> list[int]:
        out, todo = [], [self.pid]
        while todo:
            p = todo.pop()
            out.append(p)
            with contextlib.suppress(OSError):
                for task in os.listdir(f"/proc/{p}/task"):
                    with open(f"/proc/{p}/task/{task}/children") as f:
                        todo += [int(c) for c in f.read().split()]
        return out

    def sample(self) -> int:
        total = 0
        for p in self._pids():
            with contextlib.suppress(OSError, ValueError, IndexError):
                with open(f"/proc/{p}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                self.cpu_ticks[p] = int(fields[11]) + int(fields[12])  # utime + stime
                self.parent_of[p] = int(fields[1])
            with contextlib.suppress(OSError):
                with open(f"/proc/{p}/status") as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            rss = int(line.split()[1]) * 1024
                            total += rss
                            self.peak_of[p] = max(self.peak_of.get(p, 0), rss)
        return total

    def peaks_by_role(self) -> dict[str, list[float]]:
        """Each process's own peak RSS in MB, by role: the receiver, the forkserver, its
        children (the parse workers), others (multiprocessing's resource tracker)."""
        forkserver = {p for p, parent in self.parent_of.items() if parent == self.pid}
        out: dict[str, list[float]] = {}
        for p, peak in sorted(self.peak_of.items()):
            role = (
                "main"
                if p == self.pid
                else "workers"
                if self.parent_of.get(p) in forkserver
                else "other"
            )
            out.setdefault(role, []).append(round(peak / 1e6, 1))
        return out

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.sample())
            self._stop.wait(0.02)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak

    @property
    def cpu_seconds(self) -> float:
        """CPU time of the server's processes while sampled (noise from other load aside)."""
        return sum(self.cpu_ticks.values()) / os.sysconf("SC_CLK_TCK")

    def stop_and_list(self) -> list[int]:
        """The process and its descendants, parents first."""
        self.stop()
        return self._pids()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise RuntimeError("server did not start listening")


def stop_process(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def ensure_smtp_sink(log) -> bool:
    if os.path.exists(SMTP_SINK):
        return True
    log("installing postfix for smtp-sink (apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    r = subprocess.run(
        sudo + ["apt-get", "install", "-y", "-qq", "postfix"],
        env=env,
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        log(f"apt-get install postfix failed: {r.stderr.strip()[-300:]}")
    return os.path.exists(SMTP_SINK)


@contextlib.contextmanager
def smtp_sink_server(log):
    if not ensure_smtp_sink(log):
        raise RuntimeError("smtp-sink is not available")
    port = free_port()
    user = ["-u", "nobody"] if os.geteuid() == 0 else []
    proc = subprocess.Popen(
        [SMTP_SINK, *user, f"127.0.0.1:{port}", "256"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port, proc)
        yield port, proc.pid, None
    finally:
        stop_process(proc)


@contextlib.contextmanager
def bare_aiosmtpd_server(log):
    proc = subprocess.Popen([sys.executable, __file__, "_bare"], stdout=subprocess.PIPE)
    try:
        line = proc.stdout.readline()
        port = int(line.split()[-1])
        yield port, proc.pid, None
    finally:
        stop_process(proc)


def _bare_main() -> None:
    """Target b: aiosmtpd with a handler that discards the message."""
    from aiosmtpd.smtp import SMTP

    class Discard:
        async def handle_DATA(self, server, session, envelope):
            return "250 2.0.0 Ok: discarded"

    async def main():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: SMTP(
                Discard(), data_size_limit=64 << 20, decode_data=False, hostname="bare.bench.test"
            ),
            "127.0.0.1",
            0,
        )
        print("listening on", server.sockets[0].getsockname()[1], flush=True)
        stop = asyncio.Event()
        import signal

        loop.add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()

    asyncio.run(main())


class PgTempDatabase:
    def __init__(self, dsn: str = PG_DSN):
        import psycopg2

        self.psycopg2 = psycopg2
        self.dsn = dsn
        self.name = "trbench_" + uuid.uuid4().hex[:10]

    def _admin(self):
        conn = self.psycopg2.connect(self.dsn, connect_timeout=3)
        conn.autocommit = True
        return conn

    def __enter__(self) -> str:
        conn = self._admin()
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{self.name}"')
        conn.close()
        return self.dsn.rsplit("/", 1)[0] + "/" + self.name

    def __exit__(self, *exc) -> None:
        conn = self._admin()
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        conn.close()


def pg_available() -> bool:
    try:
        PgTempDatabase()._admin().close()
        return True
    except Exception:
        return False


class ReceiverSetup:
    """A receiver in a temp folder: init, mailboxes, config for the bench DNS server."""

    def __init__(
        self,
        directory: Path,
        db_url: str,
        mailboxes: int,
        dns_port: int,
        profile: Path | None = None,
        inflight_mb: int | None = None,
        settings: list[str] = (),
    ):
        self.profile = profile
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.db_url = db_url
        self.config = directory / "receiver.toml"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("THREADS_RECEIVER_")}
        self.env.update(
            {
                "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
                "THREADS_RECEIVER_CONFIG": str(self.config),
                "THREADS_RECEIVER_DB": db_url,
                "THREADS_RECEIVER_DNS_SERVERS": f"127.0.0.1:{dns_port}",
                # Every bench session comes from 127.0.0.1, as a bulk copy tool's would from
                # its one host: the per-address session cap must not refuse them.
                "THREADS_RECEIVER_SMTP_MAX_SESSIONS_PER_IP": "1000",
            }
        )
        if inflight_mb is not None:
            self.env["THREADS_RECEIVER_SMTP_MAX_INFLIGHT_BYTES"] = str(inflight_mb << 20)
        for setting in settings:
            key, _, value = setting.partition("=")
            self.env["THREADS_RECEIVER_" + key.replace(".", "_").upper()] = value
        self._cli("init", "--dir", str(directory), "--domain", RECEIVER_DOMAIN)
        self.addresses = [
            json.loads(self._cli("mailbox", "add", f"user{i}@corp.bench.test", "--json"))["address"]
            for i in range(mailboxes)
        ]

    def _cli(self, *args: str) -> str:
        r = subprocess.run(
            [sys.executable, "-m", "receiver", *args],
            env=self.env,
            capture_output=True,
            text=True,
            cwd=self.dir,
        )
        if r.returncode != 0:
            raise RuntimeError(f"receiver {' '.join(args)}: {r.stderr.strip()}")
        return r.stdout

    @contextlib.contextmanager
    def serve(self, *args: str):
        log = open(self.dir / "serve.log", "wb")
        cmd = [sys.executable, "-m", "receiver", "serve", "--listen", "127.0.0.1:0", *args]
        if self.profile:
            # py-spy samples every process of the receiver, only threads holding the GIL
            # (waits for the GIL, the disk or a pipe are not work); stopping the receiver
            # (not py-spy) makes it write the collapsed stacks.
            cmd = [
                "py-spy",
                "record",
                "--format",
                "raw",
                "--subprocesses",
                "--gil",
                "--rate",
                "250",
                "-o",
                str(self.profile / f"{self.dir.name}.txt"),
                "--",
                *cmd,
            ]
        proc = subprocess.Popen(cmd, env=self.env, stdout=subprocess.PIPE, stderr=log, cwd=self.dir)
        try:
            port = None
            deadline = time.monotonic() + 60
            while port is None and time.monotonic() < deadline:
                line = proc.stdout.readline()
                if not line:
                    raise RuntimeError(
                        "receiver exited: " + (self.dir / "serve.log").read_text()[-2000:]
                    )
                m = re.search(rb"listening on [\d.]+:(\d+)", line)
                if m:
                    port = int(m.group(1))
            threading.Thread(target=proc.stdout.read, daemon=True).start()
            yield port, proc.pid, self.check
        finally:
            if self.profile and proc.poll() is None:
                for child in RssMonitor(proc.pid).stop_and_list()[1:2]:
                    os.kill(child, 15)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(60)
            stop_process(proc)
            log.close()

    def check(self, corpus: Corpus, acked: list[int]) -> dict:
        """Every 250'd message stored? Threads exactly the conversations?"""
        sql = (
            "SELECT m.message_id, m.thread_id, d.status FROM delivery d "
            "JOIN message m ON m.id = d.message_id"
        )
        if self.db_url.startswith("sqlite:///"):
            conn = sqlite3.connect(self.db_url[len("sqlite:///") :])
            rows = conn.execute(sql).fetchall()
            conn.close()
        else:
            import psycopg2

            conn = psycopg2.connect(self.db_url)
            with conn.cursor() as cur:
                cur.execute(sql)
                rows = cur.fetchall()
            conn.close()
        stored = {mid.lower() for mid, _, _ in rows}
        lost = [i for i in acked if corpus.mails[i].message_id not in stored]
        conv_of = {corpus.mails[i].message_id: corpus.mails[i].conversation for i in acked}
        threads: dict[int, set[int]] = {}
        for mid, tid, status in rows:
            if status == "stored" and mid.lower() in conv_of:
                threads.setdefault(tid, set()).add(conv_of[mid.lower()])
        expected = len(
            {
                conv_of[mid.lower()]
                for mid, _, status in rows
                if status == "stored" and mid.lower() in conv_of
            }
        )
        mixed = sum(1 for convs in threads.values() if len(convs) > 1)
        quarantined = sum(1 for _, _, s in rows if s == "quarantined")
        ok = not lost and len(threads) == expected and not mixed and None not in threads
        return {
            "deliveries": len(rows),
            "lost": len(lost),
            "threads": len(threads),
            "threads_expected": expected,
            "quarantined": quarantined,
            "ok": ok,
        }


# ---------------------------------------------------------------------------------------
# Running and reporting


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def run_target(
    name: str,
    label: str,
    server_cm,
    corpus: Corpus,
    indices: list[int],
    args,
    rcpt_of,
    rate: float | None = None,
    log=print,
) -> dict:
    with server_cm as (port, pid, check):
        rss = RssMonitor(pid)
        cpu0 = rss.cpu_seconds
        stats, elapsed = asyncio.run(
            send_all(
                "127.0.0.1",
                port,
                ((i, corpus.mails[i]) for i in indices),
                args.sessions,
                args.per_session,
                rcpt_of,
                rate,
                args.row_seconds or None,
            )
        )
        peak = rss.stop()
        cpu = rss.cpu_seconds - cpu0
        verdict = check(corpus, stats.acked) if check else None
    row = {
        "target": name,
        "label": label,
        "messages": stats.taken,
        "acked": len(stats.acked),
        "codes": stats.codes,
        "seconds": round(elapsed, 2),
        "msgs_per_s": round(len(stats.acked) / elapsed, 1),
        "mb_per_s": round(stats.bytes / elapsed / 1e6, 2),
        "p50_ms": round(percentile(stats.latencies, 0.5) * 1000, 1),
        "p99_ms": round(percentile(stats.latencies, 0.99) * 1000, 1),
        "max_ms": round(max(stats.latencies, default=float("nan")) * 1000, 1),
        "peak_rss_mb": round(peak / 1e6, 1),
        "server_cpu_ms_per_msg": round(1000 * cpu / max(1, len(stats.acked)), 2),
        "rate_limit": rate,
        "errors": stats.errors[:5],
    }
    if verdict is not None:
        row["check"] = verdict
    log(format_row(row))
    return row


def format_row(r: dict) -> str:
    check = r.get("check")
    status = ""
    if check is not None:
        status = (
            f"  stored {check['deliveries']} lost {check['lost']} threads "
            f"{check['threads']}/{check['threads_expected']}" + ("" if check["ok"] else "  FAILED")
        )
    not_ok = {k: v for k, v in r["codes"].items() if k != "250"}
    return (
        f"{r['target']:<3}{r['label']:<34}{r['msgs_per_s']:>9.1f} msg/s {r['mb_per_s']:>7.2f} MB/s"
        f"  p50 {r['p50_ms']:>7.1f}  p99 {r['p99_ms']:>7.1f}  max {r['max_ms']:>8.1f} ms"
        f"  rss {r['peak_rss_mb']:>7.1f} MB  cpu {r['server_cpu_ms_per_msg']:>5.2f} ms/msg  ok {r['acked']}/{r['messages']}"
        + (f" {not_ok}" if not_ok else "")
        + status
    )


def big_mails(count: int, size: int, seed: int) -> list[Mail]:
    """Distinct `size`-byte messages, a line of text and a file attached, as mail with a
    large attachment is; they share the attachment's body (memory stays small)."""
    rng = random.Random(seed)
    blob = base64.encodebytes(rng.randbytes(size * 3 // 4)).replace(b"\n", b"\r\n")
    tail = b"--=_big--\r\n"
    out = []
    for k in range(count):
        mid = f"big{k}.{seed}@bulk.bench.test"
        head = (
            f"From: Bulk <bulk@{SENDER_DOMAINS[5]}>\r\nTo: user0@corp.bench.test\r\n"
            f"Subject: Big attachment {k}\r\nDate: Mon, 01 Jan 2024 10:00:00 +0000\r\n"
            f"Message-ID: <{mid}>\r\nMIME-Version: 1.0\r\nX-Big: {k}\r\n"
            'Content-Type: multipart/mixed; boundary="=_big"\r\n\r\n'
            "--=_big\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            f"The export you asked for, part {k}.\r\n"
            "--=_big\r\nContent-Type: application/octet-stream\r\n"
            f'Content-Disposition: attachment; filename="export-{k}.bin"\r\n'
            "Content-Transfer-Encoding: base64\r\n\r\n"
        ).encode()
        out.append(
            Mail(
                wire=(head, blob, tail + b".\r\n"),
                size=len(head) + len(blob) + len(tail),
                message_id=mid,
                conversation=-1 - k,
                mailbox=0,
                mail_from=f"bulk@{SENDER_DOMAINS[5]}",
            )
        )
    return out


def run_mixed(corpus: Corpus, setup_factory, args, log) -> dict:
    """Big messages streaming on many sessions while small ones keep arriving."""
    bigs = big_mails(args.mixed_big_sessions, args.mixed_big_mb << 20, args.seed)
    setup = setup_factory()
    rcpt_of = lambda m: setup.addresses[m.mailbox % len(setup.addresses)]  # noqa: E731
    small = [i for i, m in enumerate(corpus.mails) if m.size < 50_000]
    with setup.serve(*args.receiver_args) as (port, pid, _):
        rss = RssMonitor(pid)

        async def both():
            big_task = asyncio.create_task(
                send_all(
                    "127.0.0.1",
                    port,
                    ((-1 - k, m) for k, m in enumerate(bigs)),
                    args.mixed_big_sessions,
                    1,
                    rcpt_of,
                    retry_after=args.mixed_retry_seconds,
                )
            )
            done = asyncio.Event()
            big_task.add_done_callback(lambda _: done.set())

            def small_jobs():
                for i in small:
                    if done.is_set():
                        return
                    yield i, corpus.mails[i]

            small_stats, _ = await send_all(
                "127.0.0.1",
                port,
                small_jobs(),
                args.mixed_small_sessions,
                args.per_session,
                rcpt_of,
                rate=args.mixed_small_rate,
            )
            return await big_task, small_stats

        (big_stats, big_elapsed), small_stats = asyncio.run(both())
        peak = rss.stop()
    row = {
        "big_sessions": args.mixed_big_sessions,
        "big_mb": args.mixed_big_mb,
        "big_acked": len(big_stats.acked),
        "big_codes": big_stats.codes,
        "big_seconds": round(big_elapsed, 1),
        "small_sent": len(small_stats.latencies),
        "small_acked": len(small_stats.acked),
        "small_codes": small_stats.codes,
        "small_p50_ms": round(percentile(small_stats.latencies, 0.5) * 1000, 1),
        "small_p99_ms": round(percentile(small_stats.latencies, 0.99) * 1000, 1),
        "small_max_ms": round(max(small_stats.latencies, default=float("nan")) * 1000, 1),
        "peak_rss_mb": round(peak / 1e6, 1),
        "peak_rss_by_process_mb": rss.peaks_by_role(),
        "errors": (big_stats.errors + small_stats.errors)[:5],
    }
    log(
        f"mixed: {row['big_sessions']} x {row['big_mb']} MB: {row['big_acked']} acked "
        f"{row['big_codes']} in {row['big_seconds']}s; small: {row['small_acked']}/"
        f"{row['small_sent']} p50 {row['small_p50_ms']} p99 {row['small_p99_ms']} "
        f"max {row['small_max_ms']} ms; server peak RSS {row['peak_rss_mb']} MB "
        f"(each process's own peak: {row['peak_rss_by_process_mb']})"
    )
    return row


def main(argv: list[str] | None = None) -> int:
    if argv is None and sys.argv[1:2] == ["_bare"]:
        _bare_main()
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--messages", type=int, default=20_000, help="corpus size (default 20000)")
    p.add_argument("--sessions", type=int, default=20, help="concurrent sessions (default 20)")
    p.add_argument("--per-session", type=int, default=10, help="messages per session")
    p.add_argument("--mailboxes", type=int, default=10)
    p.add_argument("--targets", default="abcde", help="which of a b c d e to run")
    p.add_argument("--workers", type=int, default=2, help="receiver workers for target e")
    p.add_argument(
        "--row-seconds",
        type=float,
        default=100,
        help="stop sending to a target after this long (0: send the whole corpus)",
    )
    p.add_argument("--no-half-rate", action="store_true", help="skip c at half its rate")
    p.add_argument("--no-mixed", action="store_true", help="skip the mixed scenario")
    p.add_argument("--mixed-big-sessions", type=int, default=50)
    p.add_argument("--mixed-big-mb", type=int, default=20)
    p.add_argument(
        "--mixed-retry-seconds",
        type=float,
        default=1.0,
        help="a big message answered 4xx (the in-flight cap) is sent again after "
        "this many seconds, until every one is stored",
    )
    p.add_argument("--mixed-small-sessions", type=int, default=10)
    p.add_argument(
        "--mixed-small-rate",
        type=float,
        default=50.0,
        help="small messages per second during the mixed scenario",
    )
    p.add_argument(
        "--inflight-mb",
        type=int,
        metavar="MB",
        help="smtp.max_inflight_bytes of every receiver (default: its own default)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="a receiver setting for every receiver row, e.g. parse.workers=3",
    )
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="run each receiver under py-spy; collapsed stacks go to DIR/<target>.txt",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object at the end only")
    args = p.parse_args(argv)
    args.receiver_args = []
    if args.profile:
        args.profile = args.profile.resolve()
        args.profile.mkdir(parents=True, exist_ok=True)

    def log(line: str) -> None:
        print(line, file=sys.stderr if args.json else sys.stdout, flush=True)

    log(
        f"machine: {os.cpu_count()} cores, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GB,"
        f" Python {sys.version.split()[0]}; {args.sessions} sessions x {args.per_session} messages"
    )
    corpus = build_corpus(args.messages, args.seed, args.mailboxes, log)
    log(
        f"corpus: {len(corpus.mails)} messages, {corpus.total_bytes / 1e6:.1f} MB, "
        f"{sum(1 for m in corpus.mails if m.wire.startswith(b'DKIM-Signature'))} DKIM-signed, "
        f"{len({m.conversation for m in corpus.mails})} conversations"
    )
    dns = KeyServer(corpus.dns_txt)
    work = Path(tempfile.mkdtemp(prefix="trbench-"))
    indices = list(range(len(corpus.mails)))
    rows: dict[str, dict] = {}
    result: dict = {
        "messages": len(corpus.mails),
        "sessions": args.sessions,
        "machine": {"cores": os.cpu_count(), "python": sys.version.split()[0]},
    }
    have_pg = pg_available()
    try:

        def setup(db_url: str, tag: str) -> ReceiverSetup:
            return ReceiverSetup(
                work / tag,
                db_url,
                args.mailboxes,
                dns.port,
                args.profile,
                args.inflight_mb,
                args.set,
            )

        def receiver(db_url: str, tag: str, *serve_args: str):
            s = setup(db_url, tag)
            return s.serve(*serve_args), (lambda m: s.addresses[m.mailbox])

        any_rcpt = lambda m: f"user{m.mailbox}@corp.bench.test"  # noqa: E731
        if "a" in args.targets:
            rows["a"] = run_target(
                "a",
                "Postfix smtp-sink",
                smtp_sink_server(log),
                corpus,
                indices,
                args,
                any_rcpt,
                log=log,
            )
        if "b" in args.targets:
            rows["b"] = run_target(
                "b",
                "bare aiosmtpd (discard)",
                bare_aiosmtpd_server(log),
                corpus,
                indices,
                args,
                any_rcpt,
                log=log,
            )
        if "c" in args.targets:
            cm, rcpt = receiver(f"sqlite:///{work / 'c' / 'receiver.db'}", "c")
            rows["c"] = run_target(
                "c", "receiver, SQLite", cm, corpus, indices, args, rcpt, log=log
            )
        for t, label, extra in (
            ("d", "receiver, PostgreSQL", ()),
            (
                "e",
                f"receiver --workers {args.workers}, PostgreSQL",
                ("--workers", str(args.workers)),
            ),
        ):
            if t not in args.targets:
                continue
            if not have_pg:
                log(f"{t}  skipped: no PostgreSQL at {PG_DSN}")
                continue
            with PgTempDatabase() as url:
                cm, rcpt = receiver(url, t, *extra)
                rows[t] = run_target(t, label, cm, corpus, indices, args, rcpt, log=log)
        if "c" in rows and not args.no_half_rate:
            rate = rows["c"]["msgs_per_s"] / 2
            n = min(len(indices), max(200, int(rate * 20)))
            cm, rcpt = receiver(f"sqlite:///{work / 'c2' / 'receiver.db'}", "c2")
            rows["c_half"] = run_target(
                "c",
                f"receiver, SQLite, at {rate:.0f} msg/s",
                cm,
                corpus,
                indices[:n],
                args,
                rcpt,
                rate=rate,
                log=log,
            )
        if not args.no_mixed:
            result["mixed"] = run_mixed(
                corpus,
                lambda: setup(f"sqlite:///{work / 'mixed' / 'receiver.db'}", "mixed"),
                args,
                log,
            )
    finally:
        dns.stop()
        shutil.rmtree(work, ignore_errors=True)
    ratios = {}
    if rows.get("b", {}).get("msgs_per_s"):
        for t in "cde":
            if t in rows:
                ratios[f"{t}/b"] = round(rows[t]["msgs_per_s"] / rows["b"]["msgs_per_s"], 3)
        log("ratios: " + "  ".join(f"{k} {v:.2f}" for k, v in ratios.items()))
    lost = sum(r.get("check", {}).get("lost", 0) for r in rows.values())
    failed = [t for t, r in rows.items() if r.get("check") and not r["check"]["ok"]]
    result.update(rows=rows, ratios=ratios, lost=lost, failed=failed)
    if failed:
        log(f"FAILED: {', '.join(failed)} (lost {lost})")
    if args.json:
        print(json.dumps(result, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
