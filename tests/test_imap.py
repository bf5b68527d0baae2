"""The IMAP edge with Python's imaplib, over STARTTLS and implicit TLS, on both backends:
login, APPEND through the pipeline, folders, and reading back what was appended."""

from __future__ import annotations

import imaplib
import json
import re
import signal
import socket
import threading

import pytest

from tests import mailfixtures as F
from tests.imap_support import imap_receiver, implicit, start_imap, starttls
from tests.rawsmtp import deliveries, message, query, send, stored_raws

WHEN = imaplib.Time2Internaldate(1546336800)  # 01-Jan-2019 10:00:00 +0000


def appenduid(resp) -> tuple[int, int]:
    typ, data = resp
    assert typ == "OK", data
    m = re.search(rb"\[APPENDUID (\d+) (\d+)\]", data[0])
    assert m, data
    return int(m.group(1)), int(m.group(2))


def fetch_one(c, uid: int, items: str) -> bytes:
    typ, data = c.uid("FETCH", str(uid), items)
    assert typ == "OK", data
    return b"".join(p if isinstance(p, bytes) else p[0] + p[1] for p in data)


def test_login_needs_tls_and_the_mailbox_credential(rx):
    c = imaplib.IMAP4("127.0.0.1", rx.imap_ports["STARTTLS"], timeout=30)
    assert "LOGINDISABLED" in c.capabilities and "STARTTLS" in c.capabilities
    assert not any(cap.startswith("AUTH=") for cap in c.capabilities)
    with pytest.raises(imaplib.IMAP4.error):
        c.login(rx.username, rx.password)
    c.logout()

    c = starttls(rx, login=False)
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        c.login(rx.username, "wrong")
    assert c.login(rx.username, rx.password)[0] == "OK"
    c.logout()
    # The receiver address names the mailbox too; AUTHENTICATE PLAIN as well as LOGIN.
    c = implicit(rx, login=False)
    typ, _ = c.authenticate("PLAIN", lambda _: f"\0{rx.address}\0{rx.password}".encode())
    assert typ == "OK"
    assert c.select("INBOX")[0] == "OK"
    c.logout()


def test_failed_logins_are_limited_like_smtp_auth(tmp_path, db_url):
    r = imap_receiver(tmp_path / "rx", db_url, extra="[auth]\nmax_failures = 2\n")
    start_imap(r)
    try:
        for _ in range(2):
            c = implicit(r, login=False)
            with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
                c.login(r.username, "wrong")
            c.logout()
        c = implicit(r, login=False)
        with pytest.raises(imaplib.IMAP4.error, match="Too many failed logins"):
            c.login(r.username, r.password)
        c.logout()
    finally:
        r.stop()


def test_append_goes_through_the_pipeline_byte_exact_and_idempotent(rx, db_url):
    raw = message(1, body=b"kept  exactly \r\n\r\n\r\n")
    c = implicit(rx)
    validity, uid = appenduid(c.append("INBOX", r"(\Seen $Forwarded)", WHEN, raw))
    assert uid == 1
    assert list(stored_raws(db_url).values()) == [raw]
    [d] = deliveries(db_url)
    assert d["auth_user"] == rx.username and d["tls"]["version"].startswith("TLS")
    assert query(db_url, "SELECT source, session_id FROM delivery")[0][0] == "imap"

    # Byte-identical again, even from another connection: the same UID, nothing new.
    c2 = starttls(rx)
    assert appenduid(c2.append("INBOX", None, None, raw)) == (validity, 1)
    assert len(deliveries(db_url)) == 1
    assert query(db_url, "SELECT COUNT(*) FROM folder_entry")[0][0] == 1

    # Flags and internal date are the first append's.
    c.select("INBOX")
    got = fetch_one(c, 1, "(FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])")
    assert b'INTERNALDATE "01-Jan-2019 10:00:00 +0000"' in got
    assert b"\\Seen" in got and b"$Forwarded" in got
    assert b"RFC822.SIZE %d" % len(raw) in got and b"BODY[] {%d}" % len(raw) + raw in got
    c.logout()
    c2.logout()


def test_a_copy_stored_already_is_placed_in_each_folder_it_is_appended_to(rx, db_url):
    raw = message(1)
    assert send(rx.port, rx.address, raw)[0] == 250
    c = implicit(rx)
    c.create("Archive")
    # The SMTP copy is the store's duplicate: no new delivery, but an entry in each folder.
    assert appenduid(c.append("INBOX", r"(\Seen)", None, raw))[1] == 1
    assert appenduid(c.append("Archive", None, None, raw))[1] == 1
    assert appenduid(c.append("INBOX", None, None, raw))[1] == 1
    assert len(deliveries(db_url)) == 1
    # Expunged, it comes back under a new UID: a UID once expunged is never shown again.
    c.select("INBOX")
    c.uid("STORE", "1", "+FLAGS", r"(\Deleted)")
    assert c.expunge()[0] == "OK" and c.search(None, "ALL")[1] == [b""]
    assert appenduid(c.append("INBOX", None, None, raw))[1] == 2
    assert c.uid("SEARCH", "ALL")[1] == [b"2"]
    assert fetch_one(c, 2, "(FLAGS)").count(b"\\Seen") == 0
    rows = query(
        db_url, "SELECT f.name, e.uid FROM folder_entry e JOIN folder f ON f.id = e.folder_id"
    )
    assert sorted(rows) == [("Archive", 1), ("INBOX", 2)]
    c.logout()


def test_append_threads_like_smtp_and_a_folder_is_only_a_label(rx, db_url):
    parent = message("p")
    reply = message("r", extra=b"In-Reply-To: <mp@example.org>\r\n")
    c = implicit(rx)
    c.create('"Sent Items"')
    appenduid(c.append('"Sent Items"', None, None, reply))
    appenduid(c.append("INBOX", None, None, parent))
    rows = query(
        db_url, "SELECT message_id, thread_id, parent_msgid FROM message ORDER BY message_id"
    )
    assert [r[0] for r in rows] == ["mp@example.org", "mr@example.org"]
    assert rows[0][1] == rows[1][1] is not None and rows[1][2] == "mp@example.org"
    labels = query(
        db_url,
        "SELECT f.name, e.delivery_id FROM folder_entry e "
        "JOIN folder f ON f.id = e.folder_id ORDER BY f.name",
    )
    assert [name for name, _ in labels] == ["INBOX", "Sent Items"]
    c.logout()


def test_refusals_are_the_smtp_sentences_and_store_nothing(tmp_path, db_url):
    r = imap_receiver(
        tmp_path / "rx",
        db_url,
        extra='[policy]\naltered = "reject"\n[smtp]\nmax_message_size = 4000\n',
    )
    start_imap(r)
    try:
        c = implicit(r)
        typ, data = c.append("INBOX", None, None, F.inline_forward())
        assert typ == "NO"
        assert b"this copy was forwarded, not redirected" in data[0]
        typ, data = c.append("INBOX", None, None, message(2, body=b"x" * 5000))
        assert typ == "NO" and b"[TOOBIG]" in data[0]
        assert deliveries(db_url) == []
        assert appenduid(c.append("INBOX", None, None, message(3)))[1] == 1
        c.logout()
    finally:
        r.stop()


def multiappend(c, folder: bytes, raws: list[bytes]) -> bytes:
    """One APPEND of several messages (RFC 3502, LITERAL+); the tagged reply line."""
    tag = c._new_tag()
    line = tag + b" APPEND " + folder
    for raw in raws:
        c.send(line + b" {%d+}\r\n" % len(raw) + raw)
        line = b""
    c.send(b"\r\n")
    while not (reply := c.readline()).startswith(tag):
        pass
    return reply


def test_multiappend_stores_all_or_nothing(tmp_path, db_url):
    r = imap_receiver(tmp_path / "rx", db_url, extra='[policy]\naltered = "reject"\n')
    r.extra_env["THREADS_RECEIVER_TEST_FAULTS"] = "folder_entry=raise@2"
    start_imap(r)
    try:
        c = implicit(r)
        reply = multiappend(c, b"INBOX", [message(1), message(2)])
        assert re.search(rb"OK \[APPENDUID \d+ 1:2\]", reply), reply
        assert len(deliveries(db_url)) == 2
        # One refused: none of the others is stored, and the NO is the refusal's.
        reply = multiappend(c, b"INBOX", [message(3), F.inline_forward(), message(4)])
        assert b"NO" in reply and b"this copy was forwarded, not redirected" in reply
        # A fault in the commit: none of them either.
        reply = multiappend(c, b"INBOX", [message(3), message(4)])
        assert b"NO [UNAVAILABLE]" in reply, reply
        assert len(deliveries(db_url)) == 2
        assert query(db_url, "SELECT COUNT(*) FROM folder_entry")[0][0] == 2
        reply = multiappend(c, b"INBOX", [message(3), message(4), message(1)])
        # The copy stored already keeps its UID; the failed ones used none (pymap sorts).
        assert re.search(rb"OK \[APPENDUID \d+ 1,3:4\]", reply), reply
        assert len(deliveries(db_url)) == 4
        c.logout()
    finally:
        r.stop()


# The folder entry is written in the delivery's own transaction: both commit, or neither.
@pytest.mark.parametrize("fault", ["writer", "folder_entry"])
def test_a_storage_fault_is_no_unavailable_stores_nothing_and_the_retry_stores(
    tmp_path, db_url, fault
):
    r = imap_receiver(tmp_path / "rx", db_url)
    r.extra_env["THREADS_RECEIVER_TEST_FAULTS"] = f"{fault}=raise@1"
    start_imap(r)
    try:
        c = implicit(r)
        typ, data = c.append("INBOX", None, None, message(1))
        assert typ == "NO" and b"[UNAVAILABLE]" in data[0]
        assert deliveries(db_url) == []
        assert query(db_url, "SELECT COUNT(*) FROM folder_entry")[0][0] == 0
        assert appenduid(c.append("INBOX", None, None, message(1)))[1] == 1
        assert len(deliveries(db_url)) == 1
        c.logout()
    finally:
        r.stop()


def test_quarantined_copies_show_as_quarantined_and_only_an_admin_changes_that(rx, db_url):
    c = implicit(rx)
    _, held = appenduid(c.append("INBOX", None, None, F.inline_forward()))
    _, kept = appenduid(c.append("INBOX", None, None, message(1)))
    c.select("INBOX")
    assert b"$Quarantined" in fetch_one(c, held, "(FLAGS)")
    # Not among the flags a client may change: \* covers new keywords, not this one.
    assert b"$Quarantined" not in c.untagged_responses["PERMANENTFLAGS"][0]
    for uid, mode in ((held, "-FLAGS"), (held, "FLAGS"), (kept, "+FLAGS")):
        typ, data = c.uid("STORE", str(uid), mode, r"(\Seen $Quarantined)")
        assert typ == "NO" and b"quarantine release" in data[0], (mode, data)
    assert b"$Quarantined" in fetch_one(c, held, "(FLAGS)")
    assert b"$Quarantined" not in fetch_one(c, kept, "(FLAGS)")
    # Refused whole: the \Seen of the same STORE is not set either.
    assert query(db_url, "SELECT flags FROM folder_entry") == [("",), ("",)]
    c.logout()
    held_uid = held
    # `quarantine show` is the delivery as `messages show` has it, folders and all.
    [held] = rx.cli_json("quarantine", "list")
    shown = rx.cli_json("quarantine", "show", str(held["delivery_id"]))
    [delivery] = rx.cli_json("messages", "show", str(held["message"]))["deliveries"]
    assert shown["folders"] == [{"name": "INBOX", "uid": held_uid, "expunged": False}]
    assert {k: v for k, v in shown.items() if k != "message"} == delivery
    text = rx.cli("quarantine", "show", str(held["delivery_id"])).stdout.decode()
    assert " via imap " in text and "folders   INBOX" in text


def test_folders(rx):
    c = starttls(rx)
    assert c.create('"Old/2019"')[0] == "OK"
    assert c.create('"Old/2019"')[0] == "NO"
    assert c.create("Drafts")[0] == "OK"
    listed = c.list()[1]
    assert b'"/" Old/2019' in b" ".join(listed) and any(b"INBOX" in x for x in listed)
    validity, _ = appenduid(c.append('"Old/2019"', None, None, message(1)))

    assert c.rename('"Old"', "Archive")[0] == "OK"
    typ, data = c.status('"Archive/2019"', "(MESSAGES UIDNEXT UIDVALIDITY UNSEEN)")
    assert typ == "OK" and b"MESSAGES 1 UIDNEXT 2 UIDVALIDITY %d UNSEEN 1" % validity in data[0]
    assert c.status('"Old/2019"', "(MESSAGES)")[0] == "NO"

    assert c.unsubscribe("Drafts")[0] == "OK"
    lsub = b" ".join(x for x in c.lsub()[1] if x)
    assert b"Drafts" not in lsub and b"Archive/2019" in lsub
    assert c.subscribe("Drafts")[0] == "OK"
    assert b"Drafts" in b" ".join(x for x in c.lsub()[1] if x)

    typ, data = c.delete('"Archive/2019"')
    assert typ == "NO" and b"never deleted" in data[0]
    assert c.delete("Drafts")[0] == "OK"
    assert c.select("Drafts")[0] == "NO"
    typ, data = c.select('"Archive/2019"', readonly=True)
    assert typ == "OK" and data == [b"1"]
    c.logout()


def test_read_back_search_store_expunge_move(rx, db_url):
    c = implicit(rx)
    raws = [message(n, extra=b"X-N: %d\r\n" % n) for n in (1, 2, 3)]
    for n, raw in enumerate(raws):
        flags = r"(\Seen)" if n == 0 else None
        when = imaplib.Time2Internaldate(1546336800 + 86400 * n)
        appenduid(c.append("INBOX", flags, when, raw))
    c.create("Kept")
    typ, data = c.select("INBOX")
    assert data == [b"3"]

    got = fetch_one(
        c,
        2,
        "(ENVELOPE BODYSTRUCTURE BODY.PEEK[HEADER.FIELDS (SUBJECT)] "
        "BODY.PEEK[]<0.10> BODY.PEEK[TEXT])",
    )
    assert b'"test 2"' in got and b'"<m2@example.org>"' in got
    assert b'("text" "plain"' in got
    assert b"Subject: test 2\r\n\r\n" in got
    assert b"BODY[]<0> {10}" + raws[1][:10] in got
    assert b"BODY[TEXT] {7}hello\r\n" in got

    assert c.uid("SEARCH", "HEADER", "Message-ID", "<m3@example.org>")[1] == [b"3"]
    assert c.search(None, "UID", "2:3")[1] == [b"2 3"]
    assert c.search(None, "SEEN")[1] == [b"1"] and c.search(None, "UNSEEN")[1] == [b"2 3"]
    assert c.search(None, "SINCE", "02-Jan-2019")[1] == [b"2 3"]
    assert c.search(None, "BEFORE", "02-Jan-2019")[1] == [b"1"]

    assert c.uid("STORE", "2", "+FLAGS", r"(\Flagged)")[0] == "OK"
    assert c.search(None, "FLAGGED")[1] == [b"2"]
    # A plain FETCH of the body sets \Seen, as RFC 3501 says.
    fetch_one(c, 3, "(BODY[])")
    assert c.search(None, "UNSEEN")[1] == [b"2"]

    # MOVE and EXPUNGE hide from this folder only; the archive keeps every copy.
    assert c._simple_command("UID", "MOVE", "1", "Kept")[0] == "OK"
    assert c.uid("STORE", "2", "+FLAGS", r"(\Deleted)")[0] == "OK"
    assert c.expunge()[0] == "OK"
    assert c.search(None, "ALL")[1] == [b"1"]
    assert c.uid("SEARCH", "ALL")[1] == [b"3"]
    assert len(deliveries(db_url)) == 3
    assert c.select("Kept")[1] == [b"1"]
    assert c.uid("COPY", "1", "INBOX")[0] == "OK"
    assert c.select("INBOX")[1] == [b"2"]
    # UIDs are never reused: the copy back into INBOX is UID 4.
    assert c.uid("SEARCH", "ALL")[1] == [b"3 4"]
    assert b"UIDNEXT 5" in c.status("INBOX", "(UIDNEXT)")[1][0]
    c.logout()


def test_idle_sees_an_append_from_another_connection(rx):
    watcher = implicit(rx)
    watcher.select("INBOX")
    tag = watcher._new_tag()
    watcher.send(tag + b" IDLE\r\n")
    assert watcher.readline().startswith(b"+")
    done = threading.Event()

    def append() -> None:
        c = starttls(rx)
        appenduid(c.append("INBOX", None, None, message(1)))
        c.logout()
        done.set()

    threading.Thread(target=append).start()
    assert done.wait(30)
    line = watcher.readline()
    assert line == b"* 1 EXISTS\r\n", line
    watcher.send(b"DONE\r\n")
    while not (line := watcher.readline()).startswith(tag):
        pass
    assert b"OK" in line
    watcher.logout()


def untagged(c, kind: str) -> list[bytes]:
    return c.untagged_responses.pop(kind, [])


def test_a_selected_folder_sees_what_others_change(rx, db_url):
    c = implicit(rx)
    for n in (1, 2, 3):
        appenduid(c.append("INBOX", None, None, message(n)))
    held = [F.inline_forward(), F.inline_forward().replace(b"FYI", b"FYI again")]
    for raw in held:  # UIDs 4 and 5, quarantined
        appenduid(c.append("INBOX", None, None, raw))
    q4, q5 = (
        r[0]
        for r in query(db_url, "SELECT id FROM delivery WHERE status = 'quarantined' ORDER BY id")
    )
    watcher = starttls(rx)
    assert watcher.select("INBOX")[1] == [b"5"]
    untagged(watcher, "FETCH")

    # Another connection flags, expunges and appends; the admin releases a copy.
    c.select("INBOX")
    c.uid("STORE", "2", "+FLAGS", r"(\Flagged)")
    c.uid("STORE", "3", "+FLAGS", r"(\Deleted)")
    assert c.expunge()[0] == "OK"
    assert appenduid(c.append("INBOX", None, None, message(6)))[1] == 6
    rx.cli("quarantine", "release", str(q4))
    assert watcher.noop()[0] == "OK"
    assert untagged(watcher, "EXPUNGE") == [b"3"]
    assert untagged(watcher, "EXISTS")[-1] == b"5"
    fetched = b" ".join(untagged(watcher, "FETCH"))
    # UID 2 flagged, UID 4 (now 3) released, UID 6 (5) new; UID 5 (4) is unchanged. The
    # watcher selected first: UIDs 1-5 are \Recent to it, UID 6 to the appender.
    assert fetched == b"2 (FLAGS (\\Flagged \\Recent)) 3 (FLAGS (\\Recent)) 5 (FLAGS ())"
    assert watcher.uid("SEARCH", "ALL")[1] == [b"1 2 4 5 6"]
    # Nothing changed: nothing to say.
    assert watcher.noop()[0] == "OK" and not watcher.untagged_responses.get("FETCH")

    # A copy deleted by the admin leaves no entry behind; it is gone from the view too.
    rx.cli("quarantine", "delete", str(q5))
    assert watcher.noop()[0] == "OK"
    assert untagged(watcher, "EXPUNGE") == [b"4"]
    assert watcher.uid("SEARCH", "ALL")[1] == [b"1 2 4 6"]
    watcher.logout()
    c.logout()


def test_two_daemons_on_one_database_see_each_others_changes(rx, tmp_path, db_url):
    other = imap_receiver(tmp_path / "rx2", db_url, beside=rx)
    start_imap(other)
    try:
        watcher = implicit(rx)
        watcher.select("INBOX")
        tag = watcher._new_tag()
        watcher.send(tag + b" IDLE\r\n")
        assert watcher.readline().startswith(b"+")
        c = implicit(other)
        assert appenduid(c.append("INBOX", None, None, message(1)))[1] == 1
        assert watcher.readline() == b"* 1 EXISTS\r\n"
        assert watcher.readline() == b"* 1 RECENT\r\n"
        assert watcher.readline() == b"* 1 FETCH (FLAGS (\\Recent))\r\n"
        c.select("INBOX")
        c.uid("STORE", "1", "+FLAGS", r"(\Flagged)")
        assert watcher.readline() == b"* 1 FETCH (FLAGS (\\Flagged \\Recent))\r\n"
        watcher.send(b"DONE\r\n")
        while not (line := watcher.readline()).startswith(tag):
            pass
        assert b"OK" in line
        # And the other way round, without IDLE.
        c.untagged_responses.clear()
        watcher.uid("STORE", "1", "-FLAGS", r"(\Flagged)")
        assert appenduid(watcher.append("INBOX", None, None, message(2)))[1] == 2
        assert c.noop()[0] == "OK"
        assert untagged(c, "EXISTS") == [b"2"]
        assert untagged(c, "FETCH") == [b"1 (FLAGS ())", b"2 (FLAGS ())"]
        c.logout()
        watcher.logout()
    finally:
        other.stop()


def test_noop_id_and_capability(rx):
    c = starttls(rx)
    assert c.noop()[0] == "OK"
    assert c.xatom("ID", "NIL")[0] == "OK"
    assert b'"name" "threads-receiver"' in b" ".join(c.untagged_responses.get("ID", []))
    caps = c.capability()[1][0].split()
    for cap in (b"UIDPLUS", b"MOVE", b"IDLE", b"LITERAL+", b"MULTIAPPEND"):
        assert cap in caps
    assert b"APPENDLIMIT=%d" % (50 * 1024 * 1024) in caps
    assert c.select("INBOX")[0] == "OK"
    # A bad command is BAD, and the connection stays.
    with pytest.raises(imaplib.IMAP4.error, match="BAD"):
        c.xatom("FROB")
    assert c.noop()[0] == "OK"
    c.logout()


def test_a_client_that_vanishes_mid_literal_leaves_nothing(rx, db_url):
    c = implicit(rx)
    tag = c._new_tag()
    c.send(tag + b" APPEND INBOX {1000}\r\n")
    assert c.readline().startswith(b"+")
    c.send(message(1)[:100])
    c.shutdown()
    c2 = implicit(rx)
    assert c2.noop()[0] == "OK"
    c2.logout()
    assert deliveries(db_url) == []


def test_a_literal_or_line_past_the_limits_ends_the_connection_unread(rx, db_url):
    c = implicit(rx)
    tag = c._new_tag()
    # LITERAL+: the client does not wait; the server must not read 60 MB to refuse it.
    c.send(tag + b" APPEND INBOX {%d+}\r\n" % (60 * 1024 * 1024) + b"x" * 1000)
    assert c.readline().startswith(b"* BYE [TOOBIG]")
    assert c.readline() == b""  # closed
    c = implicit(rx)
    c.send(b"a1 NOOP " + b"x" * 100_000 + b"\r\n")
    assert c.readline().startswith(b"* BYE [TOOBIG]")
    c2 = implicit(rx)
    assert c2.noop()[0] == "OK"
    c2.logout()
    assert deliveries(db_url) == []


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_credentials_csv_for_a_bulk_copy_tool(receiver):
    for email in ("b@corp.example", "a@corp.example", "c@corp.example"):
        receiver.add_mailbox(email)
    receiver.cli("mailbox", "credentials", "c@corp.example")
    r = receiver.cli("mailbox", "credentials", "--all", "--csv")
    lines = r.stdout.decode().split("\r\n")
    assert lines[0] == "email,server,port,username,password"
    rows = [line.split(",") for line in lines[1:] if line]
    assert [row[:4] for row in rows] == [
        ["a@corp.example", "push.example.com", "993", "a@corp.example"],
        ["b@corp.example", "push.example.com", "993", "b@corp.example"],
    ]
    assert all(len(row[4]) >= 20 for row in rows)
    assert b"already in force" in r.stderr and b"c@corp.example" in r.stderr
    again = receiver.cli(
        "mailbox", "credentials", "a@corp.example", "c@corp.example", "--csv", "--reissue"
    ).stdout.decode()
    assert [line.split(",")[0] for line in again.split("\r\n")[1:] if line] == [
        "a@corp.example",
        "c@corp.example",
    ]
    bad = receiver.cli("mailbox", "credentials", "--all", check=False)
    assert bad.returncode == 64 and b"--csv" in bad.stderr  # a usage error


def test_connections_and_silence_are_limited(tmp_path, db_url):
    r = imap_receiver(tmp_path / "rx", db_url, extra="timeout = 1\nmax_sessions_per_ip = 2\n")
    start_imap(r)
    try:
        first, second = implicit(r, login=False), implicit(r, login=False)
        third = socket.create_connection(("127.0.0.1", r.imap_ports["STARTTLS"]), timeout=30)
        assert third.recv(200).startswith(b"* BYE [UNAVAILABLE]")
        third.close()
        # The silent ones are logged out after imap.timeout; then there is room again.
        assert first.readline().startswith(b"* BYE Autologout")
        second.readline()
        fourth = implicit(r)
        assert fourth.noop()[0] == "OK"
        fourth.logout()
    finally:
        r.stop()


def test_appends_from_several_connections_at_once(rx, db_url):
    def push(worker: int, uids: list[int]) -> None:
        c = implicit(rx)
        for n in range(8):
            uids.append(appenduid(c.append("INBOX", None, None, message(f"{worker}-{n}")))[1])
        # Every connection also appends one message all the others append too.
        uids.append(appenduid(c.append("INBOX", None, None, message("common")))[1])
        c.logout()

    results: list[list[int]] = [[] for _ in range(4)]
    threads = [threading.Thread(target=push, args=(w, results[w])) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    own = [uid for r in results for uid in r[:-1]]
    shared = {r[-1] for r in results}
    assert sorted(own) == sorted(set(own)) and len(own) == 32
    assert len(shared) == 1 and not shared & set(own)
    assert sorted(own + list(shared)) == list(range(1, 34))
    assert len(deliveries(db_url)) == 33


def test_every_tagged_ok_survives_a_kill_9(rx, db_url):
    confirmed: dict[bytes, int] = {}

    def push() -> None:
        c = implicit(rx)
        try:
            for n in range(1000):
                raw = message(n)
                confirmed[raw] = appenduid(c.append("INBOX", None, None, raw))[1]
        except (imaplib.IMAP4.abort, OSError, AssertionError):
            pass  # the daemon is gone

    t = threading.Thread(target=push)
    t.start()
    while len(confirmed) < 5:
        t.join(0.05)
    rx.proc.send_signal(signal.SIGKILL)
    rx.proc.wait(30)
    t.join(60)
    stored = dict(
        query(
            db_url,
            "SELECT e.uid, d.blob_sha256 FROM folder_entry e "
            "JOIN delivery d ON d.id = e.delivery_id",
        )
    )
    raws = stored_raws(db_url)
    for raw, uid in confirmed.items():
        assert raws[stored[uid]] == raw


def test_status_checks_the_imap_listeners(rx):
    ports = {
        "THREADS_RECEIVER_IMAP_LISTEN": f"127.0.0.1:{rx.imap_ports['STARTTLS']}",
        "THREADS_RECEIVER_IMAP_IMPLICIT_LISTEN": f"127.0.0.1:{rx.imap_ports['implicit TLS']}",
    }
    data = json.loads(
        rx.cli("status", "--listen", f"127.0.0.1:{rx.port}", "--json", **ports).stdout
    )
    assert data["checks"]["imap"]["ok"] and data["checks"]["imaps"]["ok"], data
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    ports["THREADS_RECEIVER_IMAP_LISTEN"] = f"127.0.0.1:{closed.getsockname()[1]}"
    r = rx.cli("status", "--listen", f"127.0.0.1:{rx.port}", "--json", check=False, **ports)
    closed.close()
    assert r.returncode == 1 and not json.loads(r.stdout)["checks"]["imap"]["ok"]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_workers_share_the_imap_ports(tmp_path, db_url):
    r = imap_receiver(tmp_path / "rx", db_url)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    r.extra_env["THREADS_RECEIVER_IMAP_IMPLICIT_LISTEN"] = f"127.0.0.1:{port}"
    r.start("--workers", "2")
    r.imap_ports = {"implicit TLS": port}
    try:
        for n in range(6):
            c = implicit(r)
            appenduid(c.append("INBOX", None, None, message(n)))
            c.logout()
        assert len(deliveries(db_url)) == 6
    finally:
        rc, log = r.stop()
    assert rc == 0, log
