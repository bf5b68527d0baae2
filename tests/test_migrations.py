"""Schema migrations: a database made by schema version 1, with data in it, upgraded."""

from __future__ import annotations

import hashlib

from receiver.parse import parse_message
from receiver.store import folders, migrations
from receiver.store.db import open_database, schema_version
from receiver.delivery import DeliveryRequest
from receiver.store.deliveries import compress
from tests.threading_support import store_delivery
from receiver.store.mailboxes import token_hash
from receiver.store.models import SCHEMA_VERSION, Mailbox, MailboxAddress, SchemaInfo
from receiver.verify.verdict import UNVERIFIABLE, Verdict
from tests.helpers import DEFAULT_RULE, LOCK_TIMEOUT, Receiver
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
    db.close()


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


def test_newer_schema_is_refused(tmp_path, db_url):
    rx = Receiver(tmp_path / "rx", db_url)
    db = open_database(db_url, LOCK_TIMEOUT)
    with db.connection_context():
        SchemaInfo.update(version=SCHEMA_VERSION + 1).execute()
    db.close()
    r = rx.cli("db", "upgrade", check=False)
    assert r.returncode == 1 and b"newer than this code" in r.stderr


def test_upgrade_from_v4_gives_folders_modseqs(tmp_path, db_url):
    Receiver(tmp_path / "rx", db_url)
    db = open_database(db_url, LOCK_TIMEOUT)
    with db.connection_context():
        db.execute_sql('DROP INDEX "folder_entry_folder_id_modseq"')
        for table, column in (
            ("folder", "highestmodseq"),
            ("folder", "deletedmodseq"),
            ("folder_entry", "modseq"),
        ):
            db.execute_sql(f'ALTER TABLE "{table}" DROP COLUMN "{column}"')
        SchemaInfo.update(version=4).execute()
        mb = Mailbox.create(email="alice@corp.example")
        db.execute_sql(
            "INSERT INTO folder (mailbox_id, name, uidvalidity, uidnext, subscribed, created_at) "
            f"VALUES ({mb.id}, 'INBOX', 7, 1, true, '2026-01-01 00:00:00')"
        )
    assert migrations.upgrade(db) == [5]
    with db.connection_context():
        [inbox] = folders.names(mb.id)
        info = folders.get(mb.id, inbox)
        assert folders.changes(info.id, None) == folders.Changes(0, True, [], [])
        index = [i.name for i in db.get_indexes("folder_entry")]
        assert "folder_entry_folder_id_modseq" in index
    db.close()
