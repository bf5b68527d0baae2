"""Mail files on disk: reading mbox, Maildir and folders of .eml; writing mbox and Maildir.

What comes out of a reader is a message in wire form: line endings are CRLF (mbox and
Maildir files usually keep LF, often mixed; SMTP always carries CRLF, so a file imported
by hand and the same message pushed by SMTP are the same bytes). Nothing else changes.

mbox is read and written as mboxrd: `>From ` quoting is undone on read and added on write,
so export → import gives back the stored bytes exactly. A `From ` line only separates
messages when a header line follows it and it either follows a blank line or looks like
a real separator (an address and a date), so a body line starting with "From " stays put.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from collections.abc import Iterable, Iterator

from receiver.mail import read as read_mail

_BARE_LF = re.compile(rb"(?<!\r)\n")
_HEADER_LINE = re.compile(rb"[!-9;-~]+[ \t]*:")
# "From sender Thu Dec 31 22:50:51 2009" and the variants real archives carry.
_SEPARATOR = re.compile(rb"From \S+\s+.*\d\d?:\d\d(:\d\d)?.*\d{4}")
_QUOTED_FROM = re.compile(rb">+From ")
_QUOTE_ON_WRITE = re.compile(rb"(?m)^(>*From )")


def wire_form(raw: bytes) -> bytes:
    """CRLF line endings; a bare CR is left alone."""
    return _BARE_LF.sub(b"\r\n", raw)


# C0 controls other than TAB, LF, CR and ESC (ISO-2022-JP headers carry ESC): binary data.
_BINARY = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1a\x1c-\x1f\x7f]")


def is_message(raw: bytes) -> bool:
    """Whether a file's bytes can be a mail message: a header field first, and a header
    block (as receiver.mail reads it) of text. A malformed line further down the header
    is a defect of a message, not a sign of something else: it is kept.

    `import` asks this of the files a person pointed it at and of what is piped to it (an
    empty file, a database, random bytes are not mail); SMTP keeps whatever a sender
    committed and never asks.
    """
    mail = read_mail(raw)
    return bool(mail.fields) and mail.fields[0].start == 0 and not _BINARY.search(mail.header)


def strip_from_line(raw: bytes) -> bytes:
    """A single message saved with its mbox `From ` line (procmail, Postfix pipe flag F)."""
    if raw.startswith(b"From "):
        first, _, rest = raw.partition(b"\n")
        if _HEADER_LINE.match(rest):
            return rest
    return raw


@dataclass(frozen=True)
class MailItem:
    raw: bytes
    # How far into the source we are after this item: bytes for mbox, files otherwise.
    progress: int
    # Where it came from, for messages about a failure: "path:offset" or a file path.
    where: str


class MailSource:
    """One of: an mbox file, a Maildir, a folder of message files, one message file."""

    def __init__(self, path: Path):
        self.path = path
        if path.is_dir():
            if (path / "cur").is_dir() or (path / "new").is_dir():
                self.kind = "maildir"
                files = sorted(_files(path / "new")) + sorted(_files(path / "cur"))
            else:
                self.kind = "folder"
                files = sorted(_files(path))
            self.files = files
            self.total = len(files)
        elif path.is_file():
            with open(path, "rb") as f:
                head = f.read(5)
            self.kind = "mbox" if head == b"From " else "message"
            self.files = [path]
            self.total = path.stat().st_size if self.kind == "mbox" else 1
        else:
            raise FileNotFoundError(f"no such file or folder: {path}")

    def __iter__(self) -> Iterator[MailItem]:
        if self.kind == "mbox":
            with open(self.path, "rb") as f:
                yield from read_mbox(f, str(self.path))
            return
        for i, p in enumerate(self.files, 1):
            yield MailItem(wire_form(strip_from_line(p.read_bytes())), i, str(p))


def _files(folder: Path) -> Iterator[Path]:
    for entry in os.scandir(folder):
        if entry.is_file() and not entry.name.startswith("."):
            yield Path(entry.path)


def read_mbox(f: BinaryIO, name: str = "mbox") -> Iterator[MailItem]:
    """Messages of an mbox file, tolerant of unquoted `From ` lines and mixed line endings."""
    lines: list[bytes] = []
    offset = 0
    start = 0
    prev_blank = True
    candidate: bytes | None = None  # a `From ` line waiting for the next line to decide

    def finish(end: int) -> Iterator[MailItem]:
        if lines and lines[-1] in (b"\n", b"\r\n"):
            lines.pop()  # the blank line mbox puts before the next separator
        raw = b"".join(lines)
        lines.clear()
        if raw.strip():
            yield MailItem(wire_form(raw), end, f"{name}:{start}")

    for line in f:
        if candidate is not None:
            sep, candidate = candidate, None
            if _HEADER_LINE.match(line):
                yield from finish(offset - len(sep))
                start = offset - len(sep)
            else:
                lines.append(_unquote(sep))
        if line.startswith(b"From ") and (prev_blank or _SEPARATOR.match(line)):
            candidate = line
        else:
            lines.append(_unquote(line))
        prev_blank = line in (b"\n", b"\r\n")
        offset += len(line)
    if candidate is not None:
        lines.append(_unquote(candidate))
    yield from finish(offset)


def _unquote(line: bytes) -> bytes:
    if line[:1] == b">" and _QUOTED_FROM.match(line):
        return line[1:]
    return line


def from_line(sender: str | None, when: dt.datetime | None) -> bytes:
    who = sender if sender and not any(c.isspace() for c in sender) else "MAILER-DAEMON"
    stamp = time.asctime((when or dt.datetime(1970, 1, 1)).timetuple())
    return f"From {who} {stamp}\n".encode("utf-8", "replace")


def write_mbox(out: BinaryIO, sender: str | None, when: dt.datetime | None, raw: bytes) -> None:
    """Append one message, mboxrd-quoted, followed by the blank separator line."""
    out.write(from_line(sender, when))
    out.write(_QUOTE_ON_WRITE.sub(rb">\1", raw))
    if not raw.endswith(b"\n"):
        out.write(b"\n")
    out.write(b"\n")


class MaildirWriter:
    """Writes each message to tmp/ then renames it into cur/ (Maildir's atomic delivery)."""

    def __init__(self, path: Path):
        self.path = path
        for sub in ("tmp", "new", "cur"):
            (path / sub).mkdir(parents=True, exist_ok=True)
        self.host = socket.gethostname().replace("/", "\\057").replace(":", "\\072")

    def add(self, key: str, when: dt.datetime | None, raw: bytes) -> Path:
        """Store under a name made of `key`, so exporting again replaces, never doubles."""
        stamp = int((when or dt.datetime(1970, 1, 1)).replace(tzinfo=dt.UTC).timestamp())
        name = f"{stamp}.{key}.{self.host}"
        tmp = self.path / "tmp" / name
        tmp.write_bytes(raw)
        final = self.path / "cur" / f"{name}:2,S"
        os.replace(tmp, final)
        return final


def iter_stdin(data: bytes) -> Iterable[MailItem]:
    """One message piped in (Postfix `pipe`, procmail): maybe with its `From ` line.
    Whatever came is the item, nothing included: the importer tells mail from the rest."""
    return [MailItem(wire_form(strip_from_line(data)), 1, "stdin")]
