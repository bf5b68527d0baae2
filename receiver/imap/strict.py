"""What pymap lets through and Dovecot answers BAD: a message sequence number past the
folder's EXISTS (RFC 3501 9: "The server should respond with a tagged BAD response to a
command that uses a message sequence number greater than the number of messages in the
selected mailbox. This includes "*" if the selected mailbox is empty."), which pymap
answers OK with nothing, so that a client with a stale view is not told it worked.
UID sets stay lenient (RFC 3501 6.4.8: a UID no message has is no error).
"""

from __future__ import annotations

from pymap.imap.state import ConnectionState
from pymap.parsing.command.select import CopyCommand, FetchCommand, MoveCommand, StoreCommand
from pymap.parsing.response import CommandResponse, ResponseBad
from pymap.parsing.specials import SequenceSet
from pymap.parsing.specials.sequenceset import MaxValue
from pymap.selected import SelectedMailbox

Answer = tuple[CommandResponse, SelectedMailbox | None]


def highest(seq_set: SequenceSet, exists: int) -> int:
    """The highest number a set names, "*" standing for `exists`."""
    ends = (e for elem in seq_set.value for e in (elem if isinstance(elem, tuple) else (elem,)))
    return max(exists if isinstance(e, MaxValue) else e for e in ends)


def out_of_range(seq_set: SequenceSet, exists: int) -> bool:
    """True for message sequence numbers past `exists`, or any at all in an empty folder."""
    return not seq_set.uid and (exists == 0 or highest(seq_set, exists) > exists)


class StrictState(ConnectionState):
    """pymap's handlers of the commands that take a sequence set, after the check."""

    def _invalid_messageset(
        self, cmd: FetchCommand | StoreCommand | CopyCommand | MoveCommand
    ) -> Answer | None:
        if out_of_range(cmd.sequence_set, self.selected.messages.exists):
            return ResponseBad(cmd.tag, cmd.command + b": Invalid messageset"), None
        return None

    async def do_fetch(self, cmd: FetchCommand) -> Answer:
        return self._invalid_messageset(cmd) or await super().do_fetch(cmd)

    async def do_store(self, cmd: StoreCommand) -> Answer:
        return self._invalid_messageset(cmd) or await super().do_store(cmd)

    async def do_copy(self, cmd: CopyCommand) -> Answer:
        return self._invalid_messageset(cmd) or await super().do_copy(cmd)

    async def do_move(self, cmd: MoveCommand) -> Answer:
        return self._invalid_messageset(cmd) or await super().do_move(cmd)
