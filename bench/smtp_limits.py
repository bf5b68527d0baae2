"""Memory of the daemon under oversize and concurrent DATA, and the cost of an AUTH check.

Prints figures for bench/RESULTS.md; asserts nothing. Run from the repository root:
    PYTHONPATH=$PWD .venv/bin/python bench/smtp_limits.py
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from receiver.store.credentials import check_password, hash_password  # noqa: E402
from tests.helpers import Receiver  # noqa: E402
from tests.rawsmtp import Raw  # noqa: E402

MB = 1024 * 1024


def rss(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Peak(threading.Thread):
    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak, self.done = pid, 0.0, False

    def run(self) -> None:
        while not self.done:
            self.peak = max(self.peak, rss(self.pid))
            time.sleep(0.02)


def stream(port: int, address: str, size: int) -> int:
    c = Raw(port, timeout=120)
    c.cmd("EHLO bench")
    c.cmd("MAIL FROM:<bench@example.org>")
    c.cmd(f"RCPT TO:<{address}>")
    c.cmd("DATA")
    line = b"x" * 998 + b"\r\n"
    chunk = b"Subject: bench\r\n\r\n" + line * 1024
    sent = 0
    while sent < size:
        c.send(chunk)
        sent += len(chunk)
    c.send(b".\r\n")
    code, _ = c.reply()
    c.close()
    return code


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        rx = Receiver(Path(tmp) / "rx", f"sqlite:///{tmp}/receiver.db")
        address = rx.add_mailbox("bench@corp.example")
        port = rx.start(
            THREADS_RECEIVER_SMTP_MAX_MESSAGE_SIZE=str(50 * MB),
            THREADS_RECEIVER_SMTP_MAX_INFLIGHT_BYTES=str(128 * MB),
        )
        pid = rx.proc.pid
        time.sleep(1)
        base = rss(pid)
        print(f"daemon RSS at rest: {base:.0f} MiB")

        peak = Peak(pid)
        peak.start()
        t = time.monotonic()
        code = stream(port, address, 500 * MB)
        peak.done = True
        peak.join()
        print(
            f"500 MiB DATA against a 50 MiB limit: reply {code}, peak RSS {peak.peak:.0f} MiB "
            f"(+{peak.peak - base:.0f}), {500 / (time.monotonic() - t):.0f} MiB/s drained"
        )

        peak = Peak(pid)
        peak.start()
        codes: list[int] = []
        threads = [
            threading.Thread(target=lambda: codes.append(stream(port, address, 40 * MB)))
            for _ in range(10)
        ]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        peak.done = True
        peak.join()
        print(
            f"10 sessions x 40 MiB at once, in-flight cap 128 MiB: replies "
            f"{sorted(codes)}, peak RSS {peak.peak:.0f} MiB (+{peak.peak - base:.0f})"
        )
        rx.stop()

    stored = hash_password("x")
    t = time.perf_counter()
    for _ in range(20):
        check_password("x", stored)
    print(f"scrypt AUTH check: {(time.perf_counter() - t) / 20 * 1000:.0f} ms")


if __name__ == "__main__":
    main()
