"""Verification end to end: through SMTP into the store, through `verify FILE`, and the
quarantine's release/delete; keys from the test DNS server."""

from __future__ import annotations

import json
import smtplib

import pytest

from tests import mailfixtures as F
from tests.dns_server import SERVFAIL
from tests.helpers import Receiver


def send(port: int, rcpt: str, raw: bytes) -> tuple[int, str]:
    with smtplib.SMTP("127.0.0.1", port) as s:
        s.ehlo("mx.test")
        s.mail("sender@corp.example")
        s.rcpt(rcpt)
        code, msg = s.data(raw)
    return code, msg.decode()


def dns_env(dns, **extra) -> dict[str, str]:
    return {
        "THREADS_RECEIVER_DNS_SERVERS": dns.address,
        "THREADS_RECEIVER_DNS_TIMEOUT": "0.5",
        **extra,
    }


def test_smtp_verdicts_replies_unwrapping_and_confirmation(receiver, dns):
    address = receiver.add_mailbox(F.SUBSCRIBER)
    port = receiver.start(**dns_env(dns, THREADS_RECEIVER_POLICY_ALTERED="reject"))

    assert send(port, address, F.gmail_forwarding(F.signed()))[0] == 250
    code, msg = send(port, address, F.inline_forward())
    assert (code, msg) == (
        550,
        "5.7.1 this copy was forwarded, not redirected: the original "
        "headers were replaced; set the rule to redirect",
    )
    code, msg = send(port, address, F.list_footer(F.signed()))
    assert code == 550 and msg.startswith("5.7.1 the message body was changed on the way")

    original = F.sign(F.original(subject="Budget", msgid="b1@author.example"))
    wrapped = F.forward_as_attachment(original)
    assert send(port, address, wrapped)[0] == 250
    assert send(port, address, F.gmail_confirmation("612842311"))[0] == 250

    listed = {
        m["message_id"]: m["id"] for m in receiver.cli_json("messages", "list", "--limit", "0")
    }
    assert set(listed) == {"q1@author.example", "b1@author.example", "conf1@google.com"}
    [d] = receiver.cli_json("messages", "show", str(listed["q1@author.example"]))["deliveries"]
    assert (d["verdict"], d["status"]) == ("unaltered", "stored")
    assert d["auth_results"].startswith("push.example.com; dkim=pass (2048-bit key)")
    assert d["verify_detail"]["arc"]["cv"] == "pass"
    [d] = receiver.cli_json("messages", "show", str(listed["b1@author.example"]))["deliveries"]
    assert d["verdict"] == "unaltered" and d["wrapper_sha256"] is not None
    assert receiver.cli("messages", "raw", str(listed["b1@author.example"])).stdout == original
    text = receiver.cli("messages", "show", str(listed["b1@author.example"])).stdout.decode()
    assert "  verdict   unaltered: wrapped copy (forwarded as attachment)" in text
    assert "  path      copied (direct), unwrapped from " in text

    shown = receiver.cli_json("mailbox", "show", F.SUBSCRIBER)
    assert [(c["provider"], c["code"]) for c in shown["confirmations"]] == [("gmail", "612842311")]
    text = receiver.cli("mailbox", "show", F.SUBSCRIBER).stdout.decode()
    assert "code 612842311  https://mail-settings.google.com/mail/vf-" in text


def test_quarantine_release_threads_and_delete_removes(receiver, dns):
    address = receiver.add_mailbox(F.SUBSCRIBER)
    port = receiver.start(**dns_env(dns))
    parent = F.sign(F.original(subject="Plan", msgid="p1@author.example"))
    reply = F.subject_tag(
        F.sign(
            F.original(subject="Quarterly numbers", msgid="r1@author.example").replace(
                b"Message-ID: <r1@author.example>\r\n",
                b"Message-ID: <r1@author.example>\r\nIn-Reply-To: <p1@author.example>\r\n",
            )
        )
    )
    assert send(port, address, parent)[0] == 250
    assert send(port, address, reply)[0] == 250  # altered → quarantined (the default), still 250
    held = receiver.cli_json("quarantine", "list")
    assert [(q["message_id"], q["verdict"]) for q in held] == [("r1@author.example", "altered")]
    assert "signature mismatch" in held[0]["reasons"][0]
    shown = receiver.cli_json("quarantine", "show", str(held[0]["delivery_id"]))
    assert shown["message"]["thread_id"] is None

    receiver.cli("quarantine", "release", str(held[0]["delivery_id"]))
    msgs = {m["message_id"]: m for m in receiver.cli_json("messages", "list")}
    assert msgs["r1@author.example"]["thread_id"] == msgs["p1@author.example"]["thread_id"]
    assert receiver.cli_json("quarantine", "list") == []

    assert send(port, address, F.list_footer(F.signed()))[0] == 250
    [held] = receiver.cli_json("quarantine", "list")
    receiver.cli("quarantine", "delete", str(held["delivery_id"]))
    assert "q1@author.example" not in {
        m["message_id"] for m in receiver.cli_json("messages", "list")
    }
    r = receiver.cli("quarantine", "release", str(held["delivery_id"]), check=False)
    assert r.returncode == 1 and b"no quarantined delivery" in r.stderr


def test_dns_failure_tempfails_when_policy_demands_verification(receiver, dns):
    address = receiver.add_mailbox(F.SUBSCRIBER)
    dns.records["s1._domainkey.author.example"] = SERVFAIL
    port = receiver.start(**dns_env(dns, THREADS_RECEIVER_POLICY_UNVERIFIABLE="quarantine"))
    code, msg = send(port, address, F.signed())
    assert code == 451 and msg.startswith("4.4.3 ")
    assert receiver.cli_json("messages", "list") == []


@pytest.fixture
def cli_receiver(tmp_path):
    """A receiver for commands that need no database backend matrix (`verify`)."""
    return Receiver(tmp_path / "rx", f"sqlite:///{tmp_path / 'rx.db'}")


@pytest.mark.parametrize(
    "make,exit_code,verdict",
    [
        (lambda: F.exchange_redirect(F.signed()), 0, "unaltered"),
        (lambda: F.RFC8463_MESSAGE, 0, "unaltered"),
        (lambda: F.sign(F.original(), "gone2019"), 1, "unverifiable"),
        (lambda: F.subject_tag(F.signed()), 2, "altered"),
    ],
    ids=["exchange-redirect", "rfc8463", "rotated-key", "subject-tag"],
)
def test_verify_cli_exit_codes(cli_receiver, dns, tmp_path, make, exit_code, verdict):
    eml = tmp_path / "copy.eml"
    eml.write_bytes(make())
    r = cli_receiver.cli("verify", str(eml), "--json", check=False, **dns_env(dns))
    assert r.returncode == exit_code, r.stderr
    data = json.loads(r.stdout)
    assert data["verdict"] == verdict


def test_verify_cli_prints_every_reason(cli_receiver, dns, tmp_path):
    eml = tmp_path / "copy.eml"
    eml.write_bytes(F.gmail_forwarding(F.sign(F.signed(), "wrong")))
    r = cli_receiver.cli("verify", str(eml), check=False, **dns_env(dns))
    text = r.stdout.decode()
    assert r.returncode == 0
    assert text.startswith("verdict   unaltered\nreason    DKIM signature d=author.example s=s1 ")
    assert "reason    d=author.example s=wrong: fail (signature mismatch" in text
    assert "\narc       cv=pass, 1 set(s)" in text
    assert "\nauth      push.example.com; dkim=fail" in text


def test_verify_cli_inline_forward_for_the_subscriber(cli_receiver, dns, tmp_path):
    eml = tmp_path / "fwd.eml"
    eml.write_bytes(F.inline_forward())
    r = cli_receiver.cli(
        "verify", str(eml), "--mailbox", F.SUBSCRIBER, "--json", check=False, **dns_env(dns)
    )
    assert r.returncode == 2
    assert json.loads(r.stdout)["cause"] == "forwarded_inline"
    missing = cli_receiver.cli("verify", str(tmp_path / "nope.eml"), check=False)
    assert missing.returncode == 3 and b"cannot read" in missing.stderr
