"""The daemon and its service manager: systemd's readiness protocol (Type=notify), and
reload requests (SIGHUP) that arrive before the event loop listens for them.

`systemctl start` returns, and `systemctl reload` may be sent, only once the daemon says
READY=1, which it says after its listeners are bound and its signal handlers are in
place. A SIGHUP that comes earlier anyway (kill -HUP from a script, a worker spawned as a
reload goes out) would end the process by its default action: `hold_hangups` keeps it
as a pending reload from the first line of `serve` on, and `take_hangup` hands it to the
loop once the loop has its own handler.

The notify protocol is one datagram on a Unix socket (sd_notify(3)); the libraries that
wrap it need libsystemd at build time or are unmaintained, and the protocol is stable.
"""

from __future__ import annotations

import logging
import os
import signal
import socket

log = logging.getLogger(__name__)

_hangup_pending = False


def _on_early_hangup(signum, frame) -> None:
    global _hangup_pending
    _hangup_pending = True


def hold_hangups() -> None:
    """From now until the loop installs its own handler, a SIGHUP is kept, not fatal."""
    signal.signal(signal.SIGHUP, _on_early_hangup)


def take_hangup() -> bool:
    """Whether a SIGHUP came while held (and forget it)."""
    global _hangup_pending
    pending, _hangup_pending = _hangup_pending, False
    return pending


def notify(*fields: str) -> bool:
    """Send `fields` (READY=1, STATUS=..., STOPPING=1) to systemd; without
    $NOTIFY_SOCKET (not run by systemd as Type=notify) nothing is sent. A failure to
    send is logged, never raised: the service goes on either way."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # the abstract namespace
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall("\n".join(fields).encode())
    except OSError as e:
        log.warning("could not notify the service manager (%s): %s", address, e)
        return False
    return True
