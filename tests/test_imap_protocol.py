"""IMAP protocol pieces beyond pymap's own, on both backends: NAMESPACE (RFC 2342),
special uses (RFC 6154), LITERAL+ as RFC 7888 wants it for LITERAL- clients too, and
\\Recent (RFC 3501) across sessions and daemons."""

from __future__ import annotations

import copy
import imaplib
import re
import socket
import ssl

import pytest
from pymap.parsing import Params
from pymap.parsing.commands import InvalidCommand

from receiver.imap import extensions
from tests.imap_support import client_context, implicit, start_imap, starttls
from tests.rawsmtp import message, query, stored_raws
from tests.test_imap import appenduid


def command(c, name: str, *args: str) -> tuple[str, list[bytes]]:
    """A command imaplib has no method for (or not with these arguments): the tagged
    result and the untagged responses named like the command."""
    typ, data = c._simple_command(name, *args)
    return typ, [d for d in c._untagged_response(typ, data, name)[1] if d]


def listed(lines: list[bytes]) -> dict[str, set[str]]:
    """LIST lines → {folder name: its attributes}."""
    out = {}
    for line in lines:
        m = re.fullmatch(rb'\(([^)]*)\) "/" (.+)', line)
        assert m, line
        out[m.group(2).decode().strip('"')] = set(m.group(1).decode().split())
    return out


def test_namespace_is_one_personal_namespace_with_the_folder_delimiter(rx):
    c = starttls(rx, login=False)
    assert b"NAMESPACE" not in c.capability()[1][0].split()
    c.login(rx.username, rx.password)
    caps = c.capability()[1][0].split()
    assert b"NAMESPACE" in caps and b"SPECIAL-USE" in caps and b"CREATE-SPECIAL-USE" in caps
    assert c.namespace() == ("OK", [b'(("" "/")) NIL NIL'])
    # The delimiter it names is the one LIST and hierarchical names use.
    assert c.create('"Old/2019"')[0] == "OK"
    assert "Old/2019" in listed(command(c, "LIST", '""', '"*"')[1])
    c.logout()


def test_folders_show_their_special_use(rx, db_url):
    c = implicit(rx)
    for name in (
        "Sent Items",
        "[Gmail]/Sent Mail",
        "Junk E-mail",
        "Deleted Items",
        "Drafts",
        "INBOX/Archive",
        "Projects/Sent",
    ):
        assert c.create(f'"{name}"')[0] == "OK", name
    # A use given at CREATE is kept on the folder, whatever its name.
    typ, data = c._simple_command("CREATE", '"Gesendete Elemente"', r"(USE (\Sent))")
    assert typ == "OK", data
    typ, data = c._simple_command("CREATE", "Kept", r"(USE (\archive \Flagged))")
    assert typ == "OK", data
    # An unknown use creates nothing.
    typ, data = c._simple_command("CREATE", "Odd", r"(USE (\Bogus))")
    assert typ == "NO" and b"[USEATTR]" in data[0], data
    stored = query(db_url, "SELECT name, special_use FROM folder WHERE special_use IS NOT NULL")
    assert sorted(stored) == [("Gesendete Elemente", "\\Sent"), ("Kept", "\\Archive \\Flagged")]
    assert not query(db_url, "SELECT id FROM folder WHERE name = 'Odd'")

    folders = listed(command(c, "LIST", '""', '"*"')[1])
    uses = {
        name: attrs - {"\\HasChildren", "\\HasNoChildren", "\\Noselect"}
        for name, attrs in folders.items()
    }
    # A use given at CREATE is that folder's alone: the names that would say \\Sent or
    # \\Archive do not make a second one.
    assert uses == {
        "INBOX": set(),
        "INBOX/Archive": set(),
        "Sent Items": set(),
        "[Gmail]": set(),
        "[Gmail]/Sent Mail": set(),
        "Junk E-mail": {"\\Junk"},
        "Deleted Items": {"\\Trash"},
        "Drafts": {"\\Drafts"},
        "Projects": set(),
        "Projects/Sent": set(),  # a project's folder, not the sent mail
        "Gesendete Elemente": {"\\Sent"},
        "Kept": {"\\Archive", "\\Flagged"},
    }
    # LIST (SPECIAL-USE) lists only those; RETURN (SPECIAL-USE) lists all, with uses.
    typ, lines = command(c, "LIST", "(SPECIAL-USE)", '""', '"*"')
    assert typ == "OK" and set(listed(lines)) == {n for n, u in uses.items() if u}
    typ, lines = command(c, "LIST", '""', '"*"', "RETURN", "(SPECIAL-USE)")
    assert typ == "OK" and listed(lines) == folders
    # What is not offered is a BAD, not a guess.
    with pytest.raises(imaplib.IMAP4.error, match="BAD"):
        command(c, "LIST", "(SUBSCRIBED)", '""', '"*"')

    # A stored use moves with its folder; a use read from the name goes with the name.
    assert c.rename('"Gesendete Elemente"', '"Alt"')[0] == "OK"
    assert c.rename('"Junk E-mail"', '"Was junk"')[0] == "OK"
    after = listed(command(c, "LIST", "(SPECIAL-USE)", '""', '"*"')[1])
    assert "\\Sent" in after["Alt"] and "Was junk" not in after
    c.logout()


def _tls_socket(rx) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", rx.imap_ports["implicit TLS"]), timeout=30)
    return client_context().wrap_socket(raw, server_hostname="localhost")


class Raw:
    """An IMAP client that writes exactly the bytes given, as LITERAL- and LITERAL+
    clients do."""

    def __init__(self, rx):
        self.sock = _tls_socket(rx)
        self.file = self.sock.makefile("rb")
        assert self.file.readline().startswith(b"* OK")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        return self.file.readline()

    def until(self, tag: bytes) -> list[bytes]:
        lines = []
        while not (line := self.line()).startswith(tag + b" "):
            assert line, lines
            lines.append(line)
        return [*lines, line]

    def close(self) -> None:
        self.sock.close()


def test_literal_plus_is_advertised_alone_and_takes_literal_minus_clients(rx, db_url):
    c = Raw(rx)
    user, password = rx.username.encode(), rx.password.encode()
    c.send(b"c1 CAPABILITY\r\n")
    caps = c.until(b"c1")[0].split()
    # RFC 7888 5: a LITERAL+ server must not advertise LITERAL- beside it.
    assert b"LITERAL+" in caps and b"LITERAL-" not in caps

    # The RFC's own example: non-synchronising literals in LOGIN, no continuation.
    c.send(b"a1 LOGIN {%d+}\r\n%b {%d+}\r\n%b\r\n" % (len(user), user, len(password), password))
    assert c.until(b"a1")[-1].startswith(b"a1 OK")

    # A LITERAL- client: non-synchronising up to 4096 bytes ...
    small = message(1, body=b"x" * 100 + b"\r\n")
    small += b"y" * (4096 - len(small))
    c.send(b"a2 APPEND INBOX {4096+}\r\n" + small + b"\r\n")
    reply = c.line()  # no "+" first: the server did not ask for the literal
    assert reply.startswith(b"a2 OK [APPENDUID"), reply
    # ... and synchronising above: it waits for the server's "+" before the bytes.
    big = message(2, body=b"z" * 5000 + b"\r\n")
    c.send(b"a3 APPEND INBOX {%d}\r\n" % len(big))
    assert c.line().startswith(b"+ ")
    c.send(big + b"\r\n")
    assert c.until(b"a3")[-1].startswith(b"a3 OK [APPENDUID")
    # MULTIAPPEND with one of each.
    m3, m4 = message(3), message(4, body=b"w" * 6000 + b"\r\n")
    c.send(b"a4 APPEND INBOX {%d+}\r\n%b {%d}\r\n" % (len(m3), m3, len(m4)))
    assert c.line().startswith(b"+ ")
    c.send(m4 + b"\r\n")
    assert c.until(b"a4")[-1].startswith(b"a4 OK [APPENDUID")
    # A LITERAL+ client may send more than 4096 bytes without waiting: this server is one.
    m5 = message(5, body=b"v" * 8000 + b"\r\n")
    c.send(b"a5 APPEND INBOX {%d+}\r\n%b\r\n" % (len(m5), m5))
    assert c.line().startswith(b"a5 OK [APPENDUID")
    c.close()
    assert sorted(stored_raws(db_url).values()) == sorted([small, big, m3, m4, m5])
    uids = query(db_url, "SELECT uid FROM folder_entry ORDER BY uid")
    assert [u for (u,) in uids] == [1, 2, 3, 4, 5]


def recent_of(c, mailbox: str, readonly: bool = False) -> tuple[int, set[int]]:
    """(the RECENT count SELECT/EXAMINE gave, the UIDs whose FLAGS show \\Recent)."""
    typ, _ = c.select(mailbox, readonly=readonly)
    assert typ == "OK"
    count = int(c.untagged_responses.pop("RECENT", [b"0"])[-1])
    return count, flagged_recent(c)


def flagged_recent(c) -> set[int]:
    c.untagged_responses.pop("FETCH", None)  # the unsolicited ones NOOP brought
    typ, data = c.uid("FETCH", "1:*", "(FLAGS)")
    assert typ == "OK", data
    recent = set()
    for d in data:
        flags = re.search(rb"FLAGS \(([^)]*)\)", d)
        if flags and b"\\Recent" in flags.group(1).split():
            recent.add(int(re.search(rb"UID (\d+)", d).group(1)))
    return recent


def test_recent_goes_to_the_first_session_that_sees_a_message(rx, db_url):
    writer = implicit(rx)
    writer.create("Box")
    for n in (1, 2):
        appenduid(writer.append("Box", None, None, message(n)))
    first, second = implicit(rx), starttls(rx)
    assert b"RECENT 2" in first.status("Box", "(RECENT)")[1][0]
    # EXAMINE shows what is recent but claims nothing.
    assert recent_of(first, "Box", readonly=True) == (2, set())
    assert recent_of(first, "Box") == (2, {1, 2})
    assert recent_of(second, "Box") == (0, set())
    assert query(db_url, "SELECT recent_uid FROM folder WHERE name = 'Box'") == [(2,)]

    # Appended while both have it selected: whoever hears of it first has it \Recent.
    appenduid(writer.append("Box", None, None, message(3)))
    second.noop()
    first.noop()
    assert flagged_recent(second) == {3} and flagged_recent(first) == {1, 2}
    # A session that appends to the folder it has selected sees its own copy \Recent,
    # and nobody after it does.
    appenduid(second.append("Box", None, None, message(4)))
    assert flagged_recent(second) == {3, 4}
    third = implicit(rx)
    assert recent_of(third, "Box") == (0, set())
    assert b"RECENT 0" in third.status("Box", "(RECENT)")[1][0]
    for c in (writer, first, second, third):
        c.logout()


def test_recent_is_claimed_once_across_daemons(rx, db_url):
    other = copy.copy(rx)  # a second daemon on the same database
    start_imap(other)
    try:
        writer = implicit(rx)
        writer.create("Box")
        appenduid(writer.append("Box", None, None, message(1)))
        here, there = implicit(rx), implicit(other)
        assert recent_of(there, "Box") == (1, {1})
        assert recent_of(here, "Box") == (0, set())
        appenduid(writer.append("Box", None, None, message(2)))
        here.noop()
        there.noop()
        assert flagged_recent(here) == {2} and flagged_recent(there) == {1}
        for c in (writer, here, there):
            c.logout()
    finally:
        other.stop()


def test_messages_show_names_the_folders_a_copy_is_in(rx):
    c = implicit(rx)
    for name in ('"Sent Items"', "Old"):
        assert c.create(name)[0] == "OK"
    appenduid(c.append("Old", None, None, message(1)))
    c.select("Old")
    assert c.uid("COPY", "1", '"Sent Items"')[0] == "OK"
    assert c.uid("MOVE", "1", "INBOX")[0] == "OK"
    c.logout()

    shown = rx.cli_json("messages", "show", "<m1@example.org>")
    [delivery] = shown["deliveries"]
    assert delivery["folders"] == [
        {"name": "INBOX", "uid": 1, "expunged": False},
        {"name": "Old", "uid": 1, "expunged": True},
        {"name": "Sent Items", "uid": 1, "expunged": False},
    ]
    text = rx.cli("messages", "show", "<m1@example.org>").stdout.decode()
    assert "  folders   INBOX, Sent Items (expunged from Old)\n" in text


@pytest.mark.parametrize(
    ("line", "uses"),
    [
        (b"a CREATE Box (USE (\\Sent \\Archive))\r\n", {"\\Sent", "\\Archive"}),
        (b"a CREATE Box (USE ())\r\n", set()),  # RFC 6154 allows an empty list
        (b"a CREATE Box\r\n", set()),
        (b"a CREATE Box (USE (Sent))\r\n", None),  # not a flag: BAD
    ],
)
def test_create_parses_the_use_parameter(line, uses):
    cmd, _ = extensions.commands().parse(memoryview(line), Params())
    if uses is None:
        assert isinstance(cmd, InvalidCommand)
    else:
        assert cmd.mailbox == "Box" and cmd.special_use == uses
