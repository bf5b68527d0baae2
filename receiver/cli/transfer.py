"""`import` and `export`: mail files in and out of a mailbox."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import click

from receiver.bulk_import import Importer, ImportRefused, ImportSummary
from receiver.cli.context import EMAIL, AppContext, CliError, emit_json, pass_app
from receiver.exits import (
    EX_CANTCREAT,
    EX_DATAERR,
    EX_ERROR,
    EX_OK,
    EX_TEMPFAIL,
    EX_UNAVAILABLE,
)
from receiver.cli.mailbox import json_option
from receiver.mailfiles import MaildirWriter, MailSource, iter_stdin, write_mbox
from receiver.pipeline import DUPLICATE, QUARANTINED, REJECTED, STORED
from receiver.store import exports, mailboxes, thread_queries


@click.command("import", short_help="Import mbox, Maildir, .eml files or stdin into a mailbox.")
@click.argument("path")
@click.option(
    "--mailbox", "email", required=True, metavar="EMAIL", type=EMAIL, help="Mailbox to import into."
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Progress bar with rate and ETA (default: when stderr is a terminal).",
)
@json_option
@pass_app
def import_(app: AppContext, path: str, email: str, progress: bool | None, as_json: bool) -> None:
    """Import an mbox file, a Maildir, a folder of .eml files, or one message on stdin (-).

    Every message goes through the same checks, policy, threading and storage as one pushed
    by SMTP. Running it again stores nothing twice, so an interrupted import is resumed by
    running the same command. With `-` the exit status follows sysexits (75: try again
    later; 65: not a message), as a Postfix pipe or procmail expects.
    """
    app.db()
    if path == "-":
        items, total, name = iter_stdin(sys.stdin.buffer.read()), 1, "stdin"
    else:
        try:
            source = MailSource(Path(path))
        except (FileNotFoundError, PermissionError) as e:
            raise CliError(str(e)) from None
        items, total, name = source, source.total, str(source.path)
    show = sys.stderr.isatty() if progress is None else progress
    importer = Importer(app.config, email)
    try:
        if show:
            summary = _with_progress(importer, items, name, total)
        else:
            summary = asyncio.run(importer.run(items, name))
    except ImportRefused as e:
        raise CliError(str(e)) from None
    data = summary.as_dict()
    if as_json:
        emit_json(data)
    elif path == "-" and data["not_messages"]:
        raise CliError(NOT_MAIL_ON_STDIN, EX_DATAERR)
    elif path != "-" or data["failed"] or data["tempfailed"]:
        _print_summary(data)
    sys.exit(_exit_status(path == "-", data))


# The one line for stdin, as for a file: an MTA's bounce or a person's terminal shows it.
NOT_MAIL_ON_STDIN = "not a message: stdin (empty, binary, or without a header field first)"


def _with_progress(importer: Importer, items, name: str, total: int) -> ImportSummary:
    started = time.monotonic()
    with click.progressbar(
        length=total,
        label=f"importing {Path(name).name}",
        file=sys.stderr,
        show_eta=True,
        show_percent=True,
        item_show_func=lambda text: text,
    ) as bar:

        def update(position: int, summary: ImportSummary) -> None:
            rate = summary.done / max(time.monotonic() - started, 1e-6)
            bar.update(position - bar.pos, f"{summary.done:,} messages, {rate:,.0f}/s")
            bar.render_progress()  # update() skips drawing when the position did not move

        return asyncio.run(importer.run(items, name, update))


def _print_summary(d: dict) -> None:
    click.echo(
        f"{d['messages']} messages in {d['seconds']:.1f}s"
        + (f" ({d['rate']:,.0f}/s)" if d["rate"] else "")
        + ": "
        f"{d[STORED]} stored, {d[DUPLICATE]} duplicates, {d[QUARANTINED]} quarantined, "
        f"{d[REJECTED]} rejected, {d['failed'] + d['tempfailed']} failed"
    )
    for reason, n in d["reasons"].items():
        click.echo(f"  {n:>6}  {reason}")
    for where in d["failed_at"]:
        click.echo(f"  at {where}", err=True)
    for where in d["not_messages"]:
        click.echo(f"not a message: {where}", err=True)


def _exit_status(stdin: bool, d: dict) -> int:
    failed = d["failed"] + d["tempfailed"]
    # sysexits for `import -` run as a Postfix pipe or procmail delivery.
    if stdin:
        if d["not_messages"]:
            return EX_DATAERR  # no retry makes it mail: the MTA bounces it
        return EX_TEMPFAIL if failed else EX_UNAVAILABLE if d[REJECTED] else EX_OK
    return EX_ERROR if failed else EX_OK


@click.command("export", short_help="Write a mailbox's copies to an mbox file or a Maildir.")
@click.argument("path", type=click.Path(path_type=Path))
@click.option(
    "--mailbox", "email", required=True, metavar="EMAIL", type=EMAIL, help="Mailbox to export."
)
@click.option(
    "--format", "fmt", type=click.Choice(["mbox", "maildir"]), default="mbox", show_default=True
)
@click.option("--thread", "thread_id", type=int, help="Only this thread's messages.")
@click.option(
    "--since",
    type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"]),
    help="Only messages dated on or after DATE (UTC).",
)
@click.option("--include-quarantined", is_flag=True, help="Also the quarantined copies.")
@click.option("--force", is_flag=True, help="Overwrite an existing mbox file.")
@json_option
@pass_app
def export(
    app: AppContext,
    path: Path,
    email: str,
    fmt: str,
    thread_id: int | None,
    since,
    include_quarantined: bool,
    force: bool,
    as_json: bool,
) -> None:
    """Write a mailbox's copies, byte-exact, to an mbox file (- for stdout) or a Maildir.

    Importing the result again into the same mailbox stores nothing new.
    """
    app.db()
    mb = mailboxes.get(email)
    if thread_id is not None:
        thread_queries.check_thread(thread_id)
    rows = exports.deliveries(mb.id, thread_id, since, include_quarantined)
    count = 0
    if fmt == "maildir":
        try:
            box = MaildirWriter(path)
        except OSError as e:
            raise CliError(f"cannot write {path}: {e.strerror}", EX_CANTCREAT) from None
        for row in rows:
            box.add(f"{row.delivery_id}_{row.sha256[:16]}", row.received_at, row.raw)
            count += 1
    elif str(path) == "-":
        out = sys.stdout.buffer
        for row in rows:
            write_mbox(out, row.mail_from, row.received_at, row.raw)
            count += 1
        out.flush()
    else:
        if path.exists() and not force:
            raise CliError(f"{path} exists already (add --force to overwrite it)")
        tmp = path.with_name(path.name + ".part")
        try:
            with open(tmp, "wb") as out:
                for row in rows:
                    write_mbox(out, row.mail_from, row.received_at, row.raw)
                    count += 1
            tmp.replace(path)
        except OSError as e:
            raise CliError(f"cannot write {path}: {e.strerror}", EX_CANTCREAT) from None
    if as_json:
        emit_json({"mailbox": mb.email, "format": fmt, "path": str(path), "messages": count})
    elif str(path) != "-":
        click.echo(f"exported {count} messages of {mb.email} to {path} ({fmt})")


COMMANDS = [import_, export]
