"""The pure threading rules: Thread-Index, subjects, the subject rule, the display tree."""

import base64
import datetime as dt

from receiver.parse import parse_message
from receiver.parse.ids import is_weak_id
from receiver.threads.links import choose_parent, links_of
from receiver.threads.subject import (
    SubjectFacts,
    SubjectRule,
    is_reply_subject,
    is_subject_orphan,
    normalize_subject,
)
from receiver.threads.thread_index import conversation_key, parent_index
from receiver.threads.tree import TreeMessage, build_tree, walk

CONV = bytes(range(22))


def _ti(blocks: int) -> str:
    return base64.b64encode(CONV + b"\x01\x02\x03\x04\x05" * blocks).decode()


def test_thread_index_conversation_key_is_the_first_22_bytes():
    assert conversation_key(_ti(0)) == "ti:" + CONV.hex()
    assert conversation_key(_ti(3)) == conversation_key(_ti(0))
    assert conversation_key(" " + _ti(1)[:10] + "\r\n " + _ti(1)[10:]) == conversation_key(_ti(0))


def test_thread_index_garbage_is_no_link():
    for bad in [
        None,
        "",
        "not base64!",
        base64.b64encode(b"short").decode(),
        base64.b64encode(CONV + b"\x00\x01").decode(),
    ]:
        assert conversation_key(bad) is None


def test_thread_index_parent_drops_the_last_child_block():
    assert parent_index(_ti(0)) is None
    assert parent_index(_ti(2)) == base64.b64decode(_ti(1))


def test_outlook_reply_without_references_links_through_thread_index():
    raw = (
        f"From: a@corp.example\r\nTo: b@corp.example\r\nSubject: RE: budget\r\n"
        f"Message-ID: <o2@corp.example>\r\nThread-Index: {_ti(1)}\r\n\r\nok\r\n"
    ).encode()
    links = links_of(parse_message(raw))
    assert links.keys == ("o2@corp.example", "ti:" + CONV.hex())
    assert links.parent_id is None


def test_subject_normalisation_strips_prefixes_tags_and_counts():
    for s in [
        "Re: Invoice 42",
        "RE: re: Invoice 42",
        "AW: WG: Invoice 42",
        "SV: Invoice 42",
        "Antw: Invoice 42",
        "Odp: Invoice 42",
        "回复: Invoice 42",
        "回复：Invoice 42",
        "[list] Re: [list] Invoice 42",
        "Re[2]: Invoice 42",
        "Fwd: Re(3): Invoice  42",
        "  Invoice 42 ",
    ]:
        assert normalize_subject(s) == "invoice 42", s
    assert normalize_subject("Review request") == "review request"
    assert normalize_subject(None) == ""


def test_reply_subjects():
    assert is_reply_subject("Re: x") and is_reply_subject("[fedora] AW: x")
    assert is_reply_subject("Re[2]: x") and is_reply_subject("回复: x")
    assert not is_reply_subject("Hello") and not is_reply_subject("Reply needed: x")
    assert not is_reply_subject("[list] x")


def test_only_reply_subjects_without_any_links_are_subject_orphans():
    assert is_subject_orphan("Re: x", [], [])
    assert not is_subject_orphan("Re: x", ["p@h"], [])
    assert not is_subject_orphan("Re: x", [], ["p@h"])
    assert not is_subject_orphan("x", [], [])
    assert not is_subject_orphan("Re: ", [], [])


D0 = dt.datetime(2024, 5, 1, 12, 0)


def _facts(subject="invoice", orphan=False, days=0, people=("a@x",)):
    return SubjectFacts(subject, orphan, D0 + dt.timedelta(days=days), frozenset(people))


def test_subject_rule_needs_an_orphan_a_shared_participant_and_the_window():
    rule = SubjectRule(enabled=True, window_days=30)
    orphan = _facts(orphan=True)
    assert rule.joins(orphan, _facts()) and rule.joins(_facts(), orphan)
    assert rule.joins(orphan, _facts(orphan=True, days=-30))
    assert not rule.joins(_facts(), _facts())  # two "Invoice" with links of their own
    assert not rule.joins(orphan, _facts(people=("b@x",)))
    assert not rule.joins(orphan, _facts(days=31))
    assert not rule.joins(orphan, _facts(subject="invoice 2"))
    assert not rule.joins(orphan, SubjectFacts("invoice", False, None, frozenset(["a@x"])))
    assert not SubjectRule(enabled=False, window_days=30).joins(orphan, _facts())
    assert SubjectRule(enabled=True, window_days=60).joins(orphan, _facts(days=45))


def _id(name):
    return name if "@" in name else f"{name}@t.example"


def _m(msgid, parent=None, refs=(), day=0, **kw):
    return TreeMessage(
        msgid=_id(msgid),
        in_reply_to=(_id(parent),) if parent else (),
        references=tuple(map(_id, refs)),
        date=D0 + dt.timedelta(hours=day),
        tiebreak="h",
        **kw,
    )


def _shape(roots):
    name = [n.msgid.removesuffix("@t.example") for _, n in walk(roots)]
    return [("  " * d) + (f"[{m}]" if n.ghost else m) for (d, n), m in zip(walk(roots), name)]


def test_tree_shows_missing_parents_as_ghosts_along_the_references_chain():
    roots = build_tree([_m("c", "b", ["a", "b"], 2), _m("d", "a", ["a"], 3)])
    assert _shape(roots) == ["[a]", "  [b]", "    c", "  d"]


def test_tree_breaks_reference_loops():
    # a names b as parent and b names a: one link must go, always the same one.
    msgs = [_m("a", "b", ["b"], 0), _m("b", "a", ["a"], 1), _m("c", "c", ["c"], 2)]
    for order in (msgs, msgs[::-1]):
        assert _shape(build_tree(order)) == ["a", "  b", "c"]


def test_tree_duplicate_message_ids_are_both_shown_replies_under_the_earliest():
    one = TreeMessage(_id("x"), (), (), D0, "h1")
    two = TreeMessage(_id("x"), (), (), D0 + dt.timedelta(hours=1), "h2")
    reply = _m("r", "x", ["x"], 2)
    roots = build_tree([reply, two, one])
    assert [(n.message.tiebreak if n.message else None, d) for d, n in walk(roots)] == [
        ("h1", 0),
        ("h", 1),
        ("h2", 0),
    ]


def test_tree_places_outlook_replies_by_thread_index_and_orphans_by_subject():
    first = _m("o1", thread_index=_ti(0), norm_subject="budget")
    reply = _m("o2", day=1, thread_index=_ti(1), norm_subject="budget")
    orphan = _m("r", day=2, norm_subject="budget", subject_orphan=True)
    assert _shape(build_tree([orphan, reply, first])) == ["o1", "  o2", "  r"]


# RFC 5256 §2.1 (and the cases imaptest's THREAD tests and real lists have).
BASE_SUBJECTS = [
    ("Re: [FWD: c]", "c"),
    ("b (fwd) (fwd)", "b"),
    ("b (fwd)(FWD)  ", "b"),
    ("re: [fwd: [fwd: Re: [fwd: babylon]]]", "babylon"),
    ("[fwd: [fwd: babylon]]", "babylon"),
    ("Re: [list] Fwd: [other] Re: topic", "topic"),
    ("[list] [tag] topic", "topic"),
    ("[only a blob]", "[only a blob]"),  # (4): a blob stays when nothing would remain
    ("Re [2]: topic", "topic"),
    ("RE:   Re:re:topic", "topic"),
    ("Fw: topic", "topic"),
    ("[fwd: topic (fwd)]", "topic"),
    ("AW: [fwd: WG: topic]", "topic"),
    ("Re: reply needed", "reply needed"),
    ("Review request", "review request"),
]


def test_base_subject_follows_rfc_5256():
    for subject, base in BASE_SUBJECTS:
        assert normalize_subject(subject) == base, subject


def test_thread_index_reply_is_no_subject_orphan():
    raw = (
        f"From: a@corp.example\r\nTo: b@corp.example\r\nSubject: RE: budget\r\n"
        f"Message-ID: <o2@corp.example>\r\nThread-Index: {_ti(1)}\r\n\r\nok\r\n"
    ).encode()
    assert not links_of(parse_message(raw)).subject.orphan
    assert links_of(parse_message(raw.replace(b"Thread-Index", b"X-Thread-Index"))).subject.orphan


GMANE = "cover.1289789604.git.joe-Gl0ILqbAaB2hcTrlDXGJrw@public.gmane.org"
PERCHES = "cover.1289789604.git.joe@perches.com"


def test_parent_choice_when_in_reply_to_is_broken_or_rewritten():
    got = {"foo@two.com", "foo@four.com", PERCHES, "p@x", "q@x"}
    # notmuch T050 "Re: two": an unknown In-Reply-To, the received References id wins.
    assert choose_parent(["bar@baz.com"], ["foo@two.com"], got) == "foo@two.com"
    # notmuch "neither": References name In-Reply-To first, then a received message.
    assert choose_parent(["baz@four.com"], ["baz@four.com", "foo@four.com"], got) == "foo@four.com"
    # A rewritten In-Reply-To: the original it extends, wherever References have it.
    assert choose_parent([GMANE], [PERCHES, "p@x", "q@x"], got) == PERCHES
    assert choose_parent([GMANE], ["p@x", PERCHES], got) == PERCHES
    assert choose_parent([GMANE], ["p@x", PERCHES], set()) == PERCHES
    # "joe" is no original of "joe2-…": the prefix must end at a separator.
    assert choose_parent(["joe2-x@gmane.org"], ["joe@a.example", "p@x"], got) == "p@x"
    # A received In-Reply-To wins; named in References it wins as a ghost too.
    assert choose_parent(["q@x"], ["q@x", "p@x"], got) == "q@x"
    assert choose_parent(["m@x"], ["p@x", "m@x"], got) == "m@x"
    # Nothing received: References over an unknown In-Reply-To, the placeholder last.
    assert choose_parent(["m@x"], ["n@x"], set()) == "n@x"
    assert choose_parent(["m@x"], [], set()) == "m@x"
    assert choose_parent([], ["p@x", "n@x"], got) == "n@x"
    # Extra tokens beside the id: the received one is the parent.
    assert choose_parent(["sender@x", "p@x"], [], got) == "p@x"
    # A weak id is no parent unless received.
    assert choose_parent(["yes"], [], got) is None
    assert choose_parent(["yes"], [], {"yes"}) == "yes"


def test_tree_puts_a_reply_with_a_rewritten_in_reply_to_under_its_real_parent():
    msgs = [_m(PERCHES), _m("p1@x", PERCHES, [PERCHES], 1), _m("r@x", GMANE, ["p1@x", PERCHES], 2)]
    for order in (msgs, msgs[::-1]):
        assert _shape(build_tree(order)) == [PERCHES, "  p1@x", "  r@x"]
    # Without the original, a received References id beats the placeholder.
    assert _shape(build_tree(msgs[1:])) == [f"[{PERCHES}]", "  p1@x", "    r@x"]
    assert _shape(build_tree(msgs[2:])) == ["[p1@x]", f"  [{PERCHES}]", "    r@x"]


def test_tree_ignores_weak_ids_that_were_not_received():
    msgs = [
        TreeMessage("s1@x", ("yes",), ("yes",), D0, "h"),
        TreeMessage("s2@x", ("s1@x",), ("yes", "s1@x"), D0 + dt.timedelta(hours=1), "h"),
    ]
    assert _shape(build_tree(msgs)) == ["s1@x", "  s2@x"]
    yes = TreeMessage("yes", (), (), D0 - dt.timedelta(hours=1), "h")
    assert _shape(build_tree([yes, *msgs])) == ["yes", "  s1@x", "    s2@x"]


def test_weak_ids_are_the_ones_without_an_at_sign():
    assert is_weak_id("yes") and is_weak_id("1234")
    assert not is_weak_id("a@b.example")
