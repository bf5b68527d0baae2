"""mail-parser turns raw bytes into one `ParsedMessage`; a failure still yields a record.

The record is what threading and the store need; the raw bytes stay the truth.
"""

from __future__ import annotations

import base64
import datetime as dt
import email.policy
import email.utils
import hashlib
import logging
from dataclasses import dataclass, field

import mailparser

from receiver.mail import RawMail, read, unfold
from receiver.parse.ids import clean_references, extract_ids, normalize_id
from receiver.parse.slim import confirmed, slim

log = logging.getLogger(__name__)

# The author's headers: what the content hash covers. Trace fields (Received,
# Authentication-Results, ARC-*, forwarding marks, a forwarder's DKIM-Signature)
# differ between copies of one message and are left out.
AUTHOR_HEADERS = (
    "from",
    "sender",
    "to",
    "cc",
    "date",
    "subject",
    "message-id",
    "in-reply-to",
    "references",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
)


@dataclass
class ParsedMessage:
    message_id: str
    synthetic_id: bool
    content_hash: str
    subject: str | None = None
    date: dt.datetime | None = None  # naive UTC
    date_raw: str | None = None
    from_addr: str | None = None
    from_name: str | None = None
    to: list[tuple[str, str]] = field(default_factory=list)
    cc: list[tuple[str, str]] = field(default_factory=list)
    reply_to: list[tuple[str, str]] = field(default_factory=list)
    in_reply_to: list[str] = field(default_factory=list)
    references: list[str] = field(default_factory=list)
    thread_index: str | None = None
    text_body: str | None = None
    html_body: str | None = None
    attachments: list[dict] = field(default_factory=list)
    defects: list[str] = field(default_factory=list)
    parse_error: str | None = None

    @property
    def participants(self) -> set[str]:
        people = {a for _, a in self.to + self.cc}
        if self.from_addr:
            people.add(self.from_addr)
        return {p.lower() for p in people if p}


def content_hash(raw: bytes) -> str:
    """sha256 over the author's headers and the body, line endings folded to LF, so that
    two copies of one message that differ only in trace headers hash alike."""
    return _content_hash(read(raw))


# Body octets folded and hashed at a time: the whole body folded at once took two copies
# of it (40 MB in a parse worker for a 20 MB attachment).
_HASH_SLICE = 1 << 20


def header_digest(mail: RawMail) -> bytes:
    """What the content hash takes from the header block of `mail` (as received).

    The author fields tell one message from another, but not two texts that are no mail
    (all header block, with no field or none of the author's): a block without an author
    field is taken with all its fields, and the lines that are no field (which the
    parser's view leaves out) as they are, but for an mbox envelope line ahead of the
    fields. Mail with author fields and no such lines hashes as it always did, so stored
    messages still recognise their copies."""
    view = mail.for_parser
    out = []
    authored = [f for f in view.fields if f.name.lower() in AUTHOR_HEADERS]
    for f in authored or view.fields:
        out.append(f.name.lower().encode() + b":" + b" ".join(f.value.split()) + b"\n")
    for start, stop in mail.junk:
        if start == 0 and mail.fields and mail.raw.startswith(b"From "):
            continue  # the envelope line: transport, as a Received field is
        # A leading blank keeps a line from reading as a field line above.
        out.append(b" " + mail.raw[start:stop].removesuffix(b"\n").removesuffix(b"\r") + b"\n")
    return b"".join(out)


def _content_hash(mail: RawMail) -> str:
    h = hashlib.sha256(header_digest(mail))
    h.update(b"\n")
    # The body is hashed with CRLF folded to LF and trailing line breaks left out. CR
    # and LF pairs never overlap, so the trailing breaks can be taken off the raw body
    # from its end, a pair at a time, before folding.
    view = mail.for_parser
    body = memoryview(view.raw)[view.body_start :]
    end = len(body)
    while end and body[end - 1] == 0x0A:
        end -= 2 if end >= 2 and body[end - 2] == 0x0D else 1
    pos = 0
    while pos < end:
        stop = min(pos + _HASH_SLICE, end)
        if body[stop - 1] == 0x0D and stop < end and body[stop] == 0x0A:
            stop += 1  # a CRLF pair is folded within one slice
        h.update(bytes(body[pos:stop]).replace(b"\r\n", b"\n"))
        pos = stop
    return h.hexdigest()


def _addresses(values: list[tuple[str, str]] | None) -> list[tuple[str, str]]:
    out = []
    for name, addr in values or []:
        addr = (addr or "").strip()
        if addr:
            out.append(((name or "").strip(), addr.lower() if "@" in addr else addr))
    return out


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


def _date_from_header(raw_date: str | None) -> dt.datetime | None:
    if not raw_date:
        return None
    try:
        return _utc(email.utils.parsedate_to_datetime(raw_date))
    except (TypeError, ValueError, IndexError):
        return None


def _decoded(att: dict) -> bytes:
    payload = att.get("payload") or ""
    if att.get("binary"):
        try:
            return base64.b64decode(payload, validate=False)
        except ValueError:
            pass
    return payload.encode("utf-8", "surrogateescape")


def _attachment_meta(att: dict, omitted: dict[bytes, tuple[int, str]]) -> dict:
    data = _decoded(att)
    size, sha256 = omitted.get(data) or (len(data), hashlib.sha256(data).hexdigest())
    return {
        "name": att.get("filename") or None,
        "type": att.get("mail_content_type") or "application/octet-stream",
        "size": size,
        "sha256": sha256,
    }


# Base64 parts from this size on are decoded and hashed by receiver.parse.slim instead of
# mail-parser: above it, the saving outweighs the extra pass (bench/RESULTS.md).
SLIM_THRESHOLD = 8 * 1024


def _parse(message: RawMail):
    """mail-parser's result, and what receiver.parse.slim left out of the view it read."""
    view, omitted = slim(message, SLIM_THRESHOLD)
    mail = mailparser.parse_from_bytes(view)
    if omitted and not confirmed(
        omitted,
        mail.text_plain + mail.text_html + mail.text_not_managed,
        [_decoded(a) for a in mail.attachments],
    ):
        # The email package saw another structure than slim's (a header block it ends
        # early, a bare CR in a boundary line, ...): parse the message itself.
        return mailparser.parse_from_bytes(message.raw), {}
    return mail, omitted


def _subject(view: RawMail, parsed: str) -> str | None:
    """mail-parser reads 8-bit header text as UTF-8 and drops every byte that is not: a
    Subject that is not UTF-8 is taken as the reader decodes it (cp1252), its encoded
    words decoded by the email package. Any other keeps mail-parser's reading, so the
    subjects (and subject threading) of such mail stay as they were."""
    raw = next((f.value for f in view.fields if f.name.lower() == "subject"), None)
    if raw is not None:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            return str(email.policy.default.header_factory("subject", unfold(raw))) or None
    return parsed or None


class BudgetExceeded(Exception):
    """The message is over the parse budget: only its raw headers are read."""


def parse_message(message: RawMail | bytes, unparsed: str | None = None) -> ParsedMessage:
    """Parse the message as the reader's view for the parser has it (bare CR/LF in its
    header block blanked); never raises for bad mail (the error goes into `parse_error`).

    With `unparsed` (the reason), mail-parser is skipped and only the header fields are
    read, as for a message mail-parser fails on.
    """
    mail = message if isinstance(message, RawMail) else read(message)
    view = mail.for_parser
    chash = _content_hash(mail)
    raw_msgid = view.get_first("Message-ID")
    msgid = normalize_id(raw_msgid) if raw_msgid else None
    synthetic = msgid is None
    if msgid is None:
        # Stable across copies: the same content always gets the same id.
        msgid = f"{chash[:32]}@synthetic.threads-receiver"
    rec = ParsedMessage(message_id=msgid, synthetic_id=synthetic, content_hash=chash)
    rec.date_raw = view.get_first("Date")
    rec.thread_index = (view.get_first("Thread-Index") or "").strip() or None
    try:
        if unparsed is not None:
            raise BudgetExceeded(unparsed)
        mail, omitted = _parse(view)
        rec.subject = _subject(view, mail.subject)
        rec.date = _utc(mail.date) if isinstance(mail.date, dt.datetime) else None
        frm = _addresses(mail.from_)
        if frm:
            rec.from_name, rec.from_addr = frm[0]
        rec.to = _addresses(mail.to)
        rec.cc = _addresses(mail.cc)
        rec.reply_to = _addresses(getattr(mail, "reply_to", None))
        rec.text_body = "\n".join(mail.text_plain) or None
        rec.html_body = "\n".join(mail.text_html) or None
        rec.attachments = [_attachment_meta(a, omitted) for a in mail.attachments]
        rec.defects = sorted({str(d) for d in (mail.defects_categories or ())})
    except Exception as e:  # mail-parser raises many kinds on hostile input
        log.info("mail-parser failed on %s: %r", msgid, e)
        rec.parse_error = f"{type(e).__name__}: {e}"[:500]
        rec.subject = view.get_first("Subject")
        for name, addr in email.utils.getaddresses(view.get_all("From"))[:1]:
            rec.from_name, rec.from_addr = name, addr.lower() or None
    if rec.date is None:
        rec.date = _date_from_header(rec.date_raw)
    own = {a for _, a in rec.to + rec.cc}
    if rec.from_addr:
        own.add(rec.from_addr)
    rec.in_reply_to = clean_references(
        extract_ids(" ".join(view.get_all("In-Reply-To"))), msgid, own
    )
    rec.references = clean_references(extract_ids(" ".join(view.get_all("References"))), msgid, own)
    return rec
