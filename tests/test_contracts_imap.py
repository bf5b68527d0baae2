"""What receiver/imap relies on in pymap, pysasl and proxy-protocol beyond their
documented plug-in interface. setup.cfg pins each below its next minor version; a new
version that breaks one of these fails here, not on a client's connection."""

from __future__ import annotations

import asyncio
import importlib
import inspect
from argparse import Namespace

import pytest
from proxyprotocol.detect import ProxyProtocolDetect
from proxyprotocol.reader import ProxyProtocolReader
from proxyprotocol.result import is_ipv4, is_ipv6
from proxyprotocol.sock import SocketInfo, SocketInfoLocal

from pymap.backend.session import BaseSession
from pymap.config import BackendCapability, IMAPConfig
from pymap.imap import IMAPConnection, IMAPServer
from pymap.imap.state import ConnectionState
from pymap.parsing import Params
from pymap.parsing.command.auth import CreateCommand, ListCommand
from pymap.parsing.command.nonauth import AuthenticateCommand
from pymap.parsing.commands import Commands, InvalidCommand
from pymap.parsing.exceptions import NotParseable
from pymap.parsing.primitives import Number
from pymap.parsing.response import ResponseOk
from pymap.parsing.response.specials import ListResponse, StatusResponse
from pymap.parsing.specials import ExtensionOptions, FetchAttribute, Mailbox, StatusAttribute
from pymap.selected import SelectedMailbox
from pysasl.creds.plain import PlainCredentials

from receiver.imap import extensions, fetchreplies, mailboxnames
from receiver.imap.extensions import (
    APPENDLIMIT,
    CreateSpecialUse,
    ListSpecialUse,
    NamespaceCommand,
)
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


def test_commands_pymap_lacks_are_dispatched_to_do_methods_by_name():
    # receiver.imap.extensions: pymap calls ConnectionState.do_<command> for a command;
    # the replaced parsers must still land on pymap's own do_create / do_list.
    func_name = ConnectionState._get_func_name
    assert func_name(NamespaceCommand(b"a")) == "do_namespace"
    assert func_name(CreateSpecialUse(b"a", Mailbox("x"), ExtensionOptions.empty())) == "do_create"
    assert func_name(ListSpecialUse(b"a", "", "*")) == "do_list"
    registry = extensions.commands()
    for text, kind in (
        (b"a NAMESPACE\r\n", NamespaceCommand),
        (b"a CREATE Sent (USE (\\Sent))\r\n", CreateSpecialUse),
        (b"a CREATE Plain\r\n", CreateSpecialUse),
        (b'a LIST (SPECIAL-USE) "" "*" RETURN (SPECIAL-USE)\r\n', ListSpecialUse),
    ):
        cmd, _ = registry.parse(memoryview(text), Params())
        assert type(cmd) is kind, (text, cmd)
    # What the subclasses read of pymap's parsed commands.
    create, _ = Commands().parse(memoryview(b"a CREATE Plain\r\n"), Params())
    assert isinstance(create, CreateCommand) and str(create.mailbox_obj) == "Plain"
    assert create.options is not None
    listing, _ = Commands().parse(memoryview(b'a LIST "" "*"\r\n'), Params())
    assert (listing.ref_name, listing.filter) == ("", "*")


def test_the_backend_sees_the_command_being_run():
    # The backend reads a CREATE's special use and a LIST's selection from pymap's
    # current_command, which the connection sets around every command.
    assert "current_command.set(cmd)" in inspect.getsource(IMAPConnection._run_state)
    # A MailboxError from add_mailbox (NO [USEATTR]) is not turned into another reply.
    source = inspect.getsource(BaseSession.create_mailbox)
    assert "except ValueError" in source and "MailboxError" not in source
    assert list(inspect.signature(BaseSession.list_mailboxes).parameters) == [
        "self",
        "ref_name",
        "filter_",
        "subscribed",
        "selected",
    ]


def test_the_selected_set_only_hands_out_recent():
    # receiver.imap.backend.FolderData.selected_set is always empty: the database hands
    # out \Recent. pymap must use the set for nothing else (e.g. telling sessions of
    # changes), or an empty one would hide those.
    source = inspect.getsource(BaseSession)
    # _pick_selected's any_selected, and select_mailbox's selected_set=mbx.selected_set.
    assert source.count("selected_set") == 3 and "selected_set.any_selected" in source
    assert "_selected_set" not in inspect.getsource(SelectedMailbox._compare)
    assert "add_recent" in inspect.getsource(BaseSession.append_messages)


def test_the_connection_reads_a_command_as_receiver_imap_server_connection_does():
    # Connection.read_command replaces this loop to take a synchronising literal from the
    # in-flight budget before the continuation; LITERAL+ reaches BoundedReader.readexactly.
    read_command = inspect.getsource(IMAPConnection.read_command)
    assert "except ParsingInterrupt" in read_command and "_interrupt(" in read_command
    interrupt = inspect.getsource(IMAPConnection._interrupt)
    assert "ResponseContinuation(expected.message)" in interrupt
    assert "read_continuation(expected.literal_length)" in interrupt
    assert "self.reader.readexactly(literal_length)" in inspect.getsource(IMAPConnection.readline)
    # The budget a command's literals hold is given back when State.do_command returns,
    # before pymap writes the reply it returned. Every command that can carry a literal
    # is run through do_command: AUTHENTICATE (the one pymap runs apart) names an atom.
    run_state = inspect.getsource(IMAPConnection._run_state)
    answered = run_state.index("response = await self._exec(state.do_command(cmd))")
    assert answered < run_state.index("await self.write_response(response)")
    assert "state.do_command(cmd)" in inspect.getsource(IMAPConnection.idle)
    assert "Atom.parse" in inspect.getsource(AuthenticateCommand.parse)
    assert "String.parse" not in inspect.getsource(AuthenticateCommand.parse)


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


def _pymap_parsing_modules_with(name: str) -> set[str]:
    """The pymap parsing modules (modutf7 itself aside) that have a global `name`."""
    import pkgutil

    import pymap.parsing

    return {
        info.name
        for info in pkgutil.walk_packages(pymap.parsing.__path__, "pymap.parsing.")
        if info.name != "pymap.parsing.modutf7"
        and hasattr(importlib.import_module(info.name), name)
    }


def test_folder_names_are_read_and_written_by_names_mailboxnames_can_replace():
    # Every pymap parsing module that decodes a name looks the decoder up by this name
    # at call time; mailboxnames.install replaces it in each of them.
    assert _pymap_parsing_modules_with("modutf7_decode") == {
        "pymap.parsing.specials.mailbox",
        "pymap.parsing.command.auth",
    }
    mailboxnames.install()
    with pytest.raises(NotParseable):
        Mailbox.parse(memoryview(b'"&x"\r\n'), Params())
    with pytest.raises(NotParseable):
        ListCommand.parse(memoryview(b' "" "&x"\r\n'), Params())
    assert Mailbox.parse(memoryview(b'"&AMk-t&AOk-"\r\n'), Params())[0].value == "Été"
    # And a name is written by Mailbox, which looks its encoder up the same way (LIST,
    # LSUB and STATUS write names as Mailbox objects; the other module encodes only the
    # "/" delimiter).
    assert _pymap_parsing_modules_with("modutf7_encode") == {
        "pymap.parsing.specials.mailbox",
        "pymap.parsing.response.specials",
    }
    assert bytes(ListResponse("Café&Bar", "/", [])) == b'* LIST () "/" Caf&AOk-&-Bar\r\n'


def test_status_answers_one_untagged_status_kept_where_appendlimit_is_added():
    # receiver.imap.extensions.ExtendedState.do_status adds APPENDLIMIT to the STATUS
    # line pymap's do_status built: pymap skips attributes it does not know, and keeps a
    # response's untagged lines in _untagged.
    do_status = inspect.getsource(ConnectionState.do_status)
    assert "resp.add_untagged(StatusResponse(cmd.mailbox, data))" in do_status
    resp = ResponseOk(b"a1", b"STATUS completed.")
    resp.add_untagged(StatusResponse("INBOX", {}))
    [status] = resp._untagged
    status.data = {APPENDLIMIT: Number(10)}
    assert bytes(resp).startswith(b"* STATUS INBOX (APPENDLIMIT 10)\r\n")
    cmd, _ = extensions.commands().parse(
        memoryview(b"a STATUS INBOX (UIDNEXT appendlimit)\r\n"), Params()
    )
    assert list(cmd.status_list) == [StatusAttribute(b"UIDNEXT"), APPENDLIMIT]
    assert Params(max_append_len=5).max_append_len == 5
    assert isinstance(inspect.getattr_static(IMAPConfig, "parsing_params"), property)


def test_sequence_sets_are_bounded_by_the_exists_the_strict_state_checks():
    # receiver.imap.strict answers BAD past selected.messages.exists: the bound pymap
    # itself reads a sequence set against, and the handlers it dispatches by name.
    from pymap.parsing.command.select import CopyCommand
    from pymap.parsing.specials import SequenceSet
    from pymap.selected import SynchronizedMessages

    assert "seq_set.flatten(self.exists)" in inspect.getsource(SynchronizedMessages.get_all)
    assert "seq_set.flatten(self.exists)" in inspect.getsource(SynchronizedMessages.get_uids)
    for cmd in (b"FETCH 1 FLAGS", b"STORE 1 FLAGS (x)", b"COPY 1 x", b"MOVE 1 x"):
        parsed, _ = Commands().parse(memoryview(b"a " + cmd + b"\r\n"), Params())
        assert isinstance(parsed.sequence_set, SequenceSet) and not parsed.sequence_set.uid
        assert hasattr(ConnectionState, ConnectionState._get_func_name(parsed))
    uid_copy, _ = Commands().parse(memoryview(b"a UID COPY 1:* x\r\n"), Params())
    # UID FETCH ... are the same classes' subclasses, told apart by the set's `uid`.
    assert isinstance(uid_copy, CopyCommand) and uid_copy.sequence_set.uid


def test_system_flags_are_the_five_and_recent_and_parsed_as_sent():
    # receiver.imap.strict refuses a system flag outside get_system_flags() - {Recent}.
    from pymap.parsing.specials.flag import get_system_flags

    names = {bytes(f) for f in get_system_flags()}
    assert names == {b"\\Seen", b"\\Recent", b"\\Deleted", b"\\Flagged", b"\\Answered", b"\\Draft"}
    store, _ = Commands().parse(memoryview(b"a STORE 1 +FLAGS (\\junk $x)\r\n"), Params())
    assert {(bytes(f), f.is_system) for f in store.flag_set} == {(b"\\Junk", True), (b"$x", False)}


def test_fetch_items_are_named_by_for_response_and_fetched_by_value():
    # receiver.imap.extensions.ExtendedState.do_fetch puts fetchreplies.BinaryPeek in
    # place of a BINARY.PEEK attribute in the command: pymap builds its answer from
    # cmd.attributes, picks the value (a peek, \Seen not set) by the attribute's name and
    # writes it under the attribute's for_response.
    from pymap import fetch

    do_fetch = inspect.getsource(ConnectionState.do_fetch)
    assert "MessageAttributes(msg, self.selected, cmd.attributes)" in do_fetch
    assert "any(attr.set_seen for attr in cmd.attributes)" in do_fetch
    assert "attr_name = attr.value" in inspect.getsource(fetch.MessageAttributes._get)
    for written in (fetch.DynamicFetchValue, fetch.DynamicLoadedFetchValue):
        assert "self.attribute.for_response" in inspect.getsource(written.__bytes__)
    attr, _ = FetchAttribute.parse(memoryview(b"BINARY.PEEK[1]<2.3>"), Params())
    [peek] = fetchreplies.as_answered([attr])
    assert isinstance(peek, fetchreplies.BinaryPeek) and peek == attr
    assert (peek.value, peek.set_seen, peek.requirement) == (
        b"BINARY.PEEK",
        False,
        attr.requirement,
    )
    assert bytes(peek.for_response) == b"BINARY[1]<2>"
    assert bytes(attr.for_response) == b"BINARY.PEEK[1]<2>"  # pymap's own, the bug


def test_envelopes_come_from_one_classmethod_and_their_addresses_from_one_method():
    # receiver.imap.fetchreplies.LoadedMessage makes every envelope an Envelope through
    # pymap's _get_envelope_structure, which both FETCH ENVELOPE and a message/rfc822
    # part's BODYSTRUCTURE call; Envelope writes the addresses through _addresses, which
    # EnvelopeStructure calls for its six address fields (Sender and Reply-To with From
    # to fall back on).
    from pymap.message import BaseLoadedMessage
    from pymap.parsing.primitives import Nil
    from pymap.parsing.response.fetch import EnvelopeStructure

    getter = inspect.getsource(BaseLoadedMessage.get_envelope_structure)
    assert "self._get_envelope_structure(self.content)" in getter
    nested = inspect.getsource(BaseLoadedMessage._get_body_structure)
    assert "cls._get_envelope_structure(sub_msg)" in nested
    assert list(inspect.signature(BaseLoadedMessage._get_envelope_structure).parameters) == ["msg"]
    fields = ["date", "subject", "from_", "sender", "reply_to", "to", "cc", "bcc"]
    assert list(inspect.signature(EnvelopeStructure).parameters) == [
        *fields,
        "in_reply_to",
        "message_id",
    ]
    calls = []

    class Marked(EnvelopeStructure):
        def _addresses(self, headers, fallback=None):
            calls.append((headers, fallback))
            return Nil()

    bytes(Marked(None, None, ["f"], ["s"], ["r"], ["t"], ["c"], ["b"], None, None))
    assert calls == [
        (["f"], None),
        (["s"], ["f"]),
        (["r"], ["f"]),
        (["t"], None),
        (["c"], None),
        (["b"], None),
    ]


def test_every_field_is_parsed_by_one_class_wide_registry():
    # receiver.imap.backend sets pymap's ParsedHeaders._registry to
    # receiver.imap.headerparse.HeaderRegistry: pymap calls it as registry(name, value)
    # for every field of every message it parses.
    from pymap.mime import MessageContent
    from pymap.mime.parsed import ParsedHeaders

    from receiver.imap import backend, headerparse

    assert "cls._registry(hdr_tuple[0], hdr_tuple[1])" in inspect.getsource(ParsedHeaders._parse)
    assert isinstance(ParsedHeaders.__dict__["_registry"], headerparse.HeaderRegistry)
    assert backend.ParsedHeaders is ParsedHeaders
    parsed = MessageContent.parse(b"From: =?utf-7?Q?+2AA-?= <a@b.example>\r\n\r\n").header.parsed
    [address] = parsed.from_[0].addresses
    assert (address.display_name, address.addr_spec) == ("=?utf-7?Q?+2AA-?=", "a@b.example")


def test_body_structures_are_built_by_one_classmethod_and_written_from_their_attributes():
    # receiver.imap.fetchreplies.LoadedMessage sets the size (and lines) of the structure
    # pymap's _get_body_structure built: BODYSTRUCTURE and a multipart's parts come from
    # that classmethod, and each structure writes the size and lines it holds.
    from pymap.message import BaseLoadedMessage
    from pymap.parsing.response.fetch import ContentBodyStructure, TextBodyStructure

    assert "self._get_body_structure(self.content)" in inspect.getsource(
        BaseLoadedMessage.get_body_structure
    )
    built = inspect.getsource(BaseLoadedMessage._get_body_structure)
    assert "cls._get_body_structure(part)" in built
    assert "cls._get_body_structure(sub_msg)" in built
    text = TextBodyStructure("plain", None, None, None, None, None, None, None, None, 1, 2)
    text.size, text.lines = 30, 40
    assert bytes(text) == b'("text" "plain" NIL NIL NIL "7BIT" 30 40)'
    basic = ContentBodyStructure("a", "b", None, None, None, None, None, None, None, None, 1)
    basic.size = 50
    assert bytes(basic.extended) == b'("a" "b" NIL NIL NIL "7BIT" 50 NIL NIL NIL NIL)'


def test_an_envelope_is_a_list_led_by_its_date_and_a_header_keeps_each_fields_bytes():
    # receiver.imap.fetchreplies.Envelope leaves pymap's date None and puts the Date
    # field's text first in place of the NIL pymap writes for it; it reads that text from
    # MessageHeader.folded: each field's name, lowercased, and its lines as they are.
    from pymap.mime import MessageContent
    from pymap.parsing.primitives import List, Nil
    from pymap.parsing.response.fetch import EnvelopeStructure

    value = EnvelopeStructure(None, "s", None, None, None, None, None, None, None, "<m>")._value
    assert isinstance(value, List) and isinstance(value.value[0], Nil)
    assert bytes(value) == b'(NIL "s" NIL NIL NIL NIL NIL NIL NIL "<m>")'
    raw = b"Subject: s\r\nDATE : Wed,\r\n 2 Jan 2019\r\n\r\nb\r\n"
    folded = MessageContent.parse(raw).header.folded
    assert [(name, bytes(lines)) for name, lines in folded] == [
        (b"subject", b"Subject: s\r\n"),
        (b"date", b"DATE : Wed,\r\n 2 Jan 2019\r\n"),
    ]


def test_every_body_structure_has_its_params_third_and_its_disposition_third_from_last():
    # receiver.imap.fetchreplies.BodyFields writes pymap's structure (its _value, and
    # extended) with body-fld-param in place of the third field and body-fld-dsp of the
    # third from the end of the extended ones: pymap's Lists, in RFC 3501's order.
    from pymap.parsing.primitives import List
    from pymap.parsing.response.fetch import (
        ContentBodyStructure,
        EnvelopeStructure,
        MessageBodyStructure,
        MultipartBodyStructure,
        TextBodyStructure,
    )

    p, d = {"p": "1"}, "the-dsp"
    fields = (p, d, "lang", "loc", "id", "desc", "enc", "md5")
    text = TextBodyStructure("plain", *fields, 1, 2)
    basic = ContentBodyStructure("a", "b", *fields, 3)
    message = MessageBodyStructure(*fields, 4, 5, EnvelopeStructure.empty(), text)
    multipart = MultipartBodyStructure("mixed", p, d, "lang", "loc", [text])
    for struct in (text, basic, message, multipart):
        extended = struct.extended
        assert isinstance(extended, List) and bytes(extended.value[2]) == b'("p" "1")'
        assert bytes(extended.value[-3]) == b'"the-dsp"'
        assert [bytes(f) for f in extended.value[-2:]] == [b'"lang"', b'"loc"']
    for struct in (text, basic, message):
        assert isinstance(struct._value, List) and bytes(struct._value.value[2]) == b'("p" "1")'
    assert [bytes(f) for f in multipart._value.value] == [bytes(text), b'"mixed"']


def test_parsed_content_is_rebuilt_from_its_json_lines_by_the_constructors():
    # receiver.imap.mimeparts reads each body's lines from MessageContent.json, as (start,
    # end of text, next line's start), a part's ending at the line before its delimiter
    # line, and rebuilds the contents with MessageBody's and MessageContent's constructors,
    # whose bytes run from their first line's start to their last line's third offset.
    from pymap.mime import MessageBody, MessageContent

    raw = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nX: 1\r\n\r\nhi\r\n--b--\r\n"
    content = MessageContent.parse(raw)
    [part_json] = content.json["body"]["nested"]
    hi = raw.index(b"hi")
    assert [tuple(line) for line in part_json["body"]["lines"]] == [(hi, hi + 2, hi + 4)]
    [part] = content.body.nested
    body = MessageBody(raw, [(hi, hi + 2, hi + 2)], part.body.content_type, [])
    rebuilt = MessageContent(raw, part.header, body)
    assert (bytes(rebuilt.body), len(rebuilt.body)) == (b"hi", 2)
    assert bytes(rebuilt) == b"X: 1\r\n\r\nhi"


def test_a_header_is_parsed_from_its_lines_but_the_last():
    # receiver.imap.mimeparts parses the header of a part of no blank line (pymap reads
    # its lines as a body) with MessageHeader._parse(data, view, lines), adding an empty
    # line for the blank one: its fields are read from all lines but the last, its bytes
    # are its lines'. An empty content is built of MessageHeader.empty() and
    # MessageBody.empty(), of no octets and the default type.
    from pymap.mime import MessageBody, MessageContent, MessageHeader

    raw = b"--b\r\nX: 1\r\nContent-Type: application/pdf\r\n--b"
    start, end = 5, raw.index(b"\r\n--b", 5)
    lines = [(start, start + 4, start + 6), (start + 6, end, end)]
    header = MessageHeader._parse(raw, memoryview(raw), [*lines, (end, end, end)])
    assert bytes(header) == b"X: 1\r\nContent-Type: application/pdf"
    assert [key for key, _ in header.folded] == [b"x", b"content-type"]
    assert header.parsed.content_type.content_type == "application/pdf"
    empty = MessageContent(b"", MessageHeader.empty(), MessageBody.empty())
    assert (bytes(empty), bytes(empty.header), bytes(empty.body)) == (b"", b"", b"")
    assert empty.body.content_type.content_type == "text/plain"
