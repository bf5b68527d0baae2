"""A real load client: several connections sending distinct messages, counting replies."""

from __future__ import annotations

import threading

from tests.rawsmtp import Raw, message, transaction


class Load:
    """Sends messages 0..n-1 over `threads` connections until done or stopped.

    `codes[i]` is the DATA (or earlier) reply code of message i; None when the
    connection broke before a reply (the sender would retry)."""

    def __init__(self, port: int, address: str, n: int, threads: int = 4, tag: str = "load"):
        self.port, self.address, self.n, self.tag = port, address, n, tag
        self.codes: dict[int, int | None] = {}
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._next = 0
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def raw(self, i: int) -> bytes:
        return message(f"{self.tag}-{i}", body=b"load body %d\r\n" % i * 20)

    def _take(self) -> int | None:
        with self._lock:
            if self._next >= self.n or self.stop.is_set():
                return None
            self._next += 1
            return self._next - 1

    def _run(self) -> None:
        conn = None
        while (i := self._take()) is not None:
            try:
                if conn is None:
                    conn = Raw(self.port, timeout=20)
                    conn.cmd("EHLO load.example.org")
                code, _ = transaction(conn, self.address, self.raw(i), helo=False)
                if code != 250:
                    conn.cmd("RSET")
            except (OSError, ConnectionError, ValueError):
                code = None
                conn = None
                self.codes[i] = code
                if self.stop.is_set():
                    return
                continue
            self.codes[i] = code

    def start(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def join(self, timeout: float = 60) -> None:
        for t in self._threads:
            t.join(timeout)

    def acked(self) -> list[int]:
        return sorted(i for i, c in self.codes.items() if c == 250)

    def count(self, code) -> int:
        return sum(1 for c in self.codes.values() if c == code)
