"""Debian's Dovecot as the source server of a migration test: one user, a Maildir of real
mail, IMAP (no TLS) on a loopback port.

It runs wholly unprivileged ("rootless" Dovecot): every process as `nobody` when the test
runs as root, as the test's own user otherwise. Dovecot never opens mail as root, and a
root-owned pytest tmp dir is closed to `nobody`, so it lives in a folder of its own that
it owns: its config, passwd-file, base_dir, state_dir, log file and Maildir. Nothing of
the system's (no service, no /run/dovecot, no port 143) is touched; `stop` removes it all.
"""

from __future__ import annotations

import grp
import imaplib
import mailbox
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

USER, PASSWORD = "alice@old.example", "source-secret"

CONFIG = """\
protocols = imap
listen = 127.0.0.1
base_dir = {dir}/run
state_dir = {dir}/state
log_path = {dir}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
default_internal_user = {user}
default_internal_group = {group}
default_login_user = {user}
first_valid_uid = {uid}
first_valid_gid = {gid}
mail_location = maildir:{dir}/Maildir
passdb {{
  driver = passwd-file
  args = {dir}/passwd
}}
userdb {{
  driver = passwd-file
  args = {dir}/passwd
}}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Dovecot:
    """`Dovecot({"INBOX": raws, "Archive 2010": raws})` holds those messages, in that order;
    `start()` serves them on `.port` to USER/PASSWORD."""

    def __init__(self, folders: dict[str, list[bytes]]):
        root = os.geteuid() == 0
        account = pwd.getpwnam("nobody") if root else pwd.getpwuid(os.getuid())
        self.uid, self.gid = account.pw_uid, account.pw_gid
        # Only root may (and must) switch the server to another user.
        self.run_as = {"user": self.uid, "group": self.gid, "extra_groups": []} if root else {}
        self.dir = Path(tempfile.mkdtemp(prefix="dovecot-"))
        self.port = _free_port()
        self.proc: subprocess.Popen | None = None
        for sub in ("run", "state"):
            (self.dir / sub).mkdir()
        maildir = mailbox.Maildir(self.dir / "Maildir")
        for name, raws in folders.items():
            box = maildir if name == "INBOX" else maildir.add_folder(name)
            for raw in raws:
                box.add(raw)
        (self.dir / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}:::{self.dir}\n")
        (self.dir / "dovecot.conf").write_text(
            CONFIG.format(
                dir=self.dir,
                user=account.pw_name,
                group=grp.getgrgid(self.gid).gr_name,
                uid=self.uid,
                gid=self.gid,
                port=self.port,
            )
        )
        if self.run_as:
            for path in [self.dir, *self.dir.rglob("*")]:
                os.chown(path, self.uid, self.gid)

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["dovecot", "-F", "-c", str(self.dir / "dovecot.conf")],
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            **self.run_as,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dovecot exited: {self.log()}")
            try:
                self.client().logout()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"dovecot did not start: {self.log()}")

    def client(self) -> imaplib.IMAP4:
        c = imaplib.IMAP4("127.0.0.1", self.port, timeout=30)
        c.login(USER, PASSWORD)
        return c

    def log(self) -> str:
        path = self.dir / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> str:
        """Stop the server, remove its folder; its log."""
        log = self.log()
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)
        return log
