"""`threads list|show|export`: reading conversations."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from receiver.cli.context import (
    EMAIL,
    AppContext,
    CliError,
    emit_json,
    one_line,
    pass_app,
    say_if_cut,
)
from receiver.exits import EX_CANTCREAT
from receiver.mailfiles import write_mbox
from receiver.cli.mailbox import json_option
from receiver.cli.messages import _found, _mailbox_key
from receiver.store import thread_queries


@click.group()
def threads() -> None:
    """Read conversations."""


@threads.command("list")
@click.option(
    "--mailbox",
    "mailbox_email",
    metavar="EMAIL",
    type=EMAIL,
    help="Only threads holding a message this mailbox received.",
)
@click.option(
    "--since",
    type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"]),
    help="Only threads with a message dated at or after this (UTC).",
)
@click.option(
    "--limit",
    default=50,
    show_default=True,
    type=click.IntRange(min=0),
    help="How many, latest activity first; 0 for all.",
)
@json_option
@pass_app
def list_(
    app: AppContext, mailbox_email: str | None, since: dt.datetime | None, limit: int, as_json: bool
) -> None:
    """List threads, latest activity first."""
    app.db()
    key = _mailbox_key(mailbox_email)
    rows = thread_queries.list_threads(key, since, limit)
    say_if_cut(len(rows), limit, lambda: thread_queries.count_threads(key, since))
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        click.echo(
            f"{r['id']:>7}  {r['last_date'] or '-':<20}  {r['messages']:>4} msgs  "
            f"{one_line(r['subject']) or '(no subject)'}"
        )


@threads.command("show", short_help="Show a thread as a tree.")
@click.argument("thread_id", type=int)
@json_option
@pass_app
def show(app: AppContext, thread_id: int, as_json: bool) -> None:
    """Show a thread as a tree; messages referenced but not received show as [missing]."""
    app.db()
    data = _found(thread_queries.thread_tree, thread_id)
    if as_json:
        emit_json(data)
        return
    click.echo(
        f"thread {data['id']}: {one_line(data['subject']) or '(no subject)'} "
        f"({data['messages']} messages)"
    )
    stack = [(0, n) for n in reversed(data["tree"])]
    while stack:
        depth, n = stack.pop()
        indent = "  " * depth
        if n["ghost"]:
            click.echo(f"{indent}[missing] <{n['message_id']}>")
        else:
            who = one_line(n["from_name"]) or n["from"] or "-"
            click.echo(
                f"{indent}{n['date'] or '-':<20}  {who[:28]}  "
                f"{one_line(n['subject']) or '(no subject)'}  [{n['id']}]"
            )
        stack.extend((depth + 1, c) for c in reversed(n["children"]))


@threads.command("export", short_help="Write a thread's messages into an mbox file.")
@click.argument("thread_id", type=int)
@click.option(
    "--mbox",
    "mbox_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The mbox file to write (mboxrd: body lines starting 'From ' get '>').",
)
@click.option("--force", is_flag=True, help="Overwrite an existing mbox file.")
@pass_app
def export(app: AppContext, thread_id: int, mbox_path: Path, force: bool) -> None:
    """Write the thread's messages, exactly as received, into an mbox in date order."""
    app.db()
    messages = _found(thread_queries.thread_raw_messages, thread_id)
    if mbox_path.exists() and not force:
        raise CliError(f"{mbox_path} exists already (add --force to overwrite it)")
    try:
        with open(mbox_path, "wb") as out:
            for m, raw in messages:
                write_mbox(out, m.from_addr, m.date, raw)
    except OSError as e:
        raise CliError(f"cannot write {mbox_path}: {e.strerror}", EX_CANTCREAT) from None
    click.echo(f"wrote {len(messages)} messages to {mbox_path}", err=True)


COMMANDS = [threads]
