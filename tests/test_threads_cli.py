"""`threads list|show|export` on a real receiver fed over SMTP."""

from __future__ import annotations

import mailbox
import re
import smtplib


def _mail(msgid, subject, frm, to, date, irt="", refs="", body="hi"):
    head = [
        f"From: {frm}",
        f"To: {to}",
        f"Subject: {subject}",
        f"Date: {date}",
        f"Message-ID: <{msgid}>",
    ]
    if irt:
        head.append(f"In-Reply-To: <{irt}>")
    if refs:
        head.append("References: " + " ".join(f"<{r}>" for r in refs.split()))
    return ("\r\n".join(head) + "\r\n\r\n" + body + "\r\n").encode()


ROOT = _mail(
    "root@x.example",
    "Budget 2025",
    "ann@x.example",
    "bob@y.example",
    "Mon, 03 Feb 2025 10:00:00 +0000",
    body="From the top\r\nFrom here on",
)
REPLY = _mail(
    "reply@y.example",
    "Re: Budget 2025",
    "bob@y.example",
    "ann@x.example",
    "Mon, 03 Feb 2025 11:00:00 +0000",
    irt="root@x.example",
    refs="root@x.example",
)
# Answers a message nobody here received: it shows as a ghost.
LATE = _mail(
    "late@x.example",
    "Re: Budget 2025",
    "cat@z.example",
    "ann@x.example",
    "Tue, 04 Feb 2025 09:00:00 +0000",
    irt="lost@y.example",
    refs="root@x.example lost@y.example",
)
OTHER = _mail(
    "other@x.example", "Lunch", "ann@x.example", "dan@w.example", "Sat, 01 Feb 2025 12:00:00 +0000"
)


def _send(port, rcpt, raws):
    with smtplib.SMTP("127.0.0.1", port) as s:
        for raw in raws:
            s.sendmail("ann@x.example", [rcpt], raw)


def test_threads_list_show_and_export(receiver, tmp_path):
    ann = receiver.add_mailbox("ann@corp.example")
    dan = receiver.add_mailbox("dan@corp.example")
    port = receiver.start()
    _send(port, ann, [LATE, REPLY, ROOT])
    _send(port, dan, [OTHER])

    listed = receiver.cli_json("threads", "list")
    assert [t["subject"] for t in listed] == ["budget 2025", "lunch"]
    budget = listed[0]
    assert budget == {
        "id": budget["id"],
        "subject": "budget 2025",
        "first_date": "2025-02-03T10:00:00Z",
        "last_date": "2025-02-04T09:00:00Z",
        "messages": 3,
        "participants": ["ann@x.example", "bob@y.example", "cat@z.example"],
        "message_ids": ["late@x.example", "reply@y.example", "root@x.example"],
    }
    assert [
        t["subject"] for t in receiver.cli_json("threads", "list", "--mailbox", "dan@CORP.example")
    ] == ["lunch"]
    assert [
        t["subject"] for t in receiver.cli_json("threads", "list", "--since", "2025-02-02")
    ] == ["budget 2025"]
    assert len(receiver.cli_json("threads", "list", "--limit", "1")) == 1
    assert len(receiver.cli_json("threads", "list", "--limit", "0")) == 2

    text = receiver.cli("threads", "show", str(budget["id"])).stdout.decode()
    lines = text.splitlines()
    assert lines[0] == f"thread {budget['id']}: budget 2025 (3 messages)"
    # Indent, then the date (or the ghost's id), the sender, the subject, [message id].
    assert [re.match(r"( *(\[missing\] \S+|\S+))", line).group(1) for line in lines[1:]] == [
        "2025-02-03T10:00:00Z",
        "  2025-02-03T11:00:00Z",
        "  [missing] <lost@y.example>",
        "    2025-02-04T09:00:00Z",
    ]
    assert "bob@y.example  Re: Budget 2025  [" in lines[2]
    tree = receiver.cli_json("threads", "show", str(budget["id"]))["tree"]
    assert [n["message_id"] for n in tree] == ["root@x.example"]
    assert [(c["message_id"], c["ghost"]) for c in tree[0]["children"]] == [
        ("reply@y.example", False),
        ("lost@y.example", True),
    ]
    assert tree[0]["children"][1]["children"][0]["from"] == "cat@z.example"

    out = tmp_path / "budget.mbox"
    receiver.cli("threads", "export", str(budget["id"]), "--mbox", str(out))
    exported = [m.as_bytes() for m in mailbox.mbox(str(out))]
    assert [m.split(b"Message-ID: <")[1].split(b">")[0] for m in exported] == [
        b"root@x.example",
        b"reply@y.example",
        b"late@x.example",
    ]
    # mboxrd quoting of the body's "From " line is the only change to the bytes.
    assert b"\n>From here on" in out.read_bytes()

    bad = receiver.cli("threads", "show", "999999", check=False)
    assert bad.returncode == 1 and b"no thread 999999" in bad.stderr
    assert b"Traceback" not in bad.stderr
