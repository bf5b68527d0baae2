"""Message-ID normalisation and reference cleaning (RFC 5322 msg-id, as real mail has it).

Threading links on these strings, so every id goes through `normalize_id` once, here.
"""

from __future__ import annotations

import re

MAX_ID_LENGTH = 250

_ANGLE = re.compile(r"<([^<>]*)>")


def normalize_id(value: str) -> str | None:
    """`<"x"@Host>` → `x@host`: no brackets or whitespace, unquoted local part, domain
    lower-cased. None for a token that is no usable id."""
    v = re.sub(r"\s+", "", value.strip())
    if v.startswith("<") and v.endswith(">"):
        v = v[1:-1]
    if not v or len(v) > MAX_ID_LENGTH or "<" in v or ">" in v:
        return None
    local, at, domain = v.rpartition("@")
    if not at:
        # An id without a domain is still an id in practice (some MUAs), keep it as is.
        return v if _plausible(v) else None
    if len(local) >= 2 and local.startswith('"') and local.endswith('"'):
        local = local[1:-1]
    if not local or not domain:
        return None
    result = f"{local}@{domain.lower()}"
    return result if _plausible(result) else None


def _plausible(v: str) -> bool:
    # Printable ASCII, or real non-ASCII characters (no controls, no lone surrogates
    # left by undecodable bytes).
    return all(33 <= ord(c) < 127 or (ord(c) > 159 and not 0xD800 <= ord(c) <= 0xDFFF)
               for c in v)


def extract_ids(header_value: str | None) -> list[str]:
    """Every normalised id in a References/In-Reply-To value, in order, first seen kept."""
    if not header_value:
        return []
    tokens = _ANGLE.findall(header_value)
    if not tokens:
        tokens = header_value.split()
    out: list[str] = []
    for t in tokens:
        n = normalize_id(t)
        if n and n not in out:
            out.append(n)
    return out


def clean_references(ids: list[str], own_id: str | None, own_addresses: set[str]) -> list[str]:
    """Drop the message's own id and tokens that are really one of its own addresses
    (some clients put `<user@host>` from To into In-Reply-To)."""
    addrs = {a.lower() for a in own_addresses}
    return [i for i in ids if i != own_id and i.lower() not in addrs]
