"""The daemon and systemd (Type=notify): READY=1 once a reload can no longer end it,
STOPPING=1 on the way out, and a SIGHUP that comes while it starts (or while a worker
of `serve --workers` starts) reloads instead of killing it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from receiver import service
from receiver.smtp.workers import MIN_WORKER_LIFETIME
from tests.helpers import merge_toml
from tests.rawsmtp import wait_until


@pytest.fixture
def notify_socket(tmp_path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.settimeout(60)
    yield sock
    sock.close()


def _fields(sock: socket.socket) -> dict[str, str]:
    return dict(line.split("=", 1) for line in sock.recv(4096).decode().splitlines())


def test_notify_sends_one_datagram_and_never_raises(notify_socket, tmp_path, monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    assert service.notify("READY=1", "STATUS=up")
    assert _fields(notify_socket) == {"READY": "1", "STATUS": "up"}
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens"))
    assert not service.notify("READY=1")
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert not service.notify("READY=1")


def test_notify_reaches_an_abstract_socket(monkeypatch):
    name = f"threads-receiver-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert service.notify("STOPPING=1")
        assert _fields(sock) == {"STOPPING": "1"}


def test_a_held_hangup_is_kept_once():
    before = signal.getsignal(signal.SIGHUP)
    try:
        service.hold_hangups()
        assert not service.take_hangup()
        os.kill(os.getpid(), signal.SIGHUP)  # the default action would end pytest
        assert service.take_hangup()
        assert not service.take_hangup()
    finally:
        signal.signal(signal.SIGHUP, before)


def _start(receiver, notify_path, *args: str) -> subprocess.Popen:
    receiver.log_path = receiver.dir / "daemon.log"
    with open(receiver.log_path, "ab") as log:  # the daemon has its own copy of the fd
        return subprocess.Popen(
            [sys.executable, "-m", "receiver", "serve", "--listen", "127.0.0.1:0", *args],
            env=receiver.env(NOTIFY_SOCKET=str(notify_path)),
            stdout=subprocess.PIPE,
            stderr=log,
        )


def _reloads(receiver) -> int:
    return receiver.log_path.read_text().count("config reloaded")


def _stop(proc: subprocess.Popen, notify_socket) -> None:
    proc.send_signal(signal.SIGTERM)
    assert _fields(notify_socket).get("STOPPING") == "1"
    assert proc.wait(timeout=60) == 0


def test_ready_after_start_then_a_reload_and_a_clean_stop(receiver, notify_socket, tmp_path):
    proc = _start(receiver, tmp_path / "notify")
    try:
        ready = _fields(notify_socket)
        assert ready["READY"] == "1"
        assert ready["STATUS"].startswith("SMTP on 127.0.0.1:")
        # The moment systemd would allow `systemctl reload`.
        proc.send_signal(signal.SIGHUP)
        assert wait_until(lambda: _reloads(receiver) == 1)
        assert proc.poll() is None
        _stop(proc, notify_socket)
    finally:
        proc.kill()


def test_a_hangup_while_starting_is_a_reload_not_an_exit(receiver, notify_socket, tmp_path):
    proc = _start(receiver, tmp_path / "notify")
    try:
        # `serve` prints its config path once it holds SIGHUPs, long before it listens.
        assert proc.stdout is not None
        assert b"threads-receiver: config" in proc.stdout.readline()
        receiver.config.write_text(
            merge_toml(receiver.config.read_text(), "[smtp]\nmax_recipients = 7\n")
        )
        proc.send_signal(signal.SIGHUP)
        assert _fields(notify_socket)["READY"] == "1"
        assert wait_until(lambda: _reloads(receiver) == 1)
        assert proc.poll() is None
        _stop(proc, notify_socket)
    finally:
        proc.kill()


def _workers(pid: int) -> set[int]:
    """The supervisor's worker processes (not multiprocessing's resource tracker)."""
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    found = set()
    for child in map(int, out.split()):
        try:
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.add(child)
        except FileNotFoundError:
            continue
    return found


def test_workers_a_reload_while_a_worker_restarts_reaches_it_once_ready(
    receiver, notify_socket, tmp_path
):
    proc = _start(receiver, tmp_path / "notify", "--workers", "2")
    try:
        ready = _fields(notify_socket)
        assert ready["READY"] == "1" and "2 workers" in ready["STATUS"]
        workers = _workers(proc.pid)
        assert len(workers) == 2
        victim = min(workers)
        # A worker dying sooner than this after its start is taken for one that cannot
        # start, and the supervisor gives up: this one has been serving for a while.
        time.sleep(MIN_WORKER_LIFETIME + 0.5)
        os.kill(victim, signal.SIGKILL)
        # The supervisor spawns a replacement; the reload goes out while it starts up.
        assert wait_until(lambda: bool(_workers(proc.pid) - workers))
        proc.send_signal(signal.SIGHUP)
        # Each process that serves reloads once: the survivor at once, the replacement
        # once its handler is in place (before, the SIGHUP killed it as it started and
        # the supervisor gave up on a worker dying at start).
        assert wait_until(lambda: _reloads(receiver) == 2, timeout=30)
        assert proc.poll() is None
        _stop(proc, notify_socket)
    finally:
        proc.kill()
