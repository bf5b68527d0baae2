"""Outlook/Exchange Thread-Index (MS-OXOMSG 2.2.1.3), pure.

The header is base64 of a 22-byte conversation header (a FILETIME and a GUID) plus one
5-byte child block per reply. The first 22 bytes identify the conversation, so they
are a threading link even when Outlook sends weak or no References; dropping the last
child block gives the Thread-Index of the message replied to.
"""

from __future__ import annotations

import base64
import binascii

CONVERSATION_BYTES = 22
CHILD_BLOCK_BYTES = 5
KEY_PREFIX = "ti:"


def decode(thread_index: str | None) -> bytes | None:
    """The raw bytes of a well-formed Thread-Index, else None."""
    if not thread_index:
        return None
    try:
        raw = base64.b64decode("".join(thread_index.split()), validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(raw) < CONVERSATION_BYTES or (len(raw) - CONVERSATION_BYTES) % CHILD_BLOCK_BYTES:
        return None
    return raw


def conversation_key(thread_index: str | None) -> str | None:
    """The link key of the conversation ("ti:" + hex of the first 22 bytes)."""
    raw = decode(thread_index)
    return KEY_PREFIX + raw[:CONVERSATION_BYTES].hex() if raw else None


def parent_index(thread_index: str | None) -> bytes | None:
    """The raw Thread-Index of the message this one replies to (None for a first message)."""
    raw = decode(thread_index)
    if raw is None or len(raw) == CONVERSATION_BYTES:
        return None
    return raw[:-CHILD_BLOCK_BYTES]
