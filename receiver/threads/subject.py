"""Subject normalisation for the subject-join rule (pure)."""

from __future__ import annotations

import re


_REPLY_PREFIX = re.compile(
    r"^\s*((re|fwd?|aw|sv|antw|odp|wg|tr|rv|回复|答复|转发)(\[\d+\]|\(\d+\))?\s*[:：]\s*"
    r"|\[[^\]]{1,40}\]\s*)+",
    re.I,
)


def normalize_subject(subject: str | None) -> str:
    """Subject without reply/forward prefixes and [list tags], whitespace folded, lower."""
    if not subject:
        return ""
    s = _REPLY_PREFIX.sub("", subject)
    return re.sub(r"\s+", " ", s).strip().lower()
