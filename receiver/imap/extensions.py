"""IMAP commands pymap 0.36 does not parse or answer: NAMESPACE (RFC 2342), CREATE with
a special use and LIST (SPECIAL-USE) / RETURN (SPECIAL-USE) (RFC 6154), STATUS (APPENDLIMIT)
(RFC 7889).

The parsers are registered in place of pymap's (`Settings.commands`); the backend reads
what they parsed from pymap's `current_command`, the context pymap hands a backend.
"""

from __future__ import annotations

import re

from pymap.parsing import EndLine, Params, Space
from pymap.parsing.command import CommandAuth
from pymap.parsing.command.auth import CreateCommand, ListCommand, StatusCommand
from pymap.parsing.command.select import FetchCommand
from pymap.parsing.commands import Commands
from pymap.parsing.exceptions import NotParseable
from pymap.parsing.primitives import List, Nil, Number, QuotedString
from pymap.parsing.response import CommandResponse, ResponseOk, UntaggedResponse
from pymap.parsing.response.specials import StatusResponse
from pymap.parsing.specials import ExtensionOptions, Mailbox, StatusAttribute
from pymap.selected import SelectedMailbox

from receiver.imap import fetchreplies, mailboxnames
from receiver.imap.strict import StrictState
from receiver.imap.backend import DELIMITER

# Special uses are flags: a backslash and an atom.
_USE_ATTR = re.compile(rb"\\[A-Za-z0-9]+\Z")


class NamespaceCommand(CommandAuth):
    """NAMESPACE: one personal namespace, "" with the folders' delimiter; no other
    users' and no shared folders exist here."""

    command = b"NAMESPACE"

    @classmethod
    def parse(cls, buf: memoryview, params: Params) -> tuple[NamespaceCommand, memoryview]:
        _, buf = EndLine.parse(buf, params)
        return cls(params.tag), buf


class StatusItem(StatusAttribute):
    """A STATUS attribute: pymap's, or RFC 7889's APPENDLIMIT."""

    valid_statuses = StatusAttribute.valid_statuses | {b"APPENDLIMIT"}


APPENDLIMIT = StatusItem(b"APPENDLIMIT")


class StatusAppendLimit(StatusCommand):
    """STATUS name (... APPENDLIMIT ...): RFC 7889 4 makes it part of the APPENDLIMIT
    capability, which pymap advertises but its STATUS parser answers BAD."""

    @classmethod
    def parse(cls, buf: memoryview, params: Params) -> tuple[StatusAppendLimit, memoryview]:
        _, buf = Space.parse(buf, params)
        mailbox, buf = Mailbox.parse(buf, params)
        _, buf = Space.parse(buf, params)
        items, after = List.parse(buf, params.copy(expected=[StatusItem]))
        if not items.value:
            raise NotParseable(buf)
        _, buf = EndLine.parse(after, params)
        return cls(params.tag, mailbox, items.get_as(StatusItem)), buf


def _status_of(resp: CommandResponse) -> StatusResponse:
    """The untagged STATUS of pymap's answer to a STATUS command (pymap keeps a response's
    untagged lines in `_untagged`: tests/test_contracts_imap.py)."""
    [status] = [u for u in resp._untagged if isinstance(u, StatusResponse)]
    return status


class ExtendedState(StrictState):
    """pymap's connection state (with receiver.imap.strict's checks) with a handler for
    each command it lacks (pymap calls `do_<command>`), and FETCH's items answered as
    the RFCs name them."""

    async def do_namespace(self, cmd: NamespaceCommand) -> tuple[ResponseOk, None]:
        resp = ResponseOk(cmd.tag, b"NAMESPACE completed.")
        personal = b'(("" %b))' % bytes(QuotedString(DELIMITER.encode("ascii")))
        resp.add_untagged(UntaggedResponse(b"NAMESPACE " + personal + b" NIL NIL"))
        return resp, None

    async def do_fetch(self, cmd: FetchCommand) -> tuple[CommandResponse, SelectedMailbox | None]:
        """pymap's FETCH (UID FETCH too), its items named as receiver.imap.fetchreplies
        writes them (pymap answers under each attribute's `for_response`)."""
        cmd.attributes = fetchreplies.as_answered(cmd.attributes)
        return await super().do_fetch(cmd)

    async def do_status(self, cmd: StatusCommand) -> tuple[CommandResponse, SelectedMailbox | None]:
        """pymap's STATUS, with APPENDLIMIT where it was asked for: the limit APPEND
        applies (the parser's TOOBIG), the number the capability advertises."""
        resp, updates = await super().do_status(cmd)
        if APPENDLIMIT in cmd.status_list:
            status = _status_of(resp)
            limit = self.config.parsing_params.max_append_len
            found = {**status.data, APPENDLIMIT: Nil() if limit is None else Number(limit)}
            status.data = {item: found[item] for item in cmd.status_list if item in found}
        return resp, updates


class CreateSpecialUse(CreateCommand):
    """CREATE name (USE (\\Sent ...)): RFC 6154's create parameter, which pymap's
    option parser cannot read (a flag is no atom). Any other CREATE is pymap's."""

    _use = re.compile(rb" \(USE \(([^()]*)\)\)", re.IGNORECASE)

    def __init__(
        self,
        tag: bytes,
        mailbox: Mailbox,
        options: ExtensionOptions,
        special_use: frozenset[str] = frozenset(),
    ) -> None:
        super().__init__(tag, mailbox, options)
        self.special_use = special_use

    @classmethod
    def parse(cls, buf: memoryview, params: Params) -> tuple[CreateSpecialUse, memoryview]:
        _, rest = Space.parse(buf, params)
        mailbox, rest = Mailbox.parse(rest, params)
        m = cls._use.match(rest)
        if m is None:
            plain, buf = CreateCommand.parse(buf, params)
            return cls(plain.tag, plain.mailbox_obj, plain.options), buf
        attrs = m.group(1).split()
        if not all(_USE_ATTR.match(a) for a in attrs):
            raise NotParseable(rest)
        _, rest = EndLine.parse(rest[m.end() :], params)
        uses = frozenset(a.decode("ascii") for a in attrs)
        return cls(params.tag, mailbox, ExtensionOptions.empty(), uses), rest


class ListSpecialUse(ListCommand):
    """LIST with RFC 5258's options, as far as RFC 6154 needs them:
    LIST (SPECIAL-USE) ref pattern lists only folders with a special use, and
    RETURN (SPECIAL-USE) asks for what every LIST here returns anyway."""

    _selection = re.compile(rb" \(([^()]*)\)")
    _returning = re.compile(rb" RETURN \(([^()]*)\)(\r?\n)\Z", re.IGNORECASE)
    SELECTION = frozenset({b"SPECIAL-USE"})
    # CHILDREN too: \HasChildren / \HasNoChildren come with every LIST (CHILDREN).
    RETURNING = frozenset({b"SPECIAL-USE", b"CHILDREN"})

    def __init__(
        self, tag: bytes, ref_name: str, filter_: str, special_use_only: bool = False
    ) -> None:
        super().__init__(tag, ref_name, filter_)
        self.special_use_only = special_use_only

    @classmethod
    def _options(cls, raw: bytes, allowed: frozenset[bytes], where: memoryview) -> set[bytes]:
        options = {o.upper() for o in raw.split()}
        if not options <= allowed:
            raise NotParseable(where)
        return options

    @classmethod
    def parse(cls, buf: memoryview, params: Params) -> tuple[ListSpecialUse, memoryview]:
        selection: set[bytes] = set()
        m = cls._selection.match(buf)
        if m is not None:
            selection = cls._options(m.group(1), cls.SELECTION, buf)
            buf = buf[m.end() :]
        r = cls._returning.search(bytes(buf))
        if r is not None:
            cls._options(r.group(1), cls.RETURNING, buf)
            buf = memoryview(bytes(buf[: r.start()]) + r.group(2))
        plain, buf = ListCommand.parse(buf, params)
        return cls(plain.tag, plain.ref_name, plain.filter, b"SPECIAL-USE" in selection), buf


def commands() -> Commands:
    """pymap's commands with the ones above added or put in place of pymap's, reading
    folder names strictly (receiver.imap.mailboxnames)."""
    mailboxnames.install()
    registry = Commands()
    for cmd in (NamespaceCommand, CreateSpecialUse, ListSpecialUse, StatusAppendLimit):
        registry.register(cmd)
    return registry
