"""The admin CLI: mailbox life cycle, JSON shapes, errors, init and the default data folder."""

from __future__ import annotations

import json
import re
import smtplib
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import DOMAIN, ROOT, env_for, wait_for_listen
from tests.test_receive import message, rcpt_reply, send_raw


def test_mailbox_add_prints_unguessable_address(receiver):
    data = receiver.cli_json("mailbox", "add", "Alice.Smith@Corp.Example")
    assert data["email"] == "Alice.Smith@corp.example"
    local, _, domain = data["address"].partition("@")
    assert domain == DOMAIN
    slug, _, token = local.rpartition("-")
    assert slug == "alicesmith"
    # base32: 5 bits a character; at least 96 bits of randomness.
    assert re.fullmatch(r"[a-z2-7]+", token) and len(token) * 5 >= 96
    other = receiver.cli_json("mailbox", "add", "bob@corp.example")["address"]
    assert other.rpartition("-")[2] != token


def test_mailbox_list_show_and_text_output(receiver):
    receiver.add_mailbox("alice@corp.example")
    receiver.add_mailbox("bob@corp.example")
    listed = receiver.cli_json("mailbox", "list")
    assert [m["email"] for m in listed] == ["alice@corp.example", "bob@corp.example"]
    shown = receiver.cli_json("mailbox", "show", "ALICE@corp.example".replace("ALICE", "alice"))
    # `show` adds the forwarding confirmations received (none yet) to the listed shape.
    assert shown.pop("confirmations") == []
    assert shown == listed[0]
    assert set(shown) >= {
        "email",
        "state",
        "address",
        "addresses",
        "policy",
        "deliveries",
        "created_at",
    }
    text = receiver.cli("mailbox", "show", "alice@corp.example").stdout.decode()
    assert shown["address"] in text and "active" in text


def test_duplicate_and_unknown_mailbox_errors_are_one_line(receiver):
    receiver.add_mailbox("alice@corp.example")
    r = receiver.cli("mailbox", "add", "alice@corp.example", check=False)
    assert r.returncode == 1 and b"exists already" in r.stderr and b"Traceback" not in r.stderr
    r = receiver.cli_process("mailbox", "show", "nobody@corp.example", check=False)
    assert r.returncode == 1
    assert r.stderr.decode().strip().splitlines() == [
        "Error: no mailbox nobody@corp.example: see `threads-receiver mailbox list`"
    ]
    # A bad value is a usage error (README "Exit statuses"), in the console script too.
    r = receiver.cli_process("mailbox", "add", "not an address", check=False)
    assert r.returncode == 64 and b"not an email address" in r.stderr


def test_rotate_keeps_old_address_for_grace_then_refuses(receiver):
    old = receiver.add_mailbox("alice@corp.example")
    port = receiver.start()
    rotated = receiver.cli_json("mailbox", "rotate", "alice@corp.example", "--grace-days", "1")
    new = rotated["address"]
    assert new != old
    assert [a["address"] for a in rotated["addresses"]] == [old, new]
    assert rotated["addresses"][0]["expires_at"] is not None
    assert rcpt_reply(port, old)[0] == 250
    assert rcpt_reply(port, new)[0] == 250
    rotated = receiver.cli_json("mailbox", "rotate", "alice@corp.example", "--grace-days", "0")
    newest = rotated["address"]
    assert rcpt_reply(port, newest)[0] == 250
    # The grace-day-1 address still works, the one rotated with no grace is refused.
    assert rcpt_reply(port, old)[0] == 250
    code, text = rcpt_reply(port, new)
    assert (code, text[:5]) == (550, b"5.1.1")


def test_remove_refuses_with_deliveries_unless_purge(receiver):
    address = receiver.add_mailbox("alice@corp.example")
    receiver.add_mailbox("empty@corp.example")
    port = receiver.start()
    assert send_raw(port, [address], message())[0] == 250
    assert receiver.cli_json("mailbox", "remove", "empty@corp.example") == {
        "email": "empty@corp.example",
        "removed": True,
        "deliveries_deleted": 0,
    }
    r = receiver.cli("mailbox", "remove", "alice@corp.example", check=False)
    assert r.returncode == 1 and b"--purge" in r.stderr
    assert receiver.cli_json("stats")["totals"]["deliveries"] == 1
    out = receiver.cli_json("mailbox", "remove", "alice@corp.example", "--purge")
    assert out["deliveries_deleted"] == 1
    totals = receiver.cli_json("stats")["totals"]
    assert (
        totals["mailboxes"],
        totals["deliveries"],
        totals["messages"],
        totals["stored_bytes"],
    ) == (0, 0, 0, 0)
    assert rcpt_reply(port, address)[0] == 550


def test_messages_list_show_and_limits(receiver):
    address = receiver.add_mailbox("alice@corp.example")
    other = receiver.add_mailbox("bob@corp.example")
    port = receiver.start()
    for i in range(3):
        raw = message(f"m{i}@x", subject=f"s{i}").replace(
            b"Tue, 01 Jan 2019 10:00:00", f"Tue, 0{i + 1} Jan 2019 10:00:00".encode()
        )
        assert send_raw(port, [address if i < 2 else other], raw)[0] == 250
    listed = receiver.cli_json("messages", "list")
    assert [m["message_id"] for m in listed] == ["m2@x", "m1@x", "m0@x"]
    assert listed[0]["date"] == "2019-01-03T10:00:00Z"
    assert set(listed[0]) >= {"id", "message_id", "subject", "date", "mailboxes"}
    assert [m["message_id"] for m in receiver.cli_json("messages", "list", "--limit", "1")] == [
        "m2@x"
    ]
    assert [
        m["message_id"]
        for m in receiver.cli_json("messages", "list", "--mailbox", "alice@corp.example")
    ] == ["m1@x", "m0@x"]
    shown = receiver.cli_json("messages", "show", str(listed[0]["id"]))
    assert shown["subject"] == "s2" and shown["from"] == "bob@example.org"
    assert shown["deliveries"][0]["mailbox"] == "bob@corp.example"
    assert shown["deliveries"][0]["peer"].startswith("127.0.0.1:")
    assert shown["deliveries"][0]["helo"] == "test.example"
    assert shown["deliveries"][0]["mail_from"] == "bob@example.org"
    text = receiver.cli("messages", "show", str(listed[0]["id"])).stdout.decode()
    assert "s2" in text and "bob@corp.example" in text
    r = receiver.cli("messages", "show", "999", check=False)
    assert r.returncode == 1 and b"no message 999" in r.stderr
    stats = receiver.cli_json("stats")
    assert [(m["email"], m["deliveries"]) for m in stats["mailboxes"]] == [
        ("alice@corp.example", 2),
        ("bob@corp.example", 1),
    ]


def test_attachments_and_bodies_parsed(receiver):
    address = receiver.add_mailbox("alice@corp.example")
    port = receiver.start()
    raw = (
        b"From: a@example.org\r\nTo: b@example.org\r\nSubject: att\r\nMessage-ID: <att@x>\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n"
        b"--XX\r\nContent-Type: text/plain\r\n\r\nplain text\r\n"
        b"--XX\r\nContent-Type: text/html\r\n\r\n<p>html</p>\r\n"
        b"--XX\r\nContent-Type: application/pdf; name=a.pdf\r\n"
        b"Content-Disposition: attachment; filename=a.pdf\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\naGVsbG8=\r\n--XX--\r\n"
    )
    assert send_raw(port, [address], raw)[0] == 250
    shown = receiver.cli_json("messages", "show", "1")
    assert shown["text_body"].strip() == "plain text"
    assert "<p>html</p>" in shown["html_body"]
    assert shown["attachments"] == [
        {
            "name": "a.pdf",
            "type": "application/pdf",
            "size": 5,
            "sha256": "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
        }
    ]


def test_unparseable_message_is_stored_and_flagged(receiver):
    address = receiver.add_mailbox("alice@corp.example")
    port = receiver.start()
    raw = b"\x00\xff garbage without any header\r\n"
    assert send_raw(port, [address], raw)[0] == 250
    [m] = receiver.cli_json("messages", "list")
    shown = receiver.cli_json("messages", "show", str(m["id"]))
    assert shown["synthetic_id"] is True and m["message_id"].endswith("@synthetic.threads-receiver")
    assert receiver.cli("messages", "raw", str(m["id"])).stdout == raw


def test_console_script_and_module_agree(receiver):
    console = Path(sys.executable).with_name("threads-receiver")
    if not console.exists():
        pytest.skip("console script not installed in this interpreter's folder")
    a = subprocess.run([str(console), "--help"], capture_output=True, text=True)
    b = receiver.cli_process("--help")
    assert a.returncode == 0 and a.stdout == b.stdout.decode()
    assert "mailbox" in a.stdout and "serve" in a.stdout


def test_init_writes_config_and_schema(tmp_path):
    env = env_for(tmp_path / "none.toml")
    del env["THREADS_RECEIVER_CONFIG"]
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "receiver",
            "init",
            "--dir",
            str(tmp_path / "rx"),
            "--domain",
            "Push.Corp.Example",
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    text = (tmp_path / "rx" / "receiver.toml").read_text()
    assert 'domains = ["push.corp.example"]' in text
    assert (tmp_path / "rx" / "receiver.db").exists()
    again = subprocess.run(
        [
            sys.executable,
            "-m",
            "receiver",
            "init",
            "--dir",
            str(tmp_path / "rx"),
            "--domain",
            "x.example",
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert again.returncode == 1 and "--force" in again.stderr


def test_serve_without_config_uses_default_data_folder(tmp_path):
    env = env_for(tmp_path / "unused.toml", XDG_DATA_HOME=str(tmp_path / "xdg"))
    del env["THREADS_RECEIVER_CONFIG"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "receiver", "serve", "--listen", "127.0.0.1:0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        port = wait_for_listen(proc)
        home = tmp_path / "xdg" / "threads-receiver"
        assert (home / "receiver.toml").exists() and (home / "receiver.db").exists()
        add = subprocess.run(
            [sys.executable, "-m", "receiver", "mailbox", "add", "me@example.com", "--json"],
            env=env,
            capture_output=True,
            text=True,
        )
        address = json.loads(add.stdout)["address"]
        assert address.endswith("@localhost")
        with smtplib.SMTP("127.0.0.1", port) as s:
            s.sendmail("x@example.org", [address], message())
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    said = proc.startup_output + out
    assert str(home / "receiver.toml").encode() in said and b"mailbox add" in said


def test_readme_commands_and_ci_agree():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)\n```", readme, re.S)
    install_run, install_test = blocks[0], blocks[1]
    assert readme.index(install_run) < readme.index("##")
    assert "threads-receiver serve" in install_run and "pytest" in install_test
    ci = (ROOT / ".ci" / "run").read_text()
    assert install_test in ci.splitlines()


def test_every_package_folder_is_a_regular_package():
    """`pip install .` (not editable) ships only folders with an __init__.py."""
    folders = [
        p
        for p in (ROOT / "receiver").rglob("*")
        if p.is_dir() and p.name != "__pycache__" and any(p.glob("*.py"))
    ]
    assert folders and [str(p) for p in folders if not (p / "__init__.py").exists()] == []
