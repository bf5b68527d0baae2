"""`import` refuses files that are not mail: nothing stored, "not a message: PATH", exit 1."""

from __future__ import annotations

import json
import os
import sqlite3

from hypothesis import given
from hypothesis import strategies as st

from receiver.mailfiles import is_message
from tests.test_import_export import FIRST, MBOX
from tests.threading_support import fedora_messages


def test_is_message_knows_mail_from_other_bytes(tmp_path):
    assert is_message(FIRST) and is_message(FIRST.replace(b"\r\n", b"\n"))
    assert is_message(b"Subject: only a header\r\n")
    assert is_message(b"Subject: folded\r\n\tsecond line\r\nFrom: a@b.example\r\n\r\n\x00body")
    # A broken line in the header is the message's defect (mail-parser records it): kept.
    assert is_message(b"Subject: x\r\nno colon on this line\r\n\r\nbody")
    for raw in (
        b"",
        b"\r\n",
        b"\r\nSubject: the header block is empty\r\n",
        b"just some text\r\nSubject: x\r\n\r\n",
        b"SQLite format 3\x00\x10\x00",
        b"Subject: \x00\x01\x02\r\n\r\n",
        b"From nobody\r\nplain text\r\n",
    ):
        assert not is_message(raw), raw
    db = tmp_path / "x.db"
    sqlite3.connect(db).execute("CREATE TABLE t (x)").connection.commit()
    assert not is_message(db.read_bytes())
    assert all(is_message(m) for m in fedora_messages())


@given(
    st.lists(
        st.tuples(
            st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,20}", fullmatch=True),
            st.from_regex(r"[ -~]{0,60}", fullmatch=True),
        ),
        min_size=1,
    ),
    st.binary(max_size=200),
)
def test_header_fields_then_any_body_is_a_message(fields, body):
    raw = b"".join(f"{k}: {v}\r\n".encode() for k, v in fields) + b"\r\n" + body
    assert is_message(raw)


@given(st.binary(max_size=300))
def test_bytes_without_a_field_first_are_not_a_message(raw):
    first = raw.split(b"\n", 1)[0]
    if b":" not in first:
        assert not is_message(raw)


def test_import_refuses_what_is_not_mail_and_stores_the_rest(receiver, tmp_path):
    receiver.add_mailbox("alice@corp.example")
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "empty.eml").write_bytes(b"")
    (folder / "random.eml").write_bytes(os.urandom(5000))
    (folder / "good.eml").write_bytes(FIRST)
    db = (
        receiver.db_url.removeprefix("sqlite:///") if receiver.db_url.startswith("sqlite") else None
    )
    (folder / "copy.db").write_bytes(open(db, "rb").read() if db else b"SQLite format 3\x00" * 64)
    r = receiver.cli("import", str(folder), "--mailbox", "alice@corp.example", check=False)
    assert r.returncode == 1
    said = r.stderr.decode().splitlines()
    assert sorted(line for line in said if line.startswith("not a message")) == [
        f"not a message: {folder / name}" for name in ("copy.db", "empty.eml", "random.eml")
    ]
    assert [m["message_id"] for m in receiver.cli_json("messages", "list")] == ["a1@example.org"]
    for name in ("empty.eml", "random.eml"):
        r = receiver.cli(
            "import", str(folder / name), "--mailbox", "alice@corp.example", "--json", check=False
        )
        data = json.loads(r.stdout)
        assert r.returncode == 1 and data["not_messages"] == [str(folder / name)]
        assert (data["stored"], data["failed"]) == (0, 1)
    # A file that starts like an mbox but holds no separator and no message.
    (tmp_path / "fake.mbox").write_bytes(b"From the desk of the CEO\nplease read this\n")
    r = receiver.cli(
        "import", str(tmp_path / "fake.mbox"), "--mailbox", "alice@corp.example", check=False
    )
    assert r.returncode == 1 and b"not a message: " in r.stderr
    assert len(receiver.cli_json("messages", "list")) == 1
    (tmp_path / "real.mbox").write_bytes(MBOX)
    receiver.cli("import", str(tmp_path / "real.mbox"), "--mailbox", "alice@corp.example")
    assert len(receiver.cli_json("messages", "list")) == 3  # a1 is in it too


def test_stdin_that_is_not_mail_is_refused_as_a_file_is(receiver, tmp_path):
    receiver.add_mailbox("alice@corp.example")
    for piped in (b"", b"\n", b"garbage\n", b"SQLite format 3\x00\x10\x00"):
        r = receiver.cli("import", "-", "--mailbox", "alice@corp.example", input=piped, check=False)
        assert r.returncode == 65, piped
        assert r.stderr.decode().splitlines() == [
            "Error: not a message: stdin (empty, binary, or without a header field first)"
        ]
        r = receiver.cli(
            "import", "-", "--mailbox", "alice@corp.example", "--json", input=piped, check=False
        )
        data = json.loads(r.stdout)
        assert r.returncode == 65 and data["not_messages"] == ["stdin"]
        assert (data["messages"], data["stored"], data["failed"]) == (1, 0, 1)
    assert receiver.cli_json("messages", "list") == []
