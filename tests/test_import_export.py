"""`import` and `export` through the real CLI, on both backends: the same pipeline as SMTP,
idempotent reruns, byte-exact export, and an import → export → import round trip."""

from __future__ import annotations

import mailbox

from tests.helpers import Receiver

MBOX = (
    b"From bob@example.org Thu Dec 31 22:50:51 2009\n"
    b"From: Bob <bob@example.org>\nTo: alice@corp.example\nSubject: first\n"
    b"Message-ID: <a1@example.org>\nDate: Fri, 1 Jan 2010 09:20:34 +0000\n\n"
    b"hello\n\nFrom what I can tell it works.\n\n"
    b"From carol@example.org Fri Jan  1 10:00:00 2010\r\n"
    b"From: Carol <carol@example.org>\r\nTo: alice@corp.example\r\nSubject: Re: first\r\n"
    b"Message-ID: <a2@example.org>\r\nIn-Reply-To: <a1@example.org>\r\n"
    b"Date: Fri, 1 Jan 2010 10:00:00 +0000\r\n\r\nreply\n\n"
    b"From dave@example.org Sat Feb  6 10:00:00 2010\n"
    b"From: Dave <dave@example.org>\nTo: alice@corp.example\nSubject: other\n"
    b"Message-ID: <a3@example.org>\nDate: Sat, 6 Feb 2010 10:00:00 +0000\n\nnew topic\n"
)
FIRST = (
    b"From: Bob <bob@example.org>\r\nTo: alice@corp.example\r\nSubject: first\r\n"
    b"Message-ID: <a1@example.org>\r\nDate: Fri, 1 Jan 2010 09:20:34 +0000\r\n\r\n"
    b"hello\r\n\r\nFrom what I can tell it works.\r\n"
)


def imported(rx: Receiver, *args: str, input: bytes | None = None) -> dict:
    import json

    r = rx.cli("import", *args, "--mailbox", "alice@corp.example", "--json", input=input)
    return json.loads(r.stdout)


def stored(rx: Receiver) -> dict[str, bytes]:
    return {
        m["message_id"]: rx.cli("messages", "raw", str(m["id"])).stdout
        for m in rx.cli_json("messages", "list", "--limit", "0")
    }


def test_import_mbox_is_idempotent_and_goes_through_the_pipeline(receiver, tmp_path):
    receiver.add_mailbox("alice@corp.example")
    (tmp_path / "in.mbox").write_bytes(MBOX)
    s = imported(receiver, str(tmp_path / "in.mbox"))
    assert (s["messages"], s["stored"], s["duplicate"], s["failed"]) == (3, 3, 0, 0)
    raws = stored(receiver)
    assert raws["a1@example.org"] == FIRST
    assert all(b"\n" not in r.replace(b"\r\n", b"") for r in raws.values())
    listed = {m["message_id"]: m for m in receiver.cli_json("messages", "list")}
    assert listed["a1@example.org"]["thread_id"] == listed["a2@example.org"]["thread_id"]
    assert listed["a3@example.org"]["thread_id"] != listed["a1@example.org"]["thread_id"]
    show = receiver.cli_json("messages", "show", str(listed["a1@example.org"]["id"]))
    assert [d["source"] for d in show["deliveries"]] == ["import"]
    assert show["deliveries"][0]["verdict"]  # the verifier ran

    again = imported(receiver, str(tmp_path / "in.mbox"))
    assert (again["stored"], again["duplicate"]) == (0, 3)
    assert receiver.cli_json("stats")["totals"]["deliveries"] == 3


def test_export_round_trip_mbox_and_maildir(receiver, tmp_path):
    receiver.add_mailbox("alice@corp.example")
    (tmp_path / "in.mbox").write_bytes(MBOX)
    imported(receiver, str(tmp_path / "in.mbox"))
    before = stored(receiver)

    receiver.cli("export", str(tmp_path / "out.mbox"), "--mailbox", "alice@corp.example")
    exported = [bytes(m) for m in mailbox.mbox(str(tmp_path / "out.mbox"))]
    assert len(exported) == 3
    again = imported(receiver, str(tmp_path / "out.mbox"))
    assert (again["stored"], again["duplicate"]) == (0, 3)

    receiver.cli(
        "export", str(tmp_path / "md"), "--format", "maildir", "--mailbox", "alice@corp.example"
    )
    files = sorted((tmp_path / "md" / "cur").iterdir())
    assert sorted(f.read_bytes() for f in files) == sorted(before.values())  # byte-exact
    again = imported(receiver, str(tmp_path / "md"))
    assert (again["stored"], again["duplicate"]) == (0, 3)
    assert stored(receiver) == before

    # A second mailbox gets the same messages from the export: new deliveries, no new messages.
    receiver.add_mailbox("bob@corp.example")
    r = receiver.cli("import", str(tmp_path / "out.mbox"), "--mailbox", "bob@corp.example")
    assert b"3 stored" in r.stdout
    assert receiver.cli_json("stats")["totals"]["messages"] == 3

    refused = receiver.cli(
        "export", str(tmp_path / "out.mbox"), "--mailbox", "alice@corp.example", check=False
    )
    assert refused.returncode == 1 and b"exists already" in refused.stderr


def test_export_filters(receiver, tmp_path):
    receiver.add_mailbox("alice@corp.example")
    (tmp_path / "in.mbox").write_bytes(MBOX)
    imported(receiver, str(tmp_path / "in.mbox"))
    listed = {m["message_id"]: m for m in receiver.cli_json("messages", "list")}
    thread = listed["a2@example.org"]["thread_id"]
    out = receiver.cli(
        "export", "-", "--mailbox", "alice@corp.example", "--thread", str(thread)
    ).stdout
    assert out.count(b"\nMessage-ID: ") == 2
    assert b"<a3@example.org>" not in out
    out = receiver.cli(
        "export", "-", "--mailbox", "alice@corp.example", "--since", "2010-02-01"
    ).stdout
    assert b"<a3@example.org>" in out and b"<a1@example.org>" not in out


def test_import_stdin_and_folder(receiver, tmp_path):
    receiver.add_mailbox("alice@corp.example")
    piped = b"From bob@example.org Thu Dec 31 22:50:51 2009\n" + FIRST.replace(b"\r\n", b"\n")
    r = receiver.cli("import", "-", "--mailbox", "alice@corp.example", input=piped)
    assert r.returncode == 0
    assert stored(receiver) == {"a1@example.org": FIRST}
    (tmp_path / "eml").mkdir()
    (tmp_path / "eml" / "x.eml").write_bytes(FIRST)
    (tmp_path / "eml" / "y.eml").write_bytes(FIRST.replace(b"a1@", b"b1@"))
    s = imported(receiver, str(tmp_path / "eml"))
    assert (s["stored"], s["duplicate"]) == (1, 1)


def test_import_refusals(receiver, tmp_path):
    receiver.add_mailbox("alice@corp.example")
    r = receiver.cli(
        "import", str(tmp_path / "missing.mbox"), "--mailbox", "alice@corp.example", check=False
    )
    assert r.returncode == 1 and b"no such file" in r.stderr
    r = receiver.cli("import", "-", "--mailbox", "nobody@corp.example", input=FIRST, check=False)
    assert r.returncode == 1 and b"no mailbox nobody@corp.example" in r.stderr
    receiver.cli("mailbox", "disable", "alice@corp.example")
    r = receiver.cli("import", "-", "--mailbox", "alice@corp.example", input=FIRST, check=False)
    assert r.returncode == 1 and b"disabled" in r.stderr and b"Traceback" not in r.stderr


def test_import_follows_the_policy(tmp_path, db_url):
    rx = Receiver(tmp_path / "rx", db_url, extra_config='[policy]\nunverifiable = "quarantine"\n')
    rx.add_mailbox("alice@corp.example")
    (tmp_path / "in.mbox").write_bytes(MBOX)
    s = imported(rx, str(tmp_path / "in.mbox"))
    assert (s["quarantined"], s["stored"]) == (3, 0)
    assert rx.cli_json("stats")["totals"]["quarantined"] == 3
    again = imported(rx, str(tmp_path / "in.mbox"))
    assert (again["quarantined"], again["duplicate"]) == (0, 3)
    # Quarantined copies stay out of an export unless asked for.
    out = rx.cli("export", "-", "--mailbox", "alice@corp.example").stdout
    assert out == b""
    out = rx.cli("export", "-", "--mailbox", "alice@corp.example", "--include-quarantined").stdout
    assert out.count(b"\nMessage-ID: ") == 3


def test_an_8bit_subject_that_is_not_utf8_is_read_as_latin1(receiver, tmp_path):
    receiver.add_mailbox("alice@corp.example")
    head = b"From: Bob <bob@example.org>\nTo: alice@corp.example\nDate: Fri, 1 Jan 2010 09:20:34 +0000\n"
    (tmp_path / "mail").mkdir()
    (tmp_path / "mail" / "latin1.eml").write_bytes(
        head + b"Subject: Gr\xfc\xdfe\nMessage-ID: <l1@example.org>\n\nhi\n"
    )
    # Its reply without In-Reply-To, in UTF-8: joined on the subject as before.
    (tmp_path / "mail" / "utf8.eml").write_bytes(
        head + "Subject: Re: Grüße\nMessage-ID: <u1@example.org>\n\nho\n".encode()
    )
    assert imported(receiver, str(tmp_path / "mail"))["stored"] == 2
    listed = {m["message_id"]: m for m in receiver.cli_json("messages", "list")}
    assert listed["l1@example.org"]["subject"] == "Grüße"
    assert listed["u1@example.org"]["thread_id"] == listed["l1@example.org"]["thread_id"]
    assert [t["subject"] for t in receiver.cli_json("threads", "list")] == ["grüße"]
    assert stored(receiver)["l1@example.org"].count(b"Gr\xfc\xdfe") == 1  # raw bytes kept
