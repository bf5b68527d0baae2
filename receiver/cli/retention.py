"""`mailbox set` (policy, retention and legal hold) and `prune`: how long copies are kept."""

from __future__ import annotations

from typing import Any

import click

from receiver.cli.context import EMAIL, AppContext, emit_json, iso, pass_app
from receiver.cli.mailbox import json_option, mailbox, mailbox_json, print_mailbox
from receiver.store import mailboxes
from receiver.store.models import database, utcnow
from receiver.store.retention import prune as prune_store


@mailbox.command("set")
@click.argument("email", type=EMAIL)
@click.option(
    "--keep-days",
    type=click.IntRange(min=1),
    default=None,
    help="Delete this mailbox's copies once they are older than N days.",
)
@click.option("--keep-forever", is_flag=True, help="Keep copies forever (undo --keep-days).")
@click.option(
    "--quarantine-days",
    type=click.IntRange(min=0),
    default=None,
    help="Delete quarantined copies after N days (0: never; default: retention.quarantine_days).",
)
@click.option(
    "--legal-hold/--no-legal-hold",
    default=None,
    help="A legal hold stops every pruning of this mailbox.",
)
@click.option(
    "--altered",
    type=click.Choice(["reject", "quarantine", "accept"]),
    default=None,
    help="What to do with this mailbox's altered copies (default: policy.altered).",
)
@click.option(
    "--unverifiable",
    type=click.Choice(["accept", "quarantine"]),
    default=None,
    help="What to do with copies nobody can vouch for (default: policy.unverifiable).",
)
@click.option(
    "--default",
    "default_policy",
    is_flag=True,
    help="Follow the config's [policy] again (undo --altered and --unverifiable).",
)
@json_option
@pass_app
def set_(
    app: AppContext,
    email: str,
    keep_days: int | None,
    keep_forever: bool,
    quarantine_days: int | None,
    legal_hold: bool | None,
    altered: str | None,
    unverifiable: str | None,
    default_policy: bool,
    as_json: bool,
) -> None:
    """Set a mailbox's policy, retention and legal hold.

    The policy applies from the next copy on, over SMTP and `import` alike.
    """
    if keep_forever and keep_days is not None:
        raise click.UsageError("--keep-days and --keep-forever contradict each other")
    if default_policy and (altered or unverifiable):
        raise click.UsageError("--default and --altered/--unverifiable contradict each other")
    app.db()
    with database.atomic():
        mb = mailboxes.get(email)
        if default_policy:
            mb.policy_altered = mb.policy_unverifiable = None
        if altered:
            mb.policy_altered = altered
        if unverifiable:
            mb.policy_unverifiable = unverifiable
        if keep_days is not None or keep_forever:
            mb.keep_days = keep_days
        if quarantine_days is not None:
            mb.quarantine_days = quarantine_days
        if legal_hold is not None:
            mb.legal_hold = legal_hold
        mb.save()
    data = mailbox_json(app, mb, mailboxes.delivery_counts().get(mb.id))
    if as_json:
        emit_json(data)
    else:
        print_mailbox(data)


@click.command(short_help="Delete expired copies and what they leave behind.")
@click.option("--dry-run", is_flag=True, help="Say what would be deleted; delete nothing.")
@json_option
@pass_app
def prune(app: AppContext, dry_run: bool, as_json: bool) -> None:
    """Delete expired deliveries, and the messages, threads and ghosts left without one.

    Run it daily (systemd/threads-receiver-prune.timer). Mailboxes under legal hold are
    never pruned.
    """
    db = app.db()
    now = utcnow()
    with db.atomic() as txn:
        report = prune_store(now, app.config.retention.quarantine_days)
        if dry_run:
            txn.rollback()
    data: dict[str, Any] = {
        "dry_run": dry_run,
        "at": iso(now),
        "mailboxes": [
            {
                "email": m.email,
                "legal_hold": m.legal_hold,
                "keep_days": m.keep_days,
                "quarantine_days": m.quarantine_days,
                "expired": m.expired,
                "quarantine_expired": m.quarantine_expired,
            }
            for m in report.mailboxes
        ],
        "removed": {
            k: report.removed.get(k, 0)
            for k in ("deliveries", "messages", "threads", "ghosts", "blobs")
        },
    }
    if as_json:
        emit_json(data)
        return
    verb = "would delete" if dry_run else "deleted"
    for m in data["mailboxes"]:
        if m["legal_hold"]:
            click.echo(f"{m['email']}: legal hold, nothing pruned")
        elif m["expired"] or m["quarantine_expired"]:
            click.echo(
                f"{m['email']}: {verb} {m['expired']} expired and "
                f"{m['quarantine_expired']} quarantined deliveries"
            )
    r = data["removed"]
    click.echo(
        f"{verb} {r['deliveries']} deliveries, {r['messages']} messages, "
        f"{r['threads']} threads ({r['ghosts']} thread ids), {r['blobs']} stored blobs"
    )


COMMANDS = [prune]
