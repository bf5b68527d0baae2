"""A migration as a bulk-copy service runs it: Debian's offlineimap3 copies IMAP to IMAP
from a Dovecot source server into the receiver, is killed half-way and resumed. Every
message ends up in the receiver once, byte-identical to Dovecot's copy, and threaded as an
SMTP delivery of the same mail threads it."""

from __future__ import annotations

import imaplib
import signal
import smtplib
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from receiver.instructions import guide
from receiver.store.db import open_database
from tests.dovecot_support import PASSWORD, USER, Dovecot
from tests.helpers import LOCK_TIMEOUT, Receiver, require_programs
from tests.imap_support import CERT, imap_receiver, implicit, start_imap
from tests.rawsmtp import query
from tests.threading_support import fedora_messages, partition

# The month's first messages: a few dozen, several threads among them, in two folders.
FOLDERS = {"INBOX": slice(0, 30), "Archive 2010": slice(30, 48)}
# offlineimap is killed once this many messages are in the receiver.
KILL_AT = 16
# The list's footer breaks many DKIM signatures: held in quarantine these copies would be in
# no thread; here (as over SMTP) they are accepted to compare the threads.
ACCEPT_ALTERED = '[policy]\naltered = "accept"\n'


@pytest.fixture
def smtp_db_url(request, tmp_path, db_url):
    """A second database on the same backend as `db_url`. The receiver keeps one message
    row per message whatever the mailbox, so the SMTP copies need a store of their own
    for their threads to be computed apart from the IMAP copies'."""
    if db_url.startswith("sqlite"):
        return f"sqlite:///{tmp_path / 'smtp.db'}"
    return request.getfixturevalue("pg_databases").create()


def offlineimap_config(tmp_path: Path, rx: Receiver, source: Dovecot) -> str:
    """The guide's ~/.offlineimaprc (`mailbox instructions --provider offlineimap`), made
    local: the source is the test's Dovecot, passwords inline, the test CA trusted."""
    text = guide("offlineimap", rx.username, rx.address, "localhost", rx.imap_ports["implicit TLS"])
    block = textwrap.dedent(text.split("IMAP to IMAP:\n\n", 1)[1].split("\n\nthen", 1)[0])
    old, receiver = block.split("[Repository receiver]\n")
    old = (
        old.replace("[general]\n", f"[general]\nmetadata = {tmp_path / 'offlineimap'}\n")
        .replace("OLD-IMAP-SERVER", f"127.0.0.1\nremoteport = {source.port}")
        .replace(f"remoteuser = {rx.username}", f"remoteuser = {USER}\nremotepass = {PASSWORD}")
        .replace("sslcacertfile = OS-DEFAULT", "ssl = no")
    )
    receiver = receiver.replace("OS-DEFAULT", str(CERT)) + f"\nremotepass = {rx.password}\n"
    return old + "[Repository receiver]\n" + receiver


def offlineimap(config: Path, log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(
            ["offlineimap", "-c", str(config), "-o", "-u", "basic"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def stored(db_url: str) -> int:
    return query(db_url, "SELECT COUNT(*) FROM delivery")[0][0]


def interrupt(proc: subprocess.Popen, db_url: str, log: Path) -> int:
    """SIGKILL `proc` as soon as KILL_AT messages are stored; how many were stored then."""
    deadline = time.monotonic() + 300
    while stored(db_url) < KILL_AT:
        assert proc.poll() is None, "offlineimap ended before the kill:\n" + log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return stored(db_url)


def bodies(c: imaplib.IMAP4, folder: str) -> list[bytes]:
    """BODY[] of every message in `folder`, sorted (UIDs differ between the servers)."""
    typ, data = c.select(f'"{folder}"', readonly=True)
    assert typ == "OK", data
    typ, data = c.uid("FETCH", "1:*", "(BODY.PEEK[])")
    assert typ == "OK", data
    return sorted(part[1] for part in data if isinstance(part, tuple))


def test_offlineimap_migrates_from_dovecot_resumes_after_a_kill_and_threads_as_smtp(
    tmp_path, db_url, smtp_db_url, dns
):
    require_programs({"dovecot": "dovecot-imapd", "offlineimap": "offlineimap3"})
    raws = fedora_messages()[: max(s.stop for s in FOLDERS.values())]
    env = {"THREADS_RECEIVER_DNS_SERVERS": dns.address, "THREADS_RECEIVER_DNS_TIMEOUT": "0.5"}
    source = Dovecot({name: raws[part] for name, part in FOLDERS.items()})
    rx = imap_receiver(tmp_path / "rx", db_url, extra=ACCEPT_ALTERED)
    rx.extra_env.update(env)
    config, log = tmp_path / "offlineimaprc", tmp_path / "offlineimap.log"
    try:
        source.start()
        start_imap(rx)
        config.write_text(offlineimap_config(tmp_path, rx, source))

        at_kill = interrupt(offlineimap(config, log), db_url, log)
        assert KILL_AT <= at_kill < len(raws)
        resumed = offlineimap(config, log)
        assert resumed.wait(timeout=600) == 0, log.read_text()

        c = source.client()
        from_source = {name: bodies(c, name) for name in FOLDERS}
        c.logout()
        # Dovecot serves the Maildir's messages as they were put there.
        assert from_source == {name: sorted(raws[part]) for name, part in FOLDERS.items()}
        c = implicit(rx)
        # Byte-identical, each once per folder: offlineimap added no X-OfflineIMAP header,
        # as the receiver offers UIDPLUS, and did not append twice what the kill cut short.
        assert {name: bodies(c, name) for name in FOLDERS} == from_source
        c.logout()
        assert stored(db_url) == len(raws)
        assert query(db_url, "SELECT DISTINCT source FROM delivery") == [("imap",)]
    finally:
        print("--- offlineimap log ---\n" + (log.read_text()[-3000:] if log.exists() else ""))
        print("--- dovecot log ---\n" + source.stop()[-3000:])
        print("--- daemon log ---\n" + rx.stop()[1][-3000:])

    smtp = Receiver(tmp_path / "smtp", smtp_db_url, ACCEPT_ALTERED)
    try:
        rcpt = smtp.add_mailbox("alice@corp.example")
        with smtplib.SMTP("127.0.0.1", smtp.start(**env), timeout=120) as s:
            for raw in raws:
                s.sendmail("list@example.org", [rcpt], raw)
    finally:
        smtp.stop()
    over_imap = partition(open_database(db_url, LOCK_TIMEOUT))
    over_smtp = partition(open_database(smtp_db_url, LOCK_TIMEOUT))
    assert over_imap == over_smtp
    assert sum(len(t) for t in over_smtp) == len(raws) and max(map(len, over_smtp)) > 1
