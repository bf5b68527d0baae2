"""Config reaches every component: a SIGHUP hands the new values to each part of a running
`serve` (verifier, writer, pipeline, sessions, TLS, the IMAP listeners), and `import` threads with the
configured [threads] rule, not a default (`quarantine release`: test_quarantine_release)."""

from __future__ import annotations

import imaplib
import signal
import socket
import ssl

from tests import mailfixtures as F
from tests.helpers import merge_toml
from tests.imap_support import (
    Proxied,
    ProxiedImplicit,
    client_context,
    imap_receiver,
    implicit,
    start_imap,
)
from tests.rawsmtp import Raw, client_tls, deliveries, message, query, send, wait_until


def _reply(subject: str, msgid: str) -> bytes:
    """A reply by subject alone (no In-Reply-To/References), same participants."""
    return F.original(subject=subject, msgid=msgid)


def _threads(receiver) -> dict[str, int]:
    return {
        m["message_id"]: m["thread_id"]
        for m in receiver.cli_json("messages", "list", "--limit", "0")
    }


def _delivery(receiver, msgid: str) -> dict:
    listed = {
        m["message_id"]: m["id"] for m in receiver.cli_json("messages", "list", "--limit", "0")
    }
    [d] = receiver.cli_json("messages", "show", str(listed[msgid]))["deliveries"]
    return d


def _dead_port() -> int:
    """A loopback UDP port nobody answers on (the DNS before the reload)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _reload(receiver, toml: str) -> None:
    receiver.config.write_text(merge_toml(receiver.config.read_text(), toml))
    # A greeting means the loop ran past start-up, where the SIGHUP handler is installed.
    Raw(receiver.port).close()
    before = receiver.log_path.read_text().count("config reloaded")
    receiver.proc.send_signal(signal.SIGHUP)
    assert wait_until(lambda: receiver.log_path.read_text().count("config reloaded") > before)


def test_sighup_reaches_verifier_writer_pipeline_and_sessions(receiver, dns):
    address = receiver.add_mailbox(F.SUBSCRIBER)
    local = address.split("@")[0]
    receiver.config.write_text(
        merge_toml(
            receiver.config.read_text(),
            f"""
[receiver]
authserv_id = "before.example"
[dns]
servers = ["127.0.0.1:{_dead_port()}"]
timeout = 0.3
[smtp]
hostname = "before.example"
""",
        )
    )
    port = receiver.start()
    assert (
        send(port, address, F.sign(F.original(subject="Plan", msgid="p1@author.example")))[0] == 250
    )
    before = _delivery(receiver, "p1@author.example")
    assert before["verdict"] == "unverifiable"  # no DNS answer: the key is unknown
    assert before["auth_results"].startswith("before.example;")
    assert send(port, f"{local}@other.example", F.original(msgid="x0@author.example"))[0] == 550
    assert send(port, address, F.list_footer(F.signed()))[0] == 250  # altered: quarantined
    c = Raw(port)
    assert c.greeting[1].startswith("220 before.example")
    c.close()

    _reload(
        receiver,
        f"""
[receiver]
domains = ["push.example.com", "other.example"]
authserv_id = "after.example"
[dns]
servers = ["{dns.address}"]
timeout = 0.5
[smtp]
hostname = "after.example"
max_recipients = 1
max_message_size = 123456
max_errors = 2
max_sessions_per_ip = 2
[policy]
altered = "reject"
unwrap = false
[threads]
subject_join = false
""",
    )
    # Every key is probed on its own, so one run names each key the reload missed.
    seen: dict[str, bool] = {}
    send(port, address, F.sign(F.original(subject="Budget", msgid="b1@author.example")))
    after = _delivery(receiver, "b1@author.example")
    seen["dns.servers"] = after["verdict"] == "unaltered"
    seen["receiver.authserv_id"] = after["auth_results"].startswith("after.example;")
    # A reply by subject alone starts its own thread.
    send(port, address, _reply("Re: Plan", "r1@author.example"))
    thread = dict(query(receiver.db_url, "SELECT message_id, thread_id FROM message"))
    seen["threads.subject_join"] = (
        None not in (thread["r1@author.example"], thread["p1@author.example"])
        and thread["r1@author.example"] != thread["p1@author.example"]
    )
    # The wrapper is kept as it is, not unwrapped to the enclosed original.
    inner = F.sign(F.original(subject="Inner", msgid="i1@author.example"))
    assert send(port, address, F.forward_as_attachment(inner))[0] == 250
    seen["policy.unwrap"] = not query(
        receiver.db_url, "SELECT id FROM message WHERE message_id = 'i1@author.example'"
    )
    code, text = send(port, address, F.list_footer(F.signed()))
    seen["policy.altered"] = code == 550 and "5.7.1" in text
    seen["receiver.domains"] = (
        send(port, f"{local}@other.example", F.original(msgid="x1@author.example"))[0] == 250
    )
    c = Raw(port)
    seen["smtp.hostname"] = c.greeting[1].startswith("220 after.example")
    seen["smtp.max_message_size"] = "SIZE 123456" in c.cmd("EHLO x")[1]
    c.cmd("MAIL FROM:<a@example.org>")
    c.cmd(f"RCPT TO:<{address}>")
    seen["smtp.max_recipients"] = c.cmd(f"RCPT TO:<{address}>")[0] == 452
    codes = [c.cmd("NOPE")[0] for _ in range(2)]
    seen["smtp.max_errors"] = codes[-1] == 421
    c.close()
    first, second = Raw(port), Raw(port)
    third = Raw(port)
    seen["smtp.max_sessions_per_ip"] = third.greeting[0] == 421
    for conn in (first, second, third):
        conn.close()
    assert [key for key, ok in seen.items() if not ok] == []
    assert receiver.proc.poll() is None


def test_sighup_warns_about_keys_that_take_a_restart(receiver):
    receiver.start()
    _reload(receiver, "[parse]\nworkers = 3\n")
    assert "parse.workers changed: it takes a restart" in receiver.log_path.read_text()


def test_import_threads_with_the_configured_subject_rule(receiver, tmp_path):
    receiver.add_mailbox(F.SUBSCRIBER)
    receiver.config.write_text(
        merge_toml(receiver.config.read_text(), "[threads]\nsubject_join = false\n")
    )
    folder = tmp_path / "eml"
    folder.mkdir()
    (folder / "1.eml").write_bytes(F.original(subject="Plan", msgid="p1@author.example"))
    (folder / "2.eml").write_bytes(_reply("Re: Plan", "r1@author.example"))
    receiver.cli("import", str(folder), "--mailbox", F.SUBSCRIBER)
    threads = _threads(receiver)
    assert len(threads) == 2
    assert threads["r1@author.example"] != threads["p1@author.example"]


def test_sighup_reaches_tls_settings(tls_receiver):
    port = tls_receiver.start()
    _reload(tls_receiver, '[tls]\nrequire_starttls = true\nmin_version = "TLSv1.3"\n')
    seen: dict[str, bool] = {}
    c = Raw(port)
    c.cmd("EHLO x")
    seen["tls.require_starttls"] = c.cmd("MAIL FROM:<a@example.org>")[0] == 530
    assert c.cmd("STARTTLS")[0] == 220
    old = client_tls()
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    try:
        old.wrap_socket(c.sock)
        seen["tls.min_version"] = False
    except ssl.SSLError:
        seen["tls.min_version"] = True
    c.close()
    assert [key for key, ok in seen.items() if not ok] == []


def test_sighup_reaches_the_imap_listeners(tmp_path, db_url):
    r = imap_receiver(tmp_path / "rx", db_url, extra='[smtp]\nhostname = "before.example"\n')
    start_imap(r)
    try:
        c = implicit(r)
        assert b"before.example" in c.welcome
        old_port = r.imap_ports["STARTTLS"]
        _reload(
            r,
            """
[smtp]
hostname = "after.example"
max_message_size = 5000
[tls]
min_version = "TLSv1.3"
[imap]
listen = "127.0.0.1:1"
timeout = 3
max_errors = 2
max_sessions_per_ip = 3
proxy_trusted = ["127.0.0.2/32"]
""",
        )
        # A session open before the reload keeps going.
        assert c.noop()[0] == "OK"
        c.logout()
        seen: dict[str, bool] = {}
        c = implicit(r)
        seen["smtp.hostname"] = b"after.example" in c.welcome
        typ, data = c.append("INBOX", None, None, message(1, body=b"x" * 6000))
        seen["smtp.max_message_size"] = (
            b"APPENDLIMIT=5000" in c.capability()[1][0] and typ == "NO" and b"[TOOBIG]" in data[0]
        )
        c.logout()
        c = implicit(r, login=False)
        for tag in (b"a1", b"a2"):
            c.send(tag + b" FROB\r\n")
        lines = [c.readline() for _ in range(3)]
        seen["imap.max_errors"] = lines[1].startswith(b"a2 BAD") and lines[2] == b""  # closed
        held = [implicit(r, login=False) for _ in range(3)]
        seen["imap.max_sessions_per_ip"] = _greeting(r.imap_ports["implicit TLS"]).startswith(
            b"* BYE [UNAVAILABLE]"
        )
        # Silent since they connected: logged out after the new imap.timeout.
        seen["imap.timeout"] = all(h.readline().startswith(b"* BYE Autologout") for h in held)
        # The balancer is 127.0.0.2; the clients above, on 127.0.0.1, are direct ones.
        header = b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 143\r\n"
        c = Proxied(old_port, header, source="127.0.0.2")
        c.starttls(client_context())
        c.login(r.username, r.password)
        assert c.append("INBOX", None, None, message(2))[0] == "OK"
        c.logout()
        seen["imap.proxy_trusted"] = deliveries(db_url)[-1]["peer"].startswith("203.0.113.7:")
        c = ProxiedImplicit(r.imap_ports["implicit TLS"], header, source="127.0.0.2")
        c.login(r.username, r.password)
        assert c.append("INBOX", None, None, message(3))[0] == "OK"
        c.logout()
        seen["imap.proxy_trusted (implicit TLS)"] = deliveries(db_url)[-1]["peer"].startswith(
            "203.0.113.7:"
        )
        # The daemon's one TLS context, reloaded in place, serves IMAP too.
        old_tls = client_context()
        old_tls.maximum_version = ssl.TLSVersion.TLSv1_2
        try:
            imaplib.IMAP4_SSL(
                "127.0.0.1", r.imap_ports["implicit TLS"], ssl_context=old_tls, timeout=30
            )
            seen["tls.min_version"] = False
        except ssl.SSLError:
            seen["tls.min_version"] = True
        assert [key for key, ok in seen.items() if not ok] == []
        # Its listeners stay where they are: a new address takes a restart.
        assert "imap.listen changed: it takes a restart" in r.log_path.read_text()
    finally:
        r.stop()


def _greeting(port: int) -> bytes:
    with client_context().wrap_socket(
        socket.create_connection(("127.0.0.1", port), timeout=30), server_hostname="localhost"
    ) as s:
        return s.makefile("rb").readline()
