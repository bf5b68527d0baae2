"""The IMAP edge as real clients drive it, where it once went wrong: folder names in
modified UTF-7, keywords (Thunderbird's tags, $Label1...) and hierarchy declarations."""

from __future__ import annotations

import imaplib
import socket

import pytest

from tests.imap_support import implicit, starttls
from tests.rawsmtp import query


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
