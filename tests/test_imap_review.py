"""The IMAP edge as real clients drive it, where it once went wrong: folder names in
modified UTF-7 (and in raw UTF-8), keywords (Thunderbird's tags, $Label1...), hierarchy
declarations, ENVELOPE addresses from raw 8-bit headers, and fields that do not decode."""

from __future__ import annotations

import imaplib
import socket

import pytest

from tests.imap_support import implicit, starttls
from tests.rawsmtp import message, query, send
from tests.test_imap import appenduid, fetch_one


def test_a_malformed_folder_name_is_bad_and_the_daemon_goes_on(rx, db_url):
    # Sent before STARTTLS and login: pymap parses the name before it looks at the state.
    with socket.create_connection(("127.0.0.1", rx.imap_ports["STARTTLS"]), timeout=10) as s:
        f = s.makefile("rb")
        assert f.readline().startswith(b"* OK")
        s.sendall(b'a1 LIST "" "&x"\r\n')
        assert f.readline().startswith(b"a1 BAD")
    c = starttls(rx)
    # An "&" no "-" closes, and a shift that is not UTF-16 in modified BASE64.
    for name in ('"&Jjo"', '"Sent&AMk"', '"a&b-"', '"a&A*A-"'):
        with pytest.raises(imaplib.IMAP4.error, match="CREATE command error: BAD"):
            c.create(name)
    # Well-formed names still make folders, named as the client meant them.
    assert c.create('"&AMk-l&AOk-ments envoy&AOk-s"')[0] == "OK"
    assert c.create('"Gesendete Objekte"')[0] == "OK"
    assert c.create('"R&AOk-sum&AOk-s &- notes"')[0] == "OK"
    names = {n for (n,) in query(db_url, "SELECT name FROM folder")}
    assert {"Éléments envoyés", "Gesendete Objekte", "Résumés & notes"} <= names
    listed = b"\n".join(c.list()[1])
    assert b'"&AMk-l&AOk-ments envoy&AOk-s"' in listed and b'"R&AOk-sum&AOk-s &- notes"' in listed
    c.logout()
    # The daemon still serves everyone else.
    other = implicit(rx)
    assert other.noop()[0] == "OK"
    other.logout()


def test_keywords_are_permanent_flags_a_client_can_set_and_clear(rx, db_url):
    c = implicit(rx)
    _, uid = appenduid(
        c.append(
            "INBOX", r"(\Seen \Flagged $Label1 Junk)", '"14-Jul-2015 02:44:25 -0700"', message(1)
        )
    )
    c.select("INBOX")
    # \* : a client may make keywords of its own (Thunderbird's tags, Apple Mail's
    # colours); FLAGS lists flags, never \* (RFC 3501 7.1, 7.2.6).
    [permanent] = c.untagged_responses["PERMANENTFLAGS"]
    assert set(permanent.strip(b"()").split()) == {
        rb"\Answered",
        rb"\Deleted",
        rb"\Draft",
        rb"\Flagged",
        rb"\Seen",
        rb"\*",
    }
    assert rb"\*" not in c.untagged_responses["FLAGS"][0]
    assert fetch_one(c, uid, "(FLAGS INTERNALDATE)") == (
        b'1 (FLAGS (\\Flagged \\Recent \\Seen $Label1 Junk) INTERNALDATE "14-Jul-2015 09:44:25 +0000"'
        b" UID %d)" % uid
    )

    assert c.uid("STORE", str(uid), "+FLAGS", "($Label2 NonJunk)")[0] == "OK"
    assert c.uid("STORE", str(uid), "-FLAGS", r"($Label1 Junk \Seen)")[0] == "OK"
    assert c.uid("SEARCH", "KEYWORD", "$Label2")[1] == [str(uid).encode()]
    assert c.uid("SEARCH", "KEYWORD", "$Label1")[1] == [b""]
    # Except the quarantine keyword: it is the store's, not the client's.
    assert c.uid("STORE", str(uid), "+FLAGS", "($Quarantined)")[0] == "NO"
    c.logout()
    # Kept in the store, for every later session.
    [(flags,)] = query(db_url, "SELECT flags FROM folder_entry")
    assert sorted(flags.split()) == ["$Label2", "NonJunk", "\\Flagged"]
    c = starttls(rx)
    c.select("INBOX")
    assert c.uid("STORE", str(uid), "FLAGS.SILENT", r"(\Answered $Forwarded)") == ("OK", [None])
    assert fetch_one(c, uid, "(FLAGS)") == b"1 (FLAGS (\\Answered $Forwarded) UID %d)" % uid
    c.logout()


def test_create_with_a_trailing_delimiter_makes_the_folder_without_it(rx, db_url):
    c = starttls(rx)
    # RFC 3501 6.3.3: the trailing delimiter declares that subfolders will follow; "in
    # any case, the name created is without the trailing hierarchy delimiter".
    assert c.create('"Projects/"')[0] == "OK"
    assert c.create("Projects")[0] == "NO"
    assert c.create('"Projects/2024"')[0] == "OK"
    assert sorted(n for (n,) in query(db_url, "SELECT name FROM folder")) == [
        "Projects",
        "Projects/2024",
    ]
    # No level of a name is empty: "/Old" would be a folder under a nameless one.
    for name in ('""', '"/"', '"/Old"', '"Old//2019"'):
        typ, data = c.create(name)
        assert typ == "NO" and data[0].startswith(b"[CANNOT]"), (name, data)
    typ, data = c.rename("Projects", '"Old//Projects"')
    assert typ == "NO" and data[0].startswith(b"[CANNOT]"), data
    assert c.select("Projects")[0] == "OK"
    assert sorted(c.list('""', '"Projects*"')[1]) == [
        b'(\\HasChildren) "/" Projects',
        b'(\\HasNoChildren) "/" Projects/2024',
    ]
    c.logout()


def test_a_folder_that_does_not_exist_has_no_special_use(rx):
    c = implicit(rx)
    # Only "Sent Items/2019" exists: "Sent Items" is a \Noselect level of the hierarchy.
    # Named \Sent, a client would save its sent mail there and be told NO [TRYCREATE].
    assert c.create('"Sent Items/2019"')[0] == "OK"
    assert c.list('""', '"Sent Items"')[1] == [b'(\\Noselect \\HasChildren) "/" "Sent Items"']
    typ, data = c._simple_command("LIST", "(SPECIAL-USE)", '""', '"*"')
    assert typ == "OK" and c._untagged_response(typ, data, "LIST")[1] == [None]
    assert c.create('"Sent Items"')[0] == "OK"
    assert c.list('""', '"Sent Items"')[1] == [b'(\\HasChildren \\Sent) "/" "Sent Items"']
    c.logout()


def test_a_use_read_from_a_name_goes_to_the_first_folder_of_that_use_only(rx):
    c = implicit(rx)
    for name in ("Trash", "trash", '"Deleted Items"', "Sent"):
        assert c.create(name)[0] == "OK", name
    typ, data = c._simple_command("LIST", "(SPECIAL-USE)", '""', '"*"')
    assert typ == "OK"
    assert sorted(c._untagged_response(typ, data, "LIST")[1]) == [
        b'(\\HasNoChildren \\Sent) "/" Sent',
        b'(\\HasNoChildren \\Trash) "/" Trash',
    ]
    # Listed alone, "trash" still has no use: it is Trash's.
    assert c.list('""', "trash")[1] == [b'(\\HasNoChildren) "/" trash']
    # Once Trash is gone, the folder made next with that name's use has it.
    assert c.delete("Trash")[0] == "OK"
    assert c.list('""', "trash")[1] == [b'(\\HasNoChildren \\Trash) "/" trash']
    # A use given at CREATE is the folder's alone, whatever names say.
    typ, data = c._simple_command("CREATE", "Outbox", r"(USE (\Sent))")
    assert typ == "OK", data
    assert c.list('""', "Sent")[1] == [b'(\\HasNoChildren) "/" Sent']
    c.logout()


def test_a_folder_under_inbox_is_under_inbox_however_it_is_spelled(rx, db_url):
    c = starttls(rx)
    assert c.create('"inbox/Receipts"')[0] == "OK"
    assert c.create('"INBOX/Receipts"')[0] == "NO"
    appenduid(c.append('"Inbox/Receipts"', None, None, message(1)))
    assert c.select('"iNbOx/Receipts"') == ("OK", [b"1"])
    # One INBOX in LIST, with its folder below it; "Receipts" itself is case-sensitive.
    assert c.list()[1] == [b'(\\HasChildren) "/" INBOX', b'(\\HasNoChildren) "/" INBOX/Receipts']
    assert c.select('"INBOX/receipts"')[0] == "NO"
    assert query(db_url, "SELECT name FROM folder WHERE name LIKE ?", ("%Receipts",)) == [
        ("INBOX/Receipts",)
    ]
    c.logout()


def test_move_out_of_a_folder_opened_with_examine_is_refused(rx):
    c = implicit(rx)
    _, uid = appenduid(c.append("INBOX", None, None, message(1)))
    assert c.create("Kept")[0] == "OK"
    assert c.select("INBOX", readonly=True)[0] == "OK"
    # EXAMINE permits no permanent change to the folder (RFC 3501 6.3.2); MOVE
    # expunges from it, as EXPUNGE would, which is refused as well.
    typ, data = c.uid("MOVE", str(uid), "Kept")
    assert typ == "NO" and data[0].startswith(b"[READ-ONLY]"), data
    assert c.expunge()[0] == "NO"
    assert c.uid("COPY", str(uid), "Kept")[0] == "OK"
    assert c.select("INBOX")[1] == [b"1"]
    assert c.uid("SEARCH", "ALL")[1] == [str(uid).encode()]
    c.logout()


def test_a_selected_folder_replaced_under_a_session_ends_the_session(rx):
    watcher = starttls(rx)
    other = implicit(rx)
    first = appenduid(other.append("INBOX", None, None, message(1)))
    assert watcher.select("INBOX") == ("OK", [b"1"])
    # RENAME INBOX moves its messages away and leaves a new, empty INBOX (RFC 3501
    # 6.3.5), with a new UIDVALIDITY: its UIDs start at 1 again.
    assert other.rename("INBOX", '"Old Inbox"')[0] == "OK"
    second = appenduid(other.append("INBOX", None, None, message(2)))
    assert second[0] != first[0] and second[1] == first[1]
    # UIDs only ever grow within a session (RFC 3501 2.3.1.1): the session that saw the
    # old INBOX's UID 1 cannot be shown the new one's UID 1; it is told to start over.
    with pytest.raises(imaplib.IMAP4.abort, match="no longer exists"):
        watcher.noop()
    again = starttls(rx)
    assert again.select("INBOX") == ("OK", [b"1"])
    assert again.untagged_responses["UIDVALIDITY"] == [str(second[0]).encode()]
    again.logout()
    other.logout()


def test_subscribe_to_a_folder_that_does_not_exist_is_no(rx):
    c = starttls(rx)
    # Subscriptions are kept on folders: one to a name with no folder could not be kept,
    # and an OK would say it was (RFC 3501 6.3.6 lets a server check the name).
    typ, data = c.subscribe("Ghost")
    assert typ == "NO" and data[0].startswith(b"[NONEXISTENT]"), data
    # An unsubscribed name stays unsubscribed: OK (Thunderbird sends it after DELETE).
    assert c.unsubscribe("Ghost")[0] == "OK"
    assert c.create("Real")[0] == "OK"
    assert c.unsubscribe("Real")[0] == "OK"
    assert b"Real" not in b" ".join(x for x in c.lsub()[1] if x)
    assert c.subscribe("Real")[0] == "OK"
    assert c.subscribe("Real")[0] == "OK"
    assert b"Real" in b" ".join(x for x in c.lsub()[1] if x)
    c.logout()


def test_a_folder_name_with_8_bit_bytes_is_no_and_nothing_is_made(rx, db_url):
    # isync 1.4 sends a folder name raw, in UTF-8. Read a byte at a time as Latin-1, the
    # name became the folder "Archiv/2010/JÃ¤nner", which the client then never found.
    c = implicit(rx)
    assert c.create("Archiv")[0] == "OK"
    appenduid(c.append("INBOX", None, None, message(1)))
    assert c.select("INBOX")[0] == "OK"
    raw = '"Archiv/2010/Jänner"'.encode()
    refused = [
        ("CREATE", raw),
        ("CREATE", b"{%d}\r\n%b" % (len(raw) - 2, raw[1:-1])),  # the name as a literal
        ("EXAMINE", raw),
        ("STATUS", raw, b"(MESSAGES)"),
        ("SUBSCRIBE", raw),
        ("UNSUBSCRIBE", raw),
        ("DELETE", raw),
        ("RENAME", b"Archiv", raw),
        ("RENAME", raw, b"Archiv2"),
        ("LIST", b'""', raw),
        ("LIST", raw, b'"*"'),
        ("LSUB", b'""', raw),
        ("COPY", b"1", raw),
        ("MOVE", b"1", raw),
        ("UID", b"COPY", b"1", raw),
        ("SELECT", raw),
    ]
    for command, *args in refused:
        tag = c._command(command, *args)
        typ, data = c._command_complete(command, tag)
        assert (typ, data) == ("NO", [b"Mailbox name is not valid mUTF-7"]), (command, args)
    # APPEND: refused before the client sends its message.
    assert c.append(raw, None, None, message(2)) == ("NO", [b"Mailbox name is not valid mUTF-7"])
    # LITERAL+: the message comes unasked; it is read past, not taken for a command.
    c.send(b"p1 APPEND %b {9+}\r\np2 NOOP\r\n\r\n" % raw)
    assert c.readline() == b"p1 NO Mailbox name is not valid mUTF-7\r\n"
    assert c.noop()[0] == "OK"
    assert sorted(n for (n,) in query(db_url, "SELECT name FROM folder")) == ["Archiv", "INBOX"]
    assert query(db_url, "SELECT COUNT(*) FROM folder_entry")[0][0] == 1
    # The same name in modified UTF-7 is the folder the client meant.
    assert c.create('"Archiv/2010/J&AOQ-nner"')[0] == "OK"
    assert query(db_url, "SELECT name FROM folder WHERE name LIKE ?", ("Archiv/%",)) == [
        ("Archiv/2010/Jänner",)
    ]
    c.logout()


def wire(data: list) -> bytes:
    """imaplib's answer as the server wrote it (a literal follows its "{n}" and CRLF)."""
    return b"".join(b"%b\r\n%b" % part if isinstance(part, tuple) else part for part in data)


def test_envelope_addresses_with_8_bit_bytes_are_the_header_s_own_bytes(rx):
    # Raw 8-bit headers, as many mailers send them: a name in UTF-8, one in Latin-1.
    inner = b"From: J\xc3\xbcrgen <j@b.example>\r\nSubject: inner\r\n\r\nhi\r\n"
    raw = (
        b"From: J\xc3\xbcrgen <j@b.example>\r\n"
        b'To: "Zo\xeb" <z@c.example>, plain@c.example\r\n'
        b"Subject: Gr\xc3\xbc\xc3\x9fe\r\n"
        b"Message-ID: <m8@example.org>\r\n"
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
        b"--b\r\nContent-Type: message/rfc822\r\n\r\n" + inner + b"--b--\r\n"
    )
    c = implicit(rx)
    appenduid(c.append("INBOX", None, None, raw))
    assert c.select("INBOX")[0] == "OK"
    # As Dovecot writes them: a literal of the bytes the header has, never "J??rgen".
    jurgen = b'(({7}\r\nJ\xc3\xbcrgen NIL "j" "b.example"))'
    typ, data = c.fetch("1", "(ENVELOPE)")
    assert typ == "OK" and wire(data) == (
        b"1 (ENVELOPE (NIL {7}\r\nGr\xc3\xbc\xc3\x9fe "
        + b" ".join([jurgen] * 3)
        + b' (({3}\r\nZo\xeb NIL "z" "c.example") ("" NIL "plain" "c.example"))'
        b' NIL NIL NIL "<m8@example.org>"))'
    )
    # The envelope of a message/rfc822 part too.
    typ, data = c.fetch("1", "(BODYSTRUCTURE)")
    assert typ == "OK" and b'(NIL "inner" ' + b" ".join([jurgen] * 3) in wire(data)
    c.logout()


def test_a_folder_with_an_ampersand_after_accents_is_listed_by_a_name_that_opens_it(rx):
    c = starttls(rx)
    # "Café&Bar": pymap wrote the "&" right after "é" bare, "Caf&AOk-&Bar", which is no
    # modified UTF-7: a client that sent the listed name back was told BAD.
    assert c.create('"Caf&AOk-&-Bar"')[0] == "OK"
    assert c.list('""', '"Caf*"')[1] == [b'(\\HasNoChildren) "/" Caf&AOk-&-Bar']
    assert c.status("Caf&AOk-&-Bar", "(MESSAGES)")[1] == [b"Caf&AOk-&-Bar (MESSAGES 0)"]
    assert c.select("Caf&AOk-&-Bar")[0] == "OK"
    c.logout()


def test_fields_that_decode_to_lone_surrogates_are_answered_undecoded(rx):
    # =?utf-7?Q?+2AA-?= decodes to U+D800, a lone surrogate, which the email package
    # cannot take; anyone can send it (SMTP stores the bytes as they come).
    bad = b"=?utf-7?Q?+2AA-?="
    raw = (
        b"Date: Tue, 01 Jan 2019 10:00:00 +0000\r\n"
        b"From: " + bad + b" <a@b.example>\r\n"
        b"Sender: " + bad + b" <s@b.example>\r\n"
        b"Reply-To: " + bad + b" <r@b.example>\r\n"
        b"To: " + bad + b" <t@b.example>\r\n"
        b"Cc: =?utf-8?q?Zo=C3=AB?= " + bad + b" <c@b.example>, J\xfcrgen <j@b.example>\r\n"
        b"Bcc: " + bad + b" <x@b.example>\r\n"
        b"Subject: " + bad + b"\r\n"
        b"In-Reply-To: " + bad + b"\r\n"
        b"Message-ID: <ls@example.org>\r\n"
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
        b"--b\r\nContent-Type: text/plain; name*=utf-7''%2B2AA-\r\n\r\nhi\r\n"
        b'--b\r\nContent-Type: text/plain; name="' + bad + b'"\r\n\r\nho\r\n--b--\r\n'
    )
    assert send(rx.port, rx.address, raw)[0] == 250
    c = implicit(rx)
    # The copy a mail client puts in INBOX is the delivery stored over SMTP.
    appenduid(c.append("INBOX", None, None, raw))
    assert c.select("INBOX") == ("OK", [b"1"])
    # Each field as Dovecot writes it: the encoded-words undecoded, a run of them kept
    # whole (its blanks too), an 8-bit name as its bytes.
    typ, data = c.fetch("1", "(ENVELOPE)")
    assert typ == "OK" and wire(data) == (
        b'1 (ENVELOPE ("Tue, 01 Jan 2019 10:00:00 +0000" "=?utf-7?Q?+2AA-?="'
        b' (("=?utf-7?Q?+2AA-?=" NIL "a" "b.example"))'
        b' (("=?utf-7?Q?+2AA-?=" NIL "s" "b.example"))'
        b' (("=?utf-7?Q?+2AA-?=" NIL "r" "b.example"))'
        b' (("=?utf-7?Q?+2AA-?=" NIL "t" "b.example"))'
        b' (("=?utf-8?q?Zo=C3=AB?= =?utf-7?Q?+2AA-?=" NIL "c" "b.example")'
        b' ({6}\r\nJ\xfcrgen NIL "j" "b.example"))'
        b' (("=?utf-7?Q?+2AA-?=" NIL "x" "b.example"))'
        b' "=?utf-7?Q?+2AA-?=" "<ls@example.org>"))'
    )
    # An RFC 2231 value is its octets; an encoded-word in a quoted one is undecoded.
    typ, data = c.fetch("1", "(BODYSTRUCTURE)")
    assert typ == "OK" and wire(data) == (
        b'1 (BODYSTRUCTURE (("text" "plain" ("name" "+2AA-") NIL NIL "7BIT" 2 0 NIL NIL NIL'
        b' NIL)("text" "plain" ("name" "=?utf-7?Q?+2AA-?=") NIL NIL "7BIT" 2 0 NIL NIL NIL'
        b' NIL) "mixed" ("boundary" "b") NIL NIL NIL))'
    )
    # The session goes on, and so does the message's content.
    assert c.fetch("1", "(BODY.PEEK[1])")[1] == [(b"1 (BODY[1] {2}", b"hi"), b")"]
    assert c.noop()[0] == "OK"
    c.logout()
    assert "Traceback" not in rx.log_path.read_text(errors="replace")
    # The parse stage and the CLI took the message as it is.
    shown = rx.cli_json("messages", "show", "1")
    assert shown["subject"] == "=?utf-7?Q?+2AA-?=" and shown["from_name"] == "=?utf-7?Q?+2AA-?="
    assert shown["parse_error"] is None
