"""The IMAP edge held to the RFCs where review found pymap lenient or silent, answered as
Dovecot answers: STATUS (APPENDLIMIT) (RFC 7889)."""

from __future__ import annotations

import pytest

from tests.imap_support import imap_receiver, implicit, start_imap
from tests.rawsmtp import stored_raws
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
