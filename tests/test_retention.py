"""Retention: `prune` deletes expired copies and what nothing holds any more, keeps threads
that remain whole, honours legal hold and expires quarantine on its own schedule."""

from __future__ import annotations

import datetime as dt

from receiver.store.db import open_database
from receiver.store.models import Delivery, Mailbox, Message, MsgId, Thread, utcnow
from tests.helpers import LOCK_TIMEOUT


def msg(mid: str, parent: str | None = None, subject: str = "topic") -> bytes:
    refs = f"In-Reply-To: <{parent}>\r\nReferences: <{parent}>\r\n" if parent else ""
    return (
        f"From: Bob <bob@example.org>\r\nTo: list@example.org\r\nSubject: {subject}\r\n"
        f"Message-ID: <{mid}>\r\n{refs}Date: Tue, 01 Jan 2019 10:00:00 +0000\r\n\r\n"
        f"text of {mid}\r\n"
    ).encode()


def deliver(rx, email: str, raw: bytes) -> None:
    r = rx.cli("import", "-", "--mailbox", email, input=raw)
    assert r.returncode == 0, r.stderr


def age(db_url: str, email: str, mid: str, days: int, status: str | None = None) -> None:
    db = open_database(db_url, LOCK_TIMEOUT)
    with db.connection_context():
        mb = Mailbox.get(Mailbox.email == email)
        ids = [
            d.id
            for d in Delivery.select(Delivery.id)
            .join(Message)
            .where((Delivery.mailbox == mb) & (Message.message_id == mid))
        ]
        fields = {"received_at": utcnow() - dt.timedelta(days=days)}
        if status:
            fields["status"] = status
        Delivery.update(**fields).where(Delivery.id.in_(ids)).execute()
    db.close()


def threads(rx) -> dict[str, int]:
    return {
        m["message_id"]: m["thread_id"] for m in rx.cli_json("messages", "list", "--limit", "0")
    }


def test_prune(receiver, db_url):
    rx = receiver
    for email in (
        "alice@corp.example",
        "carol@corp.example",
        "bob@corp.example",
        "dave@corp.example",
    ):
        rx.add_mailbox(email)
    a, b, c = msg("a@x"), msg("b@x", "a@x"), msg("c@x", "b@x")
    lone = msg("d@x", subject="alone")
    for raw in (a, b, c, lone):
        deliver(rx, "alice@corp.example", raw)
    deliver(rx, "carol@corp.example", b)
    deliver(rx, "bob@corp.example", a)
    deliver(rx, "dave@corp.example", msg("q@x", subject="held"))
    deliver(rx, "dave@corp.example", msg("s@x", subject="kept"))
    for mid in ("a@x", "b@x", "d@x"):
        age(db_url, "alice@corp.example", mid, 40)
    age(db_url, "bob@corp.example", "a@x", 400)
    age(db_url, "dave@corp.example", "q@x", 3, status="quarantined")
    age(db_url, "dave@corp.example", "s@x", 400)
    rx.cli("mailbox", "set", "alice@corp.example", "--keep-days", "30")
    rx.cli("mailbox", "set", "bob@corp.example", "--keep-days", "30", "--legal-hold")
    rx.cli("mailbox", "set", "dave@corp.example", "--quarantine-days", "2")
    before = threads(rx)
    assert before["a@x"] == before["b@x"] == before["c@x"] != before["d@x"]

    dry = rx.cli_json("prune", "--dry-run")
    assert dry["removed"]["deliveries"] == 4
    assert rx.cli_json("stats")["totals"]["deliveries"] == 8  # nothing deleted

    done = rx.cli_json("prune")
    per = {m["email"]: m for m in done["mailboxes"]}
    assert per["alice@corp.example"]["expired"] == 3
    assert per["bob@corp.example"]["legal_hold"] and per["bob@corp.example"]["expired"] == 0
    assert per["dave@corp.example"]["quarantine_expired"] == 1
    # d@x and q@x went with their threads; a@x is held by bob, b@x by carol.
    assert done["removed"] == {
        "deliveries": 4,
        "messages": 2,
        "threads": 2,
        "ghosts": 2,
        "blobs": 2,
    }
    after = threads(rx)
    assert set(after) == {"a@x", "b@x", "c@x", "s@x"}
    assert after["a@x"] == after["b@x"] == after["c@x"] == before["a@x"]

    # Bob's legal hold kept a@x; lifted, its last copy expires and the message goes.
    rx.cli("mailbox", "set", "bob@corp.example", "--no-legal-hold")
    gone = rx.cli_json("prune")
    assert gone["removed"]["messages"] == 1
    after = threads(rx)
    assert set(after) == {"b@x", "c@x", "s@x"} and after["b@x"] == after["c@x"] == before["a@x"]
    db = open_database(db_url, LOCK_TIMEOUT)
    with db.connection_context():
        assert MsgId.get(MsgId.msgid == "a@x").ghost  # still joins b and c for later copies
        assert not MsgId.select().where(MsgId.msgid.in_(["d@x", "q@x"])).exists()
        assert Thread.select().count() == 2
    db.close()
    # A new copy of a@x rejoins the thread that remained.
    deliver(rx, "alice@corp.example", a)
    assert threads(rx)["a@x"] == before["a@x"]
    shown = rx.cli_json("mailbox", "show", "alice@corp.example")["retention"]
    assert shown["keep_days"] == 30 and shown["pruned_at"]


def test_legal_hold_blocks_removal(receiver):
    receiver.add_mailbox("alice@corp.example")
    receiver.cli("mailbox", "set", "alice@corp.example", "--legal-hold")
    r = receiver.cli("mailbox", "remove", "alice@corp.example", "--purge", check=False)
    assert r.returncode == 1 and b"legal hold" in r.stderr
    receiver.cli("mailbox", "set", "alice@corp.example", "--no-legal-hold")
    receiver.cli("mailbox", "remove", "alice@corp.example", "--purge")
