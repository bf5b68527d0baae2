"""The tables of schema version 1 that version 2 changed, frozen as they were released,
so a test can build the database an older receiver left behind."""

from __future__ import annotations

from peewee import AutoField, BooleanField, CharField, DateTimeField, IntegerField, TextField

from receiver.store.models import MODELS, Base, Mailbox, utcnow


class MailboxV1(Base):
    id = AutoField()
    email = CharField(max_length=320, unique=True)
    state = CharField(max_length=16, default="active")
    policy_altered = CharField(max_length=16, null=True)
    policy_unverifiable = CharField(max_length=16, null=True)
    keep_days = IntegerField(null=True)
    legal_hold = BooleanField(default=False)
    allow_from = TextField(null=True)
    created_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "mailbox"


def v1_models() -> list:
    """In creation order: the frozen tables first, as the others' foreign keys need them."""
    return [MailboxV1] + [m for m in MODELS if m is not Mailbox]
