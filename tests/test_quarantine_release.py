"""`quarantine release` threads a copy from the record its delivery built and stored,
never from a new parse of the bytes, and by the configured subject rule."""

from __future__ import annotations

from tests.rawsmtp import message, send


def _held_then_released(receiver, *raws: bytes) -> dict[str, int | None]:
    """Send each (all quarantined), release them in order; thread id by Message-ID."""
    port = receiver.start()
    for raw in raws:
        assert send(port, receiver.address, raw)[0] == 250
    held = receiver.cli_json("quarantine", "list")
    assert len(held) == len(raws)
    for h in held:
        receiver.cli("quarantine", "release", str(h["delivery_id"]))
    return {m["message_id"]: m["thread_id"] for m in receiver.cli_json("messages", "list")}


def _quarantining(receiver, **env: str):
    receiver.extra_env.update({"THREADS_RECEIVER_POLICY_UNVERIFIABLE": "quarantine", **env})
    receiver.address = receiver.add_mailbox("alice@corp.example")
    return receiver


def test_a_references_header_hidden_behind_a_bare_lf_links_nothing_on_release(receiver):
    _quarantining(receiver)
    hidden = message(2, extra=b"X-Note: nothing here\nReferences: <m1@example.org>\r\n")
    visible = message(3, extra=b"In-Reply-To: <m1@example.org>\r\n")
    threads = _held_then_released(receiver, message(1), hidden, visible)
    assert threads["m3@example.org"] == threads["m1@example.org"]  # release does thread
    # The SMTP path parsed the bare LF as a blank: no References in its record.
    assert threads["m2@example.org"] != threads["m1@example.org"]
    assert threads["m2@example.org"] is not None


def test_release_uses_the_configured_subject_rule(receiver):
    _quarantining(receiver, THREADS_RECEIVER_THREADS_SUBJECT_JOIN="false")
    first = message(1)
    orphan = (
        message(1)
        .replace(b"Subject: test 1", b"Subject: Re: test 1")
        .replace(b"<m1@example.org>", b"<m2@example.org>")
    )
    threads = _held_then_released(receiver, first, orphan)
    assert threads["m2@example.org"] != threads["m1@example.org"]
