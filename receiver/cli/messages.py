"""`messages ...` and `stats`: reading what was received."""

from __future__ import annotations

import sys

import click

from receiver.cli.context import (
    EMAIL,
    NONE,
    AppContext,
    CliError,
    emit_json,
    one_line,
    pass_app,
    say_if_cut,
)
from receiver.cli.mailbox import json_option
from receiver.store import mailboxes, queries


@click.group()
def messages() -> None:
    """Read received messages."""


@messages.command("list")
@click.option(
    "--mailbox", "mailbox_email", metavar="EMAIL", type=EMAIL, help="Only this mailbox's messages."
)
@click.option(
    "--limit",
    default=50,
    show_default=True,
    type=click.IntRange(min=0),
    help="How many, newest first; 0 for all.",
)
@json_option
@pass_app
def list_(app: AppContext, mailbox_email: str | None, limit: int, as_json: bool) -> None:
    """List messages, newest first."""
    app.db()
    key = _mailbox_key(mailbox_email)
    rows = queries.list_messages(key, limit)
    say_if_cut(len(rows), limit, lambda: queries.count_messages(key))
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        click.echo(
            f"{r['id']:>7}  {r['date'] or '-':<20}  {(r['from'] or '-')[:28]:<28}  "
            f"{one_line(r['subject']) or '(no subject)'}"
        )


def _mailbox_key(email: str | None) -> str | None:
    """The stored form of a --mailbox value; an unknown mailbox is an error, not no rows."""
    return None if email is None else mailboxes.get(email).email


message_argument = click.argument("message", metavar="ID|MESSAGE-ID")


@messages.command("show", short_help="Show one message, its deliveries and verdicts.")
@message_argument
@json_option
@pass_app
def show(app: AppContext, message: str, as_json: bool) -> None:
    """Show one message (by row or Message-ID): headers, bodies, deliveries and verdicts.

    A delivery appended over IMAP lists the folders it is in ("folders   INBOX, Sent
    Items"); a folder a client expunged or moved it out of follows as "expunged from
    ...": the copy is still stored, only that folder no longer shows it."""
    app.db()
    data = _found(queries.message_detail, _found(queries.find_message, message))
    if as_json:
        emit_json(data)
        return
    click.echo(
        f"message     {data['id']}  <{data['message_id']}>"
        + ("  (synthetic id)" if data["synthetic_id"] else "")
    )
    click.echo(f"subject     {one_line(data['subject']) or NONE}")
    click.echo(
        f"date        {data['date'] or NONE}"
        + (f"  ({data['date_raw']})" if data["date_raw"] else "")
    )
    sender = " ".join(
        filter(None, [one_line(data["from_name"]), data["from"] and f"<{data['from']}>"])
    )
    click.echo(f"from        {sender or NONE}")
    for label, key in (("to", "to"), ("cc", "cc")):
        if data[key]:
            click.echo(f"{label:<12}{', '.join(a for _, a in data[key])}")
    if data["in_reply_to"]:
        click.echo(f"in-reply-to {' '.join(data['in_reply_to'])}")
    if data["references"]:
        click.echo(f"references  {len(data['references'])} ids, parent {data['parent'] or NONE}")
    click.echo(f"thread      {data['thread_id'] or NONE}")
    for a in data["attachments"]:
        click.echo(f"attachment  {a['name'] or NONE} ({a['type']}, {a['size']} bytes)")
    if data["defects"] or data["parse_error"]:
        click.echo(f"defects     {', '.join(data['defects'])} {data['parse_error'] or ''}")
    for d in data["deliveries"]:
        print_delivery(d)
    click.echo("")
    click.echo(data["text_body"] or "(no text body)")


def print_delivery(d: dict) -> None:
    """One delivery's lines, in `messages show` and in `quarantine show`."""
    click.echo(
        f"delivery    {d['id']} to {d['mailbox']} at {d['received_at']} via {d['source']}"
        f" from {d['peer']} [{d['status']}]"
    )
    click.echo(f"  verdict   {d['verdict']}: {'; '.join(d['reasons'])}")
    path = d["verify_detail"].get("path")
    if path:
        click.echo(
            f"  path      {path['kind']} ({', '.join(path['how'])})"
            + (f", unwrapped from {d['wrapper_sha256']}" if d["wrapper_sha256"] else "")
        )
    if d["folders"]:
        click.echo(f"  folders   {folder_labels(d['folders'])}")
    if d["auth_results"]:
        click.echo(f"  auth      {d['auth_results']}")


def folder_labels(folders: list[dict]) -> str:
    """ "INBOX, Sent Items (expunged from Old)": where the copy shows, then where not."""
    shown = ", ".join(f["name"] for f in folders if not f["expunged"]) or NONE
    gone = [f["name"] for f in folders if f["expunged"]]
    return shown + (f" (expunged from {', '.join(gone)})" if gone else "")


def _found(fn, *args):
    try:
        return fn(*args)
    except queries.NotFound as e:
        raise CliError(str(e)) from None


@messages.command("raw", short_help="Write a message's exact bytes to stdout.")
@message_argument
@click.option("--delivery", type=int, help="The bytes of this delivery of the message.")
@pass_app
def raw(app: AppContext, message: str, delivery: int | None) -> None:
    """Write the exact bytes as received (message by row or Message-ID) to stdout."""
    app.db()
    data = _found(queries.message_raw, _found(queries.find_message, message), delivery)
    out = sys.stdout.buffer
    out.write(data)
    out.flush()


@click.command()
@json_option
@pass_app
def stats(app: AppContext, as_json: bool) -> None:
    """Counts per mailbox and totals."""
    app.db()
    data = queries.stats()
    if as_json:
        emit_json(data)
        return
    for m in data["mailboxes"]:
        click.echo(
            f"{m['email']:<32} {m['deliveries']:>8} deliveries {m['messages']:>8} messages "
            f"{m['quarantined']:>6} quarantined"
        )
    t = data["totals"]
    click.echo(
        f"total: {t['mailboxes']} mailboxes, {t['deliveries']} deliveries, "
        f"{t['messages']} messages, {t['threads']} threads, "
        f"{t['stored_bytes']} bytes ({t['compressed_bytes']} compressed)"
    )


COMMANDS = [messages, stats]
