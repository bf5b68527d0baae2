"""Turning raw bytes into one parsed record (pure: bytes in, record out)."""

from receiver.parse.record import ParsedMessage, parse_message

__all__ = ["ParsedMessage", "parse_message"]
