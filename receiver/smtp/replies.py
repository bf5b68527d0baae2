"""Enhanced status codes (RFC 2034, RFC 3463) on every reply the receiver sends (pure).

The receiver advertises ENHANCEDSTATUSCODES, so every 2xx, 4xx and 5xx reply carries
one, also the replies aiosmtpd's own command implementations write ("250 OK",
"503 Error: nested MAIL command"). RFC 2034 leaves out the greeting and the replies to
HELO/EHLO/LHLO; 3xx replies (354, the 334 AUTH challenges) have none.
"""

from __future__ import annotations

import re

# A code already there counts only when its class is the reply's (RFC 3463): "421 2.0.0"
# is text that happens to look like a code.
_HAS_CODE = re.compile(r"([245])\d\d[ -]\1\.\d{1,3}\.\d{1,3}(?: |$)")
_REPLY = re.compile(r"([245]\d\d)([ -]?)(.*)", re.S)

# The code of a reply by its number, as Postfix answers the same situations.
_CODES = {
    "220": "2.0.0",
    "221": "2.0.0",
    "235": "2.7.0",
    "250": "2.0.0",
    "252": "2.0.0",
    "451": "4.3.0",
    "452": "4.3.1",
    "454": "4.7.0",
    "455": "4.5.4",
    "500": "5.5.2",
    "501": "5.5.4",
    "502": "5.5.1",
    "503": "5.5.1",
    "504": "5.5.4",
    "530": "5.7.0",
    "535": "5.7.8",
    "538": "5.7.11",
    "552": "5.3.4",
    "553": "5.1.3",
    "555": "5.5.4",
}
# RFC 3463: a sender (X.1.0) or a destination address (X.1.5) accepted.
_BY_COMMAND = {("MAIL", "250"): "2.1.0", ("RCPT", "250"): "2.1.5"}
_NO_CODES = {"HELO", "EHLO", "LHLO"}


def enhanced(reply: str, command: str | None) -> str:
    """`reply` (one line or several joined by CRLF) with an enhanced status code in each
    line that lacks one; `command` is the verb being answered, None for the greeting."""
    if command is None or command in _NO_CODES:
        return reply
    return "\r\n".join(_line(line, command) for line in reply.split("\r\n"))


def _line(line: str, command: str) -> str:
    m = _REPLY.fullmatch(line)
    if m is None or _HAS_CODE.match(line):
        return line
    number, sep, text = m.groups()
    code = _BY_COMMAND.get((command, number)) or _CODES.get(number) or f"{number[0]}.0.0"
    return f"{number}{sep or ' '}{code} {text}".rstrip()


def is_client_error(reply: str) -> bool:
    """A refusal the client earned, as the session's error limit counts them: 4xx and 5xx,
    but not X.3.x or X.4.x (this system's capacity, storage or network, RFC 3463): a
    sender retrying into an outage or a full budget is not misbehaving."""
    if reply[:1] not in ("4", "5"):
        return False
    return not re.match(r"\d{3}[ -][45]\.[34]\.", reply)
