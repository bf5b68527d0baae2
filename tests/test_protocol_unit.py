"""The hardened session in-process, with a handler that fails: an exception anywhere
is answered 451 4.3.0, never aiosmtpd's permanent "500 Error: (Exception) ..."."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from aiosmtpd.smtp import SMTP
from hypothesis import given, settings
from hypothesis import strategies as st

from receiver import config as configmod
from receiver.smtp.protocol import ReceiverSMTP, Shared


class Exploding:
    async def handle_RCPT(self, server, session, envelope, address, options):
        raise RuntimeError("secret internal detail")

    async def handle_DATA(self, server, session, envelope):
        raise RuntimeError("secret internal detail")


async def _talk(lines: list[bytes]) -> list[bytes]:
    shared = Shared.from_config(configmod.load(None, environ={}))
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: ReceiverSMTP(Exploding(), shared=shared, hostname="test"), "127.0.0.1", 0
    )
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    replies = [await reader.readline()]
    for line in lines:
        writer.write(line + b"\r\n")
        replies.append(await asyncio.wait_for(reader.readline(), 5))
    writer.close()
    server.close()
    return replies


def test_handler_exception_is_a_451_without_details():
    replies = asyncio.run(
        _talk([b"HELO x", b"MAIL FROM:<a@example.org>", b"RCPT TO:<b@example.org>", b"NOOP"])
    )
    assert replies[3].startswith(b"451 4.3.0")
    assert b"secret" not in b"".join(replies) and b"Error: (" not in b"".join(replies)
    assert replies[4].startswith(b"250")  # the session goes on


@pytest.fixture(scope="module")
def protocol():
    loop = asyncio.new_event_loop()
    p = ReceiverSMTP(
        Exploding(),
        shared=Shared.from_config(configmod.load(None, environ={})),
        hostname="test",
        loop=loop,
    )
    p.session = SimpleNamespace()
    yield p
    loop.close()


def aiosmtpd_getaddr(arg):
    try:
        return SMTP._getaddr(SimpleNamespace(local_part_limit=0), arg)
    except Exception:  # the email package's crashes: Hardened answers "malformed"
        return None, None


paths = st.builds(
    lambda pre, local, domain, rest: f"{pre}<{local}@{domain}>{rest}",
    st.sampled_from(["", " ", "\t"]),
    st.text('aZ9.-+_"', max_size=6),
    st.text("aZ9.-[]", max_size=6),
    st.text(" \tX=(", max_size=6),
)


@given(arg=st.one_of(paths, st.text(alphabet='<>@.aZ9-+_ \t()"[]\\:;,=é', max_size=30)))
@settings(max_examples=2000)
def test_fast_address_path_agrees_with_aiosmtpd(protocol, arg):
    assert protocol._getaddr(arg) == aiosmtpd_getaddr(arg)


@pytest.mark.parametrize(
    "arg",
    [
        "<a@example.org>",
        "<a.b+c@mx.example.org> SIZE=100 BODY=8BITMIME",
        " <x@y>",
        "<a@b.c> (comment) SIZE=1",
        "<>",
        "<a..b@c>",
        '<"q u"@c>',
    ],
)
def test_fast_address_path_on_common_paths(protocol, arg):
    assert protocol._getaddr(arg) == aiosmtpd_getaddr(arg)


async def _abandon(lines: list[bytes]):
    """A client that sends `lines` and goes away without QUIT; the server's protocol and
    shared state a moment later."""
    shared = Shared.from_config(configmod.load(None, environ={}))
    loop = asyncio.get_running_loop()
    made = []

    def factory():
        made.append(ReceiverSMTP(Exploding(), shared=shared, hostname="test"))
        return made[-1]

    server = await loop.create_server(factory, "127.0.0.1", 0)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
    await reader.readline()
    for line in lines:
        writer.write(line + b"\r\n")
        while (await reader.readline())[3:4] == b"-":
            pass
    writer.close()
    await asyncio.sleep(0.3)
    server.close()
    return made[0], shared


def test_a_client_gone_without_quit_has_its_socket_closed_and_budget_returned():
    proto, shared = asyncio.run(_abandon([b"EHLO x", b"MAIL FROM:<a@example.org> SIZE=1000"]))
    assert proto.transport is None  # connection_lost ran: the socket is closed
    assert shared.budget.used == 0 and not shared.sessions
