"""The IMAP listeners: STARTTLS (`[imap] listen`) and TLS on connect (`implicit_listen`),
built from the daemon's pipeline and sharing its SMTP AUTH failure limiter."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from contextlib import AsyncExitStack, closing
from uuid import uuid4

from proxyprotocol.sock import SocketInfo
from pymap.context import connection_exit
from pymap.imap import IMAPConnection
from pymap.parsing.command import Command
from pymap.parsing.commands import InvalidCommand
from pymap.parsing.response import CommandResponse, ResponseNo, ResponseOk

from receiver import metrics
from receiver.config import Config, parse_hostport
from receiver.imap.backend import Backend
from receiver.imap.extensions import ExtendedState
from receiver.imap.login import Login
from receiver.imap.settings import Settings
from receiver.pipeline import Pipeline
from receiver.smtp.limits import FailureLimiter, SessionSlots

log = logging.getLogger(__name__)

# What each [imap] key listens for, as the daemon announces it.
KINDS = {"listen": "STARTTLS", "implicit_listen": "implicit TLS"}


class State(ExtendedState):
    async def do_greeting(self) -> CommandResponse:
        # pymap would let a loopback client log in without TLS; a login here always
        # needs TLS (LOGINDISABLED until STARTTLS).
        return ResponseOk(b"*", self.config.greeting, self.capability)

    async def do_command(self, cmd: Command) -> CommandResponse:
        # pymap answers an APPEND literal over the size limit BAD; RFC 7889 says NO [TOOBIG].
        if (
            isinstance(cmd, InvalidCommand)
            and cmd.parse_exc is not None
            and bytes(cmd.parse_exc.code or b"") == b"[TOOBIG]"
        ):
            return ResponseNo(
                cmd.tag, b"Message larger than the limit (APPENDLIMIT).", cmd.parse_exc.code
            )
        return await super().do_command(cmd)


class BoundedReader:
    """The client's stream, as pymap reads it, within limits: pymap reads a LITERAL+
    whole whatever its size, and a line until the stream's buffer limit. Past either,
    the client is told BYE and the connection ends; nothing more is read or held."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        max_literal: int,
        timeout: float,
    ):
        self.reader = reader
        self.writer = writer
        self.max_literal = max_literal
        self.timeout = timeout

    async def _bye(self, text: bytes) -> EOFError:
        self.writer.write(b"* BYE " + text + b"\r\n")
        with contextlib.suppress(ConnectionError):
            await self.writer.drain()
        return EOFError()

    async def readline(self) -> bytes:
        try:
            async with asyncio.timeout(self.timeout):
                return await self.reader.readline()
        except ValueError:  # the line ran past the buffer limit
            raise await self._bye(b"[TOOBIG] Command line too long.") from None
        except TimeoutError:
            raise await self._bye(b"Autologout: idle for too long.") from None

    async def readexactly(self, n: int) -> bytes:
        if n > self.max_literal:
            raise await self._bye(b"[TOOBIG] Literal larger than the limit (APPENDLIMIT).")
        _quick_ack(self.writer)
        try:
            async with asyncio.timeout(self.timeout):
                return await self.reader.readexactly(n)
        except TimeoutError:
            raise await self._bye(b"Autologout: idle for too long.") from None


def _no_delay(writer: asyncio.StreamWriter) -> None:
    """Replies leave at once (no Nagle on the server's side)."""
    sock = writer.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _quick_ack(writer: asyncio.StreamWriter) -> None:
    """Acknowledge the next segments at once. A client that leaves Nagle on (imaplib
    does) sends the CRLF after a literal only once its last segment is acknowledged;
    a delayed ACK would hold every APPEND for ~40 ms (bench/RESULTS.md). Linux drops
    back to delayed ACKs by itself, so this is set again before every literal."""
    sock = writer.get_extra_info("socket")
    if (
        sock is not None
        and hasattr(socket, "TCP_QUICKACK")
        and sock.family in (socket.AF_INET, socket.AF_INET6)
    ):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)


class Listener:
    """asyncio.start_server's callback: one pymap connection per client."""

    def __init__(self, login: Login, settings: Settings, slots: SessionSlots):
        self.login = login
        self.settings = settings
        self.slots = slots

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock_info = SocketInfo.get(writer, None, unique_id=uuid4().bytes)
        ip = str(sock_info.peername_ip)
        if not self.slots.acquire(ip):
            log.warning("imap: connection from %s refused: too many connections", ip)
            writer.write(b"* BYE [UNAVAILABLE] Too many connections, try again later.\r\n")
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            writer.close()
            return
        try:
            await self._serve(reader, writer, sock_info)
        finally:
            self.slots.release(ip)

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, sock_info: SocketInfo
    ) -> None:
        _no_delay(writer)
        bounded = BoundedReader(reader, writer, self.settings.max_literal, self.settings.timeout)
        conn = IMAPConnection(self.settings.commands, self.settings, bounded, writer, sock_info)  # type: ignore[arg-type]
        state = State(self.login, self.settings)
        metrics.imap_session_opened()
        try:
            async with AsyncExitStack() as stack:
                connection_exit.set(stack)
                stack.enter_context(closing(conn))
                await conn.run(state)
        except Exception:
            # pymap has told the client (BYE); the fault is ours to log, not to spread.
            log.exception("imap %s: session failed", sock_info.unique_id.hex()[:12])
        finally:
            metrics.imap_session_closed()


async def start(
    config: Config,
    pipeline: Pipeline,
    tls: ssl.SSLContext | None,
    hostname: str,
    limiter: FailureLimiter,
    reuse_port: bool = False,
) -> dict[str, asyncio.Server]:
    """The configured IMAP listeners, serving, by [imap] key. `reuse_port`: every
    worker of `serve --workers` listens on the same ports."""
    servers: dict[str, asyncio.Server] = {}
    # One count across both listeners.
    slots = SessionSlots(config.imap.max_sessions, config.imap.max_sessions_per_ip)
    for key in KINDS:
        implicit = key == "implicit_listen"
        if not getattr(config.imap, key):
            continue
        assert tls is not None  # config validation: IMAP needs a certificate
        settings = Settings(config, hostname, tls, implicit_tls=implicit)
        login = Login(Backend(pipeline, settings), limiter)
        host, port = parse_hostport(getattr(config.imap, key), f"imap.{key}")
        servers[key] = await asyncio.start_server(
            Listener(login, settings, slots),
            host=host,
            port=port,
            reuse_address=True,
            reuse_port=reuse_port,
            ssl=tls if implicit else None,
        )
    return servers
