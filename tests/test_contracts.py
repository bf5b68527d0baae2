"""The parts of aiosmtpd, asyncio and dkimpy that are not their public API and that we use.

receiver/smtp/protocol.py replaces aiosmtpd's session loop and DATA reader (see
docs/architecture.md for why), and receiver/verify/dkimcheck.py runs dkimpy's steps of a
verification one by one; receiver/smtp/implicit_tls.py takes each connection of an
implicit-TLS listener from asyncio before it reads a byte. setup.cfg pins both to the minor version this file was last green
with. Before raising a pin, run this file against the new version: each failure names the
missing or changed piece and the module of ours that relies on it.
"""

from __future__ import annotations

import asyncio
import inspect
import socket
from importlib.metadata import version

import aiosmtpd.lmtp
import aiosmtpd.proxy_protocol
import aiosmtpd.smtp
import dkim
import dkim.canonicalization
import dkim.crypto
import dkim.util
import pytest
from aiosmtpd.proxy_protocol import get_proxy
from aiosmtpd.smtp import SMTP, Envelope
from proxyprotocol.detect import ProxyProtocolDetect
from proxyprotocol.reader import ProxyProtocolReader

from receiver import config as configmod
from receiver.smtp.implicit_tls import ExactReader
from receiver.smtp.protocol import Hardened, ReceiverLMTP, ReceiverSMTP, Shared
from tests import mailfixtures
from tests.helpers import proxy_v2

AIOSMTPD = f"aiosmtpd {version('aiosmtpd')}"
DKIMPY = f"dkimpy {version('dkimpy')}"
PROTOCOL = "receiver/smtp/protocol.py"
IMPLICIT = "receiver/smtp/implicit_tls.py"
AUTH = "receiver/smtp/auth.py"
DKIMCHECK = "receiver/verify/dkimcheck.py"
ARCCHECK = "receiver/verify/arccheck.py"

# (owner, name, its parameters or None for a non-callable, who relies on it)
AIOSMTPD_NAMES = [
    (SMTP, "_handle_client", ["self"], f"{PROTOCOL} replaces the session loop"),
    (SMTP, "_getaddr", ["self", "arg"], f"{PROTOCOL} falls back to it for addresses"),
    (SMTP, "_set_post_data_state", ["self"], f"{PROTOCOL} frees the transaction's budget"),
    (SMTP, "_timeout_cb", ["self"], f"{PROTOCOL} says 421 before the idle close"),
    (SMTP, "_reset_timeout", ["self", "duration"], f"{PROTOCOL} sets DATA and PROXY timeouts"),
    (SMTP, "_call_handler_hook", ["self", "command", "args"], f"{PROTOCOL} DATA calls the handler"),
    (SMTP, "_cb_client_connected", ["self", "reader", "writer"], f"{PROTOCOL} reads self._reader"),
    (SMTP, "handle_exception", ["self", "error"], f"{PROTOCOL} answers a failed command 451"),
    (SMTP, "check_helo_needed", ["self", "helo"], f"{PROTOCOL} DATA"),
    (SMTP, "check_auth_needed", ["self", "caller_method"], f"{PROTOCOL} DATA"),
    (SMTP, "push", ["self", "status"], f"{PROTOCOL} counts error replies"),
    (SMTP, "connection_made", ["self", "transport"], f"{PROTOCOL} keeps the session id"),
    (SMTP, "connection_lost", ["self", "error"], f"{PROTOCOL} gives the budget back"),
    (SMTP, "smtp_MAIL", ["self", "arg"], f"{PROTOCOL} checks SIZE= first"),
    (SMTP, "smtp_RCPT", ["self", "arg"], f"{PROTOCOL} reserves the budget first"),
    (SMTP, "challenge_auth", ["self", "challenge", "encode_to_b64", "log_client_response"], AUTH),
    (SMTP, "line_length_limit", None, f"{PROTOCOL} sets the DATA line limit through it"),
    (SMTP, "AuthLoginUsernameChallenge", None, AUTH),
    (SMTP, "AuthLoginPasswordChallenge", None, AUTH),
    (aiosmtpd.smtp, "MISSING", None, AUTH),
    (aiosmtpd.smtp, "TLSSetupException", None, PROTOCOL),
    (aiosmtpd.proxy_protocol, "get_proxy", ["reader_func"], f"{PROTOCOL} reads PROXY headers"),
    (aiosmtpd.proxy_protocol, "AF", None, f"{PROTOCOL} takes INET/INET6 client addresses"),
    (aiosmtpd.proxy_protocol, "V2_CMD", None, f"{PROTOCOL} tells LOCAL from PROXY"),
    (aiosmtpd.lmtp, "LMTP", None, PROTOCOL),
]

DKIMPY_NAMES = [
    (
        dkim.DKIM,
        "verify_sig_process",
        ["self", "sig", "include_headers", "sig_header", "dnsfunc"],
        f"{DKIMCHECK} checks the header signature alone",
    ),
    (dkim, "evaluate_pk", ["name", "s"], f"{DKIMCHECK} parses key records once (cached)"),
    (
        dkim,
        "validate_signature_fields",
        ["sig", "mandatory_fields", "arc"],
        f"{DKIMCHECK} checks the fields without x=",
    ),
    (dkim, "arc_verify", ["message", "logger", "dnsfunc", "minkey", "timeout"], ARCCHECK),
    (dkim, "CV_Fail", None, ARCCHECK),
    (dkim, "KeyFormatError", None, DKIMCHECK),
    (dkim, "ValidationError", None, DKIMCHECK),
    (dkim, "DKIMException", None, DKIMCHECK),
    (dkim.canonicalization, "CanonicalizationPolicy", None, DKIMCHECK),
    (dkim.canonicalization, "InvalidCanonicalizationPolicyError", None, DKIMCHECK),
    (dkim.crypto, "HASH_ALGORITHMS", None, DKIMCHECK),
    (dkim.util, "parse_tag_value", None, DKIMCHECK),
    (dkim.util, "InvalidTagValueList", None, DKIMCHECK),
]


def _label(owner) -> str:
    return getattr(owner, "__qualname__", None) or owner.__name__


def _check(lib: str, owner, name: str, params: list[str] | None, used_by: str) -> None:
    what = f"{_label(owner)}.{name}"
    assert hasattr(owner, name), f"{lib}: {what} is gone; {used_by}"
    if params is not None:
        got = list(inspect.signature(getattr(owner, name)).parameters)
        assert got == params, (
            f"{lib}: {what}({', '.join(got)}) is no longer ({', '.join(params)}); {used_by}"
        )


@pytest.mark.parametrize(
    "owner,name,params,used_by",
    AIOSMTPD_NAMES,
    ids=[f"{_label(o)}.{n}" for o, n, _, _ in AIOSMTPD_NAMES],
)
def test_aiosmtpd_has(owner, name, params, used_by):
    _check(AIOSMTPD, owner, name, params, used_by)


@pytest.mark.parametrize(
    "owner,name,params,used_by",
    DKIMPY_NAMES,
    ids=[f"{_label(o)}.{n}" for o, n, _, _ in DKIMPY_NAMES],
)
def test_dkimpy_has(owner, name, params, used_by):
    _check(DKIMPY, owner, name, params, used_by)


def _calls(function, name: str) -> bool:
    return name in inspect.getsource(function)


def test_aiosmtpd_runs_the_methods_we_replace():
    """Overriding a private method only works while aiosmtpd still calls it."""
    for caller, callee in [
        (SMTP.connection_made, "self._handle_client()"),
        (SMTP._reset_timeout, "self._timeout_cb"),
        (SMTP._handle_client, "self.handle_exception("),
        (SMTP._cb_client_connected, "self._reader = reader"),
    ]:
        assert _calls(caller, callee), (
            f"{AIOSMTPD}: {caller.__qualname__} no longer calls {callee}; {PROTOCOL} relies on it"
        )


@pytest.fixture
def session_objects():
    loop = asyncio.new_event_loop()
    shared = Shared.from_config(configmod.load(None, environ={}))
    made = [
        cls(object(), shared=shared, hostname="test", loop=loop)
        for cls in (ReceiverSMTP, ReceiverLMTP)
    ]
    yield shared, made
    loop.close()


def test_aiosmtpd_instance_state(session_objects):
    shared, (smtp, lmtp) = session_objects
    for attr in (
        "_tls_protocol",
        "_tls_handshake_okay",
        "_smtp_methods",
        "local_part_limit",
        "data_size_limit",
        "require_starttls",
        "hostname",
        "__ident__",
        "session",
        "envelope",
        "event_handler",
    ):
        assert hasattr(smtp, attr), f"{AIOSMTPD}: an SMTP instance has no {attr}; {PROTOCOL}"
    assert smtp._tls_protocol is None and smtp._tls_handshake_okay is True, (
        f"{AIOSMTPD}: the plain-text TLS state changed meaning; {PROTOCOL}"
    )
    assert smtp._stream_reader._limit == shared.settings.max_line_length, (
        f"{AIOSMTPD}: SMTP.__init__ no longer sizes the reader from line_length_limit; "
        f"{PROTOCOL}'s line limit would be lost"
    )
    assert smtp.data_size_limit == shared.settings.max_message_size


def test_aiosmtpd_dispatches_commands_to_our_overrides(session_objects):
    _, (smtp, lmtp) = session_objects
    for proto, commands in (
        (smtp, ("HELO", "EHLO", "STARTTLS", "AUTH", "RSET", "NOOP", "QUIT")),
        (lmtp, ("LHLO",)),
    ):
        missing = [c for c in commands if c not in proto._smtp_methods]
        assert missing == [], f"{AIOSMTPD}: _smtp_methods lacks {missing}; {PROTOCOL}'s loop"
    for command in ("MAIL", "RCPT", "DATA"):
        method = smtp._smtp_methods[command]
        assert method.__func__ is getattr(Hardened, f"smtp_{command}"), (
            f"{AIOSMTPD}: _smtp_methods[{command!r}] is not our override; {PROTOCOL}"
        )


def test_aiosmtpd_getaddr_and_post_data_state(session_objects):
    _, (smtp, _) = session_objects
    assert SMTP._getaddr(smtp, "<a@b.example> SIZE=10") == ("a@b.example", "SIZE=10"), (
        f"{AIOSMTPD}: SMTP._getaddr no longer returns (address, rest); {PROTOCOL}"
    )
    before = smtp.envelope = Envelope()
    SMTP._set_post_data_state(smtp)
    assert isinstance(smtp.envelope, Envelope) and smtp.envelope is not before, (
        f"{AIOSMTPD}: SMTP._set_post_data_state no longer starts a new envelope; {PROTOCOL}"
    )
    for attr in ("content", "original_content", "smtp_utf8", "mail_from", "rcpt_tos"):
        assert hasattr(smtp.envelope, attr), f"{AIOSMTPD}: Envelope has no {attr}; {PROTOCOL}"


def test_aiosmtpd_proxy_data_fields():
    data = aiosmtpd.proxy_protocol.ProxyData(version=2)
    for attr in ("valid", "error", "command", "family", "src_addr", "src_port"):
        assert hasattr(data, attr), f"{AIOSMTPD}: ProxyData has no {attr}; {PROTOCOL}"
    assert aiosmtpd.proxy_protocol.V2_CMD.LOCAL == 0
    assert {"INET", "INET6"} <= set(aiosmtpd.proxy_protocol.AF.__members__)


def test_asyncio_streamreader_buffer_takes_unread_bytes():
    async def unread_then_read() -> bytes:
        reader = asyncio.StreamReader()
        reader.feed_data(b"QUIT\r\n")
        reader._buffer[:0] = b"NOOP\r\n"
        return await reader.readuntil(b"\n")

    assert asyncio.run(unread_then_read()) == b"NOOP\r\n", (
        f"asyncio: StreamReader._buffer no longer holds the unread bytes; {PROTOCOL} _unread"
    )


def test_asyncio_hands_an_accepted_socket_over_before_reading_it():
    """implicit_tls.Front takes each connection in its first protocol's connection_made:
    asyncio's transport has read nothing yet, and once it is closed a duplicate of its
    socket still holds the connection."""

    async def hand_over() -> tuple[bytes, bytes]:
        loop = asyncio.get_running_loop()
        handed: asyncio.Future = loop.create_future()
        closed: asyncio.Future = loop.create_future()

        class First(asyncio.Protocol):
            def connection_made(self, transport):
                handed.set_result(transport.get_extra_info("socket").dup())
                transport.close()

            def connection_lost(self, exc):
                closed.set_result(None)

        server = await loop.create_server(First, "127.0.0.1", 0)
        with socket.create_connection(server.sockets[0].getsockname()[:2], timeout=10) as client:
            # In the kernel before asyncio accepts the connection.
            client.sendall(b"ClientHello")
            sock = await handed
            await closed
            with sock:
                got = await ExactReader(sock).readexactly(len(b"ClientHello"))
                await loop.sock_sendall(sock, b"ServerHello")
            server.close()
            return got, client.recv(100)

    assert asyncio.run(hand_over()) == (b"ClientHello", b"ServerHello"), (
        f"asyncio: an accepted connection is read before connection_made; {IMPLICIT}"
    )
    # The implicit-TLS IMAP listener makes asyncio.start_server's protocol itself.
    got = list(inspect.signature(asyncio.StreamReaderProtocol).parameters)[:2]
    assert got == ["stream_reader", "client_connected_cb"], f"asyncio: {got}; {IMPLICIT}"


@pytest.mark.parametrize(
    "header",
    [b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 465\r\n", proxy_v2("203.0.113.7", 40000, 465)],
    ids=["v1", "v2"],
)
@pytest.mark.parametrize(
    "parse",
    [get_proxy, ProxyProtocolReader(ProxyProtocolDetect()).read],
    ids=["aiosmtpd", "proxyprotocol"],
)
def test_proxy_parsers_call_only_what_exactreader_has(parse, header):
    """Both edges' PROXY parsers, over implicit_tls.ExactReader: the header is read and
    the TLS bytes behind it stay in the socket."""

    async def read() -> tuple[object, bytes]:
        ours, theirs = socket.socketpair()
        with ours, theirs:
            ours.setblocking(False)
            theirs.sendall(header + b"\x16\x03\x01ClientHello")
            result = await parse(ExactReader(ours))
            return result, ours.recv(100)

    result, rest = asyncio.run(read())
    assert rest == b"\x16\x03\x01ClientHello", f"a PROXY parser read past its header; {IMPLICIT}"
    assert getattr(result, "valid", True) and "203.0.113.7" in str(
        getattr(result, "src_addr", None) or getattr(result, "peername", None)
    ), result


KEY_NAME = "s1._domainkey.author.example"
KEY_RECORD = mailfixtures.DNS_RECORDS[KEY_NAME].encode()


def test_dkimpy_evaluate_pk_returns_what_we_assign():
    got = dkim.evaluate_pk(KEY_NAME.encode(), KEY_RECORD)
    assert isinstance(got, tuple) and len(got) == 4, (
        f"{DKIMPY}: evaluate_pk no longer returns (pk, keysize, ktag, seqtlsrpt); {DKIMCHECK}"
    )
    assert got[1] >= 1024 and got[2] == b"rsa"
    for attr in ("self.pk", "self.keysize", "self.ktag", "self.seqtlsrpt"):
        assert _calls(dkim.DKIM.verify_sig_process, attr), (
            f"{DKIMPY}: verify_sig_process no longer reads {attr}, which {DKIMCHECK} assigns"
        )


def test_dkimpy_validate_signature_fields_refuses_a_missing_tag():
    with pytest.raises(dkim.ValidationError):
        dkim.validate_signature_fields({b"v": b"1", b"a": b"rsa-sha256"})


def _header_signature_valid(message: bytes) -> bool:
    """The header-signature step as dkimcheck runs it: key parsed apart, bh= left out."""
    d = dkim.DKIM(message)
    sig_header = next((n, v) for n, v in d.headers if n.lower() == b"dkim-signature")
    sig = dkim.util.parse_tag_value(sig_header[1])
    d.pk, d.keysize, d.ktag, d.seqtlsrpt = dkim.evaluate_pk(KEY_NAME.encode(), KEY_RECORD)
    include = [h.strip().lower() for h in sig[b"h"].split(b":")]
    header_only = {k: v for k, v in sig.items() if k != b"bh"}
    return d.verify_sig_process(header_only, include, sig_header, lambda *a, **k: KEY_RECORD)


def test_dkimpy_steps_verify_a_signed_message_and_see_a_change():
    """The steps dkimcheck runs one by one still tell a good signature from a changed header."""
    signed = mailfixtures.signed()
    assert _header_signature_valid(signed) is True, (
        f"{DKIMPY}: verify_sig_process with an evaluate_pk key no longer verifies; {DKIMCHECK}"
    )
    changed = signed.replace(b"Subject: Quarterly", b"Subject: Quarterlx")
    assert _header_signature_valid(changed) is False


def test_dkimpy_arc_verify_answers_three_values():
    cv, sets, reason = dkim.arc_verify(
        b"From: a@b.example\r\n\r\nhi\r\n", dnsfunc=lambda *a, **k: None
    )
    assert cv == dkim.CV_None and sets == [] and isinstance(reason, str), (
        f"{DKIMPY}: arc_verify no longer answers (cv, sets, reason); {ARCCHECK}"
    )
