"""`mailbox ...`: subscribers, their receiver addresses and states."""

from __future__ import annotations

import click

from receiver.cli.context import EMAIL, AppContext, emit_json, iso, pass_app
from receiver.store import mailboxes
from receiver.store.confirmations import confirmations
from receiver.store.models import Mailbox, utcnow
from receiver.store.retention import quarantine_days


def address_text(local_part: str, domain: str) -> str:
    return f"{local_part}@{domain}"


def mailbox_json(app: AppContext, mb: Mailbox, counts: dict[str, int] | None = None) -> dict:
    """The stable JSON shape of a mailbox (documented in the README)."""
    cfg = app.config
    domain = cfg.domains[0]
    now = utcnow()
    current = mailboxes.current_address(mb)
    return {
        "email": mb.email,
        "state": mb.state,
        "address": address_text(current.local_part, domain) if current else None,
        "addresses": [
            {
                "address": address_text(a.local_part, domain),
                "created_at": iso(a.created_at),
                "expires_at": iso(a.expires_at),
                "active": a.expires_at is None or a.expires_at > now,
            }
            for a in mailboxes.addresses(mb)
        ],
        "policy": {
            "altered": mb.policy_altered or cfg.policy.altered,
            "unverifiable": mb.policy_unverifiable or cfg.policy.unverifiable,
        },
        # What `mailbox set` gave this mailbox; null follows the config's [policy].
        "policy_set": {"altered": mb.policy_altered, "unverifiable": mb.policy_unverifiable},
        "retention": {
            "keep_days": mb.keep_days,
            "quarantine_days": quarantine_days(mb.quarantine_days, cfg.retention.quarantine_days),
            "legal_hold": mb.legal_hold,
            "pruned_at": iso(mb.pruned_at),
        },
        "deliveries": {
            "stored": (counts or {}).get("stored", 0),
            "quarantined": (counts or {}).get("quarantined", 0),
        },
        "created_at": iso(mb.created_at),
    }


def print_mailbox(data: dict) -> None:
    click.echo(f"mailbox   {data['email']} ({data['state']})")
    click.echo(f"address   {data['address']}")
    for a in data["addresses"]:
        if a["expires_at"]:
            state = "works until" if a["active"] else "refused since"
            click.echo(f"old       {a['address']} ({state} {a['expires_at']})")
    own = data["policy_set"]
    click.echo(
        "policy    "
        + ", ".join(
            f"{key}: {value}" + ("" if own[key] else " (default)")
            for key, value in data["policy"].items()
        )
    )
    click.echo(
        f"stored    {data['deliveries']['stored']} deliveries, "
        f"{data['deliveries']['quarantined']} quarantined"
    )
    ret = data["retention"]
    click.echo(
        f"keep      copies {_days(ret['keep_days'])}, quarantined {_days(ret['quarantine_days'])}"
        + (", LEGAL HOLD" if ret["legal_hold"] else "")
        + (f", pruned {ret['pruned_at']}" if ret["pruned_at"] else "")
    )


def _days(n: int | None) -> str:
    return f"{n} days" if n else "forever"


json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")


@click.group()
def mailbox() -> None:
    """Manage mailboxes (one per subscriber's copy feed)."""


@mailbox.command("add")
@click.argument("email", type=EMAIL)
@json_option
@pass_app
def add(app: AppContext, email: str, as_json: bool) -> None:
    """Create a mailbox and print its receiver address."""
    app.db()
    mb, _ = mailboxes.add(email)
    data = mailbox_json(app, mb)
    if as_json:
        emit_json(data)
    else:
        click.echo(f"mailbox {mb.email} created")
        click.echo(f"receiver address: {data['address']}")
        click.echo("point a redirect (not forward) rule of that mailbox at this address")


@mailbox.command("list")
@json_option
@pass_app
def list_(app: AppContext, as_json: bool) -> None:
    """List mailboxes."""
    app.db()
    counts = mailboxes.delivery_counts()
    rows = [
        mailbox_json(app, mb, counts.get(mb.id)) for mb in Mailbox.select().order_by(Mailbox.email)
    ]
    if as_json:
        emit_json(rows)
        return
    if not rows:
        click.echo("no mailboxes yet: threads-receiver mailbox add EMAIL")
    for r in rows:
        click.echo(
            f"{r['email']:<32} {r['state']:<9} {r['deliveries']['stored']:>7} stored  "
            f"{r['address']}"
        )


@mailbox.command("show")
@click.argument("email", type=EMAIL)
@json_option
@pass_app
def show(app: AppContext, email: str, as_json: bool) -> None:
    """Show one mailbox, its addresses and policy."""
    app.db()
    mb = mailboxes.get(email)
    data = mailbox_json(app, mb, mailboxes.delivery_counts().get(mb.id))
    # The codes Gmail/Outlook send before they forward: the admin confirms the rule here.
    data["confirmations"] = confirmations(mb.id)
    if as_json:
        emit_json(data)
    else:
        print_mailbox(data)
        for c in data["confirmations"]:
            click.echo(
                f"confirm   {c['provider']} forwarding confirmation {c['received_at']}: "
                f"code {c['code'] or '-'}  {c['link'] or ''}".rstrip()
            )


def _set_state(state: str):
    @json_option
    @click.argument("email", type=EMAIL)
    @pass_app
    def command(app: AppContext, email: str, as_json: bool) -> None:
        app.db()
        mb = mailboxes.set_state(email, state)
        if as_json:
            emit_json(mailbox_json(app, mb))
        else:
            click.echo(f"mailbox {mb.email} is {state}")

    return command


mailbox.command("disable", help="Refuse copies for a mailbox (550 5.2.1).")(_set_state("disabled"))
mailbox.command("enable", help="Accept copies for a mailbox again.")(_set_state("active"))


@mailbox.command("rotate", short_help="Give a mailbox a new receiver address.")
@click.argument("email", type=EMAIL)
@click.option(
    "--grace-days",
    type=float,
    default=None,
    help="Days the old address keeps working (default: receiver.rotate_grace_days).",
)
@json_option
@pass_app
def rotate(app: AppContext, email: str, grace_days: float | None, as_json: bool) -> None:
    """Give a mailbox a new receiver address; the old one works for a grace period."""
    app.db()
    grace = app.config.receiver.rotate_grace_days if grace_days is None else grace_days
    old, new = mailboxes.rotate(email, grace)
    mb = mailboxes.get(email)
    data = mailbox_json(app, mb)
    if as_json:
        emit_json(data)
    else:
        domain = app.config.domains[0]
        click.echo(f"new receiver address: {address_text(new.local_part, domain)}")
        click.echo(
            f"old address {address_text(old.local_part, domain)} works until {iso(old.expires_at)}"
        )


@mailbox.command("remove", short_help="Delete a mailbox.")
@click.argument("email", type=EMAIL)
@click.option("--purge", is_flag=True, help="Also delete every delivery of the mailbox.")
@json_option
@pass_app
def remove(app: AppContext, email: str, purge: bool, as_json: bool) -> None:
    """Delete a mailbox (refused while it holds deliveries, unless --purge)."""
    app.db()
    mb_email = mailboxes.get(email).email
    removed = mailboxes.remove(email, purge)
    if as_json:
        emit_json({"email": mb_email, "removed": True, "deliveries_deleted": removed})
    else:
        click.echo(f"mailbox {mb_email} removed ({removed} deliveries deleted)")


COMMANDS = [mailbox]
