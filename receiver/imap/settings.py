"""pymap's settings for one listener, from the receiver's config.

pymap reads its settings from an `IMAPConfig`; this one offers exactly what the backend
implements, and offers a login (PLAIN, LOGIN) only once the connection is under TLS.
"""

from __future__ import annotations

import ssl
from argparse import Namespace
from collections.abc import Sequence

from pymap.config import BackendCapability, IMAPConfig
from pymap.parsing.commands import Commands
from pysasl import SASLAuth

from receiver import __version__
from receiver.config import Config
from receiver.imap import extensions
from receiver.smtp.limits import networks

# A password checked by the store (scrypt), so only mechanisms that carry it in clear.
MECHANISMS = [b"PLAIN", b"LOGIN"]


class Settings(IMAPConfig):
    def __init__(self, config: Config, hostname: str, tls: ssl.SSLContext, implicit_tls: bool):
        # A literal larger than the in-flight budget could never be taken: refused for
        # good (NO [TOOBIG]), as SMTP refuses such a message 552 rather than 452.
        max_literal = min(config.smtp.max_message_size, config.smtp.max_inflight_bytes)
        super().__init__(
            Namespace(passlib_cfg=None, proxy_protocol=None),
            host=None,
            port=0,
            ssl_context=tls,
            # STARTTLS is offered on the plain listener; on the implicit one TLS is on.
            tls_enabled=not implicit_tls,
            max_append_len=max_literal,
            bad_command_limit=config.imap.max_errors,
            reject_dnsbl=False,
        )
        self.hostname = hostname
        self.max_literal = max_literal
        self.timeout = config.imap.timeout
        self.proxy_trusted = networks(config.imap.proxy_trusted)
        self._commands = extensions.commands()

    @property
    def commands(self) -> Commands:
        return self._commands

    @property
    def login_capability(self) -> Sequence[bytes]:
        # What receiver.imap.extensions adds to pymap's. LITERAL+ (pymap's, before login)
        # stays alone: RFC 7888 5 forbids advertising LITERAL- beside it, and a LITERAL-
        # client's literals (non-synchronising up to 4096 bytes) are LITERAL+ ones.
        return [*super().login_capability, b"NAMESPACE", b"SPECIAL-USE", b"CREATE-SPECIAL-USE"]

    @property
    def backend_capability(self) -> BackendCapability:
        return BackendCapability(idle=True, object_id=True, multi_append=True)

    @property
    def tls_auth(self) -> SASLAuth:
        return SASLAuth.named(MECHANISMS)

    @property
    def greeting(self) -> bytes:
        return b"%s threads-receiver IMAP ready" % self.hostname.encode("ascii", "replace")

    @property
    def id_response(self) -> dict[bytes, bytes]:
        return {b"name": b"threads-receiver", b"version": __version__.encode()}
