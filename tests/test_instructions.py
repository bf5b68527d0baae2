"""`mailbox instructions`: guides filled in with the mailbox's real address; docs in sync."""

from __future__ import annotations

import pytest

from receiver.instructions import DOCS_PATH, PROVIDERS, docs_markdown


def test_docs_are_the_printed_guides():
    assert DOCS_PATH.read_text() == docs_markdown(), (
        "docs/setup-guides.md is stale: run python -m receiver.instructions"
    )


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_instructions_use_the_mailbox_address(receiver):
    address = receiver.add_mailbox("alice@corp.example")
    out = receiver.cli(
        "mailbox", "instructions", "alice@corp.example", "--provider", "sieve"
    ).stdout.decode()
    assert f'redirect :copy "{address}";' in out
    assert "550 5.7.1" in out and "messages show" in out
    data = receiver.cli_json("mailbox", "instructions", "alice@corp.example")
    assert set(data["guides"]) == set(PROVIDERS)
    assert all(address in text for text in data["guides"].values())
    assert f"{'alice@corp.example'}    {address}" in data["guides"]["postfix"]
    r = receiver.cli("mailbox", "instructions", "nobody@corp.example", check=False)
    assert r.returncode == 1 and b"no mailbox" in r.stderr


def test_the_imap_guides_name_the_configured_ports(tls_receiver):
    def account_line(**env: str) -> str:
        out = tls_receiver.cli(
            "mailbox", "instructions", "alice@corp.example", "--provider", "mbsync", **env
        ).stdout.decode()
        return next(line for line in out.splitlines() if line.startswith("The account:"))

    line = account_line(
        THREADS_RECEIVER_IMAP_LISTEN="127.0.0.1:1143",
        THREADS_RECEIVER_IMAP_IMPLICIT_LISTEN="127.0.0.1:1993",
    )
    assert "port 1993, SSL/TLS from the start (or port 1143 with STARTTLS)," in line
    # No STARTTLS listener: none is offered.
    line = account_line(THREADS_RECEIVER_IMAP_IMPLICIT_LISTEN="127.0.0.1:1993")
    assert "port 1993, SSL/TLS from the start," in line and "STARTTLS" not in line
