"""`mailbox instructions`: the copy-rule setup guide for one mailbox's receiver address."""

from __future__ import annotations

import click

from receiver.cli.context import EMAIL, AppContext, CliError, emit_json, pass_app
from receiver.cli.mailbox import address_text, json_option, mailbox
from receiver.imap.endpoint import endpoint, starttls_port
from receiver.instructions import PROVIDERS, guide
from receiver.store import mailboxes


@mailbox.command("instructions", short_help="Print the copy-rule guide for a mailbox.")
@click.argument("email", type=EMAIL)
@click.option(
    "--provider",
    type=click.Choice(PROVIDERS),
    default=None,
    help="Only this provider's guide (default: all of them).",
)
@json_option
@pass_app
def instructions(app: AppContext, email: str, provider: str | None, as_json: bool) -> None:
    """Print how to set up a copy rule that keeps the headers intact (docs/setup-guides.md)."""
    app.db()
    mb = mailboxes.get(email)
    current = mailboxes.current_address(mb)
    if current is None:
        raise CliError(
            f"mailbox {mb.email} has no receiver address: "
            f"`threads-receiver mailbox rotate {mb.email}`"
        )
    address = address_text(current.local_part, app.config.domains[0])
    if app.config.domains[0] == "localhost":
        click.echo(
            "warning: the receiver domain is localhost, which no sender can reach: "
            "set yours with `threads-receiver init --domain push.example.com` (or "
            f"receiver.domains in {app.config.path})",
            err=True,
        )
    chosen = [provider] if provider else list(PROVIDERS)
    host, port = endpoint(app.config)
    starttls = starttls_port(app.config)
    texts = {p: guide(p, mb.email, address, host, port, starttls) for p in chosen}
    if as_json:
        emit_json({"email": mb.email, "address": address, "guides": texts})
        return
    click.echo(("\n" + "-" * 72 + "\n\n").join(texts.values()), nl=False)


COMMANDS: list = []
