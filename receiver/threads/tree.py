"""The display tree of one thread, built when it is read (pure).

Who replies to whom is chosen here, from each message's In-Reply-To and References and
the set of ids received in the thread (`choose_parent`: an archive may have rewritten
In-Reply-To), so the tree is computed from the set of messages, never stored, and comes
out the same whatever order they arrived in.

- A parent that was never received is a ghost node; its own parent is taken from the
  References chain of the messages below it (JWZ's "empty containers"); a weak id
  (no `@`) that was never received is no node at all.
- A link that would close a loop is dropped (References loops, two messages naming
  each other); messages are visited in a fixed order (latest date first, then id), so
  the same link is dropped every time and the earliest message of a loop is its root.
- A root with an Outlook Thread-Index goes under the message whose Thread-Index is its
  own minus the last child block.
- A subject orphan (reply subject, no In-Reply-To/References) that is still a root goes
  under the earliest earlier message with the same normalised subject.
- Siblings and roots are ordered by date (a ghost by its earliest descendant).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from collections.abc import Iterator
from typing import Any

from receiver.parse.ids import is_weak_id
from receiver.threads.links import choose_parent
from receiver.threads.thread_index import decode, parent_index


@dataclass(frozen=True)
class TreeMessage:
    msgid: str
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    date: dt.datetime | None
    tiebreak: str  # tells duplicates of one Message-ID apart (the content hash)
    norm_subject: str = ""
    subject_orphan: bool = False
    thread_index: str | None = None
    payload: Any = None


@dataclass(eq=False)
class Node:
    msgid: str
    message: TreeMessage | None  # None: a ghost, referenced but not received
    children: list[Node] = field(default_factory=list)
    parent: Node | None = None

    @property
    def ghost(self) -> bool:
        return self.message is None

    @property
    def received(self) -> TreeMessage:
        """The message of a node that is not a ghost."""
        if self.message is None:
            raise ValueError(f"{self.msgid} is a ghost")
        return self.message


# Messages sort by date (undated last), then Message-ID, then the content hash.
_SortKey = tuple[bool, dt.datetime, str, str]


def _order(m: TreeMessage) -> _SortKey:
    return (m.date is None, m.date or dt.datetime.min, m.msgid, m.tiebreak)


class _Forest:
    def __init__(self, messages: list[TreeMessage]):
        self.messages = sorted(messages, key=_order)
        self.nodes = [Node(m.msgid, m) for m in self.messages]
        self.by_id: dict[str, Node] = {}
        for n in self.nodes:
            # With duplicate Message-IDs, replies hang under the earliest copy.
            self.by_id.setdefault(n.msgid, n)
        self.ghosts: dict[str, Node] = {}

    def node(self, msgid: str) -> Node:
        n = self.by_id.get(msgid)
        if n is None:
            n = self.ghosts.setdefault(msgid, Node(msgid, None))
        return n

    def link(self, child: Node, parent: Node) -> bool:
        """child under parent, unless that closes a loop or child has a parent already."""
        if child.parent is not None:
            return False
        up: Node | None = parent
        while up is not None:
            if up is child:
                return False
            up = up.parent
        child.parent = parent
        parent.children.append(child)
        return True


def build_tree(messages: list[TreeMessage]) -> list[Node]:
    """The roots of the thread's tree; see the module docstring for the rules."""
    f = _Forest(messages)
    # Latest first: in a loop, the link a later message makes to an earlier one is the
    # one that stays, so the earliest message of the loop is its root.
    for n in reversed(f.nodes):
        parent = choose_parent(n.received.in_reply_to, n.received.references, f.by_id)
        if parent:
            f.link(n, f.node(parent))
    for n in f.nodes:
        refs = [r for r in n.received.references if not is_weak_id(r) or r in f.by_id]
        for above, below in zip(refs, refs[1:]):
            child = f.node(below)
            if child.ghost:
                f.link(child, f.node(above))
    by_index: dict[bytes, Node] = {}
    for n in f.nodes:
        raw = decode(n.received.thread_index)
        if raw is not None:
            by_index.setdefault(raw, n)
    for n in f.nodes:
        if n.parent is None:
            up = parent_index(n.received.thread_index)
            if up is not None and up in by_index:
                f.link(n, by_index[up])
    first_by_subject: dict[str, Node] = {}
    for n in f.nodes:
        m = n.received
        first = first_by_subject.setdefault(m.norm_subject, n)
        if n.parent is None and m.subject_orphan and first is not n:
            f.link(n, first)
    roots = [
        n
        for n in [*f.nodes, *f.ghosts.values()]
        if n.parent is None and (not n.ghost or n.children)
    ]
    keys = _subtree_keys(roots)
    for n in keys:
        n.children.sort(key=keys.__getitem__)
    roots.sort(key=keys.__getitem__)
    return roots


def walk(roots: list[Node]) -> Iterator[tuple[int, Node]]:
    """(depth, node) in display order, without recursion (threads can be deep)."""
    stack = [(0, n) for n in reversed(roots)]
    while stack:
        depth, n = stack.pop()
        yield depth, n
        stack.extend((depth + 1, c) for c in reversed(n.children))


def _subtree_keys(roots: list[Node]) -> dict[Node, _SortKey]:
    """Sort key of every node: its message's, or for a ghost its earliest descendant's."""
    keys: dict[Node, _SortKey] = {}
    for _, n in reversed(list(walk(roots))):
        own = [_order(n.message)] if n.message else []
        keys[n] = min(
            own + [keys[c] for c in n.children], default=(True, dt.datetime.min, n.msgid, "")
        )
    return keys
