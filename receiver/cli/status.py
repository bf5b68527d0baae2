"""`status`: is the receiver healthy? The SMTP (and IMAP) listeners, the database, the
metrics listener."""

from __future__ import annotations

import socket
import ssl
import sys
import urllib.error
import urllib.request

import click
from peewee import fn

from receiver.cli.context import AppContext, emit_json, hostport, iso, pass_app
from receiver.cli.mailbox import json_option
from receiver.config import parse_hostport
from receiver.metrics import database_answers
from receiver.smtp.limits import in_networks, networks
from receiver.store.db import open_database, schema_version
from receiver.store.models import SCHEMA_VERSION, Delivery, Mailbox

TIMEOUT = 5.0
# The word our greeting carries (smtp/server.py's ident): any other server on the port is
# not this receiver, however well it answers.
IDENT = "threads-receiver"


def is_our_greeting(greeting: str) -> bool:
    first = greeting.splitlines()[0] if greeting else ""
    return first.startswith("220") and IDENT in first.split()


def smtp_banner(
    listen: str,
    ready: str = "220",
    bye: bytes = b"QUIT\r\n",
    tls: bool = False,
    proxy_trusted: tuple[str, ...] = (),
) -> tuple[bool, str]:
    """Connect to the configured listener and read its greeting (SMTP's, or with
    `ready`="* OK" and `bye`=LOGOUT an IMAP listener's, `tls` for implicit TLS). From an
    address the listener trusts as a proxy, say so first as a balancer's health check
    does (PROXY UNKNOWN, before TLS on an implicit-TLS listener): the listener would wait
    for a header and close without one."""
    host, port = parse_hostport(listen)
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    try:
        with socket.create_connection((host, port), timeout=TIMEOUT) as raw:
            own = raw.getsockname()[0]
            if in_networks(own, networks(proxy_trusted)):
                raw.sendall(b"PROXY UNKNOWN\r\n")
            s = _unverified().wrap_socket(raw) if tls else raw
            s.settimeout(TIMEOUT)
            greeting = s.recv(512).decode("ascii", "replace").strip()
            s.sendall(bye)
    except OSError as e:
        return False, f"{host}:{port}: {e.strerror or e}"
    said = greeting.splitlines()[0] if greeting else "no greeting"
    if not greeting.startswith(ready):
        return False, f"{host}:{port}: {said}"
    if ready == "220" and not is_our_greeting(greeting):
        return False, f"{host}:{port}: not this receiver: {said}"
    return True, f"{host}:{port}: {said}"


def _unverified() -> ssl.SSLContext:
    """A health check of our own listener: whether it answers, not its certificate."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def healthz(listen: str) -> tuple[bool, str]:
    host, port = parse_hostport(listen, "metrics.listen")
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as r:
            return True, f"{url}: {r.read().decode().strip()}"
    except urllib.error.HTTPError as e:
        return False, f"{url}: {e.code} {e.read().decode(errors='replace').strip()}"
    except OSError as e:
        return False, f"{url}: {getattr(e, 'reason', e)}"


@click.command(short_help="Check SMTP, the database and /healthz; exit 1 when down.")
@click.option(
    "--listen",
    metavar="HOST:PORT",
    callback=hostport,
    help="SMTP listener to check (default: smtp.listen).",
)
@click.option(
    "--metrics",
    "metrics_listen",
    metavar="HOST:PORT",
    callback=hostport,
    help="Metrics listener to ask for /healthz (default: metrics.listen).",
)
@json_option
@pass_app
def status(app: AppContext, listen: str | None, metrics_listen: str | None, as_json: bool) -> None:
    """Check the SMTP listener, the database and /healthz; exit 1 when any is down."""
    cfg = app.config
    checks: dict[str, dict] = {}
    ok, detail = smtp_banner(listen or cfg.smtp.listen, proxy_trusted=cfg.smtp.proxy_trusted)
    checks["smtp"] = {"ok": ok, "detail": detail}
    for key, name in (("listen", "imap"), ("implicit_listen", "imaps")):
        if getattr(cfg.imap, key):
            ok, detail = smtp_banner(
                getattr(cfg.imap, key),
                "* OK",
                b"a LOGOUT\r\n",
                tls=key == "implicit_listen",
                proxy_trusted=cfg.imap.proxy_trusted,
            )
            checks[name] = {"ok": ok, "detail": detail}
    db = open_database(cfg.database_url, cfg.database.lock_timeout)
    problem = database_answers(db)
    version = None if problem else schema_version(db)
    if problem is None and version != SCHEMA_VERSION:
        problem = (
            f"schema version {version}, code needs {SCHEMA_VERSION}: "
            "run `threads-receiver db upgrade`"
            if version
            else "no schema: run `init`"
        )
    checks["database"] = {
        "ok": problem is None,
        "detail": problem or f"{_redacted(cfg.database_url)} (schema {version})",
    }
    metrics_listen = metrics_listen or cfg.metrics.listen
    if metrics_listen:
        ok, detail = healthz(metrics_listen)
        checks["metrics"] = {"ok": ok, "detail": detail}
    data = {"ok": all(c["ok"] for c in checks.values()), "checks": checks}
    if checks["database"]["ok"]:
        with db.connection_context():
            data["mailboxes"] = Mailbox.select().count()
            data["deliveries"] = Delivery.select().count()
            data["quarantined"] = Delivery.select().where(Delivery.status == "quarantined").count()
            data["last_delivery_at"] = iso(Delivery.select(fn.MAX(Delivery.received_at)).scalar())
    if as_json:
        emit_json(data)
    else:
        for name, c in checks.items():
            click.echo(f"{name:<9} {'ok  ' if c['ok'] else 'DOWN'}  {c['detail']}")
        if "deliveries" in data:
            click.echo(
                f"store     {data['mailboxes']} mailboxes, {data['deliveries']} deliveries "
                f"({data['quarantined']} quarantined), last at {data['last_delivery_at'] or '-'}"
            )
    sys.exit(0 if data["ok"] else 1)


def _redacted(url: str) -> str:
    """A database URL without its password, for printing."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if at and ":" in creds:
        return f"{scheme}{sep}{creds.split(':', 1)[0]}:***@{host}"
    return url


COMMANDS = [status]
