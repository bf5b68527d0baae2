"""`init` and `serve`: making a receiver and running it."""

from __future__ import annotations

import asyncio
import errno
import os
import re
from pathlib import Path

import click

from receiver import config as configmod
from receiver import service
from receiver.cli.context import (
    AppContext,
    CliError,
    hostport,
    make_folder,
    pass_app,
    write_config,
)
from receiver.exits import EX_UNAVAILABLE
from receiver.store.db import create_schema, open_database
from receiver.store.models import Mailbox


@click.command(short_help="Write a config and create the database schema.")
@click.option(
    "--dir",
    "directory",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for receiver.toml (and the SQLite database without --data-dir).",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder for the SQLite database (default: --dir); in production "
    "/var/lib/threads-receiver, the folder the systemd unit may write.",
)
@click.option(
    "--db",
    "db_url",
    envvar="THREADS_RECEIVER_DB",
    metavar="URL",
    default=None,
    help="Database URL to write into the config: sqlite:///PATH or "
    "postgresql://user:password@host/db (default: $THREADS_RECEIVER_DB, else "
    "receiver.db in the data folder).",
)
@click.option("--domain", required=True, help="Receiver domain (its MX points at this host).")
@click.option("--force", is_flag=True, help="Overwrite an existing receiver.toml.")
def init(
    directory: Path, data_dir: Path | None, db_url: str | None, domain: str, force: bool
) -> None:
    """Write DIR/receiver.toml and create the database schema."""
    if db_url and data_dir:
        raise click.UsageError("--db and --data-dir: give one (--data-dir is for SQLite)")
    domain = domain.strip().rstrip(".").lower()
    if not is_domain(domain):
        raise click.BadParameter(f"not a domain name: {domain!r}", param_hint="--domain")
    if data_dir is not None:
        make_folder(data_dir.resolve())
        db_url = f"sqlite:///{data_dir.resolve() / 'receiver.db'}"
    # The file then holds the URL; the environment must not point init somewhere else.
    environ = {k: v for k, v in os.environ.items() if k != configmod.ENV_PREFIX + "DB"}
    if db_url:
        configmod.load(None, environ={configmod.ENV_PREFIX + "DB": db_url})  # refused early
    path = write_config(directory.resolve(), domain, force, db_url)
    cfg = configmod.load(path, environ)
    db = open_database(cfg.database_url, cfg.database.lock_timeout)
    create_schema(db)
    click.echo(f"wrote {path}")
    click.echo(f"database: {cfg.database_url}")
    click.echo(f"next: threads-receiver --config {path} mailbox add you@example.com")


_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")


def is_domain(name: str) -> bool:
    """A host name a receiver domain can be: LDH labels (IDNs in their xn-- form)."""
    return 0 < len(name) <= 253 and all(_LABEL.fullmatch(label) for label in name.split("."))


# What binding a listener fails with when the admin must pick another address or port.
_BIND_ERRORS = {errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES}


@click.command()
@click.option(
    "--listen",
    metavar="HOST:PORT",
    callback=hostport,
    help="Address to listen on (default: smtp.listen).",
)
@click.option("--lmtp", is_flag=True, default=None, help="Speak LMTP (behind Postfix).")
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=None,
    help="Processes sharing the port, one core each (default: smtp.workers).",
)
@pass_app
def serve(app: AppContext, listen: str | None, lmtp: bool | None, workers: int | None) -> None:
    """Run the receiver until SIGTERM or Ctrl-C.

    SIGHUP re-reads the config (`systemctl reload`)."""
    service.hold_hangups()
    cfg = app.config
    app.db(create=True)
    click.echo(f"threads-receiver: config {cfg.path}")
    click.echo(f"threads-receiver: database {cfg.database_url}")
    click.echo(f"threads-receiver: receiver domains {', '.join(cfg.domains)}")
    if not Mailbox.select().exists():
        click.echo(
            f"threads-receiver: add a mailbox with `threads-receiver --config {cfg.path} "
            "mailbox add you@example.com`"
        )
    workers = workers or cfg.smtp.workers
    try:
        if workers > 1:
            from receiver.smtp.workers import WorkerError, run_workers

            try:
                run_workers(cfg, listen, lmtp, workers, announce=click.echo)
            except WorkerError as e:
                raise CliError(str(e)) from None
        else:
            asyncio.run(_serve(cfg, listen, lmtp))
    except OSError as e:
        if e.errno not in _BIND_ERRORS:
            raise
        raise CliError(
            f"cannot listen: {e.strerror} (another receiver running? set smtp.listen or --listen)",
            EX_UNAVAILABLE,
        ) from None


async def _serve(cfg, listen, lmtp) -> None:
    from receiver.smtp.server import run

    await run(cfg, listen, lmtp, announce=lambda line: click.echo(line))


COMMANDS = [init, serve]
