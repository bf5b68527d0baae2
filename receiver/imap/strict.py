"""What pymap lets through and Dovecot answers BAD.

- A message sequence number past the folder's EXISTS (RFC 3501 9: "The server should
  respond with a tagged BAD response to a command that uses a message sequence number
  greater than the number of messages in the selected mailbox. This includes "*" if the
  selected mailbox is empty."), which pymap answers OK with nothing, so that a client
  with a stale view is not told it worked. UID sets stay lenient (RFC 3501 6.4.8: a UID
  no message has is no error).
- A system flag (a backslash flag) an APPEND or STORE sets that is none of RFC 3501's
  settable five: pymap would keep "\\Junk" as a flag no client knows, and \\Recent is
  the server's to give (RFC 3501 2.3.2).

And one that Dovecot has no cause to refuse: a STORE that names `$Quarantined`, the
keyword that mirrors the delivery's quarantine (receiver.store.folders). pymap would
answer OK and keep the flag as it was; NO says the admin's CLI changes it.
"""

from __future__ import annotations

from collections.abc import Iterable

from pymap.imap.state import ConnectionState
from pymap.parsing.command.auth import AppendCommand
from pymap.parsing.command.select import CopyCommand, FetchCommand, MoveCommand, StoreCommand
from pymap.parsing.response import CommandResponse, ResponseBad, ResponseNo
from pymap.parsing.specials import Flag, SequenceSet
from pymap.parsing.specials.flag import Recent, get_system_flags
from pymap.parsing.specials.sequenceset import MaxValue
from pymap.selected import SelectedMailbox

from receiver.imap.backend import QUARANTINE

Answer = tuple[CommandResponse, SelectedMailbox | None]
# \Seen \Answered \Flagged \Deleted \Draft: the system flags a client sets.
SETTABLE = get_system_flags() - {Recent}


def highest(seq_set: SequenceSet, exists: int) -> int:
    """The highest number a set names, "*" standing for `exists`."""
    ends = (e for elem in seq_set.value for e in (elem if isinstance(elem, tuple) else (elem,)))
    return max(exists if isinstance(e, MaxValue) else e for e in ends)


def out_of_range(seq_set: SequenceSet, exists: int) -> bool:
    """True for message sequence numbers past `exists`, or any at all in an empty folder."""
    return not seq_set.uid and (exists == 0 or highest(seq_set, exists) > exists)


def invalid_flag(flags: Iterable[Flag]) -> Flag | None:
    """The first system flag among `flags` that a client may not set, if any."""
    return next((f for f in sorted(flags) if f.is_system and f not in SETTABLE), None)


def _bad_flag(cmd: AppendCommand | StoreCommand, flags: Iterable[Flag]) -> Answer | None:
    flag = invalid_flag(flags)
    if flag is None:
        return None
    return ResponseBad(cmd.tag, cmd.command + b": Invalid system flag " + bytes(flag)), None


def _server_flag(cmd: StoreCommand) -> Answer | None:
    if QUARANTINE not in cmd.flag_set:
        return None
    return ResponseNo(
        cmd.tag,
        cmd.command + b": " + bytes(QUARANTINE) + b" is the receiver's: an admin releases"
        b" or deletes a quarantined copy (threads-receiver quarantine release|delete).",
    ), None


class StrictState(ConnectionState):
    """pymap's handlers of the commands that take a sequence set or flags, after the
    checks."""

    def _invalid_messageset(
        self, cmd: FetchCommand | StoreCommand | CopyCommand | MoveCommand
    ) -> Answer | None:
        if out_of_range(cmd.sequence_set, self.selected.messages.exists):
            return ResponseBad(cmd.tag, cmd.command + b": Invalid messageset"), None
        return None

    async def do_fetch(self, cmd: FetchCommand) -> Answer:
        return self._invalid_messageset(cmd) or await super().do_fetch(cmd)

    async def do_store(self, cmd: StoreCommand) -> Answer:
        refused = _bad_flag(cmd, cmd.flag_set) or self._invalid_messageset(cmd) or _server_flag(cmd)
        return refused or await super().do_store(cmd)

    async def do_append(self, cmd: AppendCommand) -> Answer:
        # Every message's flags: a MULTIAPPEND is refused whole, as it is stored whole.
        flags = [f for msg in cmd.messages for f in msg.flag_set]
        return _bad_flag(cmd, flags) or await super().do_append(cmd)

    async def do_copy(self, cmd: CopyCommand) -> Answer:
        return self._invalid_messageset(cmd) or await super().do_copy(cmd)

    async def do_move(self, cmd: MoveCommand) -> Answer:
        return self._invalid_messageset(cmd) or await super().do_move(cmd)
