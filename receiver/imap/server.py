"""The IMAP listeners: STARTTLS (`[imap] listen`) and TLS on connect (`implicit_listen`),
built from the daemon's pipeline and held to the limits SMTP is held to: the AUTH failure
limiter and the in-flight byte budget are the daemon's, shared with SMTP; a trusted
proxy's PROXY header (imap.proxy_trusted, read with the proxyprotocol package that
pymap itself depends on) names the client that is recorded and limited; on the
implicit-TLS listener it comes in clear before the handshake (receiver/smtp/implicit_tls.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import struct
from contextlib import AsyncExitStack, closing
from dataclasses import dataclass
from uuid import uuid4

from proxyprotocol.detect import ProxyProtocolDetect
from proxyprotocol.reader import ProxyProtocolReader
from proxyprotocol.result import ProxyResult, is_ipv4, is_ipv6
from proxyprotocol.sock import SocketInfoLocal
from pymap.context import connection_exit
from pymap.exceptions import MailboxError
from pymap.imap import IMAPConnection
from pymap.imap.state import ConnectionState
from pymap.parsing import Params
from pymap.parsing.command import Command
from pymap.parsing.commands import Commands, InvalidCommand
from pymap.parsing.exceptions import NotParseable
from pymap.parsing.response import CommandResponse, ResponseContinuation, ResponseNo, ResponseOk
from pymap.parsing.state import ExpectContinuation, ParsingInterrupt, ParsingState

from receiver import metrics
from receiver.config import Config, parse_hostport
from receiver.imap import connection, mailboxnames
from receiver.imap.backend import Backend, Session
from receiver.imap.extensions import ExtendedState
from receiver.imap.login import Login
from receiver.imap.settings import Settings
from receiver.pipeline import Pipeline
from receiver.smtp import limits
from receiver.smtp.implicit_tls import ExactReader, Front
from receiver.smtp.limits import ByteBudget, FailureLimiter, SessionSlots

log = logging.getLogger(__name__)

# What each [imap] key listens for, as the daemon announces it.
KINDS = {"listen": "STARTTLS", "implicit_listen": "implicit TLS"}
# The code a literal refused for the in-flight budget carries: RFC 5530's temporary
# failure, so that the client tries again, as SMTP's 452 4.3.1 makes a sender do.
OVER_BUDGET = b"UNAVAILABLE"
# A refused LITERAL+ is read and dropped this many bytes at a time.
DRAIN_CHUNK = 64 * 1024
PROXY_READER = ProxyProtocolReader(ProxyProtocolDetect())


class State(ExtendedState):
    def __init__(self, login: Login, config: Settings, reader: BoundedReader):
        super().__init__(login, config)
        self.reader = reader

    async def do_greeting(self) -> CommandResponse:
        # pymap would let a loopback client log in without TLS; a login here always
        # needs TLS (LOGINDISABLED until STARTTLS).
        return ResponseOk(b"*", self.config.greeting, self.capability)

    async def do_command(self, cmd: Command) -> CommandResponse:
        try:
            # A session whose mailbox was disabled or removed, or whose credential was
            # revoked, since the last command is told BYE before it can do anything.
            await self._check_login()
            try:
                return await self._answer(cmd)
            except MailboxError as exc:
                # An APPEND that met the change in its own commit was refused NO
                # [UNAVAILABLE] (receiver.store.deliveries): it is told BYE too, not to
                # try again.
                if bytes(exc.code or b"") == b"[UNAVAILABLE]":
                    await self._check_login()
                raise
        finally:
            # The command is done with its literals, stored or refused: they leave the
            # budget before pymap writes the reply, so that a client that reads it and
            # tries again at once finds them free (pymap's do_cleanup comes after).
            self.reader.release()

    async def _check_login(self) -> None:
        # Every logged-in session here is the backend's (receiver.imap.login.Identity).
        if isinstance(self._session, Session):
            await self._session.check_login()

    async def _answer(self, cmd: Command) -> CommandResponse:
        refused = cmd.parse_exc if isinstance(cmd, InvalidCommand) else None
        code = refused.code if refused is not None else None
        # pymap answers an APPEND literal over the size limit BAD; RFC 7889 says NO [TOOBIG].
        if code is not None and bytes(code) == b"[TOOBIG]":
            return ResponseNo(cmd.tag, b"Message larger than the limit (APPENDLIMIT).", code)
        if code is not None and bytes(code) == b"[%s]" % OVER_BUDGET:
            return ResponseNo(cmd.tag, b"Too much mail in flight, try again later.", code)
        if isinstance(refused, mailboxnames.EightBitName):
            return ResponseNo(cmd.tag, mailboxnames.REFUSAL)
        return await super().do_command(cmd)


class BoundedReader:
    """The client's stream, as pymap reads it, within limits.

    pymap reads a LITERAL+ whole whatever its size, and a line until the stream's buffer
    limit: past the literal limit or the line limit the client is told BYE and nothing
    more is read. Every literal's bytes are taken from the daemon's in-flight budget
    before they are read and stay taken until its command is done (`release`, before the
    reply is written). A synchronising literal that does not fit is refused before the continuation
    (`reserve`, Connection.read_command): the client never sends it. A LITERAL+ comes
    whether or not it fits (RFC 7888); one that does not is read and dropped, never held,
    and its command answered NO [UNAVAILABLE] like the synchronising one."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        settings: Settings,
        budget: ByteBudget,
    ):
        self.reader = reader
        self.writer = writer
        self.max_literal = settings.max_literal
        self.timeout = settings.timeout
        self.budget = budget
        self.held = 0  # bytes of this connection's current command in the budget
        self.over_budget = False  # a literal of the current command did not fit
        self._reserved = False  # the next literal was taken before its continuation

    def _take(self, n: int) -> bool:
        if not self.budget.take(n):
            return False
        self.held += n
        return True

    def reserve(self, n: int) -> bool:
        """Take a synchronising literal's bytes before the client is asked for them."""
        self._reserved = self._take(n)
        return self._reserved

    def release(self) -> None:
        self.budget.give_back(self.held)
        self.held = 0

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
        taken, self._reserved = self._reserved, False
        if not taken and (self.over_budget or not self._take(n)):
            self.over_budget = True
            await self._drain(n)
            # pymap goes on reading the command line; Connection.read_command answers it.
            return b""
        _quick_ack(self.writer)
        try:
            async with asyncio.timeout(self.timeout):
                return await self.reader.readexactly(n)
        except TimeoutError:
            raise await self._bye(b"Autologout: idle for too long.") from None

    async def _drain(self, n: int) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                while n:
                    chunk = await self.reader.read(min(n, DRAIN_CHUNK))
                    if not chunk:
                        raise EOFError()
                    n -= len(chunk)
        except TimeoutError:
            raise await self._bye(b"Autologout: idle for too long.") from None


class Connection(IMAPConnection):
    """pymap's connection, reading a command as pymap does, with one difference: a
    synchronising literal's bytes are taken from the in-flight budget before the
    continuation is sent; when they do not fit, the command is answered NO
    [UNAVAILABLE] instead of "+", and the client does not send them."""

    def __init__(
        self,
        commands: Commands,
        config: Settings,
        reader: BoundedReader,
        writer: asyncio.StreamWriter,
        sock_info: ClientInfo,
    ):
        super().__init__(commands, config, reader, writer, sock_info)  # type: ignore[arg-type]
        self.bounded = reader

    async def read_command(self, state: ConnectionState) -> Command:
        line = await self.readline()
        conts: list[memoryview] = []
        while not self.bounded.over_budget:
            try:
                cmd, _ = self.commands.parse(
                    line, self.params.copy(ParsingState(continuations=conts))
                )
            except ParsingInterrupt as interrupt:
                expected = interrupt.expected
                if not isinstance(expected, ExpectContinuation):
                    raise TypeError(expected) from interrupt
                if not self.bounded.reserve(expected.literal_length):
                    break
                await self.write_response(ResponseContinuation(expected.message))
                conts.append(await self.read_continuation(expected.literal_length))
            else:
                return cmd
        self.bounded.over_budget = False
        log.info(
            "imap %s: a literal did not fit the in-flight budget (%d of %d bytes held)",
            connection.session_id(),
            self.bounded.budget.used,
            self.bounded.budget.limit,
        )
        tag = bytes(line).split(None, 1)[0] if bytes(line).strip() else b"*"
        return InvalidCommand(Params(tag=tag), NotParseable(line, OVER_BUDGET))


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


class ClientInfo(SocketInfoLocal):
    """The connection as pymap sees it: its own socket and TLS, with the client's address
    from a trusted proxy's PROXY header when the header names one. v1 UNKNOWN and v2
    LOCAL (a balancer's health check) name none: the connection's own address stands,
    as the PROXY specification says and the SMTP edge does."""

    __slots__ = ["_client"]

    def __init__(self, writer: asyncio.StreamWriter, unique_id: bytes, proxied: ProxyResult | None):
        super().__init__(writer, unique_id=unique_id)
        self._client = None
        if proxied is not None and (is_ipv4(proxied) or is_ipv6(proxied)):
            self._client = proxied.peername

    @property
    def peername(self):
        return self._client or super().peername


async def proxy_header(
    reader: asyncio.StreamReader | ExactReader, sid: str, proxy: str
) -> ProxyResult | None:
    """A trusted proxy's PROXY header (v1 or v2), or None when the connection does not
    start with a valid one, which is logged: such a connection is closed unanswered."""
    try:
        async with asyncio.timeout(limits.PROXY_TIMEOUT):
            return await PROXY_READER.read(reader)
    except (asyncio.IncompleteReadError, ConnectionError):
        log.warning(
            "imap %s: trusted proxy %s closed the connection before its PROXY header", sid, proxy
        )
    except (ValueError, struct.error, TimeoutError) as e:
        log.warning(
            "imap %s: closing: the connection from trusted proxy %s does not start with a "
            "valid PROXY header (%s)",
            sid,
            proxy,
            str(e) or type(e).__name__,
        )
    return None


async def proxy_before_tls(reader: ExactReader, proxy: str) -> ProxyResult | None:
    """The implicit-TLS listener's read of a trusted proxy's header, in clear before the
    handshake (implicit_tls.Front), as the STARTTLS listener reads it."""
    return await proxy_header(reader, uuid4().hex[:12], proxy)


class Listener:
    """One pymap connection per client, with the settings in force when it connected (a
    reload changes them for the next ones): asyncio.start_server's callback on the
    STARTTLS listener, `protocol` behind implicit_tls.Front on the implicit-TLS one."""

    def __init__(self, login: Login, settings: Settings, slots: SessionSlots, budget: ByteBudget):
        self.login = login
        self.settings = settings
        self.slots = slots
        self.budget = budget

    def reload(self, settings: Settings) -> None:
        self.settings = settings
        self.login.backend.settings = settings

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """The STARTTLS listener's connection: a trusted proxy's header first."""
        settings = self.settings
        unique_id = uuid4().bytes
        proxied = None
        own = limits.client_ip(writer.get_extra_info("peername"))
        if limits.in_networks(own, settings.proxy_trusted):
            proxied = await proxy_header(reader, unique_id.hex()[:12], own)
            if proxied is None:
                writer.close()
                return
        await self._session(reader, writer, settings, unique_id, proxied)

    def trusted(self) -> tuple:
        return self.settings.proxy_trusted

    def protocol(self, proxied: ProxyResult | None) -> asyncio.BaseProtocol:
        """The implicit-TLS listener's protocol once TLS is up (implicit_tls.Front), as
        asyncio.start_server makes it, with the trusted proxy's header if there was one."""
        settings = self.settings

        def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
            return self._session(reader, writer, settings, uuid4().bytes, proxied)

        return asyncio.StreamReaderProtocol(asyncio.StreamReader(), connected)

    async def _session(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        settings: Settings,
        unique_id: bytes,
        proxied: ProxyResult | None,
    ) -> None:
        sock_info = ClientInfo(writer, unique_id, proxied)
        ip = str(sock_info.peername_ip)
        if not self.slots.acquire(ip):
            log.warning("imap: connection from %s refused: too many connections", ip)
            writer.write(b"* BYE [UNAVAILABLE] Too many connections, try again later.\r\n")
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            writer.close()
            return
        try:
            await self._serve(reader, writer, sock_info, settings)
        finally:
            self.slots.release(ip)

    async def _serve(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        sock_info: ClientInfo,
        settings: Settings,
    ) -> None:
        _no_delay(writer)
        bounded = BoundedReader(reader, writer, settings, self.budget)
        conn = Connection(settings.commands, settings, bounded, writer, sock_info)
        state = State(self.login, settings, bounded)
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
            # A client gone mid-command (or mid-literal) leaves nothing in the budget.
            bounded.release()
            metrics.imap_session_closed()


@dataclass
class Listeners:
    """The IMAP listeners of one daemon, by [imap] key; a reload hands new sessions the
    new limits, host name and proxies (the TLS context is the daemon's, reloaded in
    place). Their addresses are read once: changing them takes a restart."""

    servers: dict[str, asyncio.Server]
    listeners: dict[str, Listener]
    slots: SessionSlots
    tls: ssl.SSLContext | None

    def reload(self, config: Config, hostname: str) -> None:
        self.slots.total = config.imap.max_sessions
        self.slots.per_ip = config.imap.max_sessions_per_ip
        for key, listener in self.listeners.items():
            assert self.tls is not None  # a listener is started only with a certificate
            listener.reload(
                Settings(config, hostname, self.tls, implicit_tls=key == "implicit_listen")
            )


async def start(
    config: Config,
    pipeline: Pipeline,
    tls: ssl.SSLContext | None,
    hostname: str,
    limiter: FailureLimiter,
    budget: ByteBudget,
    reuse_port: bool = False,
) -> Listeners:
    """The configured IMAP listeners, serving. `limiter` and `budget` are the daemon's,
    shared with SMTP. `reuse_port`: every worker of `serve --workers` listens on the
    same ports."""
    # One count across both listeners.
    slots = SessionSlots(config.imap.max_sessions, config.imap.max_sessions_per_ip)
    running = Listeners({}, {}, slots, tls)
    for key in KINDS:
        implicit = key == "implicit_listen"
        if not getattr(config.imap, key):
            continue
        assert tls is not None  # config validation: IMAP needs a certificate
        settings = Settings(config, hostname, tls, implicit_tls=implicit)
        listener = Listener(Login(Backend(pipeline, settings), limiter), settings, slots, budget)
        host, port = parse_hostport(getattr(config.imap, key), f"imap.{key}")
        running.listeners[key] = listener
        if implicit:
            # TLS is started by the front, after a trusted proxy's header (implicit_tls.py).
            front = Front(tls, listener.trusted, proxy_before_tls, listener.protocol)
            server = await asyncio.get_running_loop().create_server(
                front, host=host, port=port, reuse_address=True, reuse_port=reuse_port
            )
        else:
            server = await asyncio.start_server(
                listener, host=host, port=port, reuse_address=True, reuse_port=reuse_port
            )
        running.servers[key] = server
    return running
