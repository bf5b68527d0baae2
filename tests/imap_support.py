"""A receiver with its IMAP listeners on, and imaplib clients logged in to it."""

from __future__ import annotations

import imaplib
import re
import shutil
import socket
import ssl
from pathlib import Path

from tests.helpers import Receiver, tls_after_header

TLS = Path(__file__).parent / "tls"
# For 127.0.0.1 and localhost: mbsync checks the host name it connects to.
CERT, KEY = TLS / "loopback-cert.pem", TLS / "loopback-key.pem"
EMAIL = "alice@corp.example"


def imap_receiver(
    directory: Path, db_url: str, extra: str = "", beside: Receiver | None = None
) -> Receiver:
    """An initialised receiver with a certificate and one mailbox with a credential
    (`.address`, `.username`, `.password`); `start_imap` runs it. `beside`: a second
    daemon on that receiver's database, with its mailbox."""
    r = Receiver(
        directory,
        db_url,
        extra_config=('[imap]\nlisten = "127.0.0.1:0"\nimplicit_listen = "127.0.0.1:0"\n' + extra),
    )
    shutil.copy(CERT, directory / "cert.pem")
    shutil.copy(KEY, directory / "key.pem")
    r.extra_env.update(
        {"THREADS_RECEIVER_TLS_CERT_FILE": "cert.pem", "THREADS_RECEIVER_TLS_KEY_FILE": "key.pem"}
    )
    if beside is not None:
        r.address, r.username, r.password = beside.address, beside.username, beside.password
        return r
    r.address = r.add_mailbox(EMAIL)
    creds = r.cli_json("mailbox", "credentials", EMAIL)
    r.username, r.password = creds["username"], creds["password"]
    return r


def start_imap(r: Receiver) -> dict[str, int]:
    """Start the daemon; the IMAP ports by kind ("STARTTLS", "implicit TLS")."""
    r.start()
    ports = {}
    for line in r.announced:
        m = re.search(rb"IMAP \(([\w ]+)\) on port (\d+)", line)
        if m:
            ports[m.group(1).decode()] = int(m.group(2))
    r.imap_ports = ports
    return ports


def client_context() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(CERT))


def starttls(r: Receiver, login: bool = True) -> imaplib.IMAP4:
    c = imaplib.IMAP4("127.0.0.1", r.imap_ports["STARTTLS"], timeout=30)
    c.starttls(client_context())
    if login:
        c.login(r.username, r.password)
    return c


def implicit(r: Receiver, login: bool = True) -> imaplib.IMAP4_SSL:
    c = imaplib.IMAP4_SSL(
        "127.0.0.1", r.imap_ports["implicit TLS"], ssl_context=client_context(), timeout=30
    )
    if login:
        c.login(r.username, r.password)
    return c


class Proxied(imaplib.IMAP4):
    """imaplib behind a balancer on the STARTTLS port: the PROXY header goes first.
    `source`: the loopback address it connects from."""

    def __init__(self, port: int, header: bytes, source: str = "127.0.0.1"):
        self.header = header
        self.source = source
        super().__init__("127.0.0.1", port, timeout=30)

    def _create_socket(self, timeout):
        sock = socket.create_connection(
            (self.host, self.port), timeout, source_address=(self.source, 0)
        )
        sock.sendall(self.header)
        return sock


class ProxiedImplicit(imaplib.IMAP4_SSL):
    """imaplib behind a balancer with TLS passthrough on the implicit-TLS port: the PROXY
    header in clear, then TLS. `source`: the loopback address it connects from."""

    def __init__(self, port: int, header: bytes, source: str = "127.0.0.1"):
        self.header = header
        self.source = source
        super().__init__("127.0.0.1", port, ssl_context=client_context(), timeout=30)

    def _create_socket(self, timeout):
        sock = socket.create_connection(
            (self.host, self.port), timeout, source_address=(self.source, 0)
        )
        return tls_after_header(sock, self.header, self.ssl_context, self.host)
