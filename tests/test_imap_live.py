"""An admin's change reaches IMAP sessions already logged in: a mailbox disabled or
removed, or a credential revoked, ends them (BYE) at their next command, and nothing is
stored after the change, also by an APPEND already on its way to the store."""

from __future__ import annotations

import contextlib
import dataclasses
import imaplib
import sqlite3
import threading
import urllib.request

import psycopg2
import pytest

from receiver.delivery import DeliveryRequest, Envelope, Placement
from receiver.parse import parse_message
from receiver.store import credentials, folders
from receiver.store.models import Credential, Delivery, FolderEntry, Mailbox
from tests.helpers import DEFAULT_RULE
from tests.imap_support import EMAIL, imap_receiver, implicit, start_imap
from tests.rawsmtp import message, query
from tests.test_metrics import metrics_url, sample
from tests.threading_support import fresh_store, request_for, store_delivery

OTHER = "bob@corp.example"


def ended(c: imaplib.IMAP4, command: str, text: str) -> None:
    """`command` is answered with an untagged BYE saying `text`, and the server closes."""
    with pytest.raises(imaplib.IMAP4.abort, match=text):
        if command == "APPEND":
            c.append("INBOX", None, None, message(99))
        else:
            c.noop()
    assert c.file.read() == b""


def rows(db_url: str, email: str) -> int:
    return query(
        db_url,
        "SELECT COUNT(*) FROM delivery d JOIN mailbox m ON m.id = d.mailbox_id WHERE m.email = ?",
        (email,),
    )[0][0]


@pytest.mark.parametrize(
    "change, text, kept",
    [
        (("mailbox", "disable", EMAIL), "Mailbox disabled", 1),
        (("mailbox", "credentials", EMAIL, "--revoke"), "Credentials revoked", 1),
        (("mailbox", "remove", EMAIL, "--purge"), "Mailbox removed", 0),
    ],
)
def test_an_admin_change_ends_the_mailbox_sessions_at_their_next_command(
    rx, db_url, change, text, kept
):
    appending, idle = implicit(rx), implicit(rx)
    assert appending.append("INBOX", None, None, message(1))[0] == "OK"
    assert idle.select("INBOX")[0] == "OK"
    rx.add_mailbox(OTHER)
    other_creds = rx.cli_json("mailbox", "credentials", OTHER)
    other = implicit(rx, login=False)
    other.login(other_creds["username"], other_creds["password"])

    rx.cli(*change)  # in this process; the daemon is another one

    ended(appending, "APPEND", text)
    ended(idle, "NOOP", text)
    assert rows(db_url, EMAIL) == kept
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        implicit(rx, login=False).login(rx.username, rx.password)
    # Another mailbox's session goes on.
    assert other.noop()[0] == "OK"
    assert other.append("INBOX", None, None, message(2))[0] == "OK"
    assert rows(db_url, OTHER) == 1
    other.logout()


def test_an_allow_list_set_meanwhile_applies_from_the_session_next_command(rx, db_url):
    c = implicit(rx)
    assert c.append("INBOX", None, None, message(1))[0] == "OK"
    rx.cli("mailbox", "allow", EMAIL, "10.0.0.0/8")
    typ, data = c.append("INBOX", None, None, message(2))
    assert typ == "NO" and b"allow-list" in data[0], data
    rx.cli("mailbox", "allow", EMAIL, "--clear")
    assert c.append("INBOX", None, None, message(3))[0] == "OK"
    assert rows(db_url, EMAIL) == 2
    c.logout()


@contextlib.contextmanager
def uncommitted(db_url: str, sql: str, args: tuple):
    """`sql` run in a transaction that commits when the block ends: until then the
    daemon reads the rows as they were, and its writer waits for the rows (PostgreSQL)
    or the database (SQLite)."""
    if db_url.startswith("sqlite:///"):
        conn = sqlite3.connect(db_url[len("sqlite:///") :], timeout=30, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(sql, args)
    else:
        conn = psycopg2.connect(db_url)
        conn.cursor().execute(sql.replace("?", "%s"), args)
    try:
        yield
        conn.commit()
    finally:
        conn.close()


def test_an_append_that_meets_the_change_in_its_own_commit_is_told_bye(tmp_path, db_url):
    r = imap_receiver(tmp_path / "rx", db_url, extra='[metrics]\nlisten = "127.0.0.1:0"\n')
    start_imap(r)
    try:
        url = metrics_url(r.proc) + "/metrics"
        c = implicit(r)
        # INBOX is made at its first use, a write that would wait for the change too.
        assert c.select("INBOX")[0] == "OK"
        told: list[str] = []

        def append() -> None:
            try:
                told.append(c.append("INBOX", None, None, message(1))[0])
            except imaplib.IMAP4.abort as e:
                told.append(str(e))

        sent = threading.Thread(target=append)
        with uncommitted(db_url, "UPDATE mailbox SET state = 'disabled' WHERE email = ?", (EMAIL,)):
            sent.start()
            # The APPEND is in the pipeline: its session found the mailbox active.
            while not told and not sample(
                urllib.request.urlopen(url, timeout=10).read().decode(), "receiver_inflight_bytes"
            ):
                pass
        sent.join(60)
        assert told and "Mailbox disabled" in told[0]
        assert c.file.read() == b""
        assert rows(db_url, EMAIL) == 0
    finally:
        print("--- daemon log ---\n" + r.stop()[1][-4000:])


def appended_with_login(email: str) -> DeliveryRequest:
    """A copy APPENDed into INBOX by a session logged in with `email`'s new credential."""
    credentials.issue(email)
    cred = Credential.get()
    folder = folders.create(1, "INBOX")
    assert folder is not None
    return dataclasses.replace(
        request_for(parse_message(message(1))),
        envelope=Envelope(login=(cred.id, cred.created_at)),
        placement=Placement(folder.id),
    )


@pytest.mark.parametrize("change", ["disable", "revoke", "reissue", "remove"])
def test_an_append_on_its_way_is_not_stored_once_the_change_is_committed(db_url, change):
    """The check the writer makes in the APPEND's own transaction: the session checked
    before the command, and the admin's change was committed after that."""
    db = fresh_store(db_url)
    with db.connection_context():
        mailbox = Mailbox.get_by_id(1)
        req = appended_with_login(mailbox.email)
        if change == "disable":
            Mailbox.update(state="disabled").execute()
        elif change == "revoke":
            credentials.revoke(mailbox.email)
        elif change == "reissue":
            credentials.issue(mailbox.email)
        else:
            Credential.delete().execute()
        with pytest.raises(credentials.LoginEnded), db.atomic():
            store_delivery(req, DEFAULT_RULE)
        assert Delivery.select().count() == 0 and FolderEntry.select().count() == 0


def test_an_append_whose_login_holds_is_stored(db_url):
    db = fresh_store(db_url)
    with db.connection_context():
        req = appended_with_login("threads@corp.example")
        with db.atomic():
            assert store_delivery(req, DEFAULT_RULE).uid == 1


def test_a_copy_without_a_placement_is_checked_too(db_url):
    """SMTP DATA's copy: the login is the envelope's, there is no folder."""
    db = fresh_store(db_url)
    with db.connection_context():
        credentials.issue("threads@corp.example")
        cred = Credential.get()
        req = dataclasses.replace(
            request_for(parse_message(message(1))),
            envelope=Envelope(login=(cred.id, cred.created_at)),
        )
        credentials.revoke("threads@corp.example")
        with pytest.raises(credentials.LoginEnded), db.atomic():
            store_delivery(req, DEFAULT_RULE)
        assert Delivery.select().count() == 0
