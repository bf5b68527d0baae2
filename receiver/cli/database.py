"""`db ...`: the schema version and upgrading it."""

from __future__ import annotations

import click

from receiver.cli.context import AppContext, emit_json, pass_app
from receiver.cli.mailbox import json_option
from receiver.store import migrations
from receiver.store.db import open_database, schema_version
from receiver.store.models import SCHEMA_VERSION


@click.group("db")
def db_group() -> None:
    """The database schema: its version and upgrades."""


def _open(app: AppContext):
    cfg = app.config
    # Not app.db(): that refuses an old schema, which is what we are here to fix.
    return open_database(cfg.database_url, cfg.database.lock_timeout)


@db_group.command("version", short_help="Print the database's schema version and the code's.")
@json_option
@pass_app
def version(app: AppContext, as_json: bool) -> None:
    """Print the schema version of the database and the one this code needs."""
    db = _open(app)
    data = {
        "database": schema_version(db),
        "code": SCHEMA_VERSION,
        "pending": migrations.pending(db),
    }
    if as_json:
        emit_json(data)
    else:
        click.echo(
            f"database schema {data['database']}, code needs {SCHEMA_VERSION}"
            + (": run `threads-receiver db upgrade`" if data["pending"] else ", up to date")
        )


@db_group.command("upgrade", short_help="Apply the schema migrations this code needs.")
@click.option("--dry-run", is_flag=True, help="Only list the migrations that would run.")
@json_option
@pass_app
def upgrade(app: AppContext, dry_run: bool, as_json: bool) -> None:
    """Apply the schema migrations this code needs (back up the database first).

    Stop the receivers first: a receiver refuses to start on an older schema, and one
    already running with older code may not expect the new columns.
    """
    db = _open(app)
    todo = migrations.pending(db)
    applied = [] if dry_run else migrations.upgrade(db)
    if as_json:
        emit_json(
            {
                "pending" if dry_run else "applied": todo if dry_run else applied,
                "version": schema_version(db),
            }
        )
    elif dry_run:
        click.echo("would apply: " + (", ".join(f"version {v}" for v in todo) or "nothing"))
    elif applied:
        click.echo(
            f"upgraded the schema to version {applied[-1]} (applied {', '.join(map(str, applied))})"
        )
    else:
        click.echo(f"the schema is up to date (version {schema_version(db)})")


COMMANDS = [db_group]
