"""Real IMAP clients: Debian's isync (mbsync) pushes a Maildir of real mail into the
receiver; every copy is stored byte-exact and threaded as the archive threads it."""

from __future__ import annotations

import mailbox
import re
import shutil
import subprocess
import textwrap


from receiver.instructions import guide
from receiver.parse import parse_message
from receiver.store.db import open_database
from tests.helpers import LOCK_TIMEOUT, require_programs
from tests.imap_support import CERT, imap_receiver, start_imap
from tests.rawsmtp import message, query, stored_raws
from tests.threading_support import fedora_archive_threads, fedora_messages, partition

MBSYNC = shutil.which("mbsync")
# The month's first messages go to INBOX, the rest to a folder the client creates.
SPLIT = 200


def without_tuid(raw: bytes) -> bytes:
    """`raw` less the one X-TUID line mbsync put at the end of its header block."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    kept = re.sub(rb"\r\nX-TUID: [A-Za-z0-9+/]{12}$", b"", head)
    assert kept != head, head[-200:]
    return kept + sep + body


def mbsync_config(tmp_path, rx) -> str:
    """The guide's ~/.mbsyncrc (`mailbox instructions --provider mbsync`), made local."""
    text = guide("mbsync", rx.username, rx.address, "localhost", rx.imap_ports["implicit TLS"])
    block = textwrap.dedent(text.split("to the receiver:\n\n", 1)[1].split("\n\nthen", 1)[0])
    return (
        block.replace("~/Mail", str(tmp_path / "mail"))
        .replace('PassCmd "cat ~/.receiver-password"', f"Pass {rx.password}")
        .replace("SSLType IMAPS", f"SSLType IMAPS\nCertificateFile {CERT}")
    )


def run_mbsync(config) -> subprocess.CompletedProcess:
    return subprocess.run(
        [MBSYNC, "-c", str(config), "-a"], capture_output=True, timeout=600, check=False
    )


def test_mbsync_pushes_a_maildir_as_sent_threaded_and_a_rerun_appends_nothing(
    tmp_path, db_url, dns
):
    require_programs({"mbsync": "isync"})
    raws = fedora_messages()
    (tmp_path / "mail").mkdir()
    inbox = mailbox.Maildir(tmp_path / "mail" / "INBOX")
    archive = mailbox.Maildir(tmp_path / "mail" / "Archive 2010")
    for i, raw in enumerate(raws):
        (inbox if i < SPLIT else archive).add(raw)
    # The list's footer breaks many DKIM signatures: held in quarantine these copies would
    # be in no thread, here (as over SMTP) they are accepted to compare the threads.
    rx = imap_receiver(tmp_path / "rx", db_url, extra='[policy]\naltered = "accept"\n')
    rx.extra_env.update(
        {"THREADS_RECEIVER_DNS_SERVERS": dns.address, "THREADS_RECEIVER_DNS_TIMEOUT": "0.5"}
    )
    start_imap(rx)
    config = tmp_path / "mbsyncrc"
    config.write_text(mbsync_config(tmp_path, rx))
    try:
        first = run_mbsync(config)
        assert first.returncode == 0, first.stderr
        stored = stored_raws(db_url)
        # mbsync adds its own X-TUID line (its crash-recovery marker) to every message it
        # pushes, UIDPLUS or not; the receiver keeps what was sent, that line included.
        assert sorted(without_tuid(raw) for raw in stored.values()) == sorted(raws)
        folders = dict(
            query(
                db_url,
                "SELECT f.name, COUNT(*) FROM folder_entry e "
                "JOIN folder f ON f.id = e.folder_id GROUP BY f.name",
            )
        )
        assert folders == {"INBOX": SPLIT, "Archive 2010": len(raws) - SPLIT}
        assert {r[0] for r in query(db_url, "SELECT DISTINCT source FROM delivery")} == {"imap"}

        again = run_mbsync(config)
        assert again.returncode == 0, again.stderr
        assert query(db_url, "SELECT COUNT(*) FROM folder_entry")[0][0] == len(raws)
        assert len(stored_raws(db_url)) == len(stored)
    finally:
        print("--- daemon log ---\n" + rx.stop()[1][-3000:])

    # Threaded exactly as the archive (and an SMTP delivery: tests/test_threads_fedora.py).
    records = [parse_message(raw) for raw in raws]
    number = {(rec.message_id, rec.content_hash): i for i, rec in enumerate(records)}
    ours = {frozenset(number[k] for k in g) for g in partition(open_database(db_url, LOCK_TIMEOUT))}
    assert ours == {frozenset(t) for t in fedora_archive_threads()}


def test_mbsync_told_no_to_a_folder_name_in_raw_utf8_creates_nothing(tmp_path, rx, db_url):
    # isync 1.4 (Debian 12) sends a Maildir folder's name as it is on disk, in UTF-8,
    # not in modified UTF-7: it must fail at once, not make a folder it cannot open.
    require_programs({"mbsync": "isync"})
    for folder, n in (("INBOX", 1), ("Archiv/2010/Jänner", 2)):
        (tmp_path / "mail" / folder).parent.mkdir(parents=True, exist_ok=True)
        mailbox.Maildir(tmp_path / "mail" / folder).add(message(n))
    config = tmp_path / "mbsyncrc"
    config.write_text(mbsync_config(tmp_path, rx))
    run = run_mbsync(config)
    assert run.returncode != 0
    assert "Mailbox name is not valid mUTF-7" in run.stderr.decode(), run.stderr
    names = {n for (n,) in query(db_url, "SELECT name FROM folder")}
    assert all(name.isascii() for name in names), names
    assert query(db_url, "SELECT COUNT(*) FROM folder_entry")[0][0] <= 1
