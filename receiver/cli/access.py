"""`mailbox credentials` and `mailbox allow`: who may push to a mailbox.

Subcommands of the `mailbox` group, kept here because they are about access, not about
the mailbox's addresses and state.
"""

from __future__ import annotations

import json

import click

from receiver import allowlist
from receiver.cli.context import EMAIL, AppContext, emit_json, iso, pass_app
from receiver.cli.mailbox import json_option, mailbox
from receiver.imap.endpoint import credentials_csv, endpoint
from receiver.store import credentials, mailboxes
from receiver.store.models import Mailbox


@mailbox.command("credentials", short_help="Issue or revoke SMTP AUTH and IMAP credentials.")
@click.argument("emails", nargs=-1, type=EMAIL)
@click.option("--revoke", is_flag=True, help="Revoke the mailbox's credentials.")
@click.option("--all", "every", is_flag=True, help="Every mailbox (with --csv).")
@click.option(
    "--csv",
    "as_csv",
    is_flag=True,
    help="Write email,server,port,username,password for a bulk-copy tool, "
    "issuing credentials to the mailboxes that have none.",
)
@click.option(
    "--reissue",
    is_flag=True,
    help="With --csv: replace credentials in force too (their jobs stop working).",
)
@json_option
@pass_app
def credentials_(
    app: AppContext,
    emails: tuple[str, ...],
    revoke: bool,
    every: bool,
    as_csv: bool,
    reissue: bool,
    as_json: bool,
) -> None:
    """Issue credentials for SMTP AUTH and IMAP login (shown once), or revoke them.

    Issuing again replaces the earlier password. AUTH and IMAP login are offered over
    TLS only, and a session that logged in may deliver only to this mailbox.
    """
    app.db()
    if as_csv or every or len(emails) != 1:
        if not as_csv or revoke or as_json or bool(every) == bool(emails):
            raise click.UsageError("use `credentials EMAIL`, or --csv with --all or with EMAILs")
        _credentials_csv(app, list(emails), every, reissue)
        return
    email = emails[0]
    if revoke:
        done = credentials.revoke(email)
        if as_json:
            emit_json({"email": mailboxes.get(email).email, "revoked": done})
        else:
            click.echo("credentials revoked" if done else "no credentials in force")
        return
    username, password = credentials.issue(email)
    if as_json:
        emit_json({"username": username, "password": password})
        return
    click.echo(f"username: {username}")
    click.echo(f"password: {password}")
    click.echo("the password is shown only now; issue new credentials if it is lost")
    if not app.config.tls.cert_file:
        click.echo("note: AUTH needs TLS: set tls.cert_file and tls.key_file", err=True)


def _credentials_csv(app: AppContext, emails: list[str], every: bool, reissue: bool) -> None:
    if every:
        emails = [mb.email for mb in Mailbox.select(Mailbox.email).order_by(Mailbox.email)]
    rows, kept = [], []
    for email in emails:
        mb = mailboxes.get(email)
        held = credentials.status(mb)
        if held and held["revoked_at"] is None and not reissue:
            kept.append(mb.email)  # its password exists only where it was handed out
            continue
        rows.append((mb.email, *credentials.issue(mb.email)))
    host, port = endpoint(app.config)
    click.echo(credentials_csv(rows, host, port), nl=False)
    if kept:
        click.echo(
            f"not in the CSV, credentials already in force (--reissue replaces them): "
            f"{', '.join(kept)}",
            err=True,
        )


@mailbox.command("allow", short_help="Limit who may push to a mailbox.")
@click.argument("email", type=EMAIL)
@click.argument("entries", nargs=-1)
@click.option("--clear", is_flag=True, help="Remove the allow-list: anyone may push again.")
@json_option
@pass_app
def allow(
    app: AppContext, email: str, entries: tuple[str, ...], clear: bool, as_json: bool
) -> None:
    """Limit who may push to a mailbox: networks (192.0.2.0/24) or DKIM/ARC signing
    domains (google.com). Without ENTRIES, show the list."""
    app.db()
    mb = mailboxes.get(email)
    if clear and entries:
        raise click.UsageError("give entries or --clear, not both")
    if clear:
        mb.allow_from = None
        mb.save()
    elif entries:
        try:
            allowlist.split_entries(entries)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="ENTRIES") from None
        mb.allow_from = json.dumps([e.strip() for e in entries])
        mb.save()
    current = json.loads(mb.allow_from) if mb.allow_from else None
    cred = credentials.status(mb)
    if as_json:
        emit_json(
            {
                "email": mb.email,
                "allow_from": current,
                "credentials": cred
                and {k: iso(v) if k != "username" else v for k, v in cred.items()},
            }
        )
    elif current is None:
        click.echo(f"{mb.email}: anyone may push (no allow-list)")
    else:
        click.echo(f"{mb.email}: allowed senders: {', '.join(current)}")


# Attached to the `mailbox` group on import; nothing top-level.
COMMANDS: list = []
