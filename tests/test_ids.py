"""Each Message-ID cleaning rule of receiver/parse/ids.py, and what parse_message makes of it."""

from receiver.parse import parse_message
from receiver.parse.ids import MAX_ID_LENGTH, clean_references, extract_ids, normalize_id


def test_brackets_whitespace_quotes_and_domain_case_normalise_to_one_id():
    forms = [
        "<abc@Example.COM>",
        "abc@example.com",
        "< abc@example.com >",
        '<"abc"@example.com>',
        "<abc@\r\n example.com>",
    ]
    assert {normalize_id(f) for f in forms} == {"abc@example.com"}


def test_local_part_keeps_its_case():
    assert normalize_id("<AbC@example.com>") == "AbC@example.com"


def test_garbage_tokens_are_no_ids():
    for bad in ["<>", "<@>", "<x@>", "<@host>", "<a<b@c>", "<\x01x@h>", "<...@--->", ""]:
        assert normalize_id(bad) is None, bad


def test_ids_over_250_characters_are_dropped():
    ok = "a" * (MAX_ID_LENGTH - len("@h.example")) + "@h.example"
    assert normalize_id(f"<{ok}>") == ok
    assert normalize_id(f"<a{ok}>") is None
    assert extract_ids(f"<{'x' * 300}@h.example> <p@h.example>") == ["p@h.example"]


def test_bracketless_prose_in_in_reply_to_is_not_an_id():
    assert extract_ids('Your message of "Tue, 05 Jan 2010 10:00:00 +0100"') == []
    assert extract_ids("message from bob (bob@example.org) of Tuesday") == ["bob@example.org"]
    assert extract_ids("1234.5678@host.example 9@host.example") == [
        "1234.5678@host.example",
        "9@host.example",
    ]


def test_bracketed_ids_win_over_surrounding_text_and_repeats_collapse():
    value = "Bob's message <a@x.example> (sent Tuesday) <B@X.example> <a@X.EXAMPLE>"
    assert extract_ids(value) == ["a@x.example", "B@x.example"]


def test_own_id_and_own_addresses_are_dropped_from_references():
    ids = ["p@x.example", "me@x.example", "alice@corp.example", "q@x.example"]
    assert clean_references(ids, "me@x.example", {"Alice@Corp.example"}) == [
        "p@x.example",
        "q@x.example",
    ]


def _raw(headers: str, body: str = "hello\r\n") -> bytes:
    return (headers.strip().replace("\n", "\r\n") + "\r\n\r\n" + body).encode()


def test_parse_cleans_in_reply_to_and_references():
    rec = parse_message(
        _raw("""
From: Bob <bob@example.org>
To: Alice <alice@corp.example>
Subject: Re: plans
Message-ID: <"m2"@Example.ORG>
In-Reply-To: <alice@corp.example> <m1@EXAMPLE.org>
References: <m0@example.org> <m2@example.org> <m1@example.org> <garbage
""")
    )
    assert rec.message_id == "m2@example.org"
    assert rec.in_reply_to == ["m1@example.org"]
    assert rec.references == ["m0@example.org", "m1@example.org"]


def test_missing_message_id_gets_a_stable_synthetic_id_from_the_content():
    a = parse_message(_raw("From: a@example.org\nSubject: x"))
    trace = _raw("Received: from somewhere\nFrom: a@example.org\nSubject: x")
    b = parse_message(trace)
    other = parse_message(_raw("From: a@example.org\nSubject: y"))
    assert a.synthetic_id and a.message_id == b.message_id
    assert other.message_id != a.message_id
