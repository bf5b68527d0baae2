"""DataStream against a line-by-line reference: the same message, the same end, the same
long-line verdict, however the socket cuts the stream into chunks."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from receiver.smtp.datastream import DataStream


def reference(stream: bytes, limit: int) -> tuple[bytes, bytes, bool] | None:
    """(message, what follows, a line over the limit) read a line at a time, each line
    ending at CRLF only; None when the stream holds no end of data."""
    out, pos, long_line = [], 0, False
    while True:
        nl = stream.find(b"\r\n", pos)
        if nl < 0:
            return None
        line = stream[pos : nl + 2]
        pos = nl + 2
        if line == b".\r\n":
            return b"".join(out), stream[pos:], long_line
        long_line |= len(line) - 2 > limit
        out.append(line[1:] if line.startswith(b".") else line)


def feed_in_chunks(
    stream: bytes, cuts: list[int], limit: int, drop_after: int | None = None
) -> tuple[DataStream, bytes]:
    ds = DataStream(limit)
    rest = b""
    bounds = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    for k, (a, b) in enumerate(zip(bounds, bounds[1:])):
        if ds.done:
            rest += stream[a:b]
        else:
            rest += ds.feed(stream[a:b])
            if k == drop_after:
                ds.drop()
    return ds, rest


# Lines from the bytes that make the end of data hard to find: dots, bare CR and LF.
lines = st.lists(
    st.binary(max_size=12)
    .map(lambda b: bytes(b".\r\nx"[v % 4] for v in b))
    .filter(lambda l: b"\r\n" not in l),
    max_size=12,
)


def stuffed(message_lines: list[bytes]) -> bytes:
    return b"".join((b"." + l if l.startswith(b".") else l) + b"\r\n" for l in message_lines)


@given(lines, st.binary(max_size=10), st.lists(st.integers(0, 400), max_size=6), st.integers(1, 6))
@settings(max_examples=400)
def test_same_as_reading_line_by_line(message_lines, after, cuts, limit):
    stream = stuffed(message_lines) + b".\r\n" + after
    ds, rest = feed_in_chunks(stream, cuts, limit)
    message, follows, long_line = reference(stream, limit)
    assert ds.done
    assert ds.long_line == long_line
    assert rest == follows
    assert ds.size == len(stuffed(message_lines))
    assert ds.message() == message
    assert message == b"".join(l + b"\r\n" for l in message_lines)


@given(lines, st.binary(max_size=10), st.lists(st.integers(0, 400), max_size=6), st.integers(0, 6))
@settings(max_examples=400)
def test_a_dropped_stream_ends_where_a_kept_one_does(message_lines, after, cuts, drop_after):
    stream = stuffed(message_lines) + b".\r\n" + after
    kept, kept_rest = feed_in_chunks(stream, cuts, 1000)
    dropped, dropped_rest = feed_in_chunks(stream, cuts, 1000, drop_after)
    assert (dropped.done, dropped.size, dropped_rest) == (kept.done, kept.size, kept_rest)


@given(
    st.binary(max_size=60).map(lambda b: bytes(b".\r\nab"[v % 5] for v in b)),
    st.lists(st.integers(0, 100), max_size=5),
)
def test_arbitrary_bytes_end_where_the_reference_ends(stream, cuts):
    ds, rest = feed_in_chunks(stream, cuts, 3)
    ref = reference(stream, 3)
    if ref is None:
        assert not ds.done
    else:
        assert ds.done and rest == ref[1] and ds.message() == ref[0]


def test_smuggled_ends_do_not_end_data():
    ds = DataStream(100)
    assert ds.feed(b"a\n.\r\nb\r.\r\nc\r\n") == b"" and not ds.done
    assert ds.feed(b".\r\nQUIT\r\n") == b"QUIT\r\n" and ds.done
    assert ds.message() == b"a\n.\r\nb\r.\r\nc\r\n"


def test_empty_message_and_end_split_over_chunks():
    ds = DataStream(100)
    assert ds.feed(b".\r\n") == b"" and ds.done and ds.message() == b""
    ds = DataStream(100)
    for part in (b"x\r", b"\n", b".", b"\r", b"\nNOOP\r\n"):
        rest = ds.feed(part)
    assert rest == b"NOOP\r\n" and ds.message() == b"x\r\n" and ds.size == 3


def test_line_of_exactly_the_limit_passes_one_more_fails():
    ds = DataStream(5)
    ds.feed(b"12345\r\n.\r\n")
    assert ds.done and not ds.long_line
    ds = DataStream(5)
    ds.feed(b"123456")
    assert not ds.long_line  # the next octet may still be the CR of its CRLF
    ds.feed(b"7")
    assert ds.long_line and not ds.done


def test_dropped_stream_still_finds_its_end_and_counts_size():
    ds = DataStream(1000)
    ds.feed(b"a" * 50 + b"\r\n")
    ds.drop()
    assert ds.feed(b"b" * 50 + b"\r\n.") == b""
    assert ds.feed(b"\r\nRSET\r\n") == b"RSET\r\n"
    assert ds.done and ds.size == 104
