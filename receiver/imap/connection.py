"""Who is on the other end of the current IMAP connection (pymap keeps it per task)."""

from __future__ import annotations

from pymap.context import socket_info

from receiver.logs import peer_text


def session_id() -> str:
    """The connection's id in logs and on its deliveries (12 hex digits, as SMTP's)."""
    return socket_info.get().unique_id.hex()[:12]


def client_ip() -> str:
    return str(socket_info.get().peername_ip or "unknown")


def peer() -> str | None:
    """As SMTP records it (not proxy-protocol's "[ip]:port" for IPv4 as well)."""
    return peer_text(socket_info.get().peername)


def cipher():
    """(name, version, bits) once under TLS, else None."""
    return socket_info.get().cipher
