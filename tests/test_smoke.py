import smtplib


def test_swaks_like_roundtrip(receiver):
    address = receiver.add_mailbox("alice@corp.example")
    port = receiver.start()
    raw = (
        b"From: Bob <bob@example.org>\r\nTo: alice@corp.example\r\nSubject: hi\r\n"
        b"Message-ID: <m1@example.org>\r\nDate: Tue, 01 Jan 2019 10:00:00 +0000\r\n\r\nbody\r\n"
    )
    with smtplib.SMTP("127.0.0.1", port) as s:
        s.sendmail("bob@example.org", [address], raw)
    listed = receiver.cli_json("messages", "list")
    assert [m["message_id"] for m in listed] == ["m1@example.org"]
    assert receiver.cli("messages", "raw", str(listed[0]["id"])).stdout == raw
