"""What a person reads: no Python None, Message-IDs as arguments, unfolded subjects, help
summaries that fit, a status that knows its own server, 404s, one quarantine_days."""

from __future__ import annotations

import re
import socket
import threading

from click.testing import CliRunner

from receiver import metrics
from receiver.cli import cli
from tests.helpers import Receiver
from tests.test_receive import message

EMAIL = "alice@corp.example"


def imported(rx, tmp_path, *raws: bytes) -> None:
    folder = tmp_path / f"in{len(list(tmp_path.glob('in*')))}"
    folder.mkdir()
    for i, raw in enumerate(raws):
        (folder / f"{i}.eml").write_bytes(raw)
    rx.cli("import", str(folder), "--mailbox", EMAIL, "--json")


def test_messages_show_prints_no_none(receiver, tmp_path):
    receiver.add_mailbox(EMAIL)
    imported(
        receiver, tmp_path, b"Message-ID: <bare@x.example>\r\nTo: a@corp.example\r\n\r\nhi\r\n"
    )
    text = receiver.cli("messages", "show", "bare@x.example").stdout.decode()
    assert "None" not in text
    assert re.search(r"^subject +\(none\)$", text, re.M) and re.search(
        r"^from +\(none\)$", text, re.M
    )
    assert re.search(r"^date +\(none\)$", text, re.M)


def test_show_and_raw_take_a_message_id_and_name_the_rows_when_it_is_ambiguous(receiver, tmp_path):
    receiver.add_mailbox(EMAIL)
    one = message("m1@x.example", subject="one")
    imported(receiver, tmp_path, one)
    row = receiver.cli_json("messages", "list")[0]["id"]
    for key in ("<m1@x.example>", "m1@x.example", "m1@X.Example", str(row)):
        assert receiver.cli_json("messages", "show", key)["id"] == row
        assert receiver.cli("messages", "raw", key).stdout == one
    r = receiver.cli("messages", "show", "<nope@x.example>", check=False)
    assert r.returncode == 1 and b"no message <nope@x.example>" in r.stderr
    imported(receiver, tmp_path, message("m1@x.example", subject="two", body=b"other\r\n"))
    rows = sorted(m["id"] for m in receiver.cli_json("messages", "list"))
    assert len(rows) == 2
    for command in ("show", "raw"):
        r = receiver.cli("messages", command, "<m1@x.example>", check=False)
        assert r.returncode == 1
        assert f"give one of the rows {rows[0]}, {rows[1]}".encode() in r.stderr


def test_folded_subjects_are_unfolded_for_display_only(receiver, tmp_path):
    receiver.add_mailbox(EMAIL)
    raw = message("f1@x.example", subject="a long subject\r\n that was folded")
    imported(receiver, tmp_path, raw)
    thread = receiver.cli_json("threads", "list")[0]["id"]
    for args in (["threads", "list"], ["threads", "show", str(thread)], ["messages", "list"]):
        out = receiver.cli(*args).stdout.decode()
        assert "a long subject that was folded" in out, args
        assert all("folded" not in line or "long" in line for line in out.splitlines()), out
    shown = receiver.cli("messages", "show", "f1@x.example").stdout.decode()
    assert "subject     a long subject that was folded\n" in shown
    assert receiver.cli("messages", "raw", "f1@x.example").stdout == raw


def test_help_summaries_fit_without_being_cut():
    groups = [[]] + [[name] for name, c in cli.commands.items() if hasattr(c, "commands")]
    for group in groups:
        out = CliRunner().invoke(cli, [*group, "--help"], terminal_width=80).output
        listed = out.split("Commands:", 1)[1].splitlines()
        assert listed and [line for line in listed if line.endswith("...")] == [], group


def _fake_smtp_server(greeting: bytes):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()

    def serve():
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn:
                conn.sendall(greeting)
                conn.recv(100)

    threading.Thread(target=serve, daemon=True).start()
    return srv


def test_status_knows_this_receiver_from_any_smtp_server(receiver):
    srv = _fake_smtp_server(b"220 mx.example.org ESMTP Postfix\r\n")
    try:
        r = receiver.cli("status", "--listen", f"127.0.0.1:{srv.getsockname()[1]}", check=False)
    finally:
        srv.close()
    assert r.returncode == 1
    assert re.search(rb"smtp +DOWN .*not this receiver: 220 mx.example.org ESMTP Postfix", r.stdout)
    port = receiver.start()
    r = receiver.cli("status", "--listen", f"127.0.0.1:{port}")
    assert re.search(rb"smtp +ok", r.stdout)


def test_the_metrics_server_answers_unknown_paths_with_404():
    app = metrics.wsgi_app(lambda: True, None, None)
    said = []
    for path in ("/", "/nope", "/metrics/x", "/metrics"):
        body = b"".join(
            app(
                {"PATH_INFO": path, "REQUEST_METHOD": "GET", "QUERY_STRING": ""},
                lambda status, headers: said.append(status),
            )
        )
        assert body
    assert [s.split()[0] for s in said] == ["404", "404", "404", "200"]


def test_prune_json_shows_the_quarantine_days_in_force(receiver):
    receiver.add_mailbox(EMAIL)
    receiver.add_mailbox("bob@corp.example")
    receiver.cli("mailbox", "set", "bob@corp.example", "--quarantine-days", "7")
    pruned = {
        m["email"]: m["quarantine_days"]
        for m in receiver.cli_json("prune", "--dry-run")["mailboxes"]
    }
    shown = {
        e: receiver.cli_json("mailbox", "show", e)["retention"]["quarantine_days"] for e in pruned
    }
    assert pruned == shown == {EMAIL: 30, "bob@corp.example": 7}


def test_instructions_warn_about_the_localhost_domain(tmp_path, db_url):
    rx = Receiver(tmp_path / "rx", db_url, extra_config='[receiver]\ndomains = ["localhost"]\n')
    rx.add_mailbox(EMAIL)
    r = rx.cli("mailbox", "instructions", EMAIL, "--provider", "sieve")
    assert b"warning: the receiver domain is localhost" in r.stderr
    assert b"init --domain" in r.stderr and b"@localhost" in r.stdout


def test_instructions_for_a_real_domain_say_no_warning(receiver):
    receiver.add_mailbox(EMAIL)
    assert receiver.cli("mailbox", "instructions", EMAIL, "--provider", "sieve").stderr == b""


def test_serve_says_add_a_mailbox_only_when_there_is_none(receiver):
    receiver.add_mailbox(EMAIL)
    receiver.start()
    assert b"add a mailbox" not in b"".join(receiver.announced)
    assert b"receiver domains" in b"".join(receiver.announced)
