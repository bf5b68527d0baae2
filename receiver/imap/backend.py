"""pymap's backend over the store: the logged-in mailbox's folders and their entries.

Nothing is cached between commands: every command sees the database as it is, so
several daemons (`serve --workers`, several hosts on one PostgreSQL) show the same
folders. After each command a selected folder is brought up to date with what changed
since the session last looked (store.folders.changes, by modseq), not read whole.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import AsyncIterable, Iterable, Sequence
from typing import TYPE_CHECKING

from pymap.backend.mailbox import MailboxDataInterface, MailboxSetInterface
from pymap.backend.session import BaseSession
from pymap.concurrent import Event
from pymap.context import current_command
from pymap.exceptions import MailboxError, MailboxNotFound, MailboxReadOnly, ResponseError
from pymap.flags import FlagOp
from pymap.interfaces.message import CachedMessage
from pymap.listtree import ListTree
from pymap.mailbox import MailboxSnapshot
from pymap.message import BaseMessage
from pymap.mime.parsed import ParsedHeaders
from pymap.parsing.message import AppendMessage
from pymap.parsing.response import ResponseBye, ResponseCode
from pymap.parsing.response.code import AppendUid, CopyUid
from pymap.parsing.specials import FetchRequirement, ObjectId, SequenceSet
from pymap.parsing.specials.flag import Flag, Seen, Wildcard
from pymap.selected import SelectedMailbox, SelectedSet

from receiver.imap import connection, headerparse, mimeparts, specialuse
from receiver.imap.fetchreplies import LoadedMessage
from receiver.imap.append import Appender, unavailable
from receiver.pipeline import Pipeline
from receiver.store import credentials, folders
from receiver.store.db import run_read
from receiver.store.deliveries import decompress
from receiver.store.credentials import Grant
from receiver.store.folders import EntryInfo, FolderInfo
from receiver.store.mailboxes import MailboxInfo

if TYPE_CHECKING:  # settings registers receiver.imap.extensions, which imports this
    from receiver.imap.settings import Settings

log = logging.getLogger(__name__)

DELIMITER = "/"
QUARANTINE = Flag(folders.QUARANTINED.encode("ascii"))
# pymap parses every message's fields, for every session, with this one class-wide
# registry: one that reads a field it cannot decode undecoded, rather than fail.
ParsedHeaders._registry = headerparse.HeaderRegistry()
# How often an IDLE session looks for what other sessions (or daemons) changed.
IDLE_POLL_SECONDS = 1.0


class Backend:
    """What every session of one listener shares: the pipeline and pymap's settings."""

    def __init__(self, pipeline: Pipeline, settings: Settings):
        self.pipeline = pipeline
        self.settings = settings

    async def run(self, fn, *args):
        """A store function, off the loop, in the pipeline's database threads. A fault
        is a NO [UNAVAILABLE] to the command, never a dropped connection."""
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self.pipeline.executor, run_read, self.pipeline.writer.db, fn, *args
            )
        except Exception as e:
            log.error("imap: %s failed: %r", fn.__name__, e)
            raise unavailable() from None


class Message(BaseMessage):
    __slots__ = ["_backend", "delivery_id"]

    def __init__(
        self,
        uid: int,
        internal_date: dt.datetime,
        flags: Iterable[Flag],
        *,
        delivery_id: int,
        backend: Backend,
        thread_id: ObjectId | None = None,
        expunged: bool = False,
    ):
        super().__init__(
            uid,
            internal_date,
            flags,
            expunged=expunged,
            email_id=ObjectId(b"M%d" % delivery_id),
            thread_id=thread_id,
        )
        self.delivery_id = delivery_id
        self._backend = backend

    @classmethod
    def of(cls, e: EntryInfo, backend: Backend) -> Message:
        # A quarantined copy is in no thread yet: its THREADID is NIL.
        return cls(
            e.uid,
            e.internal_date.replace(tzinfo=dt.UTC),
            [Flag(f) for f in e.flags],
            delivery_id=e.delivery_id,
            backend=backend,
            thread_id=ObjectId(b"T%d" % e.thread_id) if e.thread_id else None,
        )

    def again(self, *, flags: Iterable[Flag] | None = None) -> Message:
        return Message(
            self.uid,
            self.internal_date,
            self.permanent_flags if flags is None else flags,
            delivery_id=self.delivery_id,
            backend=self._backend,
            thread_id=self.thread_id,
            expunged=self.expunged,
        )

    async def load_content(self, requirement: FetchRequirement) -> LoadedMessage:
        if requirement == FetchRequirement.NONE or requirement == FetchRequirement.METADATA:
            return LoadedMessage(self, requirement, None)
        data, codec = await self._backend.run(folders.raw_of, self.delivery_id)
        raw = await asyncio.get_running_loop().run_in_executor(
            self._backend.pipeline.executor, decompress, data, codec
        )
        return LoadedMessage(self, requirement, mimeparts.parse(raw))


class Snapshot(MailboxSnapshot):
    """SELECT's FLAGS lists flags; PERMANENTFLAGS' \\* is no flag (RFC 3501 7.2.6)."""

    __slots__: list[str] = []

    @property
    def flags(self) -> frozenset[Flag]:
        return super().flags - {Wildcard}


class FolderData(MailboxDataInterface[Message]):
    def __init__(
        self, backend: Backend, mailbox: MailboxInfo, info: FolderInfo, appender: Appender
    ):
        self.backend = backend
        self.mailbox = mailbox
        self.info = info
        self.appender = appender

    @property
    def mailbox_id(self) -> ObjectId:
        return ObjectId(b"F%d" % self.info.id)

    @property
    def readonly(self) -> bool:
        return False

    @property
    def uid_validity(self) -> int:
        return self.info.uidvalidity

    @property
    def permanent_flags(self) -> frozenset[Flag]:
        # APPEND keeps any keyword ($Label1, Thunderbird's tags, Junk): STORE must be
        # able to set and clear them too. pymap drops from a STORE every flag that is
        # not permanent, and clients make no keywords without \* (RFC 3501 7.1).
        return super().permanent_flags | {Wildcard}

    @property
    def selected_set(self) -> SelectedSet:
        # pymap uses this set only to hand an appended copy's \Recent to a session of
        # this daemon that has the folder selected; the database decides that instead
        # (_claim_recent), or a session of another daemon could claim the copy as well.
        return SelectedSet()

    async def _messages(self) -> list[Message]:
        return [
            Message.of(e, self.backend)
            for e in await self.backend.run(folders.entries, self.info.id)
        ]

    async def update_selected(
        self, selected: SelectedMailbox, *, wait_on: Event | None = None
    ) -> SelectedMailbox:
        if wait_on is not None:
            await wait_on.wait(timeout=IDLE_POLL_SECONDS)
        # (UIDVALIDITY, modseq) of the session's last look. A folder deleted and made
        # again (SQLite may give it the same id), or an INBOX renamed away, is a new
        # one whose UIDs start again: they cannot be shown in this session, where UIDs
        # only grow (RFC 3501 2.3.1.1), so it ends (BYE) as for a deleted folder.
        last = selected.mod_sequence
        if last and last[0] != self.info.uidvalidity:
            selected.set_deleted()
            return selected
        seen = selected.messages.max_uid
        got = await self.backend.run(folders.changes, self.info.id, last[1] if last else None)
        if got is None:
            selected.set_deleted()
            return selected
        shown = [Message.of(e, self.backend) for e in got.shown]
        if got.whole:
            selected.set_messages(shown)
        else:
            selected.add_updates(shown, got.hidden)
        selected.mod_sequence = (self.info.uidvalidity, got.modseq)
        await self._claim_recent(selected, seen)
        return selected

    async def _claim_recent(self, selected: SelectedMailbox, seen: int) -> None:
        """\\Recent (RFC 3501 2.3.2): a read-write session that sees UIDs above `seen`
        claims those no session has seen yet, and only it shows them \\Recent. The mark
        is a column of the folder, not memory of this daemon: a session of another
        worker or host must not show the same copy as new again, nor must a restart."""
        newest = selected.messages.max_uid
        if selected.readonly or newest <= seen:
            return
        before = await self.backend.run(folders.claim_recent, self.info.id, newest)
        if before < newest:
            claimed = SequenceSet([(before + 1, newest)], uid=True)
            for _, uid in selected.messages.get_uids(claimed):
                selected.session_flags.add_recent(uid)

    async def append(self, append_msg: AppendMessage, *, recent: bool = False) -> Message:
        outcome, placement = await self.appender(self.info, append_msg)
        assert outcome.uid is not None and outcome.delivery_id is not None
        # pymap takes the UID (APPENDUID) from this; the selected view reads the entry
        # itself (a duplicate keeps its first flags) when it is refreshed.
        return Message(
            outcome.uid,
            placement.internal_date.replace(tzinfo=dt.UTC),
            append_msg.flag_set,
            delivery_id=outcome.delivery_id,
            backend=self.backend,
        )

    async def append_all(self, messages: Sequence[AppendMessage]) -> list[int]:
        """MULTIAPPEND: every message committed in one transaction, or none."""
        return await self.appender.all(self.info, list(messages))

    async def copy(self, uid: int, destination: FolderData, *, recent: bool = False) -> int | None:
        e = await self.backend.run(folders.entry, self.info.id, uid)
        if e is None:
            return None
        return await self.backend.run(
            folders.add_entry, destination.info.id, e.delivery_id, e.flags, e.internal_date
        )

    async def move(self, uid: int, destination: FolderData, *, recent: bool = False) -> int | None:
        new_uid = await self.copy(uid, destination)
        if new_uid is not None:
            await self.backend.run(folders.hide, self.info.id, [uid])
        return new_uid

    async def get(self, uid: int, cached_msg: CachedMessage) -> Message:
        # The selected view was read from the store after the last command; its copy is
        # current enough, and a FETCH of many messages costs no query per message.
        if not isinstance(cached_msg, Message):
            raise TypeError(cached_msg)
        return cached_msg.again()

    async def update(
        self, uid: int, cached_msg: CachedMessage, flag_set: frozenset[Flag], mode: FlagOp
    ) -> Message:
        msg = await self.get(uid, cached_msg)
        # The quarantine keyword mirrors the delivery (folders.set_flags): a STORE
        # neither sets nor clears it, and the FETCH answering the STORE says so.
        quarantine = msg.permanent_flags & {QUARANTINE}
        flags = mode.apply(msg.permanent_flags, flag_set) - {QUARANTINE} | quarantine
        await self.backend.run(
            folders.set_flags,
            self.info.id,
            uid,
            frozenset(f.value.decode("ascii", "replace") for f in flags),
        )
        return msg.again(flags=flags)

    async def delete(self, uids: Iterable[int]) -> None:
        await self.backend.run(folders.hide, self.info.id, list(uids))

    async def claim_recent(self, selected: SelectedMailbox) -> None:
        pass  # SELECT's update_selected, which follows at once, claims (_claim_recent)

    async def cleanup(self) -> None:
        pass

    async def messages(self) -> AsyncIterable[Message]:
        for m in await self._messages():
            yield m

    async def snapshot(self) -> MailboxSnapshot:
        messages = await self._messages()
        info = await self.backend.run(folders.get, self.mailbox.id, self.info.name) or self.info
        unseen = [i for i, m in enumerate(messages, 1) if Seen not in m.permanent_flags]
        return Snapshot(
            self.mailbox_id,
            self.readonly,
            self.uid_validity,
            self.permanent_flags,
            self.session_flags,
            len(messages),
            sum(1 for m in messages if m.uid > info.recent_uid),
            len(unseen),
            unseen[0] if unseen else None,
            info.uidnext,
        )


def _level_names(name: str) -> str:
    """`name`, if every level of it has a name: "", "/Old" and "Old//2019" would be
    folders LIST shows under a nameless parent."""
    if not all(name.split(DELIMITER)):
        raise MailboxError(
            name,
            b"A folder name and each level of it must not be empty.",
            ResponseCode.of(b"CANNOT"),
        )
    return name


class FolderSet(MailboxSetInterface[FolderData]):
    def __init__(self, backend: Backend, mailbox: MailboxInfo, appender: Appender):
        self.backend = backend
        self.mailbox = mailbox
        self.appender = appender

    @property
    def delimiter(self) -> str:
        return DELIMITER

    async def set_subscribed(self, name: str, subscribed: bool) -> None:
        found = await self.backend.run(folders.subscribe, self.mailbox.id, name, subscribed)
        # A subscription is kept on its folder: one to a name with no folder cannot be
        # kept, and an OK would say it was. A name with no folder is not subscribed: an
        # UNSUBSCRIBE of it is what the client wanted (Thunderbird sends one after DELETE).
        if subscribed and not found:
            raise MailboxNotFound(name)

    async def _tree(self, subscribed_only: bool) -> ListTree:
        names = await self.backend.run(folders.names, self.mailbox.id, subscribed_only)
        return ListTree(DELIMITER).update(folders.INBOX, *names)

    async def list_subscribed(self) -> ListTree:
        return await self._tree(True)

    async def list_mailboxes(self) -> ListTree:
        return await self._tree(False)

    async def get_mailbox(self, name: str) -> FolderData:
        info = await self.backend.run(folders.get, self.mailbox.id, name)
        if info is None:
            raise KeyError(name)
        return FolderData(self.backend, self.mailbox, info, self.appender)

    async def add_mailbox(self, name: str) -> ObjectId:
        # CREATE name (USE (\Sent)): receiver.imap.extensions.CreateSpecialUse read it.
        requested: frozenset[str] = getattr(current_command.get(None), "special_use", frozenset())
        unknown = specialuse.unknown(requested)
        if unknown:
            raise MailboxError(
                name,
                b"No such special use: %b" % " ".join(sorted(unknown)).encode(),
                ResponseCode.of(b"USEATTR"),
            )
        # "Projects/" declares that subfolders will follow; the folder made is "Projects"
        # (RFC 3501 6.3.3).
        info = await self.backend.run(
            folders.create,
            self.mailbox.id,
            _level_names(name.removesuffix(DELIMITER)),
            specialuse.canonical(requested),
        )
        if info is None:
            raise ValueError(name)
        return ObjectId(b"F%d" % info.id)

    async def delete_mailbox(self, name: str) -> None:
        result = await self.backend.run(folders.delete, self.mailbox.id, name)
        if result == "missing":
            raise KeyError(name)
        if result == "not empty":
            raise MailboxError(
                name,
                b"Folder is not empty: the archive is never deleted over IMAP.",
                ResponseCode.of(b"CANNOT"),
            )

    async def rename_mailbox(self, before: str, after: str) -> None:
        result = await self.backend.run(
            folders.rename, self.mailbox.id, before, _level_names(after), DELIMITER
        )
        if result == "missing":
            raise KeyError(before)
        if result == "exists":
            raise ValueError(after)


class LoggedOut(ResponseError):
    """The session's login no longer holds (the admin disabled or removed the mailbox,
    or revoked its credential): the client is told BYE and the connection is closed,
    as Dovecot does to a user it kicks. A NO would be retried by a copy tool forever."""

    def __init__(self, why: str):
        super().__init__(why)
        self.why = why

    def get_response(self, tag: bytes) -> ResponseBye:
        return ResponseBye(
            b"%b: logged out by the receiver's admin." % self.why.capitalize().encode()
        )


class Session(BaseSession[Message]):
    def __init__(self, owner: str, backend: Backend, granted: Grant):
        super().__init__(owner)
        self.backend = backend
        self.granted = granted
        self._appender = Appender(backend.pipeline, granted, owner)
        self._folders = FolderSet(backend, granted.mailbox, self._appender)

    async def check_login(self) -> None:
        """Raise LoggedOut if the login no longer holds, else take the mailbox as it is
        now (a `mailbox allow` or policy change applies from the next command): the CLI
        runs in another process, so it is the database that says (one indexed lookup a
        command)."""
        now = await self.backend.run(credentials.standing, *self.granted.issue)
        if now.ended is not None:
            log.info("imap %s: %s, session ended", connection.session_id(), now.ended)
            raise LoggedOut(now.ended)
        assert now.mailbox is not None
        self._appender.mailbox = now.mailbox

    @property
    def config(self) -> Settings:
        return self.backend.settings

    async def append_messages(
        self, name: str, messages: Sequence[AppendMessage], selected: SelectedMailbox | None = None
    ) -> tuple[AppendUid, SelectedMailbox | None]:
        """pymap appends the messages of one MULTIAPPEND one by one, each committed on its
        own; RFC 3502 wants all or none. One message takes pymap's way."""
        if len(messages) == 1:
            return await super().append_messages(name, messages, selected)
        try:
            folder = await self._folders.get_mailbox(name)
        except KeyError as exc:
            raise MailboxNotFound(name, try_create=True) from exc
        uids = await folder.append_all(messages)
        appended = AppendUid(folder.uid_validity, uids)
        # As pymap does for one message: \Recent for a session that has the folder open.
        shown = selected if selected and selected.mailbox_id == folder.mailbox_id else None
        shown = shown or folder.selected_set.any_selected
        if shown is not None:
            for uid in uids:
                shown.session_flags.add_recent(uid)
        if selected is None:
            return appended, None
        if selected.mailbox_id != folder.mailbox_id:
            try:
                folder = await self._folders.get_mailbox(selected.lookup)
            except KeyError:
                selected.set_deleted()
                return appended, selected
        return appended, await folder.update_selected(selected)

    async def move_messages(
        self, selected: SelectedMailbox, sequence_set: SequenceSet, mailbox: str
    ) -> tuple[CopyUid | None, SelectedMailbox]:
        # pymap checks only the destination. MOVE expunges from the source, which a
        # folder opened with EXAMINE does not allow (RFC 3501 6.3.2), as for EXPUNGE.
        if selected.readonly:
            raise MailboxReadOnly()
        return await super().move_messages(selected, sequence_set, mailbox)

    @property
    def mailbox_set(self) -> FolderSet:
        return self._folders

    async def list_mailboxes(
        self,
        ref_name: str,
        filter_: str,
        subscribed: bool = False,
        selected: SelectedMailbox | None = None,
    ) -> tuple[list[tuple[str, str | None, Sequence[bytes]]], SelectedMailbox | None]:
        """pymap's LIST, with each folder's special use (RFC 6154) among its attributes;
        LIST (SPECIAL-USE) (receiver.imap.extensions.ListSpecialUse) lists only those."""
        listed, updates = await super().list_mailboxes(ref_name, filter_, subscribed, selected)
        # Over every folder, not only those listed: a use goes to one folder only. A
        # \\Noselect level of the hierarchy is no folder and has none: a client would save
        # its sent mail into "Sent Items" of "Sent Items/2019" and be told NO.
        assigned = specialuse.assign(
            await self.backend.run(folders.special_uses, self._folders.mailbox.id), DELIMITER
        )
        only_special = getattr(current_command.get(None), "special_use_only", False)
        shown: list[tuple[str, str | None, Sequence[bytes]]] = []
        for name, sep, attrs in listed:
            uses = assigned.get(name, frozenset())
            if uses or not only_special:
                # pymap writes the backslash in front of each attribute.
                shown.append((name, sep, [*attrs, *(u[1:].encode() for u in sorted(uses))]))
        return shown, updates
