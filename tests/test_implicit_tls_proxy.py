"""A balancer with TLS passthrough (HAProxy `send-proxy`, nginx `proxy_protocol on`) in
front of the implicit-TLS listeners, SMTP's tls.implicit_listen and IMAP's
implicit_listen: its PROXY header comes in clear, then the client's TLS.

The balancer is 127.0.0.2, the only trusted proxy; a client on 127.0.0.1 is a direct one
on the same listener."""

from __future__ import annotations

import re
import socket

import pytest

from tests.helpers import proxy_v2
from tests.imap_support import ProxiedImplicit, imap_receiver, implicit, start_imap
from tests.rawsmtp import Raw, deliveries, message, stored_raws, transaction, wait_until

BALANCER = "127.0.0.2"


def v1(src: str, sport: int, dport: int) -> bytes:
    return b"PROXY TCP4 %s 127.0.0.1 %d %d\r\n" % (src.encode(), sport, dport)


def headers(dport: int) -> list:
    return [
        pytest.param(v1("203.0.113.7", 40000, dport), ("203.0.113.7", 40000), id="v1"),
        pytest.param(proxy_v2("203.0.113.8", 40001, dport), ("203.0.113.8", 40001), id="v2"),
    ]


# What each refusal sends after connecting: a malformed header, the TLS ClientHello with
# no header in front (Raw's TLS), and nothing at all.
REFUSED = {
    "PROXYv1 address malformed": b"PROXY TCP4 999.0.0.1 127.0.0.1 1 465\r\n",
    "PROXY unrecognized signature": None,
}


def start_smtp(r) -> int:
    """The receiver with its implicit-TLS listener, behind BALANCER; that port."""
    r.start(
        THREADS_RECEIVER_TLS_IMPLICIT_LISTEN="127.0.0.1:0",
        THREADS_RECEIVER_SMTP_PROXY_TRUSTED=f"{BALANCER}/32",
    )
    return int(re.search(rb"implicit TLS on port (\d+)", b"".join(r.announced)).group(1))


def gone_before_header(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), source_address=(BALANCER, 0)) as s:
        s.shutdown(socket.SHUT_WR)
        assert s.recv(100) == b""


@pytest.mark.parametrize("header, client", headers(465))
def test_smtp_implicit_tls_behind_a_proxy(tls_receiver, header, client):
    port = start_smtp(tls_receiver)
    c = Raw(port, tls=True, header=header, source=BALANCER)
    assert c.greeting[0] == 220
    code, text = c.cmd("EHLO client.example.org")
    assert code == 250 and "AUTH" in text and "STARTTLS" not in text
    assert transaction(c, tls_receiver.address, message(1), helo=False)[0] == 250
    assert c.cmd("QUIT")[0] == 221
    c.close()
    # A direct client of the same listener: TLS from the first byte, as before.
    c = Raw(port, tls=True)
    assert transaction(c, tls_receiver.address, message(2))[0] == 250
    c.close()
    proxied, direct = deliveries(tls_receiver.db_url)
    ip, sport = client
    assert proxied["peer"] == f"{ip}:{sport}" and proxied["tls"]["cipher"]
    assert direct["peer"].startswith("127.0.0.1:") and direct["tls"]["cipher"]
    assert sorted(stored_raws(tls_receiver.db_url).values()) == [message(1), message(2)]
    # The session's own log line names the client too.
    assert wait_until(
        lambda: re.search(
            rf"session closed .*peer={ip}:{sport} .*tls=True", tls_receiver.log_path.read_text()
        )
    )


def test_smtp_implicit_tls_refuses_a_trusted_peer_without_a_valid_header(tls_receiver):
    port = start_smtp(tls_receiver)
    for header in REFUSED.values():
        with pytest.raises(OSError):
            Raw(port, tls=True, header=header or b"", source=BALANCER)
    gone_before_header(port)
    log = tls_receiver.log_path.read_text()
    assert log.count("trusted proxy 127.0.0.2 does not start with a valid PROXY header") == 2
    assert all(reason in log for reason in REFUSED)
    assert "trusted proxy 127.0.0.2 closed the connection before its PROXY header" in log
    # Nothing was stored, and the listener still serves.
    c = Raw(port, tls=True, header=v1("203.0.113.7", 40000, 465), source=BALANCER)
    assert transaction(c, tls_receiver.address, message(1))[0] == 250
    c.close()
    assert [d["peer"] for d in deliveries(tls_receiver.db_url)] == ["203.0.113.7:40000"]


@pytest.mark.parametrize("header, client", headers(993))
def test_imap_implicit_tls_behind_a_proxy(tmp_path, db_url, header, client):
    r = imap_receiver(tmp_path / "rx", db_url, extra=f'proxy_trusted = ["{BALANCER}/32"]\n')
    start_imap(r)
    port = r.imap_ports["implicit TLS"]
    try:
        c = ProxiedImplicit(port, header, BALANCER)
        c.login(r.username, r.password)
        typ, data = c.append("INBOX", None, None, message(1))
        assert typ == "OK" and b"APPENDUID" in data[0]
        c.logout()
        # A direct client of the same listener: TLS from the first byte, as before.
        c = implicit(r)
        assert c.append("INBOX", None, None, message(2))[0] == "OK"
        c.logout()
        proxied, direct = deliveries(db_url)
        assert proxied["peer"] == f"{client[0]}:{client[1]}" and proxied["tls"]
        assert direct["peer"].startswith("127.0.0.1:")
        assert sorted(stored_raws(db_url).values()) == [message(1), message(2)]
        assert f"logged in for alice@corp.example from {client[0]}" in r.log_path.read_text()
    finally:
        r.stop()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_imap_implicit_tls_refuses_a_trusted_peer_without_a_valid_header(tmp_path, db_url):
    r = imap_receiver(tmp_path / "rx", db_url, extra=f'proxy_trusted = ["{BALANCER}/32"]\n')
    start_imap(r)
    port = r.imap_ports["implicit TLS"]
    try:
        for header in REFUSED.values():
            with pytest.raises(OSError):
                ProxiedImplicit(port, header or b"", BALANCER)
        gone_before_header(port)
        log = r.log_path.read_text()
        assert log.count("trusted proxy 127.0.0.2 does not start with a valid PROXY header") == 2
        assert "trusted proxy 127.0.0.2 closed the connection before its PROXY header" in log
        c = ProxiedImplicit(port, v1("203.0.113.7", 40000, 993), BALANCER)
        c.login(r.username, r.password)
        assert c.append("INBOX", None, None, message(1))[0] == "OK"
        c.logout()
        assert [d["peer"] for d in deliveries(db_url)] == ["203.0.113.7:40000"]
    finally:
        r.stop()
