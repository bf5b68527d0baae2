"""Folder names as clients send them: modified UTF-7 (RFC 3501 5.1.3), read strictly,
with INBOX spelled one way.

pymap 0.36's decoder never returns on a name with an "&" that no "-" closes (`"&x"`):
one such line, sent before login, held the daemon's event loop for good. A name that
is not well-formed modified UTF-7 is a parsing error here (BAD), as RFC 3501 wants.

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


def decode(data: bytes) -> str:
    """The folder name `data` spells; NotParseable if it is not modified UTF-7."""
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


def install() -> None:
    """Put `decode` in place of pymap's decoder where pymap parses a command's folder
    name (every command's mailbox argument, and LIST/LSUB's pattern)."""
    mailbox.modutf7_decode = decode
    auth.modutf7_decode = decode
