"""Fixtures: every store-backed test runs on SQLite and on PostgreSQL.

TR_TEST_BACKENDS=sqlite (or postgresql) limits a local run to one backend.
"""

from __future__ import annotations

import os

import pytest

from tests.helpers import PgDatabases, Receiver
from tests.imap_support import imap_receiver, start_imap

BACKENDS = [
    b.strip()
    for b in os.environ.get("TR_TEST_BACKENDS", "sqlite,postgresql").split(",")
    if b.strip()
]


@pytest.fixture(scope="session")
def pg_databases():
    pg = PgDatabases()
    try:
        pg.check()
    except Exception as e:
        # CI requires PostgreSQL (.ci/run starts it); a laptop without one runs SQLite only.
        if os.environ.get("TR_REQUIRE_PG"):
            raise
        pytest.skip(f"PostgreSQL not reachable at {pg.dsn}: {e}")
    yield pg
    pg.drop_all()


@pytest.fixture(params=BACKENDS)
def db_url(request, tmp_path):
    """A fresh, empty database URL for this test."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'receiver.db'}"
    return request.getfixturevalue("pg_databases").create()


@pytest.fixture
def receiver(tmp_path, db_url):
    """An initialised receiver (config + schema); `receiver.start()` runs its daemon."""
    r = Receiver(tmp_path / "rx", db_url)
    yield r
    r.stop()
    # pytest shows this only for a failed test: the daemon's own account of it.
    log = getattr(r, "log_path", None)
    if log is not None and log.exists():
        print(f"--- daemon log ({log}) ---\n" + log.read_text(errors="replace")[-4000:])


@pytest.fixture
def rx(tmp_path, db_url):
    """A running receiver with its IMAP listeners on (tests.imap_support)."""
    r = imap_receiver(tmp_path / "rx", db_url)
    start_imap(r)
    yield r
    # pytest shows this only for a failed test: the daemon's own account of it.
    print("--- daemon log ---\n" + r.stop()[1][-4000:])


@pytest.fixture
def dns():
    """A test DNS server on 127.0.0.1 serving the test keys (tests.mailfixtures.DNS_RECORDS
    and the RFC 8463 keys); change `dns.records` to rotate, revoke or break keys."""
    from tests.dns_server import DnsServer
    from tests.mailfixtures import DNS_RECORDS, RFC8463_RECORDS

    server = DnsServer({**DNS_RECORDS, **RFC8463_RECORDS})
    yield server
    server.stop()


@pytest.fixture
def tls_receiver(tmp_path):
    """A SQLite receiver with a self-signed certificate, one mailbox (`.address`).

    The certificate is a fixture file (valid for 100 years): CI images need no openssl."""
    import shutil
    from pathlib import Path

    directory = tmp_path / "rx"
    r = Receiver(directory, f"sqlite:///{tmp_path / 'receiver.db'}")
    for name in ("cert.pem", "key.pem"):
        shutil.copy(Path(__file__).parent / "tls" / name, directory / name)
    r.extra_env.update(
        {"THREADS_RECEIVER_TLS_CERT_FILE": "cert.pem", "THREADS_RECEIVER_TLS_KEY_FILE": "key.pem"}
    )
    r.address = r.add_mailbox("alice@corp.example")
    yield r
    r.stop()
