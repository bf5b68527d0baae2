"""Forwarding confirmations (Gmail, Outlook) received for a mailbox, newest first."""

from __future__ import annotations

import json

from receiver.store.models import Delivery

SHOWN = 5


def confirmations(mailbox_id: int, limit: int = SHOWN) -> list[dict]:
    """{provider, code, link, from, subject, received_at, delivery_id} per confirmation."""
    rows = (
        Delivery.select(Delivery.id, Delivery.received_at, Delivery.confirmation)
        .where((Delivery.mailbox == mailbox_id) & Delivery.confirmation.is_null(False))
        .order_by(Delivery.id.desc())
        .limit(limit)
    )
    return [
        {
            **json.loads(d.confirmation),
            "delivery_id": d.id,
            "received_at": d.received_at.replace(microsecond=0).isoformat() + "Z",
        }
        for d in rows
    ]
