"""`quarantine list|show|release|delete`: copies held back from threads for the admin."""

from __future__ import annotations

import click

from receiver.cli.context import (
    EMAIL,
    NONE,
    AppContext,
    emit_json,
    one_line,
    pass_app,
    say_if_cut,
)
from receiver.cli.mailbox import json_option
from receiver.cli.messages import print_delivery
from receiver.store import mailboxes
from receiver.store import quarantine as store
from receiver.wiring import subject_rule


@click.group()
def quarantine() -> None:
    """Review copies held back by policy (altered or unverifiable)."""


@quarantine.command("list")
@click.option(
    "--mailbox", "mailbox_email", metavar="EMAIL", type=EMAIL, help="Only this mailbox's copies."
)
@click.option(
    "--limit",
    default=100,
    show_default=True,
    type=click.IntRange(min=0),
    help="How many, oldest first; 0 for all.",
)
@json_option
@pass_app
def list_(app: AppContext, mailbox_email: str | None, limit: int, as_json: bool) -> None:
    """List quarantined deliveries, oldest first."""
    app.db()
    key = mailboxes.get(mailbox_email).email if mailbox_email else None
    rows = store.list_quarantined(key, limit)
    say_if_cut(len(rows), limit, lambda: store.count_quarantined(key))
    if as_json:
        emit_json(rows)
        return
    if not rows:
        click.echo("the quarantine is empty")
    for r in rows:
        click.echo(
            f"{r['delivery_id']:>7}  {r['mailbox']:<28} {r['verdict']:<12} "
            f"{(one_line(r['subject']) or '(no subject)')[:40]:<40}  "
            f"{'; '.join(r['reasons'])[:80]}"
        )


@quarantine.command("show")
@click.argument("delivery_id", type=int)
@json_option
@pass_app
def show(app: AppContext, delivery_id: int, as_json: bool) -> None:
    """Show one quarantined delivery: why it is held, and its message."""
    app.db()
    d = store.show(delivery_id)
    if as_json:
        emit_json(d)
        return
    m = d["message"]
    click.echo(f"message     {m['id']}  <{m['message_id']}>")
    click.echo(f"subject     {one_line(m['subject']) or NONE}")
    click.echo(f"from        {m['from'] or NONE}")
    print_delivery(d)
    click.echo(f"next        threads-receiver quarantine release {d['id']}   (or delete {d['id']})")


def _each(app: AppContext, delivery_ids: tuple[int, ...], action, as_json: bool, line) -> None:
    """Do `action` to each delivery in turn (each in its own transaction) and report."""
    db = app.db()
    done = [action(db, i) for i in delivery_ids]
    if as_json:
        emit_json(done)
    else:
        for r in done:
            click.echo(line(r))


@quarantine.command("release", short_help="Release deliveries into threads.")
@click.argument("delivery_ids", type=int, nargs=-1, required=True)
@json_option
@pass_app
def release(app: AppContext, delivery_ids: tuple[int, ...], as_json: bool) -> None:
    """Release deliveries into threads, as if they had been accepted on arrival."""
    rule = subject_rule(app.config)
    _each(
        app,
        delivery_ids,
        lambda db, i: store.release(db, i, rule),
        as_json,
        lambda r: (
            f"delivery {r['delivery_id']} released: message {r['message']} "
            f"in thread {r['thread_id']}"
        ),
    )


@quarantine.command("delete", short_help="Delete quarantined deliveries.")
@click.argument("delivery_ids", type=int, nargs=-1, required=True)
@json_option
@pass_app
def delete(app: AppContext, delivery_ids: tuple[int, ...], as_json: bool) -> None:
    """Delete quarantined deliveries (and their bytes when nothing else holds them)."""
    _each(
        app, delivery_ids, store.delete, as_json, lambda r: f"delivery {r['delivery_id']} deleted"
    )


COMMANDS = [quarantine]
