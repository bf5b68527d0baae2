"""`serve --workers 2`: two processes on one port, every message stored, clean stop."""

import smtplib

import pytest


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(c) for c in f.read().split()]


@pytest.mark.parametrize("workers", [2])
def test_workers_share_the_port_and_store_everything(receiver, workers):
    address = receiver.add_mailbox("alice@corp.example")
    port = receiver.start("--workers", str(workers))
    # multiprocessing's spawn adds a resource tracker next to the workers.
    assert len(_children(receiver.proc.pid)) >= workers
    for k in range(12):
        raw = (
            f"From: bob@example.org\r\nTo: alice@corp.example\r\nSubject: n{k}\r\n"
            f"Message-ID: <w{k}@example.org>\r\n\r\nbody {k}\r\n"
        ).encode()
        with smtplib.SMTP("127.0.0.1", port) as s:
            s.sendmail("bob@example.org", [address], raw)
    rc, err = receiver.stop()
    assert rc == 0, err
    listed = receiver.cli_json("messages", "list")
    assert sorted(m["message_id"] for m in listed) == sorted(f"w{k}@example.org" for k in range(12))
