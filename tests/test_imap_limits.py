"""The IMAP listeners held to the SMTP edge's limits: PROXY protocol from trusted proxies
(the client it names is the one recorded and limited), and the daemon's in-flight byte
budget counted for every literal before it is read."""

from __future__ import annotations

import asyncio
import imaplib
import json
import re
import socket
import ssl
import threading
import urllib.request

import pytest
from pymap.parsing import Params
from pymap.parsing.command import Command
from pymap.parsing.command.any import NoOpCommand
from pymap.parsing.commands import InvalidCommand
from pymap.parsing.exceptions import NotParseable

from receiver import config
from receiver.imap.server import OVER_BUDGET, BoundedReader, State
from receiver.imap.settings import Settings
from receiver.smtp.limits import ByteBudget

from tests.helpers import proxy_v2
from tests.imap_support import (
    Proxied,
    ProxiedImplicit,
    client_context,
    imap_receiver,
    implicit,
    start_imap,
)
from tests.rawsmtp import deliveries, message, stored_raws
from tests.test_metrics import metrics_url, sample


def v1(src: str, sport: int = 40000) -> bytes:
    family = b"TCP6" if ":" in src else b"TCP4"
    dst = b"::1" if ":" in src else b"127.0.0.1"
    return b"PROXY %s %s %s %d 143\r\n" % (family, src.encode(), dst, sport)


V2_LOCAL = b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x20, 0x00, 0, 0])


def proxied_login(r, header: bytes) -> imaplib.IMAP4:
    c = Proxied(r.imap_ports["STARTTLS"], header)
    c.starttls(client_context())
    c.login(r.username, r.password)
    return c


def first_line(port: int, header: bytes) -> bytes:
    """What the server says to a raw connection that starts with `header` (b"": closed)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(header)
        return s.makefile("rb").readline()


def test_proxy_headers_name_the_client_recorded_on_the_delivery(tmp_path, db_url):
    r = imap_receiver(tmp_path / "rx", db_url, extra='proxy_trusted = ["127.0.0.0/8"]\n')
    start_imap(r)
    try:
        cases = [
            # As SMTP records a peer: "ip:port", brackets only round an IPv6 address.
            (v1("203.0.113.7"), "203.0.113.7:40000"),
            (proxy_v2("203.0.113.8", 40001, 143), "203.0.113.8:40001"),
            (v1("2001:db8::7", 4002), "[2001:db8::7]:4002"),
            # A balancer's health check, v1 UNKNOWN and v2 LOCAL: the connection's own
            # address is the client's (the PROXY specification; SMTP does the same).
            (b"PROXY UNKNOWN\r\n", "127.0.0.1:"),
            (V2_LOCAL, "127.0.0.1:"),
        ]
        for n, (header, peer) in enumerate(cases):
            c = proxied_login(r, header)
            assert c.append("INBOX", None, None, message(n))[0] == "OK"
            c.logout()
            assert re.fullmatch(re.escape(peer) + r"\d*", deliveries(db_url)[-1]["peer"]), peer
            # On the implicit-TLS listener the header comes before TLS.
            c = ProxiedImplicit(r.imap_ports["implicit TLS"], header)
            c.login(r.username, r.password)
            assert c.append("INBOX", None, None, message(f"tls{n}"))[0] == "OK"
            c.logout()
            assert re.fullmatch(re.escape(peer) + r"\d*", deliveries(db_url)[-1]["peer"]), peer
    finally:
        r.stop()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_sessions_and_failed_logins_are_limited_by_the_proxied_address(tmp_path, db_url):
    r = imap_receiver(
        tmp_path / "rx",
        db_url,
        extra='proxy_trusted = ["127.0.0.0/8"]\nmax_sessions_per_ip = 2\n'
        "[auth]\nmax_failures = 2\n",
    )
    start_imap(r)
    port = r.imap_ports["STARTTLS"]
    try:
        held = [Proxied(port, v1("203.0.113.7", p)) for p in (1, 2)]
        assert first_line(port, v1("203.0.113.7", 3)).startswith(b"* BYE [UNAVAILABLE]")
        other = Proxied(port, v1("198.51.100.9"))
        assert other.noop()[0] == "OK"
        for c in [*held, other]:
            c.logout()

        for _ in range(2):
            c = Proxied(port, v1("203.0.113.7"))
            c.starttls(client_context())
            with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
                c.login(r.username, "wrong")
            c.logout()
        c = Proxied(port, v1("203.0.113.7"))
        c.starttls(client_context())
        with pytest.raises(imaplib.IMAP4.error, match="Too many failed logins"):
            c.login(r.username, r.password)
        c.logout()
        proxied_login(r, v1("198.51.100.9")).logout()
        log = r.log_path.read_text()
        assert "login failed from 203.0.113.7" in log
        assert "login from 203.0.113.7 blocked" in log
        assert "logged in for alice@corp.example from 198.51.100.9" in log
    finally:
        r.stop()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_trusted_proxy_must_send_a_valid_header(tmp_path, db_url):
    r = imap_receiver(tmp_path / "rx", db_url, extra='proxy_trusted = ["127.0.0.0/8"]\n')
    start_imap(r)
    port = r.imap_ports["STARTTLS"]
    try:
        # Closed unanswered: no greeting for a connection that is not what it should be.
        assert first_line(port, b"a1 CAPABILITY\r\n") == b""
        assert first_line(port, b"PROXY TCP4 999.0.0.1 127.0.0.1 1 143\r\n") == b""
        assert first_line(port, b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11, 0, 3])) == b""
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            s.shutdown(socket.SHUT_WR)  # gone before any header
            assert s.recv(100) == b""
        c = proxied_login(r, v1("203.0.113.7"))
        assert c.noop()[0] == "OK"
        c.logout()
        # `status` from a trusted address checks the listener as a balancer does.
        listen = {
            "THREADS_RECEIVER_IMAP_LISTEN": f"127.0.0.1:{port}",
            "THREADS_RECEIVER_IMAP_IMPLICIT_LISTEN": f"127.0.0.1:{r.imap_ports['implicit TLS']}",
        }
        status = r.cli("status", "--listen", f"127.0.0.1:{r.port}", "--json", **listen)
        checks = json.loads(status.stdout)["checks"]
        assert checks["imap"]["ok"] and checks["imaps"]["ok"], checks
        log = r.log_path.read_text()
        assert log.count("trusted proxy 127.0.0.1 does not start with a valid PROXY header") == 3
        assert "trusted proxy 127.0.0.1 closed the connection before its PROXY header" in log
    finally:
        r.stop()


def test_a_proxy_header_from_elsewhere_is_not_believed(tmp_path, db_url):
    r = imap_receiver(tmp_path / "rx", db_url, extra='proxy_trusted = ["10.0.0.0/8"]\n')
    start_imap(r)
    try:
        with socket.create_connection(("127.0.0.1", r.imap_ports["STARTTLS"]), timeout=30) as s:
            f = s.makefile("rb")
            assert f.readline().startswith(b"* OK")
            s.sendall(v1("203.0.113.7"))
            assert f.readline().startswith(b"PROXY BAD")
            s.sendall(b"a1 STARTTLS\r\n")
            assert f.readline().startswith(b"a1 OK")
            t = client_context().wrap_socket(s, server_hostname="localhost")
            tf = t.makefile("rb")
            t.sendall(b'a2 LOGIN "%s" "%s"\r\n' % (r.username.encode(), r.password.encode()))
            assert re.match(rb"a2 OK", _tagged(tf, b"a2"))
            raw = message(1)
            t.sendall(b"a3 APPEND INBOX {%d+}\r\n%s\r\n" % (len(raw), raw))
            assert _tagged(tf, b"a3").startswith(b"a3 OK")
            t.close()
        [d] = deliveries(db_url)
        assert d["peer"].startswith("127.0.0.1:")
    finally:
        r.stop()


def _tagged(f, tag: bytes) -> bytes:
    while not (line := f.readline()).startswith(tag + b" "):
        assert line, "closed"
    return line


def _raw_message(n: int, size: int) -> bytes:
    """A message of exactly `size` bytes, in 78-octet lines."""
    head = message(n, body=b"")
    lines, rest = divmod(size - len(head), 78)
    return head + (b"x" * 76 + b"\r\n") * lines + b"y" * rest


BUDGET = 300_000


def _budget(r) -> tuple[float, float]:
    """The budget's bytes held now and its peak, from the daemon's metrics."""
    with urllib.request.urlopen(r.metrics + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return (
        sample(text, "receiver_inflight_budget_bytes"),
        sample(text, "receiver_inflight_budget_peak_bytes"),
    )


@pytest.fixture
def small_budget(tmp_path, db_url):
    r = imap_receiver(
        tmp_path / "rx",
        db_url,
        extra=f'[smtp]\nmax_inflight_bytes = {BUDGET}\n[metrics]\nlisten = "127.0.0.1:0"\n',
    )
    start_imap(r)
    r.metrics = metrics_url(r.proc)
    yield r
    print("--- daemon log ---\n" + r.stop()[1][-4000:])


def test_a_literal_that_does_not_fit_the_budget_is_a_clean_no(small_budget, db_url):
    r = small_budget
    big, small = _raw_message(1, 250_000), _raw_message(2, 100_000)
    assert len(big) == 250_000 and len(small) == 100_000
    # A holds 250,000 bytes of the budget: taken before its continuation was sent.
    a = implicit(r)
    tag_a = a._new_tag()
    a.send(tag_a + b" APPEND INBOX {%d}\r\n" % len(big))
    assert a.readline().startswith(b"+")
    a.send(big[:1000])
    # B's synchronising literal does not fit: NO instead of the continuation.
    b = implicit(r)
    tag_b = b._new_tag()
    b.send(tag_b + b" APPEND INBOX {%d}\r\n" % len(small))
    assert b.readline().startswith(tag_b + b" NO [UNAVAILABLE]")
    # C's LITERAL+ comes anyway: read and dropped, then the same NO; the session goes on.
    c = implicit(r)
    tag_c = c._new_tag()
    c.send(tag_c + b" APPEND INBOX {%d+}\r\n" % len(small) + small + b"\r\n")
    assert c.readline().startswith(tag_c + b" NO [UNAVAILABLE]")
    assert c.noop()[0] == "OK"
    assert _budget(r) == (250_000, 250_000)
    # MULTIAPPEND whose second message does not fit: neither is appended, and the first
    # one's bytes leave the budget with the NO.
    first = _raw_message(3, 10_000)
    tag_c = c._new_tag()
    c.send(
        tag_c
        + b" APPEND INBOX {%d+}\r\n%s {%d+}\r\n%s\r\n" % (len(first), first, len(small), small)
    )
    assert c.readline().startswith(tag_c + b" NO [UNAVAILABLE]")
    # The command's bytes left the budget before its reply was written.
    assert _budget(r) == (250_000, 260_000)
    # A finishes; B's retry then fits.
    a.send(big[1000:] + b"\r\n")
    assert a.readline().startswith(tag_a + b" OK [APPENDUID")
    assert b.append("INBOX", None, None, small)[0] == "OK"
    assert sorted(len(raw) for raw in stored_raws(db_url).values()) == [100_000, 250_000]
    for conn in (a, b, c):
        conn.logout()
    assert _budget(r) == (0, 260_000)


def test_many_concurrent_appends_stay_within_the_budget(small_budget, db_url):
    r = small_budget
    outcomes: list[bytes] = []
    failures: list[BaseException] = []

    def push(worker: int) -> None:
        try:
            c = implicit(r)
            for i in range(3):
                raw = _raw_message(worker * 10 + i, 80_000)
                if worker % 2:  # LITERAL+, as mbsync sends it
                    tag = c._new_tag()
                    c.send(tag + b" APPEND INBOX {%d+}\r\n" % len(raw) + raw + b"\r\n")
                    line = _tagged(c.file, tag)
                    outcomes.append(line[len(tag) + 1 :])
                else:
                    typ, data = _imaplib_append(c, raw)
                    outcomes.append(typ.encode() + b" " + data)
            c.logout()
        except BaseException as e:  # reported below, with the outcomes
            failures.append(e)

    threads = [threading.Thread(target=push, args=(w,)) for w in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert len(outcomes) == 36
    ok = [o for o in outcomes if o.startswith(b"OK [APPENDUID")]
    refused = [o for o in outcomes if o.startswith(b"NO [UNAVAILABLE]")]
    assert len(ok) + len(refused) == 36, outcomes
    assert len(deliveries(db_url)) == len(ok)
    held, peak = _budget(r)
    assert held == 0 and 0 < peak <= BUDGET


def _imaplib_append(c: imaplib.IMAP4, raw: bytes) -> tuple[str, bytes]:
    """imaplib's APPEND, with a synchronising literal (imaplib returns a NO, raises a BAD)."""
    typ, data = c.append("INBOX", None, None, raw)
    return typ, data[0]


def test_a_commands_literals_leave_the_budget_before_its_reply():
    # pymap writes the reply that do_command returns (tests/test_contracts_imap.py): a
    # client that reads NO [UNAVAILABLE] (or OK) and tries again at once must find the
    # bytes its command held free, not still held until pymap's do_cleanup.
    async def answer(cmd: Command) -> tuple[bytes, int]:
        budget = ByteBudget(BUDGET)
        settings = Settings(
            config.load(None, {}), "mx.example", ssl.create_default_context(), implicit_tls=False
        )
        reader = BoundedReader(asyncio.StreamReader(), None, settings, budget)
        assert reader.reserve(BUDGET // 2)
        reply = await State(None, settings, reader).do_command(cmd)
        return bytes(reply), budget.used

    refused = InvalidCommand(Params(tag=b"a1"), NotParseable(memoryview(b""), OVER_BUDGET))
    reply, held = asyncio.run(answer(refused))
    assert reply.startswith(b"a1 NO [UNAVAILABLE]") and held == 0
    reply, held = asyncio.run(answer(NoOpCommand(b"a2")))
    assert reply.startswith(b"a2 OK") and held == 0
