"""The schema: peewee models bound at run time to SQLite or PostgreSQL.

Rows, not files: a delivery points at a content-addressed blob (zstd-compressed raw
bytes, exactly as received), at its mailbox and at the logical message it carries.
Threading state lives in `MsgId` rows (one per Message-ID, ghosts included) so that a
merge is one UPDATE and an old thread id still resolves through `ThreadMerge`.
"""

from __future__ import annotations

import datetime as dt

from peewee import (
    AutoField,
    BigIntegerField,
    BlobField,
    BooleanField,
    CharField,
    DatabaseProxy,
    DateTimeField,
    ForeignKeyField,
    IntegerField,
    Model,
    NodeList,
    SQL,
    SqliteDatabase,
    TextField,
)

# Bumped with every migration in receiver/store/migrations.py.
SCHEMA_VERSION = 7

database = DatabaseProxy()


def utcnow() -> dt.datetime:
    """Naive UTC: both backends store it the same way."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class Base(Model):
    class Meta:
        database = database
        legacy_table_names = False


class SchemaInfo(Base):
    version = IntegerField()


class Mailbox(Base):
    id = AutoField()
    email = CharField(max_length=320, unique=True)
    state = CharField(max_length=16, default="active")  # active | disabled
    # None means the config's [policy] default applies.
    policy_altered = CharField(max_length=16, null=True)
    policy_unverifiable = CharField(max_length=16, null=True)
    keep_days = IntegerField(null=True)
    legal_hold = BooleanField(default=False)
    # Schema 2: days a quarantined delivery is kept (None: the config's retention default).
    quarantine_days = IntegerField(null=True)
    # Schema 2: when `prune` last ran over this mailbox (shown by `mailbox show`, `status`).
    pruned_at = DateTimeField(null=True)
    # JSON list of networks / signing domains allowed to push (None: anyone).
    allow_from = TextField(null=True)
    created_at = DateTimeField(default=utcnow)


class MailboxAddress(Base):
    """A receiver address; rotation retires one and adds another."""

    id = AutoField()
    mailbox = ForeignKeyField(Mailbox, backref="addresses", on_delete="CASCADE")
    local_part = CharField(max_length=128)
    # sha256 of the token: the lookup key, so a timing side channel leaks nothing usable.
    token_hash = CharField(max_length=64, unique=True)
    created_at = DateTimeField(default=utcnow)
    # Set when rotated away: the address works until then.
    expires_at = DateTimeField(null=True)


class Credential(Base):
    """SMTP AUTH secret issued to a bulk copy tool for one mailbox."""

    id = AutoField()
    mailbox = ForeignKeyField(Mailbox, backref="credentials", on_delete="CASCADE")
    username = CharField(max_length=128, unique=True)
    secret_hash = TextField()
    created_at = DateTimeField(default=utcnow)
    revoked_at = DateTimeField(null=True)


class Blob(Base):
    """Raw bytes, compressed, addressed by the sha256 of the uncompressed bytes."""

    sha256 = CharField(max_length=64, primary_key=True)
    size = BigIntegerField()
    codec = CharField(max_length=8, default="zstd")
    data = BlobField()


class NeverReusedAutoField(AutoField):
    """An id that never comes back after its row is deleted.

    SQLite hands out the largest deleted rowid again unless the key is AUTOINCREMENT; a
    thread merged away keeps resolving through ThreadMerge, so its id must stay unused.
    PostgreSQL sequences never reuse ids anyway.
    """

    def ddl(self, ctx):
        node = super().ddl(ctx)
        if isinstance(database.obj, SqliteDatabase):
            return NodeList((node, SQL("AUTOINCREMENT")))
        return node


class Thread(Base):
    id = NeverReusedAutoField()
    created_at = DateTimeField(default=utcnow)


class ThreadMerge(Base):
    """old_id was merged into new_id; lets a stale thread id still resolve."""

    old_id = IntegerField(primary_key=True)
    new_id = IntegerField(index=True)


class MsgId(Base):
    """One row per cleaned id seen as a Message-ID or referenced (ghosts included).

    Also rows for non-Message-ID link keys such as an Outlook conversation ("ti:...").
    """

    msgid = CharField(max_length=512, primary_key=True)
    thread_id = IntegerField(index=True)
    # True while no threaded message carries this id.
    ghost = BooleanField(default=True)


class Message(Base):
    """The logical message, shared by every mailbox that copied it."""

    id = AutoField()
    # No index of its own (schema 5): the unique (message_id, content_hash) index below
    # answers every look-up by Message-ID.
    message_id = CharField(max_length=512)
    # sha256 over the author's headers and the body (trace headers excluded).
    content_hash = CharField(max_length=64)
    synthetic_id = BooleanField(default=False)
    subject = TextField(null=True)
    norm_subject = TextField(null=True)
    # A reply by its subject with no In-Reply-To/References: the subject rule may join it.
    subject_orphan = BooleanField(default=False)
    # Lower-cased From/To/Cc addresses, space-separated: the subject rule's shared participant.
    participants = TextField(default="")
    date = DateTimeField(null=True, index=True)
    date_raw = TextField(null=True)
    from_addr = TextField(null=True)
    from_name = TextField(null=True)
    to_addrs = TextField(default="[]")  # JSON [[name, addr], ...]
    cc_addrs = TextField(default="[]")
    reply_to = TextField(default="[]")
    in_reply_to = TextField(null=True)
    references = TextField(default="[]")  # JSON list of cleaned ids, in order
    parent_msgid = CharField(max_length=512, null=True)
    thread_index = TextField(null=True)
    text_body = TextField(null=True)
    html_body = TextField(null=True)
    attachments = TextField(default="[]")  # JSON [{name, type, size, sha256}]
    defects = TextField(default="[]")  # JSON list of strings
    parse_error = TextField(null=True)
    blob = ForeignKeyField(Blob, column_name="blob_sha256", object_id_name="blob_id", null=True)
    # Null until some delivery of it is released into threads (quarantine holds it back).
    thread_id = IntegerField(null=True, index=True)
    created_at = DateTimeField(default=utcnow)

    class Meta:
        indexes = (
            (("message_id", "content_hash"), True),
            # The subject rule's lookup: same normalised subject, date within the window.
            (("norm_subject", "date"), False),
        )


# A message with links looks only for subject orphans with its subject: an index of just
# those rows keeps that lookup from walking every message of a long thread.
Message.add_index(
    SQL(
        'CREATE INDEX IF NOT EXISTS "message_orphan_subject" ON "message" '
        '("norm_subject", "date") WHERE "subject_orphan"'
    )
)


class Delivery(Base):
    """One copy received for one mailbox: envelope, peer, TLS, time, bytes, verdict."""

    id = AutoField()
    mailbox = ForeignKeyField(Mailbox, backref="deliveries", on_delete="CASCADE")
    message = ForeignKeyField(Message, backref="deliveries")
    blob = ForeignKeyField(Blob, column_name="blob_sha256", object_id_name="blob_id")
    received_at = DateTimeField(default=utcnow, index=True)
    status = CharField(max_length=16, default="stored")  # stored | quarantined
    source = CharField(max_length=8, default="smtp")  # smtp | lmtp | import
    session_id = CharField(max_length=32, null=True)
    mail_from = TextField(null=True)
    rcpt_to = TextField(null=True)
    peer = TextField(null=True)
    helo = TextField(null=True)
    tls = TextField(null=True)  # JSON {version, cipher} or null
    auth_user = TextField(null=True)
    verdict = CharField(max_length=16, default="unverifiable")
    reasons = TextField(default="[]")  # JSON list of strings
    verify_detail = TextField(default="{}")  # JSON: dkim, arc, alignment, copy path
    auth_results = TextField(null=True)
    smtp_defects = TextField(default="[]")  # JSON: e.g. bare LF seen in DATA
    wrapper_blob = ForeignKeyField(
        Blob, column_name="wrapper_sha256", object_id_name="wrapper_blob_id", null=True
    )
    # JSON of a Gmail/Outlook forwarding confirmation this copy is, else null.
    confirmation = TextField(null=True)

    class Meta:
        indexes = ((("mailbox", "blob"), True),)


class Folder(Base):
    """Schema 4: an IMAP folder of one mailbox. Its name is a label on the deliveries
    in it, never a threading input; its UIDVALIDITY never changes, RENAME included."""

    id = AutoField()
    mailbox = ForeignKeyField(Mailbox, backref="folders", on_delete="CASCADE")
    name = CharField(max_length=512)
    uidvalidity = BigIntegerField()
    uidnext = BigIntegerField(default=1)
    subscribed = BooleanField(default=True)
    created_at = DateTimeField(default=utcnow)
    # Schema 5: the RFC 6154 uses a client gave at CREATE, space-separated (\Sent ...).
    special_use = TextField(null=True)
    # Schema 5: UIDs above this one have not been shown as \Recent to any session yet.
    recent_uid = BigIntegerField(default=0)
    # Schema 7: raised by every change to the folder's entries (each changed entry takes
    # the new value as its modseq), so a session reads only what changed since it looked.
    highestmodseq = BigIntegerField(default=0)
    # Schema 7: the highestmodseq at which a UID last went without leaving a hidden entry
    # (deleted with its delivery, or an expunged entry shown again under a new UID): a
    # session that looked before then reads the folder whole.
    deletedmodseq = BigIntegerField(default=0)

    class Meta:
        indexes = ((("mailbox", "name"), True),)


class FolderEntry(Base):
    """Schema 4: one delivery as seen in one folder. EXPUNGE hides it from that folder's
    view; the delivery itself is never deleted over IMAP."""

    id = AutoField()
    folder = ForeignKeyField(Folder, backref="entries", on_delete="CASCADE")
    uid = BigIntegerField()
    delivery = ForeignKeyField(Delivery, on_delete="CASCADE")
    flags = TextField(default="")  # space-separated IMAP flags and keywords
    internal_date = DateTimeField(default=utcnow)
    hidden = BooleanField(default=False)
    # Schema 7: the folder's highestmodseq when this entry last changed (added, flags,
    # hidden, its delivery released from quarantine).
    modseq = BigIntegerField(default=0)

    class Meta:
        indexes = (
            (("folder", "uid"), True),
            (("folder", "delivery"), True),
            (("folder", "modseq"), False),
        )


MODELS = [
    SchemaInfo,
    Mailbox,
    MailboxAddress,
    Credential,
    Blob,
    Thread,
    ThreadMerge,
    MsgId,
    Message,
    Delivery,
    Folder,
    FolderEntry,
]
