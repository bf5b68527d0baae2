"""The implicit-TLS listeners (SMTP's tls.implicit_listen, IMAP's implicit_listen), with
a trusted balancer's PROXY header read in clear before the TLS handshake.

HAProxy (`send-proxy`, `send-proxy-v2`) and nginx (`proxy_protocol on`) in TCP mode with
TLS passthrough send their header first, then the client's TLS ClientHello. A server made
with asyncio's `ssl=` starts the handshake on the first byte, so these listeners are plain
and hand every connection to TLS themselves (`Front`):

- from outside the trusted networks: at once, with the handshake an `ssl=` listener does
  (loop.connect_accepted_socket with the same context);
- from a trusted proxy: its header is read first, no further than the parser asks
  (`ExactReader`), so that not one byte of the ClientHello behind it leaves the socket;
  then the same handshake, and the session is given the header.

Each edge brings its own header parser (the one its plain listener uses) and its own
session; this module only moves the connection from one to the other.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from receiver.smtp.limits import client_ip, in_networks

log = logging.getLogger(__name__)

Header = TypeVar("Header")
# A PROXY v1 line is at most 107 bytes (the specification); a longer one is refused by the
# parser, so reading stops one byte past it.
V1_MAX = 107


class ExactReader:
    """What the PROXY parsers (aiosmtpd's get_proxy, proxyprotocol's reader) call of an
    asyncio.StreamReader, over a socket and reading no byte they did not ask for."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.loop = asyncio.get_running_loop()

    async def read(self, n: int) -> bytes:
        return await self.loop.sock_recv(self.sock, n)

    async def readexactly(self, n: int) -> bytes:
        data = bytearray()
        while len(data) < n:
            chunk = await self.loop.sock_recv(self.sock, n - len(data))
            if not chunk:
                raise asyncio.IncompleteReadError(bytes(data), n)
            data += chunk
        return bytes(data)

    async def readuntil(self, separator: bytes = b"\n") -> bytes:
        # A byte at a time: where the line ends is not known before it is read, and
        # what follows it is the TLS layer's.
        data = bytearray()
        while not data.endswith(separator) and len(data) <= V1_MAX:
            data += await self.readexactly(1)
        return bytes(data)

    async def readline(self) -> bytes:
        return await self.readuntil(b"\n")


class Front(Generic[Header]):
    """The protocol factory of an implicit-TLS listener (for loop.create_server without
    `ssl=`). `trusted()` names the proxy networks in force (a reload changes them);
    `read_header(reader, proxy_ip)` returns the header or None when it refused the
    connection (and logged why); `session(header)` makes the protocol that serves the
    connection once TLS is up, with None from a peer that is not a proxy."""

    def __init__(
        self,
        context: ssl.SSLContext,
        trusted: Callable[[], tuple],
        read_header: Callable[[ExactReader, str], Awaitable[Header | None]],
        session: Callable[[Header | None], asyncio.BaseProtocol],
    ):
        self.context = context
        self.trusted = trusted
        self.read_header = read_header
        self.session = session
        self._tasks: set[asyncio.Task] = set()  # the loop keeps only weak references

    def __call__(self) -> asyncio.Protocol:
        return _Accepted(self._start)

    def _start(self, sock: socket.socket) -> None:
        task = asyncio.get_running_loop().create_task(self._hand_over(sock))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _hand_over(self, sock: socket.socket) -> None:
        header = None
        try:
            ip = client_ip(sock.getpeername())
            if in_networks(ip, self.trusted()):
                header = await self.read_header(ExactReader(sock), ip)
                if header is None:
                    sock.close()
                    return
        except OSError:  # gone already
            sock.close()
            return
        except BaseException:  # cancelled (the daemon stops): the socket is ours to close
            sock.close()
            raise
        try:
            await asyncio.get_running_loop().connect_accepted_socket(
                lambda: self.session(header), sock, ssl=self.context
            )
        except OSError as e:
            # What an `ssl=` listener does with a failed handshake: close (asyncio has), and
            # say nothing above debug (scanners on 465/993 would fill the log).
            log.debug("TLS handshake with %s failed: %r", ip, e)


class _Accepted(asyncio.Protocol):
    """The first protocol of an accepted connection: hands its socket on, reads nothing."""

    def __init__(self, hand_over: Callable[[socket.socket], None]):
        self.hand_over = hand_over

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio's transport starts reading only after connection_made returns: closed
        # here, it has taken no byte from the socket. Closing it closes its descriptor
        # only; the duplicate keeps the connection open (tests/test_contracts.py).
        sock = transport.get_extra_info("socket").dup()
        transport.close()
        self.hand_over(sock)
