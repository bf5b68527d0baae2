"""Weak ids: references that are no plausible Message-ID (pure).

git send-email, answered wrongly, writes `In-Reply-To: <yes>`, and unrelated
conversations years apart then share that id. A weak id (`is_weak_id`: no `@`) joins
a message only

- to the message whose Message-ID it is, once that is received, and
- to messages that reference the same weak id, come from the same sender and are
  dated in the same or a neighbouring slot of `SLOT` (UTC): a series sent in one go.

The second is a predicate on a pair of messages, so its connected components (the
threads it yields) are a function of the set. The store keeps one link key per
(weak id, sender, slot); a message creates its own slot's key and joins the two
neighbouring keys when they exist, which adds exactly the pairs the predicate names.
"""

from __future__ import annotations

import datetime as dt
import hashlib

SLOT = dt.timedelta(hours=3)
KEY_PREFIX = "weak:"
_EPOCH = dt.datetime(1970, 1, 1)


def slot_of(date: dt.datetime) -> int:
    """The slot number of a naive-UTC date."""
    return (date - _EPOCH) // SLOT


def slot_key(weak_id: str, sender: str, slot: int) -> str:
    # Hashed: ids and addresses of up to 250 characters each must fit one key column.
    digest = hashlib.sha256(f"{weak_id}\n{sender}".encode()).hexdigest()[:32]
    return f"{KEY_PREFIX}{digest}:{slot}"


def weak_keys(
    weak_ids: tuple[str, ...], sender: str | None, date: dt.datetime | None
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(own slot keys, neighbouring slot keys) of a message; none without sender or date."""
    if not weak_ids or not sender or date is None:
        return (), ()
    slot = slot_of(date)
    own = tuple(slot_key(w, sender, slot) for w in weak_ids)
    near = tuple(slot_key(w, sender, slot + d) for w in weak_ids for d in (-1, 1))
    return own, near
