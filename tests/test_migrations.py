"""Schema migrations: a database made by schema version 1, with data in it, upgraded."""

from __future__ import annotations

import hashlib

from receiver.parse import parse_message
from receiver.store import migrations
from receiver.store.db import open_database, schema_version
from receiver.delivery import DeliveryRequest
from receiver.store.deliveries import compress
from tests.threading_support import store_delivery
from receiver.store.mailboxes import token_hash
from receiver.store.models import SCHEMA_VERSION, MailboxAddress, SchemaInfo
from receiver.verify.verdict import UNVERIFIABLE, Verdict
from tests.helpers import DEFAULT_RULE, LOCK_TIMEOUT, Receiver
from tests.imap_support import imap_receiver, implicit, start_imap
from tests.rawsmtp import message, query
from tests.schema_v1 import MailboxV1, v1_models

CONFIRMATION = {"provider": "gmail", "code": "123456", "link": None}
RAW = (
    b"From: Bob <bob@example.org>\r\nTo: alice@corp.example\r\nSubject: old\r\n"
    b"Message-ID: <old1@example.org>\r\nDate: Tue, 01 Jan 2019 10:00:00 +0000\r\n\r\nkept\r\n"
)


def make_v1_database(url: str) -> None:
    db = open_database(url, LOCK_TIMEOUT)
    with db.connection_context():
        for model in v1_models():
            model.create_table()
        SchemaInfo.create(version=1)
        mb = MailboxV1.create(email="alice@corp.example", keep_days=30)
        MailboxAddress.create(mailbox=mb.id, local_part="alice-tok", token_hash=token_hash("tok"))
        with db.atomic():
            store_delivery(
                DeliveryRequest(
                    mailbox_id=mb.id,
                    sha256=hashlib.sha256(RAW).hexdigest(),
                    size=len(RAW),
                    compressed=compress(RAW),
                    record=parse_message(RAW),
                    verdict=Verdict(UNVERIFIABLE, confirmation=CONFIRMATION),
                ),
                DEFAULT_RULE,
            )
        # Before version 3 a confirmation lived only in the verification detail's JSON.
        db.execute_sql("ALTER TABLE delivery DROP COLUMN confirmation")
        # Before version 6 message_id had an index of its own.
        db.execute_sql('CREATE INDEX "message_message_id" ON "message" ("message_id")')
    db.close()


def message_indexes(url: str) -> set[str]:
    db = open_database(url, LOCK_TIMEOUT)
    with db.connection_context():
        return {ix.name for ix in db.get_indexes("message")}


def test_every_version_has_a_migration():
    assert sorted(migrations.MIGRATIONS) == list(range(2, SCHEMA_VERSION + 1))


def test_upgrade_from_v1_keeps_data(tmp_path, db_url):
    make_v1_database(db_url)
    rx = Receiver(tmp_path / "rx", db_url)  # init leaves an existing schema alone

    refused = rx.cli("messages", "list", check=False)
    assert refused.returncode == 1
    assert (
        b"schema is version 1" in refused.stderr
        and b"threads-receiver db upgrade" in refused.stderr
    )
    assert rx.cli_json("db", "version")["pending"] == list(range(2, SCHEMA_VERSION + 1))

    out = rx.cli("db", "upgrade").stdout
    assert f"version {SCHEMA_VERSION}".encode() in out
    assert schema_version(open_database(db_url, LOCK_TIMEOUT)) == SCHEMA_VERSION
    # Idempotent: a second run has nothing to do.
    assert b"up to date" in rx.cli("db", "upgrade").stdout

    listed = rx.cli_json("messages", "list")
    assert [m["message_id"] for m in listed] == ["old1@example.org"]
    assert rx.cli("messages", "raw", str(listed[0]["id"])).stdout == RAW
    # The new columns work, and v1 values survived.
    rx.cli("mailbox", "set", "alice@corp.example", "--quarantine-days", "5")
    shown = rx.cli_json("mailbox", "show", "alice@corp.example")
    assert shown["retention"]["quarantine_days"] == 5
    assert shown["retention"]["keep_days"] == 30
    # Version 3 moved the confirmation into a column of its own.
    assert [(c["provider"], c["code"]) for c in shown["confirmations"]] == [("gmail", "123456")]
    # Version 6 dropped message_id's own index; the unique one with the content hash stays.
    assert "message_message_id" not in message_indexes(db_url)
    assert "message_message_id_content_hash" in message_indexes(db_url)


def test_newer_schema_is_refused(tmp_path, db_url):
    rx = Receiver(tmp_path / "rx", db_url)
    db = open_database(db_url, LOCK_TIMEOUT)
    with db.connection_context():
        SchemaInfo.update(version=SCHEMA_VERSION + 1).execute()
    db.close()
    r = rx.cli("db", "upgrade", check=False)
    assert r.returncode == 1 and b"newer than this code" in r.stderr


def two_copies_in(tmp_path, db_url, folder: str) -> Receiver:
    """A receiver, stopped, with two copies appended to `folder` (made if not INBOX)."""
    rx = imap_receiver(tmp_path / "rx", db_url)
    start_imap(rx)
    c = implicit(rx)
    if folder != "INBOX":
        c.create(folder)
    for n in (1, 2):
        c.append(folder, None, None, message(n))
    c.logout()
    rx.stop()
    return rx


def test_upgrade_from_v4_keeps_folders_and_old_copies_are_not_recent(tmp_path, db_url):
    rx = two_copies_in(tmp_path, db_url, '"Sent Items"')
    # Back to version 4: folders without the columns version 5 added.
    db = open_database(db_url, LOCK_TIMEOUT)
    with db.connection_context():
        for column in ("special_use", "recent_uid"):
            db.execute_sql(f"ALTER TABLE folder DROP COLUMN {column}")
        SchemaInfo.update(version=4).execute()
    db.close()

    assert rx.cli_json("db", "version")["pending"] == list(range(5, SCHEMA_VERSION + 1))
    rx.cli("db", "upgrade")
    assert query(db_url, "SELECT name, special_use, recent_uid FROM folder") == [
        ("Sent Items", None, 2)
    ]
    start_imap(rx)
    try:
        c = implicit(rx)
        # The copies appended before the upgrade are not news to anyone; new ones are.
        assert c.select('"Sent Items"')[1] == [b"2"]
        assert c.untagged_responses["RECENT"] == [b"0"]
        c.close()
        c.append('"Sent Items"', None, None, message(3))
        c2 = implicit(rx)
        c2.select('"Sent Items"')
        assert c2.untagged_responses["RECENT"] == [b"1"]
        assert b'(\\HasNoChildren \\Sent) "/" "Sent Items"' in c2.list()[1]
        c.logout()
        c2.logout()
    finally:
        rx.stop()


def test_upgrade_from_v6_keeps_folder_entries_and_gives_them_modseqs(tmp_path, db_url):
    rx = two_copies_in(tmp_path, db_url, "INBOX")
    # Back to version 6: folders and entries without the modseq columns.
    db = open_database(db_url, LOCK_TIMEOUT)
    with db.connection_context():
        db.execute_sql('DROP INDEX "folder_entry_folder_id_modseq"')
        for table, column in (
            ("folder", "highestmodseq"),
            ("folder", "deletedmodseq"),
            ("folder_entry", "modseq"),
        ):
            db.execute_sql(f'ALTER TABLE "{table}" DROP COLUMN "{column}"')
        SchemaInfo.update(version=6).execute()
    db.close()

    rx.cli("db", "upgrade")
    assert query(db_url, "SELECT uid, modseq FROM folder_entry ORDER BY uid") == [(1, 0), (2, 0)]
    start_imap(rx)
    try:
        watcher, c = implicit(rx), implicit(rx)
        assert watcher.select("INBOX")[1] == [b"2"]
        c.append("INBOX", None, None, message(3))
        assert watcher.noop()[0] == "OK" and watcher.untagged_responses["EXISTS"][-1] == b"3"
        watcher.logout()
        c.logout()
    finally:
        rx.stop()
