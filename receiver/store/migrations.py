"""Versioned schema migrations (peewee's playhouse.migrate), SQLite and PostgreSQL alike.

`MIGRATIONS[n]` takes a database at version n-1 to version n. `upgrade` applies the missing
steps in order, each in its own transaction together with the new version number, so an
interrupted upgrade leaves the database at a whole version and can simply be run again.
On PostgreSQL an advisory lock keeps two receivers from upgrading one database at once.
"""

from __future__ import annotations

from collections.abc import Callable

import json

from peewee import Database, DateTimeField, IntegerField, TextField
from playhouse.migrate import PostgresqlMigrator, SchemaMigrator, SqliteMigrator, migrate

from receiver.store.db import StoreError, is_postgres, schema_version
from receiver.store.models import SCHEMA_VERSION, Delivery, Folder, FolderEntry, SchemaInfo

PG_MIGRATION_LOCK = 0x7468726561647301


def _to_2(m: SchemaMigrator) -> None:
    """Quarantine expiry per mailbox, and when each mailbox was last pruned."""
    migrate(
        m.add_column("mailbox", "quarantine_days", IntegerField(null=True)),
        m.add_column("mailbox", "pruned_at", DateTimeField(null=True)),
    )


def _to_3(m: SchemaMigrator) -> None:
    """Forwarding confirmations in a column of their own (they were looked for with LIKE in
    the verification detail's JSON text)."""
    migrate(m.add_column("delivery", "confirmation", TextField(null=True)))
    # Once, at the upgrade: the only place the JSON text is still searched.
    rows = (
        Delivery.select(Delivery.id, Delivery.verify_detail)
        .where(Delivery.verify_detail.contains('"confirmation"'))
        .tuples()
    )
    for pk, detail in list(rows):
        found = json.loads(detail).get("confirmation")
        if found:
            Delivery.update(confirmation=json.dumps(found)).where(Delivery.id == pk).execute()


def _to_4(m: SchemaMigrator) -> None:
    """IMAP folders and the deliveries seen in each (receiver.imap)."""
    m.database.create_tables([Folder, FolderEntry], safe=True)


def _to_5(m: SchemaMigrator) -> None:
    """A folder's special use (CREATE-SPECIAL-USE) and its \\Recent mark."""
    # Step 4 creates the folder table from today's model: coming from before 4, it has
    # these columns already.
    existing = {c.name for c in m.database.get_columns("folder")}
    if "special_use" not in existing:
        migrate(m.add_column("folder", "special_use", TextField(null=True)))
    if "recent_uid" not in existing:
        # Not peewee's add_column: on SQLite it makes a NOT NULL column by building the
        # table anew, and dropping the old folder table would cascade to its entries.
        m.database.execute_sql("ALTER TABLE folder ADD COLUMN recent_uid BIGINT NOT NULL DEFAULT 0")
    # What was appended before counts as seen: no session learns of old copies as new.
    Folder.update(recent_uid=Folder.uidnext - 1).execute()


def _to_6(m: SchemaMigrator) -> None:
    """The index on message.message_id alone goes: the unique (message_id, content_hash)
    index answers the same look-ups, and every new message wrote both (a sixth of the
    pages a bulk commit wrote, bench/RESULTS.md)."""
    m.database.execute_sql('DROP INDEX IF EXISTS "message_message_id"')


def _to_7(m: SchemaMigrator) -> None:
    """Modification sequences on folders and their entries: a selected folder is brought
    up to date by reading what changed, not the whole folder (receiver.imap.backend)."""
    # A database that came from before version 4 got these with the tables in _to_4.
    have = {(t, c.name) for t in ("folder", "folder_entry") for c in m.database.get_columns(t)}
    for table, column in (
        ("folder", "highestmodseq"),
        ("folder", "deletedmodseq"),
        ("folder_entry", "modseq"),
    ):
        if (table, column) not in have:
            # Not peewee's add_column (see _to_5): on SQLite it builds a NOT NULL column's
            # table anew, and dropping the old folder table would cascade to its entries.
            m.database.execute_sql(
                f'ALTER TABLE "{table}" ADD COLUMN "{column}" BIGINT NOT NULL DEFAULT 0'
            )
    m.database.execute_sql(
        'CREATE INDEX IF NOT EXISTS "folder_entry_folder_id_modseq" '
        'ON "folder_entry" ("folder_id", "modseq")'
    )


MIGRATIONS: dict[int, Callable[[SchemaMigrator], None]] = {
    2: _to_2,
    3: _to_3,
    4: _to_4,
    5: _to_5,
    6: _to_6,
    7: _to_7,
}


def pending(db: Database) -> list[int]:
    """The versions `upgrade` would apply, in order."""
    version = schema_version(db)
    if version is None:
        raise StoreError("the database has no schema yet: run `threads-receiver init` first")
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"the database schema is version {version}, newer than this code "
            f"({SCHEMA_VERSION}): upgrade threads-receiver"
        )
    return list(range(version + 1, SCHEMA_VERSION + 1))


def upgrade(db: Database) -> list[int]:
    """Apply every missing migration; returns the versions applied (empty: up to date)."""
    applied = []
    migrator = PostgresqlMigrator(db) if is_postgres(db) else SqliteMigrator(db)
    with db.connection_context():
        for version in pending(db):
            with db.atomic():
                if is_postgres(db):
                    db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (PG_MIGRATION_LOCK,))
                # Another receiver may have run this step while we waited for the lock.
                current = SchemaInfo.select(SchemaInfo.version).scalar()
                if current >= version:
                    continue
                MIGRATIONS[version](migrator)
                SchemaInfo.update(version=version).execute()
            applied.append(version)
    return applied
