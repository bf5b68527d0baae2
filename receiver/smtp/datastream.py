"""The DATA stream of one message, fed in the chunks the socket delivers.

Reading DATA line by line costs a coroutine round trip, a slice and an append per line:
most of the SMTP session's CPU on ordinary mail (bench/RESULTS.md). This does the same
work per chunk with C-speed searches: the end of data is CRLF "." CRLF (a line ending
is CRLF only, so <LF>.<CR><LF> and <CR>.<CR> never end the message), lines longer than
the limit are found by jumping a window of the limit's length from line start to line
start, and dot-unstuffing is one replace over the finished message.

Pure: bytes in, state and bytes out. The session (protocol.py) does the reading, the
limits that depend on other sessions, and the replies.
"""

from __future__ import annotations

END = b"\r\n.\r\n"


class DataStream:
    def __init__(self, max_line_length: int):
        self.max_line_length = max_line_length
        # A line ending in front of the first line: the end of data is then always
        # CRLF "." CRLF, also for an empty message, and unstuffing is one replace.
        self._buf = bytearray(b"\r\n")
        self._scan = 0  # where the search for END resumes
        self._line = 2  # start of the first line not yet known to be short enough
        self.size = 0  # octets of the message so far, dot-stuffed, as on the wire
        self.long_line = False
        self.stuffed = False  # a line began with a dot
        self.keeping = True
        self.done = False

    def feed(self, chunk: bytes) -> bytes:
        """Take the next chunk; returns what came after the end of data (the next
        pipelined command), b"" when nothing did or the end is still to come."""
        if not self.keeping:
            return self._drain(chunk)
        buf = self._buf
        before = len(buf)
        buf += chunk
        end = self._find_end()
        stop = len(buf) if end < 0 else end + 2  # the message's bytes end here
        self.size += stop - before  # negative when END began in the previous chunk
        if self.keeping and not self.long_line:
            self._check_lines(stop)
        if end >= 0:
            rest = bytes(buf[end + len(END) :])
            del buf[stop:]
            self.done = True
            return rest
        return b""

    def _find_end(self) -> int:
        # One search serves two ends: every CRLF "." is either the end of data or a
        # stuffed dot, so the message needs no second pass when it has none.
        buf, at = self._buf, self._scan
        while (i := buf.find(b"\r\n.", at)) >= 0:
            after = buf[i + 3 : i + 5]
            if after == b"\r\n":
                return i
            if not b"\r\n".startswith(after):
                self.stuffed = True
                at = i + 3
                continue
            self._scan = i  # decided by the next chunk
            return -1
        self._scan = max(at, len(buf) - 2)
        return -1

    def _drain(self, chunk: bytes) -> bytes:
        # Nothing is kept: look for END across the seam (the last octets of the previous
        # chunk) and then in the chunk itself, without copying the chunk anywhere.
        tail = bytes(self._buf)
        i = (tail + chunk[: len(END) - 1]).find(END)
        if i >= 0:
            used = i + len(END) - len(tail)
        else:
            j = chunk.find(END)
            used = j + len(END) if j >= 0 else -1
        if used < 0:
            self.size += len(chunk)
            self._buf = bytearray((tail + chunk[-(len(END) - 1) :])[-(len(END) - 1) :])
            return b""
        self.size += used - len(b".\r\n")
        self.done = True
        return chunk[used:]

    def _check_lines(self, stop: int) -> None:
        # Every line from self._line on must have its CRLF within max_line_length + 2
        # octets; the last CRLF in that window starts the next window.
        buf, pos, window = self._buf, self._line, self.max_line_length + 2
        while True:
            r = buf.rfind(b"\r\n", pos, min(pos + window, stop))
            if r < 0:
                self.long_line = pos + window <= stop
                break
            pos = r + 2
        self._line = pos

    def drop(self) -> None:
        """Past a limit: stop keeping the message, only watch for its end."""
        self.keeping = False
        if not self.done:
            del self._buf[: -(len(END) - 1)]
            self._scan = 0

    def message(self) -> bytes:
        """The message, dot-unstuffed, once `done`; its buffer is released."""
        buf = self._buf
        start = 3 if buf[2:3] == b"." else 2
        with memoryview(buf) as view:
            raw = bytes(view[start:])
        self._buf = bytearray()
        return raw.replace(b"\r\n.", b"\r\n") if self.stuffed else raw
