"""A raw-socket SMTP client for hostile-input tests: sends exactly the bytes given."""

from __future__ import annotations

import json
import socket
import sqlite3
import ssl
import time

import psycopg2

from tests.helpers import tls_after_header


class Raw:
    def __init__(
        self,
        port: int,
        host: str = "127.0.0.1",
        timeout: float = 10.0,
        greet: bool = True,
        tls: bool = False,
        header: bytes = b"",
        source: str = "",
    ):
        """`header`: a balancer's PROXY header, sent in clear before anything else (and
        before TLS); `source`: the local address to connect from (another loopback
        address is another client)."""
        self.sock = socket.create_connection(
            (host, port), timeout=timeout, source_address=(source, 0) if source else None
        )
        if header and tls:
            self.sock = tls_after_header(self.sock, header, client_tls())
        elif tls:
            self.sock = client_tls().wrap_socket(self.sock)
        else:
            self.sock.sendall(header)
        self.buf = b""
        self.greeting = self.reply() if greet else None

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self) -> tuple[int, str]:
        """One whole (multi-line) reply: (code, text of the last line)."""
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError(f"closed after {lines!r} {self.buf!r}")
                self.buf += chunk
            line, self.buf = self.buf.split(b"\r\n", 1)
            lines.append(line.decode("utf-8", "replace"))
            if len(line) < 4 or line[3:4] != b"-":
                return int(line[:3]), "\n".join(lines)

    def cmd(self, line: bytes | str) -> tuple[int, str]:
        self.send((line.encode() if isinstance(line, str) else line) + b"\r\n")
        return self.reply()

    def starttls(self) -> None:
        assert self.cmd("STARTTLS")[0] == 220
        self.sock = client_tls().wrap_socket(self.sock)

    def closed(self, wait: float = 5.0) -> bool:
        """True when the server closed the connection (EOF) within `wait` seconds."""
        self.sock.settimeout(wait)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except TimeoutError:
            return False
        except (ConnectionResetError, ssl.SSLError):
            return True

    def close(self) -> None:
        self.sock.close()


def client_tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def dot_stuff(raw: bytes) -> bytes:
    lines = raw.split(b"\r\n")
    return b"\r\n".join(b"." + x if x.startswith(b".") else x for x in lines)


def transaction(
    c: Raw, rcpt: str, raw: bytes, mail_from: str = "sender@example.org", helo: bool = True
) -> tuple[int, str]:
    """HELO? MAIL RCPT DATA for one message (raw must end in CRLF); the DATA reply."""
    if helo:
        assert c.cmd("EHLO client.example.org")[0] == 250
    code, text = c.cmd(f"MAIL FROM:<{mail_from}>")
    if code != 250:
        return code, text
    code, text = c.cmd(f"RCPT TO:<{rcpt}>")
    if code != 250:
        return code, text
    code, text = c.cmd("DATA")
    if code != 354:
        return code, text
    c.send(dot_stuff(raw) + b".\r\n")
    return c.reply()


def send(port: int, rcpt: str, raw: bytes, **kw) -> tuple[int, str]:
    c = Raw(port)
    try:
        return transaction(c, rcpt, raw, **kw)
    finally:
        c.close()


def query(db_url: str, sql: str, args: tuple = ()) -> list[tuple]:
    """Rows from the receiver's database (SQL with ? placeholders)."""
    if db_url.startswith("sqlite:///"):
        conn = sqlite3.connect(db_url[len("sqlite:///") :], timeout=30)
        try:
            return conn.execute(sql, args).fetchall()
        finally:
            conn.close()
    conn = psycopg2.connect(db_url)
    try:
        with conn.cursor() as cur:
            cur.execute(sql.replace("?", "%s"), args)
            return cur.fetchall()
    finally:
        conn.close()


def stored_raws(db_url: str) -> dict[str, bytes]:
    """sha256 -> raw bytes of every delivery's blob."""
    import zstandard

    rows = query(
        db_url, "SELECT b.sha256, b.data FROM delivery d JOIN blob b ON b.sha256 = d.blob_sha256"
    )
    return {sha: zstandard.ZstdDecompressor().decompress(bytes(data)) for sha, data in rows}


def deliveries(db_url: str) -> list[dict]:
    rows = query(
        db_url,
        "SELECT d.id, d.peer, d.helo, d.mail_from, d.tls, d.auth_user, "
        "d.smtp_defects, m.parse_error, m.in_reply_to, m.subject, d.status "
        "FROM delivery d JOIN message m ON m.id = d.message_id ORDER BY d.id",
    )
    keys = [
        "id",
        "peer",
        "helo",
        "mail_from",
        "tls",
        "auth_user",
        "smtp_defects",
        "parse_error",
        "in_reply_to",
        "subject",
        "status",
    ]
    out = []
    for r in rows:
        d = dict(zip(keys, r))
        d["smtp_defects"] = json.loads(d["smtp_defects"])
        d["tls"] = json.loads(d["tls"]) if d["tls"] else None
        out.append(d)
    return out


def wait_until(predicate, timeout: float = 10.0, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return predicate()


def message(n: int | str = 1, body: bytes = b"hello\r\n", extra: bytes = b"") -> bytes:
    return (
        b"From: Bob <bob@example.org>\r\nTo: alice@corp.example\r\n"
        b"Subject: test " + str(n).encode() + b"\r\n"
        b"Message-ID: <m"
        + str(n).encode()
        + b"@example.org>\r\n"
        + extra
        + b"Date: Tue, 01 Jan 2019 10:00:00 +0000\r\n\r\n"
        + body
    )


def open_data(c: Raw, rcpt: str, helo: bool = True) -> None:
    """Take a session up to the 354 of DATA (each step must succeed)."""
    if helo:
        assert c.cmd("EHLO client.example.org")[0] == 250
    assert c.cmd("MAIL FROM:<a@example.org>")[0] == 250
    assert c.cmd(f"RCPT TO:<{rcpt}>")[0] == 250
    assert c.cmd("DATA")[0] == 354
