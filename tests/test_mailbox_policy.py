"""`mailbox set --altered/--unverifiable/--default`: shown by `mailbox show`, applied to the
next copy over SMTP and through `import`."""

from __future__ import annotations

import json

from tests import mailfixtures as F
from tests.test_verify_e2e import dns_env, send

EMAIL = F.SUBSCRIBER


def _set(rx, *args: str) -> dict:
    return rx.cli_json("mailbox", "set", EMAIL, *args)


def _import(rx, tmp_path, name: str, raw: bytes, dns) -> dict:
    path = tmp_path / f"{name}.eml"
    path.write_bytes(raw)
    r = rx.cli("import", str(path), "--mailbox", EMAIL, "--json", check=False, **dns_env(dns))
    return json.loads(r.stdout)


def _status(rx, msgid: str) -> list[str]:
    listed = {m["message_id"]: m["id"] for m in rx.cli_json("messages", "list", "--limit", "0")}
    if msgid not in listed:
        return []
    return [d["status"] for d in rx.cli_json("messages", "show", str(listed[msgid]))["deliveries"]]


def altered(msgid: str) -> bytes:
    return F.list_footer(F.sign(F.original(msgid=msgid)))


def test_mailbox_policy_is_set_shown_and_applied_over_smtp_and_import(receiver, dns, tmp_path):
    address = receiver.add_mailbox(EMAIL)
    port = receiver.start(**dns_env(dns))
    shown = receiver.cli_json("mailbox", "show", EMAIL)
    assert shown["policy"] == {"altered": "quarantine", "unverifiable": "accept"}
    assert shown["policy_set"] == {"altered": None, "unverifiable": None}

    data = _set(receiver, "--altered", "reject", "--unverifiable", "quarantine")
    assert (
        data["policy"] == data["policy_set"] == {"altered": "reject", "unverifiable": "quarantine"}
    )
    assert receiver.cli_json("mailbox", "show", EMAIL)["policy"]["altered"] == "reject"
    text = receiver.cli("mailbox", "show", EMAIL).stdout.decode()
    assert "policy    altered: reject, unverifiable: quarantine\n" in text

    code, msg = send(port, address, altered("a1@author.example"))
    assert code == 550 and msg.startswith("5.7.1 the message body was changed")
    assert send(port, address, F.original(msgid="u1@author.example"))[0] == 250
    assert _status(receiver, "u1@author.example") == ["quarantined"]
    s = _import(receiver, tmp_path, "a2", altered("a2@author.example"), dns)
    assert (s["rejected"], s["stored"], s["quarantined"]) == (1, 0, 0)
    s = _import(receiver, tmp_path, "u2", F.original(msgid="u2@author.example"), dns)
    assert s["quarantined"] == 1

    _set(receiver, "--altered", "accept")
    assert send(port, address, altered("a3@author.example"))[0] == 250
    assert _status(receiver, "a3@author.example") == ["stored"]
    assert _import(receiver, tmp_path, "a4", altered("a4@author.example"), dns)["stored"] == 1

    data = _set(receiver, "--default")
    assert data["policy"] == {"altered": "quarantine", "unverifiable": "accept"}
    assert data["policy_set"] == {"altered": None, "unverifiable": None}
    text = receiver.cli("mailbox", "show", EMAIL).stdout.decode()
    assert "policy    altered: quarantine (default), unverifiable: accept (default)\n" in text
    assert send(port, address, altered("a5@author.example"))[0] == 250
    assert _status(receiver, "a5@author.example") == ["quarantined"]
    assert send(port, address, F.original(msgid="u3@author.example"))[0] == 250
    assert _status(receiver, "u3@author.example") == ["stored"]
    assert (
        _import(receiver, tmp_path, "u4", F.original(msgid="u4@author.example"), dns)["stored"] == 1
    )

    r = receiver.cli("mailbox", "set", EMAIL, "--default", "--altered", "reject", check=False)
    assert r.returncode == 64 and b"contradict" in r.stderr
