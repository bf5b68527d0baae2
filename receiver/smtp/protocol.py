"""The SMTP/LMTP session, hardened for the open internet: aiosmtpd's protocol with our
own command loop and DATA reader.

aiosmtpd ends a command line at a bare LF, takes a bare CR or NUL inside MAIL FROM or
the HELO name, answers a handler's exception with a permanent "500 Error: (Exception)"
that leaks internals, and keeps no count of errors, sessions or bytes across sessions.
So this module replaces its session loop (`_handle_client`) and its DATA reader, and
keeps its command implementations (HELO, EHLO, MAIL, RCPT, STARTTLS, AUTH, ...):

- command lines must end in CRLF and hold no bare CR or NUL (500/501), at most 512
  octets (MAIL: 512 + its ESMTP parameters); arguments must be valid UTF-8, and
  non-ASCII addresses need SMTPUTF8 (553 5.6.7);
- too many commands that make no progress (NOOP, RSET, VRFY, ... and refused ones) or
  error replies since the last message accepted: 421 4.7.0 and close;
- concurrent sessions in total and per client address (a configured front MTA: in
  total only): 421 4.7.0 past the cap; near the total cap idle sessions get a short
  timeout (Postfix's stress mode);
- every reply carries an enhanced status code (receiver/smtp/replies.py);
- DATA: SIZE and the growing body checked against the limit (552 5.3.4), bytes counted
  against a budget shared by every session (452 4.3.1), memory freed as soon as a
  limit is passed while the rest is drained, bare CR/LF in headers recorded as defects;
- any exception: logged with the session id, answered 451 4.3.0;
- PROXY protocol v1/v2 from trusted networks only (UNKNOWN/LOCAL: the connection's own
  addresses); implicit TLS on a second listener, where the header comes in clear before
  the handshake (receiver/smtp/implicit_tls.py reads it there and hands it in);
- SIGTERM: sessions in DATA finish, the others get 421 4.3.2.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from collections.abc import Callable

from aiosmtpd.lmtp import LMTP
from aiosmtpd.proxy_protocol import AF, V2_CMD, ProxyData, get_proxy
from aiosmtpd.smtp import SMTP, TLSSetupException

from receiver.config import Config
from receiver.mail import read
from receiver import metrics
from receiver.smtp.datastream import DataStream
from receiver.smtp.handler import new_session_id, session_id
from receiver.smtp.implicit_tls import ExactReader
from receiver.smtp.limits import (
    PROXY_TIMEOUT,
    ByteBudget,
    FailureLimiter,
    SessionSlots,
    client_ip,
    in_networks,
    networks,
)
from receiver.smtp.replies import enhanced, is_client_error

log = logging.getLogger(__name__)

COMMAND_LIMIT = 512
# MAIL may carry SIZE=, BODY=8BITMIME and SMTPUTF8 on top of the 512 octets.
MAIL_LIMIT = COMMAND_LIMIT + 64
# Up to one socket read (asyncio reads at most 256 KiB at a time).
DATA_CHUNK = 256 * 1024
ALLOWED_BEFORE_STARTTLS = {"NOOP", "EHLO", "LHLO", "STARTTLS", "QUIT"}
# Commands that never move a message forward (Postfix's junk commands, plus HELP and
# EXPN): counted against smtp.max_commands, like every refused command.
NO_PROGRESS = {"NOOP", "RSET", "VRFY", "EXPN", "ETRN", "HELP"}

_SIZE_PARAM = re.compile(r"(?i)\sSIZE=(\d+)(?:\s|$)")
# The path nearly every client sends: <dot-atom@dot-atom>, then parameters after a
# space. The email package's RFC 5322 parser that aiosmtpd uses costs tens of
# microseconds a call; for this shape it returns the same address and rest.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_PATH = re.compile(
    rf"[ \t]*<({_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>(?:[ \t]+(?=[^ \t(])|$)"
)

TOO_MANY_SESSIONS = "421 4.7.0 Too many connections, try again later"
TOO_MANY_COMMANDS = "421 4.7.0 Too many commands in one session, closing"
TOO_MANY_ERRORS = "421 4.7.0 Too many errors in one session, closing"
UNHEALTHY = "421 4.3.0 Cannot store mail now, try again later"
SHUTTING_DOWN = "421 4.3.2 Service shutting down, try again later"
TIMED_OUT = "421 4.4.2 Idle too long, closing"
TEMPFAIL = "451 4.3.0 Temporary failure, try again later"
NEEDS_CRLF = "500 5.5.2 Command lines end with CRLF"
BARE_CR_NUL = "501 5.5.2 Bare CR or NUL in command"
COMMAND_TOO_LONG = "500 5.5.2 Command line too long"
BAD_UTF8 = "501 5.6.7 Invalid UTF-8 in command"
NEEDS_SMTPUTF8 = "553 5.6.7 Non-ASCII address needs SMTPUTF8"
DATA_LINE_TOO_LONG = "500 5.5.2 Line too long"
TOO_BIG = "552 5.3.4 Message size exceeds fixed maximum message size"
NO_MEMORY = "452 4.3.1 Insufficient system resources, try again later"


@dataclass(frozen=True)
class Settings:
    """The limits a session reads when it starts (replaced whole on SIGHUP)."""

    max_message_size: int
    max_line_length: int
    timeout: float
    data_timeout: float
    max_commands: int
    max_errors: int
    require_starttls: bool
    stress_timeout: float
    stress_threshold: float
    proxy_trusted: tuple = ()
    # Front MTAs (Postfix relaying here): the per-address session cap does not apply.
    trusted_networks: tuple = ()

    @classmethod
    def from_config(cls, config: Config) -> Settings:
        smtp = config.smtp
        return cls(
            # A message larger than the in-flight budget could never be taken: refusing
            # it for good (552) beats a 452 its sender would retry for days.
            max_message_size=min(smtp.max_message_size, smtp.max_inflight_bytes),
            max_line_length=smtp.max_line_length,
            timeout=smtp.timeout,
            data_timeout=smtp.data_timeout,
            max_commands=smtp.max_commands,
            max_errors=smtp.max_errors,
            require_starttls=config.tls.require_starttls,
            stress_timeout=smtp.stress_timeout,
            stress_threshold=smtp.stress_threshold,
            proxy_trusted=networks(smtp.proxy_trusted),
            trusted_networks=networks(smtp.trusted_networks),
        )


@dataclass
class Shared:
    """What every session of one daemon shares."""

    settings: Settings
    slots: SessionSlots
    budget: ByteBudget
    auth_failures: FailureLimiter
    sessions: set = field(default_factory=set)
    stopping: bool = False
    # What is wrong with the stages behind the sessions (receiver.stages); while not
    # empty, new sessions are told 421 so that senders try another MX or later.
    problems: Callable[[], list[str]] = list
    # Whether the sessions open were near the cap when last counted (stress mode).
    stressed: bool = False

    @classmethod
    def from_config(cls, config: Config) -> Shared:
        return cls(
            settings=Settings.from_config(config),
            slots=SessionSlots(config.smtp.max_sessions, config.smtp.max_sessions_per_ip),
            budget=ByteBudget(config.smtp.max_inflight_bytes),
            auth_failures=FailureLimiter(config.auth.max_failures, config.auth.failure_window),
        )

    def reload(self, config: Config) -> None:
        self.settings = Settings.from_config(config)
        self.slots.total = config.smtp.max_sessions
        self.slots.per_ip = config.smtp.max_sessions_per_ip
        self.budget.limit = config.smtp.max_inflight_bytes
        self.auth_failures.max_failures = config.auth.max_failures
        self.auth_failures.window = config.auth.failure_window


# For the type checker the mixin is an SMTP; at run time its base comes from the class
# it is mixed into.
if TYPE_CHECKING:
    _MixinBase = SMTP
else:
    _MixinBase = object


class Hardened(_MixinBase):
    """Mixed in before aiosmtpd's SMTP or LMTP class; see the module docstring."""

    shared: Shared
    implicit_tls: bool = False

    def __init__(
        self,
        handler,
        *,
        shared: Shared,
        implicit_tls: bool = False,
        proxied: ProxyData | None = None,
        **kwargs,
    ):
        s = shared.settings
        self._declared = 0  # the transaction's SIZE= from MAIL
        self._reserved = 0  # in-flight budget taken for it at the first accepted RCPT
        # Read by aiosmtpd's __init__ for the stream reader's limit (DATA lines).
        self.line_length_limit = s.max_line_length
        self.shared = shared
        self.settings = s
        self.implicit_tls = implicit_tls
        # On the implicit-TLS listener: the trusted proxy's header, read before the handshake.
        self.proxied = proxied
        self.in_data = False
        self._commands = 0  # no-progress commands since the last message accepted
        self._errors = 0  # client errors since the last message accepted
        self._command: str | None = None  # the verb being answered, for replies.enhanced
        self._slot_ip: str | None = None
        super().__init__(
            handler,
            data_size_limit=s.max_message_size,
            timeout=s.timeout,
            require_starttls=s.require_starttls,
            **kwargs,
        )

    # -- connection --------------------------------------------------------------

    def connection_made(self, transport) -> None:
        before = self.session
        super().connection_made(transport)
        if before is not None:
            # After STARTTLS aiosmtpd starts a new Session (RFC 3207 resets the state);
            # the session id and the client address (perhaps from PROXY) stay.
            self.session.receiver_id = session_id(before)
            self.session.peer = before.peer
            self.session.proxy_data = before.proxy_data
            self._reset_timeout(self._idle_timeout())  # aiosmtpd armed the normal one
        ssl_object = transport.get_extra_info("ssl_object")
        if self.implicit_tls and ssl_object is not None and self.session.ssl is None:
            # TLS from the first byte: let aiosmtpd treat it as after STARTTLS
            # (AUTH offered, no STARTTLS advertised).
            self._tls_protocol = transport
            self.session.ssl = {"cipher": ssl_object.cipher(), "ssl_object": ssl_object}
        metrics.session_opened(self)

    def connection_lost(self, error) -> None:
        self._release_reservation()
        metrics.session_closed(self, error)
        super().connection_lost(error)

    def _set_post_data_state(self) -> None:
        # After DATA, RSET, EHLO/HELO and a new connection: the transaction is over.
        self._release_reservation()
        super()._set_post_data_state()

    def _release_reservation(self) -> None:
        self.shared.budget.give_back(self._reserved)
        self._reserved = self._declared = 0

    def _timeout_cb(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(TIMED_OUT.encode() + b"\r\n")
        log.info("session %s: timed out", session_id(self.session))
        super()._timeout_cb()

    async def push(self, status) -> None:
        text = status if isinstance(status, str) else status.decode("utf-8", "replace")
        text = enhanced(text, self._command)
        if is_client_error(text):
            self._errors += 1
        await super().push(text)
        if text.startswith("421"):
            # RFC 5321 4.2.2: 421 is the server closing the channel, whoever said it.
            self._close()

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def shutdown(self) -> None:
        """SIGTERM: a session between commands is told 421 and closed now."""
        if self.in_data or self.transport is None or self.transport.is_closing():
            return
        self.transport.write(SHUTTING_DOWN.encode() + b"\r\n")
        self.transport.close()

    # -- the session loop --------------------------------------------------------

    async def _handle_client(self) -> None:
        sid = session_id(self.session)
        if not await self._proxy_header(sid):
            return
        if self.shared.stopping:
            await self.push(SHUTTING_DOWN)
            return
        problems = self.shared.problems()
        if problems:
            log.warning("session %s: refused, %s", sid, "; ".join(problems))
            await self.push(f"{UNHEALTHY} ({'; '.join(problems)})")
            return
        ip = client_ip(self.session.peer)
        # A front MTA (LMTP peer, smtp.trusted_networks) keeps cached connections open to
        # as many as its destination concurrency: only the total cap applies to it.
        front = isinstance(self, LMTP) or in_networks(ip, self.settings.trusted_networks)
        if not self.shared.slots.acquire(ip, per_ip_cap=not front):
            log.warning("session %s: %s over the session cap", sid, ip)
            await self.push(TOO_MANY_SESSIONS)
            return
        self._slot_ip = ip
        self.shared.sessions.add(self)
        self._count_pressure()
        try:
            await self.push(f"220 {self.hostname} {self.__ident__}")
            self._reset_timeout(self._idle_timeout())
            while self.transport is not None:
                if self.shared.stopping:
                    await self.push(SHUTTING_DOWN)
                    return
                errors = self._errors
                try:
                    command = await self._one_command(sid)
                except (asyncio.CancelledError, ConnectionResetError):
                    raise
                except TLSSetupException:
                    log.info("session %s: TLS handshake failed", sid)
                    return self._close()
                except Exception as error:
                    status = await self.handle_exception(error)
                    command = None
                    if self.transport is not None:
                        await self.push(status)
                finally:
                    self._command = None
                if command in NO_PROGRESS or self._errors > errors:
                    self._commands += 1
                if self.transport is None or self.transport.is_closing():
                    break  # commands pipelined after a 421 are not answered
                if self._errors >= self.settings.max_errors:
                    log.warning("session %s: too many errors", sid)
                    await self.push(TOO_MANY_ERRORS)
                    return
                if self._commands >= self.settings.max_commands:
                    log.warning("session %s: too many commands without progress", sid)
                    await self.push(TOO_MANY_COMMANDS)
                    return
        except ConnectionResetError:
            log.info("session %s: connection reset", sid)
        finally:
            self.shared.sessions.discard(self)
            self.shared.slots.release(ip)
            self._count_pressure()
            self._release_reservation()
            # A client gone without QUIT: aiosmtpd cancels this task on EOF and leaves
            # the transport half open; closing it here frees the socket.
            self._close()

    async def handle_exception(self, error: Exception) -> str:
        """aiosmtpd's public hook for a command that raised (its own loop calls it too):
        451, so the sender retries, instead of its "500 Error: (Exception) ..." that
        leaks internals and makes the sender give up."""
        log.error("session %s: command failed", session_id(self.session), exc_info=error)
        return TEMPFAIL

    async def _proxy_header(self, sid: str) -> bool:
        """From a trusted proxy, take the client address in its PROXY header: read here on
        the plain listener; on the implicit-TLS one, read before the handshake."""
        data = self.proxied
        if data is None:
            peer_ip = client_ip(self.session.peer)
            # On the implicit-TLS listener no header means the peer is no proxy (the
            # front has read one from every trusted peer).
            if self.implicit_tls or not in_networks(peer_ip, self.settings.proxy_trusted):
                return True
            self._reset_timeout(PROXY_TIMEOUT)
            data = await read_proxy_header(self._reader, sid, peer_ip)
            if data is None:
                self._close()
                return False
        self.session.proxy_data = data
        # PROXY v1 UNKNOWN and v2 LOCAL (a balancer's health check) or an address family
        # other than IPv4/IPv6: the specification says to use the connection's own
        # addresses.
        if data.command != V2_CMD.LOCAL and data.family in (AF.INET, AF.INET6):
            self.session.peer = (str(data.src_addr), data.src_port)
        return True

    def _idle_timeout(self) -> float:
        """Seconds the next command line may take: short while the daemon is near its
        session cap, so that idle sessions cannot hold every slot (Postfix's stress)."""
        s = self.settings
        return min(s.timeout, s.stress_timeout) if self.shared.stressed else s.timeout

    def _count_pressure(self) -> None:
        """After a session came or went: enter or leave stress mode. Entering it shortens
        the timeout of every session waiting for a command; leaving it lets each go back
        to the normal one at its next command."""
        shared = self.shared
        stressed = shared.slots.count >= self.settings.stress_threshold * shared.slots.total
        if stressed and not shared.stressed:
            log.warning(
                "%d sessions open (cap %d): idle timeout %ss",
                shared.slots.count,
                shared.slots.total,
                self.settings.stress_timeout,
            )
            shared.stressed = True
            for session in shared.sessions:
                if not session.in_data and session.transport is not None:
                    session._reset_timeout(session._idle_timeout())
        elif not stressed and shared.stressed:
            log.info(
                "%d sessions open (cap %d): idle timeout back to %ss",
                shared.slots.count,
                shared.slots.total,
                self.settings.timeout,
            )
            shared.stressed = False

    async def _read_line(self) -> bytes | None:
        """One command line, or None when it was too long (drained, answered)."""
        try:
            return await self._reader.readuntil(b"\n")
        except asyncio.LimitOverrunError as e:
            await self._reader.read(e.consumed)
            while True:
                try:
                    await self._reader.readuntil(b"\n")
                    break
                except asyncio.LimitOverrunError as more:
                    await self._reader.read(more.consumed)
            await self.push(COMMAND_TOO_LONG)
            return None
        except asyncio.IncompleteReadError:
            self._close()
            return None

    async def _one_command(self, sid: str) -> str | None:
        """Read and answer one command; returns its verb when it was dispatched."""
        line = await self._read_line()
        if line is None:
            return None
        self._command = "?"  # a refusal before dispatch still gets its enhanced code
        if not line.endswith(b"\r\n"):
            return await self.push(NEEDS_CRLF)
        line = line[:-2]
        if b"\r" in line or b"\0" in line:
            log.info("session %s: bare CR or NUL in a command", sid)
            return await self.push(BARE_CR_NUL)
        if not line:
            return await self.push("500 5.5.2 Error: bad syntax")
        name_bytes, _, arg_bytes = line.partition(b" ")
        try:
            command = name_bytes.upper().decode("ascii")
        except UnicodeDecodeError:
            return await self.push("500 5.5.2 Error: bad syntax")
        if len(line) > (MAIL_LIMIT if command == "MAIL" else COMMAND_LIMIT):
            return await self.push(COMMAND_TOO_LONG)
        try:
            arg = arg_bytes.strip().decode("utf-8") or None
        except UnicodeDecodeError:
            return await self.push(BAD_UTF8)
        if not self._tls_handshake_okay and command != "QUIT":
            return await self.push("554 5.7.0 Command refused due to lack of security")
        if (
            self.require_starttls
            and not self._tls_protocol
            and command not in ALLOWED_BEFORE_STARTTLS
        ):
            return await self.push("530 5.7.0 Must issue a STARTTLS command first")
        method = self._smtp_methods.get(command)
        if method is None:
            return await self.push(f'500 5.5.1 Error: command "{command}" not recognized')
        self._command = command
        self._reset_timeout(self._idle_timeout())
        await method(arg)
        return command

    # -- commands with our checks in front of aiosmtpd's ---------------------------

    def _getaddr(self, arg: str):
        plain = _PLAIN_PATH.match(arg) if arg else None
        if plain is not None:
            local = plain.group(1).rpartition("@")[0]
            if not self.local_part_limit or len(local) <= self.local_part_limit:
                return plain.group(1), arg[plain.end() :]
        # The email package's address parser raises IndexError, AttributeError or
        # UnboundLocalError on some garbage ("<", "\\@[\t"), which aiosmtpd would
        # turn into "500 Error: (IndexError) ...": it is a malformed address (553).
        try:
            return super()._getaddr(arg)
        except Exception as e:  # any parser crash on client input means "malformed"
            log.info("session %s: unparseable address %r: %r", session_id(self.session), arg, e)
            return None, None

    async def smtp_MAIL(self, arg: str | None) -> None:
        size = _SIZE_PARAM.search(arg or "")
        if size and self.data_size_limit and int(size.group(1)) > self.data_size_limit:
            return await self.push(TOO_BIG)
        if arg and not arg.isascii() and "SMTPUTF8" not in arg.upper().split():
            return await self.push(NEEDS_SMTPUTF8)
        if not size or self.envelope.mail_from:  # nested MAIL: aiosmtpd answers 503
            return await super().smtp_MAIL(arg)
        # RFC 1870: a declared size that cannot be taken now is 452 at MAIL, not a whole
        # message read only to be refused at its end.
        if not self.shared.budget.fits(int(size.group(1))):
            return await self.push(NO_MEMORY)
        await super().smtp_MAIL(arg)
        if self.envelope.mail_from:
            self._declared = int(size.group(1))

    async def smtp_RCPT(self, arg: str | None) -> None:
        if arg and not arg.isascii() and not self.envelope.smtp_utf8:
            return await self.push(NEEDS_SMTPUTF8)
        if not self._declared or self._reserved or self.envelope.rcpt_tos:
            return await super().smtp_RCPT(arg)
        # The declared size is taken with the first recipient, so that of many senders
        # retrying into a full budget only as many as fit go on to send. Not at MAIL: a
        # session that names no valid recipient must not hold the budget.
        if not self.shared.budget.take(self._declared):
            return await self.push(NO_MEMORY)
        self._reserved = self._declared
        await super().smtp_RCPT(arg)
        if not self.envelope.rcpt_tos:
            self.shared.budget.give_back(self._reserved)
            self._reserved = 0

    async def smtp_AUTH(self, arg: str | None) -> None:
        # RFC 4954: mechanism names are case-insensitive; aiosmtpd looks them up as sent.
        mechanism, sep, rest = (arg or "").partition(" ")
        await super().smtp_AUTH(mechanism.upper() + sep + rest if arg else arg)

    async def smtp_DATA(self, arg: str | None) -> None:
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        if not self.envelope.rcpt_tos:
            return await self.push("503 5.5.1 Error: need RCPT command")
        if arg:
            return await self.push("501 5.5.4 Syntax: DATA")
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        self.in_data = True
        # The bytes of this message the budget holds: the declared size to begin with.
        held, self._reserved = self._reserved, 0
        try:
            self._reset_timeout(self.settings.data_timeout)
            stream = DataStream(self.settings.max_line_length)
            error = None
            while not stream.done:
                chunk = await self._reader.read(DATA_CHUNK)
                if not chunk:
                    raise asyncio.IncompleteReadError(b"", None)
                rest = stream.feed(chunk)
                if rest:
                    _unread(self._reader, rest)
                if error:
                    continue
                if stream.long_line:
                    error = DATA_LINE_TOO_LONG
                elif self.data_size_limit and stream.size > self.data_size_limit:
                    error = TOO_BIG
                elif stream.size > held and not self.shared.budget.take(stream.size - held):
                    error = NO_MEMORY
                else:
                    held = max(held, stream.size)
                    continue
                # Past a limit: free what is held now, drain the rest without keeping it.
                stream.drop()
                self.shared.budget.give_back(held)
                held = 0
            self._reset_timeout(self._idle_timeout())
            if error:
                log.info("session %s: DATA refused: %s", session_id(self.session), error)
                # LMTP answers the end of data once per recipient, refusals included.
                replies = len(self.envelope.rcpt_tos) if isinstance(self, LMTP) else 1
                self._set_post_data_state()
                for _ in range(replies):
                    await self.push(error)
                return
            raw = stream.message()
            del stream
            self.envelope.content = self.envelope.original_content = raw
            # Read once, here: the handler hands this object on to every stage.
            self.envelope.mail = read(raw)
            status = await self._call_handler_hook("DATA")
            self._set_post_data_state()
            await self.push(status)
            if any(line[:1] == "2" for line in status.split("\r\n")):
                # A message accepted is progress: a connection reused for thousands of
                # messages is never cut off by the limits on commands and errors.
                self._commands = self._errors = 0
        finally:
            self.shared.budget.give_back(held)
            self.in_data = False


async def read_proxy_header(reader, sid: str, peer_ip: str) -> ProxyData | None:
    """A trusted proxy's PROXY header (v1 or v2), or None when the connection does not
    start with a valid one, which is logged: the caller closes it unanswered."""
    try:
        data = await get_proxy(reader)
    except asyncio.IncompleteReadError:
        log.warning(
            "session %s: trusted proxy %s closed the connection before its PROXY header",
            sid,
            peer_ip,
        )
        return None
    if not data.valid:
        log.warning(
            "session %s: closing: the connection from trusted proxy %s does not "
            "start with a valid PROXY header (%s)",
            sid,
            peer_ip,
            data.error or "incomplete header",
        )
        return None
    return data


async def proxy_before_tls(reader: ExactReader, peer_ip: str) -> ProxyData | None:
    """The implicit-TLS listener's read of a trusted proxy's header, in clear before the
    handshake, with the plain listener's timeout, refusals and log lines."""
    sid = new_session_id()
    try:
        async with asyncio.timeout(PROXY_TIMEOUT):
            return await read_proxy_header(reader, sid, peer_ip)
    except TimeoutError:
        # As Hardened._timeout_cb says on the plain listener (no TLS yet: in clear).
        with contextlib.suppress(OSError):
            reader.sock.send(TIMED_OUT.encode() + b"\r\n")
        log.info("session %s: timed out", sid)
        return None


def _unread(reader: asyncio.StreamReader, data: bytes) -> None:
    # What followed the end of data is the next pipelined command. StreamReader has no
    # unread(); aiosmtpd itself reaches into the same buffer (STARTTLS).
    reader._buffer[:0] = data


class ReceiverSMTP(Hardened, SMTP):
    pass


class ReceiverLMTP(Hardened, LMTP):
    pass
