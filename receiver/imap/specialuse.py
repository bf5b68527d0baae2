"""RFC 6154 special uses: what a folder is for (\\Sent, \\Trash ...), as LIST shows it.

A use a client gave at CREATE (CREATE-SPECIAL-USE) is kept on the folder and wins. A
folder without one is recognised by the name mail clients, Exchange and Gmail give it,
as a copied mailbox arrives with those names: "Sent Items", "[Gmail]/Sent Mail" ...
Only at the top, under INBOX (servers that keep folders below it) or under Gmail's
own parent: "Projects/Sent" is a folder of that project, not the sent mail.

A use read from a name goes to one folder only, and only if no folder was given it:
RFC 6154 allows several, but a client picks one of them as it likes, and "trash" made
next to "Trash" would be a second place for deleted mail. The folder made first keeps
it, so a new folder never takes a use from one a client already uses.
"""

from __future__ import annotations

# RFC 6154 section 2 (\Important is RFC 8457's and not offered).
USES = frozenset({"\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash"})

# Lower-cased folder names (the last part) and the use they mean.
KNOWN_NAMES = {
    "sent": "\\Sent",
    "sent items": "\\Sent",  # Outlook, Exchange
    "sent messages": "\\Sent",  # Apple Mail
    "sent mail": "\\Sent",  # Gmail
    "drafts": "\\Drafts",
    "junk": "\\Junk",
    "junk e-mail": "\\Junk",  # Outlook, Exchange
    "junk email": "\\Junk",
    "spam": "\\Junk",  # Gmail
    "trash": "\\Trash",
    "deleted items": "\\Trash",  # Outlook, Exchange
    "deleted messages": "\\Trash",  # Apple Mail
    "bin": "\\Trash",  # Gmail in British English
    "archive": "\\Archive",
    "archives": "\\Archive",  # Thunderbird
    "all mail": "\\All",  # Gmail
    "starred": "\\Flagged",  # Gmail
}

# Where a known name counts: at the top, or directly under one of these.
KNOWN_PARENTS = frozenset({"inbox", "[gmail]", "[google mail]"})


def by_name(name: str, delimiter: str) -> str | None:
    """The use a folder's name stands for, if it is one of the known names."""
    parent, _, last = name.rpartition(delimiter)
    if parent and parent.lower() not in KNOWN_PARENTS:
        return None
    return KNOWN_NAMES.get(last.lower())


def assign(folders: list[tuple[str, frozenset[str]]], delimiter: str) -> dict[str, frozenset[str]]:
    """The uses LIST shows, by folder name, of every folder as (name, uses given at
    CREATE) in the order they were made: those given, else its name's if no other
    folder has that use (folders with none are left out)."""
    taken = {use for _, given in folders for use in given}
    uses = {}
    for name, given in folders:
        use = None if given else by_name(name, delimiter)
        if use is not None and use not in taken:
            taken.add(use)
            given = frozenset({use})
        if given:
            uses[name] = given
    return uses


def unknown(requested: frozenset[str]) -> frozenset[str]:
    """The requested uses this server does not know (CREATE answers NO [USEATTR])."""
    known = {u.lower() for u in USES}
    return frozenset(u for u in requested if u.lower() not in known)


def canonical(requested: frozenset[str]) -> frozenset[str]:
    """Uses as RFC 6154 spells them (flags are case-insensitive)."""
    spelled = {u.lower(): u for u in USES}
    return frozenset(spelled[u.lower()] for u in requested)
