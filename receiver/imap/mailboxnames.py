"""Folder names as clients send them: modified UTF-7 (RFC 3501 5.1.3), read strictly,
with INBOX spelled one way.

pymap 0.36's decoder never returns on a name with an "&" that no "-" closes (`"&x"`):
one such line, sent before login, held the daemon's event loop for good. A name that
is not well-formed modified UTF-7 is a parsing error here (BAD), as RFC 3501 wants.

A name with 8-bit bytes is no modified UTF-7 either (its characters are US-ASCII), but
pymap's decoder read each such byte as a Latin-1 character: raw UTF-8 "Jänner", as
isync 1.4 sends it, became the folder "JÃ¤nner", which the client then could
never open. Such a name is refused with NO, Dovecot's answer (it too does not take
UTF8=ACCEPT), so that the client fails at once and nothing is created.

pymap's encoder writes an "&" that comes right after non-ASCII characters bare: the
folder "é&x" was listed as "&AOk-&x", a name that is no modified UTF-7, so a client
that sent it back was told BAD; `encode` has it write "&AOk-&-x".

pymap spells "inbox" as INBOX (it is case-insensitive, RFC 3501 5.1) but not "inbox/x",
which became a second, \\Noselect "inbox" in LIST beside INBOX.
"""

from __future__ import annotations

import re

from pymap.parsing import modutf7
from pymap.parsing.command import auth
from pymap.parsing.exceptions import NotParseable
from pymap.parsing.specials import mailbox

from receiver.imap.backend import DELIMITER
from receiver.store.folders import INBOX

# Between "&" and "-": modified BASE64 (RFC 3501 5.1.3), "," in place of "/".
_SHIFTED = re.compile(rb"[A-Za-z0-9+,]*")
_lenient = modutf7.modutf7_decode
_encode_between_ampersands = modutf7.modutf7_encode


class EightBitName(NotParseable):
    """A folder name with a byte above US-ASCII: answered NO (`REFUSAL`), not BAD."""


REFUSAL = b"Mailbox name is not valid mUTF-7"


def decode(data: bytes) -> str:
    """The folder name `data` spells; NotParseable if it is not modified UTF-7."""
    if not data.isascii():
        raise EightBitName(memoryview(data))
    for shifted in data.split(b"&")[1:]:
        end = shifted.find(b"-")
        if end < 0 or not _SHIFTED.fullmatch(shifted, 0, end):
            raise NotParseable(memoryview(data))
    try:
        name = _lenient(data)
    except UnicodeDecodeError:
        raise NotParseable(memoryview(data)) from None
    first, sep, rest = name.partition(DELIMITER)
    return INBOX + sep + rest if sep and first.upper() == INBOX else name


def encode(data: str) -> bytes:
    """The folder name `data` in modified UTF-7: pymap's encoding of each part between
    two "&"s, which it gets right, the "&"s written "&-"."""
    return b"&-".join(_encode_between_ampersands(part) for part in data.split("&"))


def install() -> None:
    """Put `decode` in place of pymap's decoder where pymap parses a command's folder
    name (every command's mailbox argument, and LIST/LSUB's pattern), and `encode` in
    place of its encoder where it writes one (LIST, LSUB, STATUS)."""
    mailbox.modutf7_decode = decode
    mailbox.modutf7_encode = encode
    auth.modutf7_decode = decode
