"""`init` and `serve`: making a receiver and running it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from receiver import config as configmod
from receiver.cli.context import AppContext, CliError, pass_app, write_config
from receiver.store.db import create_schema, open_database


@click.command()
@click.option("--dir", "directory", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for receiver.toml and the SQLite database.")
@click.option("--domain", required=True, help="Receiver domain (its MX points at this host).")
@click.option("--force", is_flag=True, help="Overwrite an existing receiver.toml.")
def init(directory: Path, domain: str, force: bool) -> None:
    """Write DIR/receiver.toml and create the database schema."""
    path = write_config(directory.resolve(), domain.lower(), force)
    cfg = configmod.load(path)
    db = open_database(cfg.database_url, cfg.database.lock_timeout)
    create_schema(db)
    click.echo(f"wrote {path}")
    click.echo(f"database: {cfg.database_url}")
    click.echo(f"next: threads-receiver --config {path} mailbox add you@example.com")


@click.command()
@click.option("--listen", metavar="HOST:PORT", help="Address to listen on (default: smtp.listen).")
@click.option("--lmtp", is_flag=True, default=None, help="Speak LMTP (behind Postfix).")
@click.option("--workers", type=click.IntRange(1, 64), default=None,
              help="Processes sharing the port, one core each (default: smtp.workers).")
@pass_app
def serve(app: AppContext, listen: str | None, lmtp: bool | None, workers: int | None) -> None:
    """Run the receiver until SIGTERM or Ctrl-C."""
    cfg = app.config
    app.db(create=True)
    click.echo(f"threads-receiver: config {cfg.path}")
    click.echo(f"threads-receiver: database {cfg.database_url}")
    click.echo(f"threads-receiver: receiver domains {', '.join(cfg.domains)}")
    click.echo(f"threads-receiver: add a mailbox with `threads-receiver --config {cfg.path} "
               "mailbox add you@example.com`")
    workers = workers or cfg.smtp.workers
    if workers > 1:
        from receiver.smtp.workers import WorkerError, run_workers

        try:
            run_workers(cfg, listen, lmtp, workers, announce=click.echo)
        except WorkerError as e:
            raise CliError(str(e)) from None
    else:
        asyncio.run(_serve(cfg, listen, lmtp))


async def _serve(cfg, listen, lmtp) -> None:
    from receiver.smtp.server import run

    await run(cfg, listen, lmtp, announce=lambda line: click.echo(line))


COMMANDS = [init, serve]
