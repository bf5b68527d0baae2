"""Test helpers: a real receiver process, its CLI, and per-test databases on both backends."""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg2
import pytest

from receiver import config as configmod
from receiver.wiring import parse_budget, subject_rule

ROOT = Path(__file__).resolve().parent.parent
# Test data lives in the checkout (tests/data/, each source with its README and licence):
# no test reads anything outside it.
DATA = ROOT / "tests" / "data"
PG_DSN = os.environ.get("TR_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
DOMAIN = "push.example.com"
# What an empty config file gives: the values tests pass where the daemon passes its own.
DEFAULT_CONFIG = configmod.load(None, {})
DEFAULT_RULE = subject_rule(DEFAULT_CONFIG)
DEFAULT_BUDGET = parse_budget(DEFAULT_CONFIG)
LOCK_TIMEOUT = DEFAULT_CONFIG.database.lock_timeout


def env_for(config: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("THREADS_RECEIVER_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["THREADS_RECEIVER_CONFIG"] = str(config)
    env.update(extra)
    return env


class PgDatabases:
    """Makes a fresh PostgreSQL database per test (dropped at the end)."""

    def __init__(self, dsn: str = PG_DSN):
        self.dsn = dsn
        self.made: list[str] = []

    def _admin(self):
        conn = psycopg2.connect(self.dsn)
        conn.autocommit = True
        return conn

    def check(self) -> None:
        self._admin().close()

    def create(self) -> str:
        name = "tr_" + uuid.uuid4().hex[:12]
        conn = self._admin()
        try:
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        self.made.append(name)
        base = self.dsn.rsplit("/", 1)[0]
        return f"{base}/{name}"

    def drop_all(self) -> None:
        conn = self._admin()
        try:
            with conn.cursor() as cur:
                for name in self.made:
                    cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            conn.close()
        self.made.clear()


class Receiver:
    """A receiver set up in a temp folder: config, database, CLI and daemon."""

    def __init__(self, directory: Path, db_url: str, extra_config: str = ""):
        self.dir = directory
        self.db_url = db_url
        self.config = directory / "receiver.toml"
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None
        self.extra_env: dict[str, str] = {"THREADS_RECEIVER_DB": db_url}
        r = subprocess.run(
            [sys.executable, "-m", "receiver", "init", "--dir", str(directory), "--domain", DOMAIN],
            env=self.env(),
            capture_output=True,
            text=True,
        )
        assert r.returncode == 0, r.stderr
        if extra_config:
            self.config.write_text(merge_toml(self.config.read_text(), extra_config))

    def env(self, **extra: str) -> dict[str, str]:
        return env_for(self.config, **{**getattr(self, "extra_env", {}), **extra})

    def cli(
        self, *args: str, check: bool = True, input: bytes | None = None, **env: str
    ) -> subprocess.CompletedProcess:
        """Run a CLI command in this process (fast); same exit code and output as the
        console script, which test_cli checks separately as a real subprocess."""
        from click.testing import CliRunner

        from receiver.cli import cli

        full_env = self.env(**env)
        cleared = {k: None for k in os.environ if k.startswith("THREADS_RECEIVER_")}
        result = CliRunner().invoke(
            cli,
            list(args),
            input=input,
            env={
                **cleared,
                **{k: v for k, v in full_env.items() if k.startswith("THREADS_RECEIVER_")},
            },
        )
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        r = subprocess.CompletedProcess(
            args, result.exit_code, result.stdout_bytes, result.stderr_bytes
        )
        if check:
            assert r.returncode == 0, (args, r.stdout, r.stderr)
        return r

    def cli_process(
        self, *args: str, check: bool = True, input: bytes | None = None, **env: str
    ) -> subprocess.CompletedProcess:
        """Run a CLI command as the real console script would, in a new process."""
        r = subprocess.run(
            [sys.executable, "-m", "receiver", *args],
            env=self.env(**env),
            capture_output=True,
            input=input,
            timeout=120,
        )
        if check:
            assert r.returncode == 0, (args, r.stdout, r.stderr)
        return r

    def cli_json(self, *args: str):
        return json.loads(self.cli(*args, "--json").stdout)

    def add_mailbox(self, email: str) -> str:
        return self.cli_json("mailbox", "add", email)["address"]

    def start(self, *args: str, **env: str) -> int:
        # stderr goes to a file: a pipe nobody reads fills up and blocks the daemon's log.
        self.log_path = self.dir / "daemon.log"
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "receiver", "serve", "--listen", "127.0.0.1:0", *args],
            env=self.env(**env),
            stdout=subprocess.PIPE,
            stderr=self._log,
        )
        self.announced: list[bytes] = []
        self.port = wait_for_listen(self.proc, lines=self.announced)
        return self.port

    def stop(self) -> tuple[int, str]:
        if self.proc is None:
            return 0, ""
        self.proc.terminate()
        try:
            self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
        rc = self.proc.returncode
        self.proc = None
        self._log.close()
        return rc, self.log_path.read_text(errors="replace")


def wait_for_listen(
    proc: subprocess.Popen, timeout: float = 30, lines: list[bytes] | None = None
) -> int:
    """Read the daemon's stdout until it says where it listens; returns the port.

    `lines` collects what it printed on the way (e.g. other listeners' ports)."""
    deadline = time.monotonic() + timeout
    seen = b""
    fd = proc.stdout.fileno()
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read() if proc.stderr else b"(see daemon.log)"
            raise RuntimeError(f"receiver exited: {seen!r} {err!r}")
        # os.read, not readline: a buffered reader can swallow several lines at once and
        # leave select() waiting for data it already holds.
        ready, _, _ = select.select([fd], [], [], 0.2)
        if not ready:
            continue
        chunk = os.read(fd, 65536)
        before = seen.count(b"\n")
        seen += chunk
        for line in seen.splitlines(keepends=True)[before:]:
            if not line.endswith(b"\n"):
                break
            if lines is not None:
                lines.append(line)
            m = re.search(rb"listening on [\d.:\[\]a-f]*:(\d+)", line)
            if m:
                proc.startup_output = seen
                return int(m.group(1))
    raise RuntimeError(f"receiver did not start: {seen!r}")


def merge_toml(base: str, extra: str) -> str:
    """Override keys of `base` with `extra` (both TOML with [sections])."""
    import tomllib

    over = tomllib.loads(extra)
    out, section = [], None
    for line in base.splitlines():
        m = re.match(r"\[(\w+)\]", line)
        if m:
            section = m.group(1)
        key = re.match(r"(\w+)\s*=", line)
        if section in over and key and key.group(1) in over[section]:
            value = over[section].pop(key.group(1))
            line = f"{key.group(1)} = {toml_value(value)}"
        out.append(line)
    for section, values in over.items():
        for k in values:
            raise KeyError(f"unknown config key {section}.{k}")
    return "\n".join(out) + "\n"


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return str(v)


def require_programs(packages: dict[str, str]) -> None:
    """Skip unless every program (name → its Debian package) is on the PATH.

    A laptop without them skips, naming the packages to install; CI (.ci/run sets
    TR_REQUIRE_CLIENTS and installs them with the README's test command) fails instead, so
    a test with real clients is never skipped there unnoticed."""
    missing = sorted(pkg for name, pkg in packages.items() if shutil.which(name) is None)
    if not missing:
        return
    why = f"not installed: apt-get install {' '.join(missing)}"
    if os.environ.get("TR_REQUIRE_CLIENTS"):
        raise AssertionError(why)
    pytest.skip(why)


def proxy_v2(src: str, sport: int, dport: int = 25) -> bytes:
    """A PROXY protocol v2 header for a TCP over IPv4 client `src`:`sport`."""
    sig = b"\r\n\r\n\x00\r\nQUIT\n"
    addrs = socket.inet_aton(src) + socket.inet_aton("127.0.0.1") + struct.pack("!HH", sport, dport)
    return sig + bytes([0x21, 0x11]) + struct.pack("!H", len(addrs)) + addrs


def tls_after_header(
    sock: socket.socket, header: bytes, context: ssl.SSLContext, server_hostname: str | None = None
) -> ssl.SSLSocket:
    """What a balancer with TLS passthrough sends an implicit-TLS listener: its PROXY
    header in clear, then the client's TLS. Corked, so that the header and the ClientHello
    leave in one segment (the kernel sends corked data within 200 ms): the listener must
    not take the ClientHello's first bytes along with the header."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
    sock.sendall(header)
    tls = context.wrap_socket(sock, server_hostname=server_hostname)
    tls.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)
    return tls
