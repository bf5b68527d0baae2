"""Log output: one line per SMTP session and per delivery, as text or as JSON.

`--log-format json` turns every line into one JSON object with the fields as keys, for a
log shipper; text keeps the same fields as key=value after the message. Delivery lines
carry `delivery` and `message` ids, the ones `threads-receiver messages show` takes.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import sys
import time
from collections.abc import Callable

log = logging.getLogger("receiver.events")

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _fields(record: logging.LogRecord) -> dict:
    return getattr(record, "fields", None) or {}


class TextFormatter(logging.Formatter):
    def __init__(self):
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = " ".join(f"{k}={_text(v)}" for k, v in _fields(record).items() if v is not None)
        return f"{line} {extra}" if extra else line


def _text(value) -> str:
    s = str(value)
    return json.dumps(s) if (not s or any(c.isspace() or c == '"' for c in s)) else s


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        data.update(_fields(record))
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False, default=str)


def setup(level: int, fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    verbose = level <= logging.DEBUG
    # aiosmtpd logs every command at INFO; our handler logs one line per delivery.
    logging.getLogger("mail.log").setLevel(logging.DEBUG if verbose else logging.WARNING)
    # mail-parser warns about every MIME part it has no slot for; the bytes are kept anyway.
    logging.getLogger("mailparser").setLevel(logging.DEBUG if verbose else logging.ERROR)


def for_child() -> Callable[[], None]:
    """This process's set-up, for a child process to make as its first step (picklable):
    a forkserver child starts with none, and logging's last resort writes what the
    libraries log there as bare lines, in no format."""
    root = logging.getLogger()
    json_lines = any(isinstance(h.formatter, JsonFormatter) for h in root.handlers)
    return functools.partial(setup, root.level, "json" if json_lines else "text")


def event(text: str, level: int = logging.INFO, **fields) -> None:
    log.log(level, text, extra={"fields": fields})


def peer_text(address) -> str | None:
    """A client's address (a socket's peername) as logs and deliveries show it, the same
    on every edge: "ip:port", and "[ip]:port" for IPv6, whose colons would run into the
    port's ("2001:db8::7:4000" is an address of its own)."""
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(address) if address else None


def session_line(session, started: float | None, error: BaseException | None = None) -> None:
    tls = getattr(session, "ssl", None)
    event(
        "session closed",
        event="session",
        session=getattr(session, "receiver_id", None),
        peer=peer_text(getattr(session, "peer", None)),
        helo=getattr(session, "host_name", None),
        tls=bool(tls),
        auth=bool(getattr(session, "authenticated", False)),
        messages=getattr(session, "receiver_messages", 0),
        seconds=round(time.monotonic() - started, 3) if started else None,
        error=repr(error) if error else None,
    )


def delivery_lines(session, envelope, outcomes) -> None:
    """One line per mailbox the copy went to."""
    if session is not None:
        session.receiver_messages = getattr(session, "receiver_messages", 0) + 1
    for o in outcomes:
        event(
            f"delivery {o.status}",
            event="delivery",
            session=envelope.session_id,
            source=envelope.source,
            mailbox=o.mailbox.email,
            status=o.status,
            delivery=o.delivery_id,
            message=o.message_id,
            reason=o.reason or None,
            mail_from=envelope.mail_from,
            peer=envelope.peer,
        )
