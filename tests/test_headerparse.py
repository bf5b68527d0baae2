"""receiver.imap.headerparse: fields the email package cannot decode, read undecoded."""

from __future__ import annotations

from receiver.imap.headerparse import HeaderRegistry

BAD = "=?utf-7?Q?+2AA-?="  # U+D800, a lone surrogate


def test_only_a_parameter_s_rfc_2231_charset_is_set_aside():
    registry = HeaderRegistry()
    # Text that looks like an RFC 2231 value, in a display name, stays as it is.
    [address] = registry("From", f"{BAD} x*=utf-7'y <a@b.example>").addresses
    assert address.display_name == f"{BAD} x*=utf-7'y"
    # A value in pieces: the first holds the charset; a quoted piece's word is undecoded.
    header = registry("Content-Type", f"text/plain; name*0*=utf-7''%2B2AA-; name*1=\"{BAD}\"")
    assert header.params == {"name": "+2AA-" + BAD}


def test_a_field_that_decodes_is_the_email_package_s():
    assert str(HeaderRegistry()("Subject", "=?utf-8?q?Gr=C3=BC=C3=9Fe?= =?utf-8?q?!?=")) == "Grüße!"
