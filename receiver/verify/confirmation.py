"""Forwarding confirmations (pure): Gmail and Outlook mail a code or a link to a new
forwarding address before they forward to it. Found here so `mailbox show` can print
them and the admin can confirm the rule without reading raw mail.
"""

from __future__ import annotations

import re

from receiver.mail import RawMail
from receiver.verify.copypath import address_of, domain_of, message_texts

_GMAIL_FROM = {"forwarding-noreply@google.com", "mail-noreply@google.com"}
_GMAIL_SUBJECT = re.compile(r"forwarding confirmation", re.I)
_GMAIL_CODE = re.compile(r"\(#(\d{6,12})\)|confirmation code:\s*(\d{6,12})", re.I)
_GMAIL_LINK = re.compile(
    r"https://(?:mail-settings|mail|isolated\.mail)\.google\.com/mail/"
    r"[^\s\"'<>]*vf-[^\s\"'<>]+"
)

_OUTLOOK_DOMAINS = ("microsoft.com", "outlook.com", "office365.com", "live.com", "hotmail.com")
_OUTLOOK_SUBJECT = re.compile(r"verif|confirm", re.I)
_OUTLOOK_CODE = re.compile(r"\bcode\b\s*(?:is)?\s*:?\s*(\d{4,10})\b", re.I)
_OUTLOOK_LINK = re.compile(
    r"https://[^\s\"'<>]*(?:live|outlook|office|microsoft)\.com/"
    r"[^\s\"'<>]*(?:verif|confirm)[^\s\"'<>]*",
    re.I,
)


def _outlook_domain(d: str) -> bool:
    return any(d == x or d.endswith("." + x) for x in _OUTLOOK_DOMAINS)


def may_confirm(from_domain: str | None) -> bool:
    """Cheap first look: only these senders' messages are read for a code."""
    return from_domain is not None and (from_domain == "google.com" or _outlook_domain(from_domain))


def find_confirmation(mail: RawMail) -> dict | None:
    """{provider, code, link, from, subject} for a forwarding confirmation, else None."""
    sender = address_of(mail.get_first("From"))
    subject = mail.get_first("Subject") or ""
    if sender in _GMAIL_FROM and _GMAIL_SUBJECT.search(subject):
        provider, code_re, link_re = "gmail", _GMAIL_CODE, _GMAIL_LINK
    elif _outlook_domain(domain_of(sender) or "") and _OUTLOOK_SUBJECT.search(subject):
        provider, code_re, link_re = "outlook", _OUTLOOK_CODE, _OUTLOOK_LINK
    else:
        return None
    text = subject + "\n" + message_texts(mail)
    code = code_re.search(text)
    link = link_re.search(text)
    if code is None and link is None:
        return None
    return {
        "provider": provider,
        "code": next((g for g in code.groups() if g), None) if code else None,
        "link": link.group(0).rstrip(".,)") if link else None,
        "from": sender,
        "subject": subject,
    }
