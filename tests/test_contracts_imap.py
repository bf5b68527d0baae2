"""What receiver/imap relies on in pymap and pysasl beyond their documented plug-in
interface. setup.cfg pins both below their next minor version; a new version that
breaks one of these fails here, not on a client's connection."""

from __future__ import annotations

import inspect
from argparse import Namespace

from pymap.config import BackendCapability, IMAPConfig
from pymap.imap import IMAPConnection, IMAPServer
from pymap.imap.state import ConnectionState
from pymap.parsing import Params
from pymap.parsing.commands import Commands, InvalidCommand
from pymap.selected import SelectedMailbox
from pysasl.creds.plain import PlainCredentials

from receiver.imap.login import _Secret


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
