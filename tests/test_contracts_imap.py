"""What receiver/imap relies on in pymap, pysasl and proxy-protocol beyond their
documented plug-in interface. setup.cfg pins each below its next minor version; a new
version that breaks one of these fails here, not on a client's connection."""

from __future__ import annotations

import asyncio
import inspect
from argparse import Namespace

from proxyprotocol.detect import ProxyProtocolDetect
from proxyprotocol.reader import ProxyProtocolReader
from proxyprotocol.result import is_ipv4, is_ipv6
from proxyprotocol.sock import SocketInfo, SocketInfoLocal

from pymap.config import BackendCapability, IMAPConfig
from pymap.imap import IMAPConnection, IMAPServer
from pymap.imap.state import ConnectionState
from pymap.parsing import Params
from pymap.parsing.commands import Commands, InvalidCommand
from pymap.parsing.exceptions import NotParseable
from pymap.selected import SelectedMailbox
from pysasl.creds.plain import PlainCredentials

from receiver.imap.login import _Secret
from tests.helpers import proxy_v2


class _Config(IMAPConfig):
    @property
    def backend_capability(self) -> BackendCapability:
        return BackendCapability(idle=False, object_id=False, multi_append=False)


def test_plain_credentials_hand_the_secret_to_compare_secret():
    taken = _Secret()
    PlainCredentials("alice@corp.example", "s3cret pass").verify(taken)
    assert taken.secret == "s3cret pass"


def test_an_append_literal_past_the_limit_parses_to_an_invalid_command_with_toobig():
    params = Params(max_append_len=10)
    cmd, _ = Commands().parse(memoryview(b"a1 APPEND INBOX {11}\r\n"), params)
    assert isinstance(cmd, InvalidCommand)
    assert bytes(cmd.parse_exc.code) == b"[TOOBIG]"


def test_the_connection_reads_only_readline_and_readexactly():
    # receiver.imap.server.BoundedReader stands in for the StreamReader.
    source = inspect.getsource(IMAPConnection)
    used = {
        name
        for name in ("readline", "readexactly", "read(", "readuntil", "at_eof")
        if f"self.reader.{name}" in source
    }
    assert used == {"readline", "readexactly"}
    assert list(inspect.signature(IMAPConnection).parameters) == [
        "commands",
        "config",
        "reader",
        "writer",
        "sock_info",
    ]


def test_the_connection_state_is_built_and_run_as_receiver_imap_server_does():
    assert list(inspect.signature(ConnectionState).parameters) == ["login", "config"]
    for name in ("do_greeting", "do_command", "capability"):
        assert hasattr(ConnectionState, name)
    # IMAPServer.__call__ is what receiver.imap.server.Listener replaces, line for line.
    call = inspect.getsource(IMAPServer.__call__)
    assert "connection_exit.set(stack)" in call and "ConnectionState(" in call


def test_settings_keywords_and_properties():
    config = _Config(
        Namespace(passlib_cfg=None, proxy_protocol=None),
        host=None,
        port=0,
        tls_enabled=True,
        max_append_len=1000,
        bad_command_limit=3,
        reject_dnsbl=False,
    )
    assert b"APPENDLIMIT=1000" in config.login_capability
    assert b"STARTTLS" in config.initial_capability
    assert config.initial_auth.server_mechanisms == []
    for name in ("tls_auth", "greeting", "id_response"):
        assert isinstance(inspect.getattr_static(IMAPConfig, name), property)


def test_selected_mailbox_takes_the_whole_folder():
    assert list(inspect.signature(SelectedMailbox.set_messages).parameters) == ["self", "messages"]


def test_the_connection_reads_a_command_as_receiver_imap_server_connection_does():
    # Connection.read_command replaces this loop to take a synchronising literal from the
    # in-flight budget before the continuation; LITERAL+ reaches BoundedReader.readexactly.
    read_command = inspect.getsource(IMAPConnection.read_command)
    assert "except ParsingInterrupt" in read_command and "_interrupt(" in read_command
    interrupt = inspect.getsource(IMAPConnection._interrupt)
    assert "ResponseContinuation(expected.message)" in interrupt
    assert "read_continuation(expected.literal_length)" in interrupt
    assert "self.reader.readexactly(literal_length)" in inspect.getsource(IMAPConnection.readline)
    # The budget a command's literals hold is given back in do_cleanup, after its reply.
    run_state = inspect.getsource(IMAPConnection._run_state)
    assert run_state.index("write_response(response)") < run_state.index("state.do_cleanup()")


def test_an_invalid_command_carries_the_code_of_a_refused_literal():
    cmd = InvalidCommand(Params(tag=b"a1"), NotParseable(memoryview(b""), b"UNAVAILABLE"))
    assert cmd.tag == b"a1" and bytes(cmd.parse_exc.code) == b"[UNAVAILABLE]"


def test_proxy_headers_are_read_from_a_stream_and_the_socket_info_subclassed():
    async def read(data: bytes):
        reader = asyncio.StreamReader()
        reader.feed_data(data + b"a1 NOOP\r\n")
        result = await ProxyProtocolReader(ProxyProtocolDetect()).read(reader)
        # Nothing past the header is read: the first command is still there.
        assert await reader.readline() == b"a1 NOOP\r\n"
        return result

    v1 = asyncio.run(read(b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 143\r\n"))
    assert is_ipv4(v1) and v1.peername == ("203.0.113.7", 40000)
    v2 = asyncio.run(read(proxy_v2("203.0.113.7", 40000, 143)))
    assert is_ipv4(v2) and v2.peername == ("203.0.113.7", 40000)
    # A health check names no client: the connection's own address stands.
    unknown = asyncio.run(read(b"PROXY UNKNOWN\r\n"))
    assert not is_ipv4(unknown) and not is_ipv6(unknown)
    assert list(inspect.signature(SocketInfoLocal).parameters) == [
        "transport",
        "unique_id",
        "dnsbl",
    ]
    assert isinstance(inspect.getattr_static(SocketInfoLocal, "peername"), property)
    assert "self.peername" in inspect.getsource(SocketInfo.peername_str.fget)
