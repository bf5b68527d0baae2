"""Who gets in: STARTTLS and implicit TLS, SMTP AUTH with per-mailbox credentials,
PROXY protocol from trusted proxies only, per-mailbox allow-lists."""

from __future__ import annotations

import base64
import re
import ssl

import pytest

from receiver import allowlist
from receiver.verify.verdict import UNALTERED, Verdict
from tests.helpers import proxy_v2
from tests.rawsmtp import Raw, client_tls, deliveries, message, query, send, transaction


def plain(user: str, password: str) -> str:
    return base64.b64encode(f"\0{user}\0{password}".encode()).decode()


def test_starttls_records_version_and_cipher(tls_receiver):
    port = tls_receiver.start()
    c = Raw(port)
    code, text = c.cmd("EHLO x")
    assert "STARTTLS" in text and "AUTH" not in text  # AUTH only after TLS
    c.starttls()
    code, text = c.cmd("EHLO x")
    assert "AUTH LOGIN PLAIN" in text and "STARTTLS" not in text
    assert transaction(c, tls_receiver.address, message(1), helo=False)[0] == 250
    c.close()
    [row] = deliveries(tls_receiver.db_url)
    assert row["tls"]["version"] in ("TLSv1.2", "TLSv1.3")
    assert row["tls"]["cipher"]


def test_require_starttls(tls_receiver):
    port = tls_receiver.start(THREADS_RECEIVER_TLS_REQUIRE_STARTTLS="true")
    c = Raw(port)
    assert c.cmd("EHLO x")[0] == 250
    code, text = c.cmd("MAIL FROM:<a@example.org>")
    assert code == 530
    c.starttls()
    assert transaction(c, tls_receiver.address, message(1))[0] == 250
    c.close()


def test_implicit_tls_listener(tls_receiver):
    tls_receiver.start(THREADS_RECEIVER_TLS_IMPLICIT_LISTEN="127.0.0.1:0")
    announced = b"".join(tls_receiver.announced).decode()
    tls_port = int(re.search(r"implicit TLS on port (\d+)", announced).group(1))
    c = Raw(tls_port, tls=True)
    code, text = c.cmd("EHLO x")
    assert "AUTH" in text and "STARTTLS" not in text
    assert transaction(c, tls_receiver.address, message(1), helo=False)[0] == 250
    c.close()
    assert deliveries(tls_receiver.db_url)[0]["tls"]["cipher"]


def test_auth_credentials_lifecycle(tls_receiver):
    other = tls_receiver.add_mailbox("carol@corp.example")
    out = tls_receiver.cli("mailbox", "credentials", "alice@corp.example").stdout.decode()
    user = re.search(r"username: (\S+)", out).group(1)
    password = re.search(r"password: (\S+)", out).group(1)
    [(stored,)] = query(tls_receiver.db_url, "SELECT secret_hash FROM credential")
    assert stored.startswith("scrypt$") and password not in stored
    port = tls_receiver.start()

    c = Raw(port)
    c.cmd("EHLO x")
    assert c.cmd("AUTH PLAIN " + plain(user, password))[0] == 538  # not over plain text
    c.starttls()
    c.cmd("EHLO x")
    assert c.cmd("AUTH PLAIN " + plain(user, password))[0] == 235
    assert c.cmd("MAIL FROM:<tool@example.org>")[0] == 250
    code, text = c.cmd(f"RCPT TO:<{other}>")
    assert code == 550 and "5.7.1" in text  # not its own mailbox
    assert c.cmd(f"RCPT TO:<{tls_receiver.address}>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send(message(1) + b".\r\n")
    assert c.reply()[0] == 250
    c.close()
    assert deliveries(tls_receiver.db_url)[0]["auth_user"] == "alice@corp.example"

    # LOGIN works too; a wrong password and an unknown user get the same reply.
    c = Raw(port)
    c.cmd("EHLO x")
    c.starttls()
    c.cmd("EHLO x")
    assert c.cmd("AUTH LOGIN " + base64.b64encode(user.encode()).decode())[0] == 334
    assert c.cmd(base64.b64encode(password.encode()).decode())[0] == 235
    c.close()
    replies = []
    for who in (user, "nobody@corp.example"):
        c = Raw(port)
        c.cmd("EHLO x")
        c.starttls()
        c.cmd("EHLO x")
        replies.append(c.cmd("AUTH PLAIN " + plain(who, "wrong")))
        c.close()
    assert replies[0] == replies[1] and replies[0][0] == 535

    tls_receiver.cli("mailbox", "credentials", "alice@corp.example", "--revoke")
    c = Raw(port)
    c.cmd("EHLO x")
    c.starttls()
    c.cmd("EHLO x")
    assert c.cmd("AUTH PLAIN " + plain(user, password))[0] == 535
    c.close()


def _issue(receiver, email: str) -> tuple[str, str]:
    out = receiver.cli("mailbox", "credentials", email).stdout.decode()
    return re.search(r"username: (\S+)", out).group(1), re.search(r"password: (\S+)", out).group(1)


def _authenticated(port: int, user: str, password: str) -> Raw:
    c, _ = _after_starttls(port)
    assert c.cmd("AUTH PLAIN " + plain(user, password))[0] == 235
    return c


@pytest.mark.parametrize(
    "change, why",
    [
        (("credentials", "--revoke"), "Credentials revoked"),
        (("credentials",), "Credentials reissued"),
        (("disable",), "Mailbox disabled"),
    ],
)
def test_an_admins_change_ends_an_authenticated_session(tls_receiver, change, why):
    other = tls_receiver.add_mailbox("carol@corp.example")
    user, password = _issue(tls_receiver, "alice@corp.example")
    other_user, other_password = _issue(tls_receiver, "carol@corp.example")
    port = tls_receiver.start()
    c = _authenticated(port, user, password)
    bystander = _authenticated(port, other_user, other_password)

    tls_receiver.cli("mailbox", change[0], "alice@corp.example", *change[1:])
    # A whole transaction pipelined: the MAIL is answered 421, the rest never.
    c.send(
        f"MAIL FROM:<tool@example.org>\r\nRCPT TO:<{tls_receiver.address}>\r\n".encode()
        + b"DATA\r\n"
        + message(1)
        + b".\r\n"
    )
    assert c.reply() == (421, f"421 4.7.0 {why}: logged out by the receiver's admin")
    assert c.closed() and c.buf == b""
    c.close()
    assert deliveries(tls_receiver.db_url) == []

    c, _ = _after_starttls(port)
    assert c.cmd("AUTH PLAIN " + plain(user, password))[0] == 535
    c.close()

    assert transaction(bystander, other, message(2), helo=False)[0] == 250
    bystander.close()
    [row] = deliveries(tls_receiver.db_url)
    assert row["auth_user"] == "carol@corp.example"


def test_a_revoke_during_a_transaction_stores_nothing(tls_receiver):
    """MAIL found the login holding; the revoke is committed before the end of data:
    the store's own check in the commit refuses the copy, and the client is told 421."""
    user, password = _issue(tls_receiver, "alice@corp.example")
    port = tls_receiver.start()
    c = _authenticated(port, user, password)
    assert c.cmd("MAIL FROM:<tool@example.org>")[0] == 250
    assert c.cmd(f"RCPT TO:<{tls_receiver.address}>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    tls_receiver.cli("mailbox", "credentials", "alice@corp.example", "--revoke")
    c.send(message(1) + b".\r\n")
    assert c.reply() == (421, "421 4.7.0 Credentials revoked: logged out by the receiver's admin")
    assert c.closed()
    c.close()
    assert deliveries(tls_receiver.db_url) == []


def test_auth_failures_are_rate_limited(tls_receiver):
    out = tls_receiver.cli("mailbox", "credentials", "alice@corp.example").stdout.decode()
    user = re.search(r"username: (\S+)", out).group(1)
    password = re.search(r"password: (\S+)", out).group(1)
    port = tls_receiver.start(THREADS_RECEIVER_AUTH_MAX_FAILURES="3")
    c = Raw(port)
    c.cmd("EHLO x")
    c.starttls()
    c.cmd("EHLO x")
    for _ in range(3):
        assert c.cmd("AUTH PLAIN " + plain(user, "guess"))[0] == 535
    code, text = c.cmd("AUTH PLAIN " + plain(user, password))
    assert code == 454 and "4.7.0" in text  # even the right password, for now
    c.close()


@pytest.mark.parametrize(
    "header, peer",
    [
        (b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 25\r\n", "203.0.113.7:40000"),
        # IPv6 in brackets, as on the IMAP edge: "2001:db8::7:4000" would be one address.
        (b"PROXY TCP6 2001:db8::7 ::1 4000 25\r\n", "[2001:db8::7]:4000"),
        (proxy_v2("203.0.113.7", 40000), "203.0.113.7:40000"),
        # A balancer's health check, v1 UNKNOWN and v2 LOCAL: accepted, and the connection's
        # own address is the client's (what the PROXY protocol specification says).
        (b"PROXY UNKNOWN\r\n", "127.0.0.1:"),
        (b"PROXY UNKNOWN ffff:f::1 ffff:f::2 1 2\r\n", "127.0.0.1:"),
        (b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x20, 0x00, 0, 0]), "127.0.0.1:"),
    ],
)
def test_proxy_protocol_from_a_trusted_proxy(receiver, header, peer):
    address = receiver.add_mailbox("alice@corp.example")
    port = receiver.start(THREADS_RECEIVER_SMTP_PROXY_TRUSTED="127.0.0.0/8")
    c = Raw(port, greet=False)
    c.send(header)
    assert c.reply()[0] == 220
    assert transaction(c, address, message(1))[0] == 250
    c.close()
    assert re.fullmatch(re.escape(peer) + r"\d*", deliveries(receiver.db_url)[0]["peer"])
    # Without a valid header a trusted proxy's connection is dropped.
    c = Raw(port, greet=False)
    c.send(b"EHLO not-a-proxy-header\r\n")
    assert c.closed()


def test_an_ipv6_client_is_allowed_by_its_own_address(receiver):
    address = receiver.add_mailbox("alice@corp.example")
    receiver.cli("mailbox", "allow", "alice@corp.example", "2001:db8::7")
    port = receiver.start(THREADS_RECEIVER_SMTP_PROXY_TRUSTED="127.0.0.0/8")
    # From port 4000: recorded "2001:db8::7:4000", the allow-list read it back as the
    # address 2001:db8::7:4000, another one, and refused the mailbox's own sender.
    c = Raw(port, greet=False)
    c.send(b"PROXY TCP6 2001:db8::7 ::1 4000 25\r\n")
    assert c.reply()[0] == 220
    assert transaction(c, address, message(1))[0] == 250
    c.close()
    assert deliveries(receiver.db_url)[0]["peer"] == "[2001:db8::7]:4000"


def test_proxy_header_from_elsewhere_is_not_believed(receiver):
    address = receiver.add_mailbox("alice@corp.example")
    port = receiver.start(THREADS_RECEIVER_SMTP_PROXY_TRUSTED="10.0.0.0/8")
    c = Raw(port)
    assert c.cmd("PROXY TCP4 203.0.113.7 127.0.0.1 40000 25")[0] == 500
    assert transaction(c, address, message(1))[0] == 250
    c.close()
    assert deliveries(receiver.db_url)[0]["peer"].startswith("127.0.0.1:")


def test_allow_list_of_networks(receiver):
    address = receiver.add_mailbox("alice@corp.example")
    receiver.cli("mailbox", "allow", "alice@corp.example", "10.0.0.0/8")
    port = receiver.start()
    code, text = send(port, address, message(1))
    assert code == 550 and "5.7.1" in text
    receiver.cli("mailbox", "allow", "alice@corp.example", "10.0.0.0/8", "127.0.0.1")
    assert send(port, address, message(1))[0] == 250
    receiver.cli("mailbox", "allow", "alice@corp.example", "--clear")
    assert send(port, address, message(2))[0] == 250
    assert (
        receiver.cli(
            "mailbox", "allow", "alice@corp.example", "not a thing", check=False
        ).returncode
        == 64  # a bad value: a usage error
    )


def test_allow_list_of_signing_domains_refuses_unsigned(receiver):
    address = receiver.add_mailbox("alice@corp.example")
    receiver.cli("mailbox", "allow", "alice@corp.example", "google.com")
    port = receiver.start()
    code, text = send(port, address, message(1))
    assert code == 550 and "allow-list" in text
    assert deliveries(receiver.db_url) == []


def test_signing_domains_read_from_the_verdict():
    import datetime as dt

    from receiver.verify.arccheck import ArcResult
    from receiver.verify.copypath import CopyPath
    from receiver.verify.dkimcheck import SigResult
    from receiver.verify.evidence import Evidence

    def evidence(sigs, arc) -> Evidence:
        return Evidence(
            CopyPath("copied"), "example.org", dt.datetime(2020, 1, 1, tzinfo=dt.UTC), sigs, arc
        )

    ev = evidence(
        [
            SigResult(0, d="Mail.Google.com.", result="pass"),
            SigResult(1, d="evil.example", result="fail"),
        ],
        ArcResult(cv="pass", sets=1, sealers=["outlook.com"]),
    )
    v = Verdict(UNALTERED, evidence=ev)
    assert ev.signing_domains() == {"mail.google.com", "outlook.com"}
    assert allowlist.refusal(["google.com"], "198.51.100.1:25", v) is None
    assert allowlist.refusal(["outlook.com"], None, v) is None
    assert allowlist.refusal(["evil.example"], "198.51.100.1:25", v) is not None
    assert allowlist.refusal(["198.51.100.0/24"], "198.51.100.1:25", Verdict(UNALTERED)) is None
    assert allowlist.refusal(["google.com"], None, Verdict(UNALTERED)) is not None
    failed_arc = evidence([], ArcResult(cv="fail", sets=1, sealers=["outlook.com"]))
    assert failed_arc.signing_domains() == set()


def test_allow_list_of_signing_domains_with_real_signatures(receiver, dns):
    """Only copies with a verified DKIM signature of an allowed domain get in."""
    from tests import mailfixtures as F

    address = receiver.add_mailbox(F.SUBSCRIBER)
    receiver.cli("mailbox", "allow", F.SUBSCRIBER, F.AUTHOR_DOMAIN)
    port = receiver.start(
        THREADS_RECEIVER_DNS_SERVERS=dns.address, THREADS_RECEIVER_DNS_TIMEOUT="0.5"
    )
    assert send(port, address, F.signed())[0] == 250
    code, text = send(port, address, message("unsigned"))
    assert code == 550 and "allow-list" in text
    receiver.cli("mailbox", "allow", F.SUBSCRIBER, "other.example")
    code, text = send(port, address, F.sign(F.original(subject="x", msgid="x2@author.example")))
    assert code == 550 and "allow-list" in text
    assert [d["subject"] for d in deliveries(receiver.db_url)] == ["Quarterly numbers"]


def _after_starttls(port: int) -> tuple[Raw, str]:
    c = Raw(port)
    c.cmd("EHLO x")
    c.starttls()
    return c, c.cmd("EHLO x")[1]


def test_auth_mechanisms_are_plain_and_login_in_any_case(tls_receiver):
    out = tls_receiver.cli("mailbox", "credentials", "alice@corp.example").stdout.decode()
    user = re.search(r"username: (\S+)", out).group(1)
    password = re.search(r"password: (\S+)", out).group(1)
    port = tls_receiver.start()
    c, ehlo = _after_starttls(port)
    assert "250-AUTH LOGIN PLAIN\n" in ehlo  # nothing else is a mechanism
    code, text = c.cmd("AUTH failures")
    assert code == 504 and "5.5.4" in text
    assert c.cmd("AUTH plain " + plain(user, password))[0] == 235  # RFC 4954: any case
    c.close()
    c, _ = _after_starttls(port)
    assert c.cmd("auth Login " + base64.b64encode(user.encode()).decode())[0] == 334
    assert c.cmd(base64.b64encode(password.encode()).decode())[0] == 235
    c.close()


def test_a_refused_proxy_header_is_logged_with_its_reason(receiver):
    receiver.add_mailbox("alice@corp.example")
    port = receiver.start(THREADS_RECEIVER_SMTP_PROXY_TRUSTED="127.0.0.0/8")
    c = Raw(port, greet=False)
    c.send(b"PROXY TCP4 999.0.0.1 127.0.0.1 1 25\r\n")
    assert c.closed()
    log = receiver.log_path.read_text()
    assert "trusted proxy 127.0.0.1 does not start with a valid PROXY header" in log
    assert "PROXYv1 address malformed" in log


def test_tls12_offers_aead_suites_only(tls_receiver):
    port = tls_receiver.start()
    for suites, accepted in (
        (
            "ECDHE-RSA-AES128-SHA256:ECDHE-RSA-AES256-SHA384:"
            "ECDHE-RSA-AES128-SHA:AES128-SHA256:AES128-SHA",
            False,
        ),
        ("ECDHE-RSA-AES128-GCM-SHA256", True),
    ):
        ctx = client_tls()
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers(suites)
        c = Raw(port)
        c.cmd("EHLO x")
        assert c.cmd("STARTTLS")[0] == 220
        if accepted:
            c.sock = ctx.wrap_socket(c.sock)
            assert c.cmd("EHLO x")[0] == 250
        else:
            with pytest.raises(ssl.SSLError):
                ctx.wrap_socket(c.sock)
        c.close()
