"""Deleting deliveries and what no delivery holds any more (messages, blobs, thread ids)."""

from __future__ import annotations

from receiver.store.models import Blob, Delivery, Message, MsgId


def delete_deliveries(delivery_ids_query) -> int:
    """Delete the deliveries selected by `delivery_ids_query` (a SELECT of Delivery.id) and
    every message and blob left without a delivery. Their ids become ghosts, so the
    threads that remain keep their shape. Call inside a transaction."""
    ids = [row[0] for row in delivery_ids_query.tuples()]
    if not ids:
        return 0
    message_ids = {m for (m,) in Delivery.select(Delivery.message).where(Delivery.id.in_(ids)).tuples()}
    Delivery.delete().where(Delivery.id.in_(ids)).execute()
    orphans = [m for m in message_ids
               if not Delivery.select().where(Delivery.message == m).exists()]
    if orphans:
        gone = [mid for (mid,) in Message.select(Message.message_id)
                .where(Message.id.in_(orphans)).tuples()]
        Message.delete().where(Message.id.in_(orphans)).execute()
        still_held = {mid for (mid,) in Message.select(Message.message_id)
                      .where(Message.message_id.in_(gone) & Message.thread_id.is_null(False)).tuples()}
        ghosts = [g for g in gone if g not in still_held]
        if ghosts:
            MsgId.update(ghost=True).where(MsgId.msgid.in_(ghosts)).execute()
    referenced = (Delivery.select(Delivery.blob).union(
        Delivery.select(Delivery.wrapper_blob).where(Delivery.wrapper_blob.is_null(False))).union(
        Message.select(Message.blob).where(Message.blob.is_null(False))))
    Blob.delete().where(Blob.sha256.not_in(referenced)).execute()
    return len(ids)
