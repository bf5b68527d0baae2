"""`verify FILE`: the copy checks of the pipeline, run on one .eml file (no database)."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
from pathlib import Path

import click

from receiver.cli.context import EMAIL, AppContext, emit_json, pass_app
from receiver.cli.mailbox import json_option

# Verdict → exit status; anything else (unverifiable) is 1. receiver.verify is imported
# only when the command runs: it pulls in dkimpy and dnspython, which other commands skip.
EXIT_CODES = {"unaltered": 0, "altered": 2}
EXIT_UNREADABLE = 3


class UnreadableFile(click.ClickException):
    exit_code = EXIT_UNREADABLE


def verdict_json(v) -> dict:
    return {
        "verdict": v.kind,
        "reasons": v.reasons,
        "cause": v.cause,
        "temperror": v.temperror,
        "auth_results": v.auth_results,
        "confirmation": v.confirmation,
        "inner_sha256": hashlib.sha256(v.inner).hexdigest() if v.inner is not None else None,
        "detail": v.detail,
    }


def print_verdict(data: dict) -> None:
    click.echo(f"verdict   {data['verdict']}")
    for r in data["reasons"]:
        click.echo(f"reason    {r}")
    detail = data["detail"]
    path = detail.get("path", {})
    if path:
        click.echo(f"path      {path['kind']} ({', '.join(path['how'])})")
    if "wrapper" in detail:
        click.echo(f"unwrapped the enclosed original (sha256 {data['inner_sha256']})")
    for s in detail.get("dkim", []):
        bits = f", {s['key_bits']}-bit key" if s["key_bits"] else ""
        click.echo(
            f"dkim      d={s['d']} s={s['s']} a={s['a']}{bits}: {s['result']} "
            f"({s['reason']}); h={':'.join(s['headers'])}"
            + (f"; l={s['length']}" if s["length"] is not None else "")
        )
    arc = detail.get("arc") or {}
    if arc.get("sets"):
        click.echo(f"arc       cv={arc['cv']}, {arc['sets']} set(s): {arc['reason']}")
        if arc.get("first_hop_results"):
            click.echo(f"arc i=1   {arc['first_hop_results']}")
    if data["confirmation"]:
        c = data["confirmation"]
        click.echo(
            f"confirm   {c['provider']} forwarding confirmation: code {c['code']} {c['link'] or ''}"
        )
    click.echo(f"auth      {data['auth_results']}")


async def _verify(app: AppContext, raw: bytes, subscriber: str | None):
    from receiver.mail import read
    from receiver.verify import Verifier

    verifier = Verifier(app.config)
    try:
        return await verifier.verify(
            read(raw), subscriber=subscriber, received_at=dt.datetime.now(dt.UTC)
        )
    finally:
        await verifier.close()


@click.command("verify", short_help="Check one .eml file as the receiver would.")
@click.argument("file", type=click.Path(path_type=Path))
@click.option(
    "--mailbox",
    "subscriber",
    metavar="EMAIL",
    type=EMAIL,
    help="The subscriber the copy is for (tells an inline forward by them).",
)
@json_option
@pass_app
def verify(app: AppContext, file: Path, subscriber: str | None, as_json: bool) -> None:
    """Check one .eml file as the receiver would: exit 0 unaltered, 1 unverifiable, 2 altered
    (3 when the file cannot be read)."""
    try:
        raw = file.read_bytes()
    except OSError as e:
        raise UnreadableFile(f"cannot read {file}: {e.strerror}") from None
    v = asyncio.run(_verify(app, raw, subscriber))
    data = verdict_json(v)
    if as_json:
        emit_json(data)
    else:
        print_verdict(data)
    click.get_current_context().exit(EXIT_CODES.get(v.kind, 1))


COMMANDS = [verify]
