"""Where mail clients and bulk-copy tools reach the IMAP side, as guides and the
credentials CSV tell them (no pymap here: the CLI imports this)."""

from __future__ import annotations

import csv
import io

from receiver.config import Config, parse_hostport

IMAPS_PORT = 993
CSV_COLUMNS = ("email", "server", "port", "username", "password")


def endpoint(config: Config) -> tuple[str, int]:
    """(host name, implicit TLS port): the name in the certificate, i.e. smtp.hostname
    or else the first receiver domain, and the port of imap.implicit_listen (993)."""
    host = config.smtp.hostname or config.domains[0]
    listen = config.imap.implicit_listen
    port = parse_hostport(listen, "imap.implicit_listen")[1] if listen else IMAPS_PORT
    return host, port


def starttls_port(config: Config) -> int | None:
    """The port of imap.listen (IMAP with STARTTLS), None when there is no such listener."""
    listen = config.imap.listen
    return parse_hostport(listen, "imap.listen")[1] if listen else None


def credentials_csv(rows: list[tuple[str, str, str]], host: str, port: int) -> str:
    """The CSV a bulk-copy tool imports: one line per (email, username, password)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for email, username, password in rows:
        writer.writerow((email, host, port, username, password))
    return out.getvalue()
