"""Opening the database named by a URL, and creating or checking its schema."""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import unquote, urlparse

from peewee import Database, InterfaceError, OperationalError, PostgresqlDatabase, SqliteDatabase

from receiver.store.models import MODELS, SCHEMA_VERSION, SchemaInfo, database

log = logging.getLogger(__name__)


class StoreError(Exception):
    """The database cannot be used as configured; the message tells the admin why."""


def open_database(url: str, lock_timeout: float) -> Database:
    """Bind the models to the database at `url` and return it (not yet connected)."""
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///") :])
        path.parent.mkdir(parents=True, exist_ok=True)
        db: Database = SqliteDatabase(
            str(path),
            timeout=lock_timeout,
            pragmas={
                # WAL: readers never block the writer; synchronous=FULL makes every
                # commit durable before we answer 250.
                "journal_mode": "wal",
                "synchronous": "full",
                "foreign_keys": 1,
                "busy_timeout": int(lock_timeout * 1000),
                # 32 MB of page cache (the default is 2 MB): the id indexes take random
                # inserts, and re-reading their pages from the OS was most of a bulk
                # import's CPU once the database outgrew the default.
                "cache_size": -32768,
                # A checkpoint every 64 MB of WAL, not every 4 MB: each one writes and
                # fsyncs the database file inside a commit, and at the default they were
                # a third of the threading store's wall time (bench/RESULTS.md).
                "wal_autocheckpoint": 16384,
            },
        )
    elif url.startswith(("postgresql://", "postgres://")):
        _require_driver()
        u = urlparse(url)
        db = PostgresqlDatabase(
            unquote(u.path.lstrip("/")) or "postgres",
            user=unquote(u.username) if u.username else None,
            password=unquote(u.password) if u.password else None,
            host=u.hostname,
            port=u.port,
            connect_timeout=int(max(1, lock_timeout)),
            # A lock held elsewhere turns into a 451 after lock_timeout, not a hang.
            options=f"-c lock_timeout={int(lock_timeout * 1000)}",
        )
    else:
        raise StoreError(f"unsupported database URL {url!r}: use sqlite:/// or postgresql://")
    database.initialize(db)
    return db


def _require_driver() -> None:
    # peewee imports psycopg2 if it can and fails only at the first connect, with a
    # message that does not say which package to install.
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        raise StoreError(
            "a postgresql:// database needs the PostgreSQL driver: "
            "pip install 'threads-receiver[postgresql]' (or psycopg2-binary)"
        ) from None


def is_postgres(db: Database) -> bool:
    return isinstance(db, PostgresqlDatabase)


def write_transaction(db: Database):
    """A transaction that writes after reading: on SQLite it takes the write lock at
    BEGIN (IMMEDIATE), else its first write would fail at once with "database is
    locked" whenever another connection writes, instead of waiting for its turn."""
    return db.atomic() if is_postgres(db) else db.atomic("IMMEDIATE")


def create_schema(db: Database) -> None:
    with db.connection_context():
        with db.atomic():
            db.create_tables(MODELS, safe=True)
            if not SchemaInfo.select().exists():
                SchemaInfo.create(version=SCHEMA_VERSION)


def schema_version(db: Database) -> int | None:
    """The schema version in the database, or None where no schema exists yet."""
    with db.connection_context():
        if not db.table_exists(SchemaInfo._meta.table_name):
            return None
        row = SchemaInfo.select().first()
        return row.version if row else None


def check_schema(db: Database) -> None:
    version = schema_version(db)
    if version is None:
        raise StoreError("the database has no schema yet: run `threads-receiver init` first")
    if version < SCHEMA_VERSION:
        raise StoreError(
            f"the database schema is version {version}, this code needs {SCHEMA_VERSION}: "
            "run `threads-receiver db upgrade`"
        )
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"the database schema is version {version}, newer than this code "
            f"({SCHEMA_VERSION}): upgrade threads-receiver"
        )


def run_read(db: Database, fn, *args):
    """Run a read in this thread; a dropped connection is closed and the read tried once
    more on a fresh one, so a database restart costs one retry, not a stuck thread."""
    try:
        return fn(*args)
    except (OperationalError, InterfaceError):
        try:
            db.close()
        except (OperationalError, InterfaceError) as e:
            log.debug("closing a dropped connection: %r", e)
        return fn(*args)
