"""Hostile and broken input over a raw socket against the real daemon: each case gets
the reply named in issue 5, the daemon keeps serving, and nothing forged is recorded."""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import BACKENDS
from tests.helpers import Receiver
from tests.rawsmtp import Raw, deliveries, message, open_data, send, stored_raws, transaction

LIMITS = {
    "THREADS_RECEIVER_SMTP_MAX_MESSAGE_SIZE": "100000",
    "THREADS_RECEIVER_SMTP_MAX_LINE_LENGTH": "2000",
    "THREADS_RECEIVER_SMTP_MAX_RECIPIENTS": "3",
    "THREADS_RECEIVER_SMTP_MAX_ERRORS": "5",
    "THREADS_RECEIVER_SMTP_MAX_COMMANDS": "40",
}


@pytest.fixture(scope="module", params=BACKENDS)
def rx(request, tmp_path_factory):
    """One daemon per backend for the whole module, with small limits."""
    directory = tmp_path_factory.mktemp("rx")
    if request.param == "sqlite":
        db_url = f"sqlite:///{directory / 'receiver.db'}"
    else:
        db_url = request.getfixturevalue("pg_databases").create()
    r = Receiver(directory / "rx", db_url)
    r.address = r.add_mailbox("alice@corp.example")
    r.start(**LIMITS)
    yield r
    r.stop()


def unique() -> str:
    return uuid.uuid4().hex[:12]


def by_subject(rx, subject: str) -> list[dict]:
    return [d for d in deliveries(rx.db_url) if d["subject"] == subject]


def still_serving(rx) -> None:
    n = unique()
    assert send(rx.port, rx.address, message(n))[0] == 250
    assert by_subject(rx, f"test {n}")


@pytest.mark.parametrize("smuggle", [b"\n.\r\n", b"\r.\r", b"\r\n.\n", b"\n.\n"])
def test_smuggled_end_of_data_stays_inside_the_message(rx, smuggle):
    n = unique()
    hidden = f"MAIL FROM:<evil@example.net>\r\nRCPT TO:<{rx.address}>\r\nDATA\r\n".encode()
    raw = message(n, body=b"first" + smuggle + hidden + b"Subject: smuggled\r\n\r\nx\r\n")
    c = Raw(rx.port)
    code, _ = transaction(c, rx.address, raw)
    assert code == 250
    # The session is in its command state again: nothing was smuggled into it.
    assert c.cmd("RCPT TO:<" + rx.address + ">")[0] == 503
    c.close()
    rows = by_subject(rx, f"test {n}")
    assert len(rows) == 1
    assert raw in stored_raws(rx.db_url).values()
    assert not by_subject(rx, "smuggled")


def test_bare_lf_in_headers_is_a_defect_and_hides_nothing(rx):
    n = unique()
    raw = (
        b"From: bob@example.org\r\nX-Note: hi\nIn-Reply-To: <victim@example.org>\r\n"
        b"Subject: test " + n.encode() + b"\r\nMessage-ID: <" + n.encode() + b"@x>\r\n"
        b"X-Other: a\rSubject: hidden\r\n\r\nbody\r\n"
    )
    assert send(rx.port, rx.address, raw)[0] == 250
    [row] = by_subject(rx, f"test {n}")
    assert row["smtp_defects"] == ["bare LF in header", "bare CR in header"]
    assert row["in_reply_to"] is None
    assert raw in stored_raws(rx.db_url).values()


def test_plaintext_pipelined_after_starttls_is_discarded(tmp_path, tls_receiver):
    port = tls_receiver.start()
    c = Raw(port)
    c.cmd("EHLO client.example.org")
    c.send(b"STARTTLS\r\nMAIL FROM:<injected@example.net>\r\n")
    assert c.reply()[0] == 220
    from tests.rawsmtp import client_tls

    c.sock = client_tls().wrap_socket(c.sock)
    assert c.cmd("EHLO client.example.org")[0] == 250
    # Had the injected MAIL been run, this RCPT would be accepted.
    assert c.cmd(f"RCPT TO:<{tls_receiver.address}>")[0] == 503
    c.close()


@pytest.mark.parametrize(
    "line, code",
    [
        (b"HELO evil.example\nMAIL FROM:<a@example.org>", 500),  # ends at a bare LF
        (b"HELO evil\rforged.example", 501),
        (b"HELO evil\0forged.example", 501),
        (b"MAIL FROM:<a@example.org>\r RCPT", 501),
        (b"MAIL FROM:<a\0b@example.org>", 501),
    ],
)
def test_bare_cr_lf_nul_in_commands_refused(rx, line, code):
    c = Raw(rx.port)
    if line.startswith(b"MAIL"):
        assert c.cmd("EHLO client.example.org")[0] == 250
    c.send(line + b"\r\n")
    assert c.reply()[0] == code
    n = unique()
    assert transaction(c, rx.address, message(n), helo=False)[0] in (250, 503)
    c.close()
    for row in deliveries(rx.db_url):
        assert "\r" not in (row["helo"] or "") and "\0" not in (row["helo"] or "")
        assert "\0" not in (row["mail_from"] or "") and "\r" not in (row["mail_from"] or "")
        assert "forged" not in (row["helo"] or "")


def test_invalid_utf8_in_addresses(rx):
    c = Raw(rx.port)
    assert c.cmd("EHLO client.example.org")[0] == 250
    assert c.cmd(b"MAIL FROM:<b\xff\xfe@example.org> SMTPUTF8")[0] == 501
    assert c.cmd(b"MAIL FROM:<b\xff\xfe@example.org>")[0] == 501
    assert c.cmd(b"MAIL FROM:<b\xc3\xa9@example.org>")[0] == 553  # no SMTPUTF8
    assert c.cmd(b"MAIL FROM:<b\xc3\xa9@example.org> SMTPUTF8")[0] == 250
    assert c.cmd(b"RCPT TO:<" + rx.address.encode() + b"\xff>")[0] == 501
    c.close()
    still_serving(rx)


def test_utf8_sender_with_smtputf8_is_recorded(rx):
    n = unique()
    c = Raw(rx.port)
    assert c.cmd("EHLO client.example.org")[0] == 250
    assert c.cmd("MAIL FROM:<jörg@example.org> SMTPUTF8")[0] == 250
    assert c.cmd(f"RCPT TO:<{rx.address}>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send(message(n) + b".\r\n")
    assert c.reply()[0] == 250
    c.close()
    assert by_subject(rx, f"test {n}")[0]["mail_from"] == "jörg@example.org"


def test_command_line_over_512_octets(rx):
    c = Raw(rx.port)
    assert c.cmd("EHLO client.example.org")[0] == 250
    assert c.cmd("NOOP " + "x" * 600)[0] == 500
    assert c.cmd("NOOP " + "x" * 50000)[0] == 500  # past the reader's own limit too
    assert c.cmd("NOOP")[0] == 250
    c.close()


def test_data_line_over_the_limit_is_refused_cleanly(rx):
    n = unique()
    c = Raw(rx.port)
    code, text = transaction(c, rx.address, message(n, body=b"y" * 5000 + b"\r\n"))
    assert code == 500 and "5.5.2" in text
    # The session goes on.
    assert transaction(c, rx.address, message(n + "b"), helo=False)[0] == 250
    c.close()
    assert not by_subject(rx, f"test {n}")


def test_long_line_tail_never_ends_data(rx):
    """The tail of an over-long line that looks like the end of DATA is not the end."""
    c = Raw(rx.port)
    open_data(c, rx.address)
    c.send(b"z" * 2200 + b".\r\n")
    c.send(b"still data\r\n.\r\n")
    code, _ = c.reply()
    assert code == 500
    assert c.cmd("NOOP")[0] == 250
    c.close()


def test_size_over_the_limit_at_mail(rx):
    c = Raw(rx.port)
    assert c.cmd("EHLO client.example.org")[0] == 250
    code, text = c.cmd("MAIL FROM:<a@example.org> SIZE=100001")
    assert code == 552 and "5.3.4" in text
    assert c.cmd("MAIL FROM:<a@example.org> SIZE=1000")[0] == 250
    c.close()


def test_body_growing_past_the_limit(rx):
    n = unique()
    c = Raw(rx.port)
    body = (b"a" * 998 + b"\r\n") * 300  # 300 kB against a 100 kB limit
    code, text = transaction(c, rx.address, message(n, body=body))
    assert code == 552 and "5.3.4" in text
    assert transaction(c, rx.address, message(n + "b"), helo=False)[0] == 250
    c.close()
    assert not by_subject(rx, f"test {n}")


def test_too_many_recipients(rx):
    c = Raw(rx.port)
    assert c.cmd("EHLO client.example.org")[0] == 250
    assert c.cmd("MAIL FROM:<a@example.org>")[0] == 250
    for _ in range(3):
        assert c.cmd(f"RCPT TO:<{rx.address}>")[0] == 250
    code, text = c.cmd(f"RCPT TO:<{rx.address}>")
    assert code == 452 and "4.5.3" in text
    c.close()


def test_too_many_commands(rx):
    c = Raw(rx.port)
    for _ in range(40):
        assert c.cmd("NOOP")[0] == 250
    code, text = c.cmd("NOOP")
    assert code == 421 and "4.7.0" in text
    assert c.closed()


def test_too_many_errors(rx):
    c = Raw(rx.port)
    for _ in range(4):
        assert c.cmd("BOGUS")[0] == 500
    code, text = c.cmd("BOGUS")  # smtp.max_errors = 5: the fifth error is the last
    assert code == 500
    assert c.reply()[0] == 421
    assert c.closed()
    still_serving(rx)


def test_malformed_addresses_and_relay(rx):
    c = Raw(rx.port)
    assert c.cmd("EHLO client.example.org")[0] == 250
    assert c.cmd("MAIL FROM:<no at sign>>")[0] in (501, 553)
    assert c.cmd("MAIL FROM:<a@example.org>")[0] == 250
    assert c.cmd("RCPT TO:<<<>>")[0] in (501, 553)
    code, text = c.cmd("RCPT TO:<someone@elsewhere.example>")
    assert code == 550 and "5.7.1" in text
    code, text = c.cmd("RCPT TO:<nobody-aaaa@push.example.com>")
    assert code == 550 and "5.1.1" in text
    c.close()


def test_message_without_headers_and_with_nul(rx):
    for raw in (
        b"just a body, no headers at all\r\n",
        b"\r\nbody after an empty line\r\n",
        b"Subject: nul\r\n\r\nbinary \0 body\r\n",
    ):
        assert send(rx.port, rx.address, raw)[0] == 250
        assert raw in stored_raws(rx.db_url).values()


def test_empty_message(rx):
    c = Raw(rx.port)
    assert c.cmd("EHLO client.example.org")[0] == 250
    assert c.cmd("MAIL FROM:<>")[0] == 250
    assert c.cmd(f"RCPT TO:<{rx.address}>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    assert c.cmd(".")[0] == 250
    c.close()


@pytest.mark.parametrize("arg", ["<", "\\@[\t", "<\\@[>"])
def test_address_that_crashes_the_parser_is_malformed_not_500_error(rx, arg):
    """aiosmtpd's parser raises IndexError/UnboundLocalError on these; stock aiosmtpd
    answers "500 Error: (IndexError) string index out of range"."""
    c = Raw(rx.port)
    assert c.cmd("EHLO x")[0] == 250
    code, text = c.cmd("MAIL FROM:" + arg)
    assert code in (501, 553) and "Error: (" not in text
    assert c.cmd("MAIL FROM:<a@example.org>")[0] == 250
    code, text = c.cmd("RCPT TO:" + arg)
    assert code in (501, 553) and "Error: (" not in text
    c.close()


def test_no_500_error_exception_reply_anywhere(rx):
    """Odd but legal sequences that trip aiosmtpd's internals get a proper reply."""
    c = Raw(rx.port)
    replies = [
        c.cmd(x)
        for x in (
            "EHLO x",
            "AUTH PLAIN",
            "HELP MAIL",
            "VRFY <a@b>",
            "MAIL FROM:<a@b> BODY=BINARYMIME",
            "RSET",
            "EXPN x",
            "MAIL FROM:<a@b> SIZE=99999999999999999999",
        )
    ]
    assert not any("Error: (" in text for _, text in replies)
    c.close()


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(x.split()[1]) for x in f if x.startswith("VmRSS:")) / 1024


def test_memory_stays_bounded_while_an_oversize_body_is_drained(rx):
    before = _rss_mib(rx.proc.pid)
    c = Raw(rx.port)
    open_data(c, rx.address)
    chunk = (b"c" * 998 + b"\r\n") * 1024
    for _ in range(30):  # 30 MiB against a 100 kB limit
        c.send(chunk)
    c.send(b".\r\n")
    code, text = c.reply()
    assert code == 552 and "5.3.4" in text
    assert _rss_mib(rx.proc.pid) - before < 15
    c.close()
