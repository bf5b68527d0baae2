"""Subjects: normalisation and the subject-join rule (pure).

Grouping by subject alone merges every "Hello" and "Invoice", so the rule is narrow:
a message whose subject carries a reply or forward prefix but which has no
In-Reply-To and no References (after cleaning) is a *subject orphan*; it joins a
message with the same normalised subject, a shared participant (From/To/Cc) and a
Date within the window. The rule is a predicate on a pair of messages, so applying it
whenever either of the two arrives gives the same threads in every arrival order.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from dataclasses import dataclass

# Reply/forward prefixes in the languages real mail has them (RFC 5256's re/fw/fwd
# first), with counts (Re[2]:, Re(2):, Re^2:) and ASCII or full-width colons.
_WORD = r"(?:re|fwd?|aw|sv|vs|antw|odp|wg|tr|rv|enc|doorst|回复|回覆|答复|转发|轉寄)"
# RFC 5256 subj-blob: "[" *BLOBCHAR "]" *WSP, BLOBCHAR being any character but [ and ].
_BLOB = r"\[[^\[\]]*\]\s*"
_PREFIX = rf"{_WORD}\s*(?:{_BLOB}|\(\d+\)|\^\d+)?[:：]"
_LEADER = re.compile(rf"^(?:(?:{_BLOB})*{_PREFIX}|\s+)", re.IGNORECASE)
_LEAD_BLOB = re.compile(rf"^{_BLOB}")
_TRAILER = re.compile(r"(?:\(fwd\)|\s)$", re.IGNORECASE)
_FWD_HDR = "[fwd:"
_REPLY = re.compile(rf"^\s*(?:{_BLOB})*{_PREFIX}", re.IGNORECASE)
_WS = re.compile(r"\s+")
# Longer subjects are cut: the normalised subject is an index key (PostgreSQL btree
# entries have a size limit), and 200 characters tell conversations apart.
MAX_NORM_SUBJECT = 200


def base_subject(subject: str | None) -> str:
    """RFC 5256 §2.1's base subject (steps 1-7), with the language prefixes above."""
    s = _WS.sub(" ", subject or "")
    while True:
        while _TRAILER.search(s):  # (2) trailing "(fwd)" and blanks
            s = _TRAILER.sub("", s)
        while True:  # (3) leaders, (4) a leading [blob] unless nothing would remain
            stripped = _LEADER.sub("", s, count=1)
            blob = _LEAD_BLOB.match(stripped)
            if blob and stripped[blob.end() :]:
                stripped = stripped[blob.end() :]
            if stripped == s:
                break
            s = stripped
        # (6) the "[fwd: ...]" wrapper, then again from (2)
        if s.lower().startswith(_FWD_HDR) and s.endswith("]"):
            s = s[len(_FWD_HDR) : -1]
            continue
        return s


# A thread's messages share their subject, and each is normalised for its own row and
# for the orphan test: the loop of regular expressions ran several times per subject.
@functools.lru_cache(maxsize=16384)
def normalize_subject(subject: str | None) -> str:
    """The base subject, whitespace folded, lower-cased, cut to MAX_NORM_SUBJECT."""
    return base_subject(subject).strip().lower()[:MAX_NORM_SUBJECT]


def is_reply_subject(subject: str | None) -> bool:
    """True when the subject starts (after any [list tags]) with a reply/forward prefix."""
    return bool(subject and _REPLY.match(subject))


def is_subject_orphan(subject: str | None, in_reply_to: list[str], references: list[str]) -> bool:
    """A reply by its subject that names no parent: the only kind the subject rule joins."""
    return (
        not in_reply_to
        and not references
        and is_reply_subject(subject)
        and bool(normalize_subject(subject))
    )


@dataclass(frozen=True)
class SubjectRule:
    """[threads] subject_join and subject_window_days of the config (no defaults here:
    every caller passes the configured values, receiver.wiring.subject_rule)."""

    enabled: bool
    window_days: int

    @functools.cached_property
    def window(self) -> dt.timedelta:
        return dt.timedelta(days=self.window_days)

    def joins(self, a: SubjectFacts, b: SubjectFacts) -> bool:
        """Whether the rule joins a and b (symmetric: the order they came in is irrelevant)."""
        return (
            self.enabled
            and (a.orphan or b.orphan)
            and bool(a.norm_subject)
            and a.norm_subject == b.norm_subject
            and a.date is not None
            and b.date is not None
            and abs(a.date - b.date) <= self.window
            and bool(a.participants & b.participants)
        )


@dataclass(frozen=True)
class SubjectFacts:
    """What the subject rule looks at in one message."""

    norm_subject: str
    orphan: bool
    date: dt.datetime | None
    participants: frozenset[str]
