"""Message-ID normalisation and reference cleaning (RFC 5322 msg-id, as real mail has it).

Threading links on these strings, so every id goes through `normalize_id` once, here.
The rules, each with a unit test in tests/test_ids.py:

- `<"x"@Host>`, `< x@host >` and `x@HOST` are one id, `x@host`: brackets and whitespace
  go, a quoted local part is unquoted, the domain is lower-cased (the local part keeps
  its case: RFC 5322 makes it case-sensitive and generators rely on that).
- Garbage is no id: empty, control characters, nested brackets, no letter or digit,
  over `MAX_ID_LENGTH` characters, and (outside angle brackets) a word without `@`,
  because a bracket-less In-Reply-To is prose ("your message of Tue, 5 Jan") far more
  often than an id.
- An id without `@` (`<yes>`, `<1234>`) is *weak*: kept, since old MUAs wrote such
  Message-IDs, but no evidence on its own (`is_weak_id`; receiver/threads/weak.py).
- A message never references itself, nor one of its own From/To/Cc addresses (some
  clients put the `<user@host>` they reply to into In-Reply-To).
"""

from __future__ import annotations

import re

MAX_ID_LENGTH = 250

_ANGLE = re.compile(r"<([^<>]*)>")
_WS = re.compile(r"\s+")


def normalize_id(value: str | None) -> str | None:
    """`<"x"@Host>` → `x@host`; None for a token that is no usable id."""
    if value is None:
        return None
    v = _WS.sub("", value)
    if v.startswith("<") and v.endswith(">"):
        v = v[1:-1]
    if not v or len(v) > MAX_ID_LENGTH or "<" in v or ">" in v:
        return None
    local, at, domain = v.rpartition("@")
    if not at:
        # A bracketed id without a domain still occurs (old MUAs); keep it when plausible.
        return v if _plausible(v) else None
    if len(local) >= 2 and local.startswith('"') and local.endswith('"'):
        local = local[1:-1]
    if not local or not domain:
        return None
    result = f"{local}@{domain.lower()}"
    return result if _plausible(result) else None


def _plausible(v: str) -> bool:
    # Printable ASCII, or real non-ASCII characters (no controls, no lone surrogates
    # left by undecodable bytes), and at least one letter or digit.
    return all(
        33 <= ord(c) < 127 or (ord(c) > 159 and not 0xD800 <= ord(c) <= 0xDFFF) for c in v
    ) and any(c.isalnum() for c in v)


def is_weak_id(msgid: str) -> bool:
    """An id no Message-ID generator would write today: no `@` (git send-email's `<yes>`)."""
    return "@" not in msgid


def extract_ids(header_value: str | None) -> list[str]:
    """Every normalised id in a References/In-Reply-To value, in order, first seen kept."""
    if not header_value:
        return []
    tokens = _ANGLE.findall(header_value)
    if not tokens:
        # No brackets at all: only `local@domain` words can be ids, the rest is prose.
        tokens = [t for t in header_value.split() if "@" in t.strip("<>\"'(),;")]
        tokens = [t.strip("\"'(),;") for t in tokens]
    out: list[str] = []
    for t in tokens:
        n = normalize_id(t)
        if n and n not in out:
            out.append(n)
    return out


def clean_references(ids: list[str], own_id: str | None, own_addresses: set[str]) -> list[str]:
    """Drop the message's own id and tokens that are really one of its own addresses."""
    addrs = {a.lower() for a in own_addresses}
    return [i for i in ids if i != own_id and i.lower() not in addrs]
