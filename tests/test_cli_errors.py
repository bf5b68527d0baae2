"""Mistakes a person makes at the CLI: each ends in one line and its documented exit status."""

from __future__ import annotations

import re
import socket
import subprocess
import sys

from tests.helpers import DOMAIN, ROOT, env_for
from tests.test_receive import message

EX_USAGE, EX_UNAVAILABLE, EX_CANTCREAT, EX_CONFIG = 64, 69, 73, 78


def one_line_error(r) -> str:
    err = r.stderr.decode() if isinstance(r.stderr, bytes) else r.stderr
    assert "unexpected" not in err and "Traceback" not in err, err
    return err.strip().splitlines()[-1]


def fill(rx, tmp_path, n: int, email: str = "alice@corp.example") -> None:
    """n messages in n threads, imported (no daemon needed)."""
    folder = tmp_path / f"eml-{email}"
    folder.mkdir()
    for i in range(n):
        (folder / f"{i}.eml").write_bytes(message(f"m{i}@x.example", subject=f"s{i}"))
    rx.cli("import", str(folder), "--mailbox", email, "--json")


def test_usage_errors_exit_64_everywhere_and_verify_keeps_its_verdicts(receiver, tmp_path):
    for args in (
        ["--bogus"],
        ["mailbox", "lsit"],
        ["messages", "show"],
        ["status", "--listen", "127.0.0.1:99999"],
        ["status", "--metrics", "x"],
        ["messages", "list", "--limit", "-1"],
        ["verify"],
        ["threads", "show", "x"],
        ["quarantine", "release"],
        ["mailbox", "set", "a@b.example", "--altered", "drop"],
    ):
        r = receiver.cli(*args, check=False)
        assert r.returncode == EX_USAGE, (args, r.returncode, r.stderr)
    # The console script too, not only click's test runner.
    assert receiver.cli_process("mailbox", "lsit", check=False).returncode == EX_USAGE
    # verify: 0/1/2 are verdicts; a folder or a missing file is unreadable input (3).
    for target in (tmp_path, tmp_path / "missing.eml"):
        r = receiver.cli("verify", str(target), check=False)
        assert r.returncode == 3 and "cannot read" in one_line_error(r)


def test_a_bad_email_or_entry_is_a_usage_error_in_every_command(receiver, tmp_path):
    receiver.add_mailbox("alice@corp.example")
    eml = tmp_path / "m.eml"
    eml.write_bytes(message())
    for bad in ("not an email", "", "@corp.example"):
        for args in (
            ["mailbox", "add", bad],
            ["mailbox", "show", bad],
            ["mailbox", "disable", bad],
            ["mailbox", "rotate", bad],
            ["mailbox", "remove", bad],
            ["mailbox", "set", bad, "--altered", "accept"],
            ["mailbox", "allow", bad],
            ["mailbox", "credentials", bad],
            ["mailbox", "instructions", bad],
            ["messages", "list", "--mailbox", bad],
            ["threads", "list", "--mailbox", bad],
            ["quarantine", "list", "--mailbox", bad],
            ["import", str(eml), "--mailbox", bad],
            ["export", str(tmp_path / "out.mbox"), "--mailbox", bad],
            ["verify", str(eml), "--mailbox", bad],
        ):
            r = receiver.cli(*args, check=False)
            assert r.returncode == EX_USAGE, (args, r.returncode, r.stderr)
            assert "not an email address" in one_line_error(r), args
    for args in (
        ["mailbox", "allow", "alice@corp.example", "not an entry"],
        ["mailbox", "allow", "alice@corp.example", "10.0.0.0/8", "--clear"],
        ["mailbox", "credentials", "alice@corp.example", "carol@corp.example"],
    ):
        r = receiver.cli(*args, check=False)
        assert r.returncode == EX_USAGE, (args, r.returncode, r.stderr)
    assert receiver.cli_json("mailbox", "list")[0]["email"] == "alice@corp.example"


def test_serve_on_a_port_in_use_or_out_of_range(receiver):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = receiver.cli_process("serve", "--listen", f"127.0.0.1:{port}", check=False)
    assert r.returncode == EX_UNAVAILABLE
    assert "address already in use" in one_line_error(r)
    r = receiver.cli_process("serve", "--listen", "127.0.0.1:99999", check=False)
    assert r.returncode == EX_USAGE and "99999" in one_line_error(r)
    r = receiver.cli_process("serve", check=False, THREADS_RECEIVER_SMTP_LISTEN="127.0.0.1:99999")
    assert r.returncode == EX_CONFIG and "smtp.listen" in one_line_error(r)


def test_export_into_a_missing_folder(receiver, tmp_path):
    receiver.add_mailbox("alice@corp.example")
    fill(receiver, tmp_path, 1)
    target = tmp_path / "no" / "such" / "x.mbox"
    r = receiver.cli("export", str(target), "--mailbox", "alice@corp.example", check=False)
    assert r.returncode == EX_CANTCREAT and str(target) in one_line_error(r)
    assert not (tmp_path / "no").exists()


def test_threads_export_refuses_to_overwrite_without_force(receiver, tmp_path):
    receiver.add_mailbox("alice@corp.example")
    fill(receiver, tmp_path, 1)
    tid = receiver.cli_json("threads", "list")[0]["id"]
    out = tmp_path / "t.mbox"
    out.write_bytes(b"precious")
    r = receiver.cli("threads", "export", str(tid), "--mbox", str(out), check=False)
    assert r.returncode == 1 and "--force" in one_line_error(r)
    assert out.read_bytes() == b"precious"
    receiver.cli("threads", "export", str(tid), "--mbox", str(out), "--force")
    assert b"Message-ID: <m0@x.example>" in out.read_bytes()
    r = receiver.cli(
        "threads", "export", str(tid), "--mbox", str(tmp_path / "no" / "t.mbox"), check=False
    )
    assert r.returncode == EX_CANTCREAT


def test_unknown_mailbox_or_thread_is_an_error(receiver, tmp_path):
    receiver.add_mailbox("alice@corp.example")
    fill(receiver, tmp_path, 1)
    for args in (["messages", "list"], ["threads", "list"], ["quarantine", "list"]):
        r = receiver.cli(*args, "--mailbox", "nobody@corp.example", check=False)
        assert r.returncode == 1 and "no mailbox nobody@corp.example" in one_line_error(r), args
        # The stored form of a known mailbox's address is found whatever its domain's case.
        receiver.cli(*args, "--mailbox", "alice@CORP.example")
    r = receiver.cli(
        "export", "-", "--mailbox", "alice@corp.example", "--thread", "9999", check=False
    )
    assert r.returncode == 1 and "no thread 9999" in one_line_error(r)
    assert receiver.cli("quarantine", "list").stdout == b"the quarantine is empty\n"


def test_a_cut_listing_says_so_on_stderr(receiver, tmp_path):
    receiver.add_mailbox("alice@corp.example")
    fill(receiver, tmp_path, 3)
    for args in (["messages", "list"], ["threads", "list"]):
        cut = receiver.cli(*args, "--limit", "2")
        assert len(cut.stdout.splitlines()) == 2
        assert cut.stderr == b"showing 2 of 3; --limit 0 for all\n", args
        whole = receiver.cli(*args, "--limit", "3")
        assert whole.stderr == b"" and len(whole.stdout.splitlines()) == 3
        assert receiver.cli(*args, "--limit", "0").stderr == b""


def _init(tmp_path, *args: str, **env: str) -> subprocess.CompletedProcess:
    e = env_for(tmp_path / "unused.toml", **env)
    del e["THREADS_RECEIVER_CONFIG"]
    return subprocess.run(
        [sys.executable, "-m", "receiver", "init", *args],
        env=e,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )


def test_init_refuses_a_folder_it_cannot_write_and_a_bad_domain(tmp_path):
    (tmp_path / "file").write_text("")
    r = _init(tmp_path, "--dir", str(tmp_path / "file" / "rx"), "--domain", DOMAIN)
    assert r.returncode == EX_CANTCREAT and "cannot create" in one_line_error(r)
    for bad in ("not a domain", "-x.example", "a..example", "x" * 64 + ".example"):
        r = _init(tmp_path, "--dir", str(tmp_path / "rx"), "--domain", bad)
        assert r.returncode == EX_USAGE and "not a domain name" in one_line_error(r), bad
    assert not (tmp_path / "rx").exists()


def test_init_writes_the_database_it_was_given(tmp_path, db_url):
    """THREADS_RECEIVER_DB (or --db) goes into the config, so the printed next step works."""
    r = _init(
        tmp_path, "--dir", str(tmp_path / "rx"), "--domain", DOMAIN, THREADS_RECEIVER_DB=db_url
    )
    assert r.returncode == 0, r.stderr
    assert f"database: {db_url}" in r.stdout
    assert db_url in (tmp_path / "rx" / "receiver.toml").read_text()
    assert not (tmp_path / "rx" / "receiver.db").exists() or db_url.startswith("sqlite")
    nxt = r.stdout.strip().splitlines()[-1].split("next: ", 1)[1].split()
    assert nxt[0] == "threads-receiver"
    env = env_for(tmp_path / "unused.toml")
    del env["THREADS_RECEIVER_CONFIG"]
    done = subprocess.run(
        [sys.executable, "-m", "receiver", *nxt[1:], "--json"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    r = _init(tmp_path, "--dir", str(tmp_path / "rx2"), "--domain", DOMAIN, "--db", db_url)
    assert r.returncode == 0 and db_url in (tmp_path / "rx2" / "receiver.toml").read_text()


def test_the_readme_production_setup_works_as_written(tmp_path):
    """Step 3 of the README's Production section, with its folders moved under tmp_path:
    the config in /etc/threads-receiver, the SQLite database in /var/lib/threads-receiver
    (the folders the systemd unit names), a mailbox, a delivery, the data read back."""
    readme = (ROOT / "README.md").read_text()
    production = readme.split("## Production", 1)[1]
    step = production.split("**3. Config.**", 1)[1]
    command = next(line for line in step.splitlines() if "threads-receiver init" in line)
    unit = (ROOT / "systemd" / "threads-receiver.service").read_text()
    assert "--config /etc/threads-receiver/receiver.toml" in unit
    assert "StateDirectory=threads-receiver" in unit  # /var/lib/threads-receiver, writable
    etc, var = tmp_path / "etc" / "threads-receiver", tmp_path / "var" / "lib" / "threads-receiver"
    args = (
        command.strip()
        .rstrip("\\")
        .replace("/etc/threads-receiver", str(etc))
        .replace("/var/lib/threads-receiver", str(var))
        .split()
    )
    assert args[0] == "threads-receiver" and "--data-dir" in args
    r = _init(tmp_path, *args[2:])
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in etc.iterdir()) == ["receiver.toml"]
    assert (var / "receiver.db").exists()
    env = env_for(etc / "receiver.toml")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "receiver",
            "--config",
            str(etc / "receiver.toml"),
            "mailbox",
            "add",
            "alice@corp.example",
        ],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in etc.iterdir()) == ["receiver.toml"]


def test_the_readme_documents_every_exit_status():
    from receiver import exits

    readme = (ROOT / "README.md").read_text()
    table = readme.split("## Exit statuses", 1)[1].split("\n## ", 1)[0]
    documented = {int(n) for n in re.findall(r"^\| (\d+) \|", table, re.M)}
    used = {v for k, v in vars(exits).items() if k.startswith("EX_")}
    assert documented == used | {2}  # 2 (and 3) are verify's verdict statuses
