"""Forwarding confirmations (Gmail, Outlook) received for a mailbox, newest first."""

from __future__ import annotations

import json

from receiver.store.models import Delivery

SHOWN = 5


def confirmations(mailbox_id: int, limit: int = SHOWN) -> list[dict]:
    """{provider, code, link, from, subject, received_at, delivery_id} per confirmation."""
    rows = (Delivery.select(Delivery.id, Delivery.received_at, Delivery.verify_detail)
            .where((Delivery.mailbox == mailbox_id)
                   & Delivery.verify_detail.contains('"confirmation"'))
            .order_by(Delivery.id.desc()).limit(limit))
    out = []
    for d in rows:
        found = json.loads(d.verify_detail).get("confirmation")
        if found:
            out.append({**found, "delivery_id": d.id,
                        "received_at": d.received_at.replace(microsecond=0).isoformat() + "Z"})
    return out
