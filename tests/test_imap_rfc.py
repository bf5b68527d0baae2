"""The IMAP edge held to the RFCs where review found pymap lenient or silent, answered as
Dovecot answers: STATUS (APPENDLIMIT) (RFC 7889), sequence numbers past EXISTS (RFC 3501
9), system flags a client may not set (RFC 3501 2.3.2), FETCH BINARY.PEEK (RFC 3516)."""

from __future__ import annotations

import imaplib

import pytest

from tests.imap_support import imap_receiver, implicit, start_imap, starttls
from tests.rawsmtp import message, query, stored_raws
from tests.test_imap import appenduid
from tests.test_imap_limits import _raw_message

LIMIT = 4000


@pytest.fixture
def small_limit(tmp_path, db_url):
    """A receiver whose messages (and so APPEND literals) may be at most LIMIT bytes."""
    r = imap_receiver(tmp_path / "rx", db_url, extra=f"[smtp]\nmax_message_size = {LIMIT}\n")
    start_imap(r)
    yield r
    print("--- daemon log ---\n" + r.stop()[1][-4000:])


def test_status_answers_the_append_limit_that_append_applies(small_limit, db_url):
    c = implicit(small_limit)
    assert b"APPENDLIMIT=%d" % LIMIT in c.capability()[1][0].split()
    # RFC 7889 4: a server that advertises APPENDLIMIT answers STATUS (APPENDLIMIT),
    # in the order the attributes were asked for.
    typ, data = c.status("INBOX", "(MESSAGES APPENDLIMIT UIDNEXT)")
    assert (typ, data) == ("OK", [b"INBOX (MESSAGES 0 APPENDLIMIT %d UIDNEXT 1)" % LIMIT])
    assert c.status("INBOX", "(appendlimit)")[1] == [b"INBOX (APPENDLIMIT %d)" % LIMIT]
    # The number is the one APPEND holds to: LIMIT bytes are taken, one more is TOOBIG.
    assert c.append("INBOX", None, None, _raw_message(1, LIMIT))[0] == "OK"
    typ, data = c.append("INBOX", None, None, _raw_message(2, LIMIT + 1))
    assert typ == "NO" and data[0].startswith(b"[TOOBIG]"), data
    assert [len(raw) for raw in stored_raws(db_url).values()] == [LIMIT]
    # A folder that does not exist has no status, APPENDLIMIT or not.
    assert c.status("Nowhere", "(APPENDLIMIT)")[0] == "NO"
    c.logout()


def bad(c: imaplib.IMAP4, *args: str) -> str:
    """The text of the BAD a command is answered (imaplib raises it)."""
    with pytest.raises(imaplib.IMAP4.error, match=" BAD ") as refused:
        c._simple_command(*args)
    return str(refused.value)


def test_sequence_numbers_past_exists_are_bad_uids_are_not(rx, db_url):
    c = starttls(rx)
    assert c.create("Kept")[0] == "OK"
    assert c.select("INBOX") == ("OK", [b"0"])
    # An empty folder has no sequence numbers at all, not even "*" (RFC 3501 9).
    assert "FETCH: Invalid messageset" in bad(c, "FETCH", "1", "(FLAGS)")
    assert "Invalid messageset" in bad(c, "FETCH", "*", "(FLAGS)")
    uids = [appenduid(c.append("INBOX", None, None, message(n)))[1] for n in (1, 2)]
    assert c.noop()[0] == "OK" and c.untagged_responses["EXISTS"][-1] == b"2"
    for args in (
        ("FETCH", "3", "(FLAGS)"),
        ("FETCH", "1,3", "(FLAGS)"),
        ("FETCH", "2:4", "(FLAGS)"),
        ("FETCH", "5:*", "(FLAGS)"),
        ("STORE", "3", "+FLAGS", r"(\Deleted)"),
        ("COPY", "3", "Kept"),
        ("MOVE", "2:3", "Kept"),
    ):
        assert f"{args[0]}: Invalid messageset" in bad(c, *args), args
    # Nothing was done by a command refused BAD; within EXISTS all is as before.
    assert query(db_url, "SELECT COUNT(*) FROM folder_entry")[0][0] == 2
    typ, data = c.fetch("1:*", "(UID)")
    assert typ == "OK" and data[-2:] == [b"1 (UID %d)" % uids[0], b"2 (UID %d)" % uids[1]], data
    assert c.fetch("2", "(FLAGS)")[0] == "OK"
    # UID sets stay lenient (RFC 3501 6.4.8): a UID no message has is no error.
    missing = str(uids[-1] + 10)
    assert c.uid("FETCH", missing, "(FLAGS)") == ("OK", [None])
    assert c.uid("STORE", missing, "+FLAGS", r"(\Seen)")[0] == "OK"
    assert c.uid("COPY", f"{uids[0]}:{missing}", "Kept")[0] == "OK"
    assert c.select("Kept") == ("OK", [b"2"])
    c.logout()


def test_a_system_flag_a_client_may_not_set_is_bad(rx, db_url):
    c = implicit(rx)
    # Not one of RFC 3501's five, or \Recent, which only the server gives: BAD, and
    # nothing stored; the literal was read, and the session goes on.
    for flags in (r"(\Junk)", r"(\Seen \Recent)", r"(\NonExistent $Label1)"):
        with pytest.raises(imaplib.IMAP4.error, match="APPEND: Invalid system flag"):
            c.append("INBOX", flags, None, message(1))
    tag = c._new_tag()
    c.send(tag + b" APPEND INBOX (\\Junk) {%d+}\r\n" % len(message(1)) + message(1) + b"\r\n")
    assert c.readline() == tag + b" BAD APPEND: Invalid system flag \\Junk\r\n"
    # MULTIAPPEND: one message's flag refuses the whole command, as one refusal would.
    first, second = message(2), message(3)
    tag = c._new_tag()
    c.send(
        tag
        + b" APPEND INBOX {%d+}\r\n%s (\\Forwarded) {%d+}\r\n%s\r\n"
        % (len(first), first, len(second), second)
    )
    assert c.readline() == tag + b" BAD APPEND: Invalid system flag \\Forwarded\r\n"
    assert stored_raws(db_url) == {}
    # The five, in any case, and keywords are taken.
    _, uid = appenduid(c.append("INBOX", r"(\sEEN \Draft $Label1)", None, message(4)))
    c.select("INBOX")
    for flags in (r"(\Junk)", r"(\Recent)"):
        with pytest.raises(imaplib.IMAP4.error, match="STORE: Invalid system flag"):
            c.uid("STORE", str(uid), "+FLAGS", flags)
    assert c.uid("STORE", str(uid), "FLAGS", r"(\Answered Junk)")[0] == "OK"
    [(flags,)] = query(db_url, "SELECT flags FROM folder_entry")
    assert sorted(flags.split()) == ["Junk", "\\Answered"]
    c.logout()


def test_binary_peek_is_answered_as_binary_and_leaves_the_message_unseen(rx):
    c = implicit(rx)
    _, uid = appenduid(c.append("INBOX", None, None, message(1)))
    assert c.select("INBOX")[0] == "OK"
    # RFC 3516 4.2: the response item is BINARY[1], never BINARY.PEEK[1] (as BODY.PEEK[]
    # is answered as BODY[]); a client looks its answer up under that name.
    typ, data = c.fetch("1", "(BINARY.PEEK[1] BINARY.SIZE[1])")
    assert typ == "OK" and data == [(b"1 (BINARY[1] ~{7}", b"hello\r\n"), b" BINARY.SIZE[1] 7)"]
    typ, data = c.uid("FETCH", str(uid), "(BINARY.PEEK[1]<1.3>)")
    assert typ == "OK" and data == [(b"1 (BINARY[1]<1> ~{3}", b"ell"), b" UID %d)" % uid]
    # Still a peek: \Seen is not set.
    assert c.fetch("1", "(FLAGS)")[1] == [b"1 (FLAGS (\\Recent))"]
    c.logout()
