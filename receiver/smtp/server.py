"""Running the daemon: the store writer, the parse workers, the pipeline, the listeners
(plain + STARTTLS, implicit TLS), and the signals: SIGTERM/SIGINT stop gracefully,
SIGHUP reloads the config.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from aiosmtpd.proxy_protocol import ProxyData

from receiver import config as configmod
from receiver import malloc, metrics, service
from receiver.exits import EX_SOFTWARE
from receiver.imap import server as imap
from receiver.config import Config, parse_hostport
from receiver.smtp.handler import ReceiverHandler
from receiver.smtp.implicit_tls import Front
from receiver.smtp.protocol import ReceiverLMTP, ReceiverSMTP, Shared, proxy_before_tls
from receiver.stages import Stage, Watchdog, exit_for_restart, heartbeat, watch
from receiver.store.db import check_schema, open_database
from receiver.wiring import Stack, build

# Keys read once at start: a reload that changes one logs that it needs a restart.
RESTART_KEYS = (
    ("smtp", "listen"),
    ("smtp", "workers"),
    ("smtp", "lmtp"),
    ("smtp", "backlog"),
    ("tls", "implicit_listen"),
    ("imap", "listen"),
    ("imap", "implicit_listen"),
    ("database", "url"),
    ("database", "lock_timeout"),
    ("database", "batch_max"),
    ("parse", "timeout"),
    ("parse", "max_depth"),
    ("parse", "max_parts"),
    ("parse", "max_bytes"),
    ("parse", "workers"),
    ("parse", "max_memory"),
    ("metrics", "listen"),
    ("stages", "stall_seconds"),
    ("stages", "exit_after"),
    ("stages", "reply_seconds"),
)

log = logging.getLogger(__name__)


def tls_context(config: Config) -> ssl.SSLContext | None:
    if not config.tls.cert_file:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    load_certificate(ctx, config)
    return ctx


def load_certificate(ctx: ssl.SSLContext, config: Config) -> None:
    """The certificate, the oldest protocol and the suites: at start, and again on reload."""
    ctx.minimum_version = getattr(ssl.TLSVersion, config.tls.min_version.replace(".", "_"))
    # TLS 1.2 only: OpenSSL sets the TLS 1.3 suites apart, and all of them are AEAD.
    ctx.set_ciphers(config.tls.ciphers)
    base = config.base_dir
    ctx.load_cert_chain(base / config.tls.cert_file, base / config.tls.key_file)


@dataclass
class Daemon:
    """The running parts, so tests and the CLI can start and stop them alike."""

    servers: list[asyncio.AbstractServer]
    stack: Stack
    executor: ThreadPoolExecutor
    shared: Shared
    handler: ReceiverHandler
    config: Config
    host: str
    port: int
    tls: ssl.SSLContext | None = None
    tls_port: int | None = None
    lmtp: bool = False
    # Resolved once (getfqdn may block on DNS), again on reload.
    hostname: str = ""
    watchdog: Watchdog | None = None
    heartbeat: asyncio.Task | None = None
    imap: imap.Listeners | None = None
    # [imap] key (listen, implicit_listen) → the port it listens on.
    imap_ports: dict[str, int] = field(default_factory=dict)

    def factory(self, implicit_tls: bool = False):
        def make(proxied: ProxyData | None = None):
            base = ReceiverLMTP if self.lmtp else ReceiverSMTP
            return base(
                self.handler,
                shared=self.shared,
                implicit_tls=implicit_tls,
                proxied=proxied,
                enable_SMTPUTF8=True,
                decode_data=False,
                hostname=self.hostname,
                ident="threads-receiver",
                tls_context=None if implicit_tls else self.tls,
            )

        return make

    def _read_config(self) -> tuple[Config, str]:
        """Blocking part of a reload (files, DNS for the host name): runs off the loop."""
        config = configmod.load(self.config.path)
        if self.tls is not None and config.tls.cert_file:
            # The same context serves both listeners: a renewed certificate is used by
            # every handshake from now on.
            load_certificate(self.tls, config)
        return config, config.smtp.hostname or socket.getfqdn()

    async def reload(self) -> None:
        """SIGHUP: re-read the config; new sessions get the new limits, policy and TLS
        certificate. Open sessions keep going. Mailboxes are read from the store at
        every RCPT, so a change there needs no reload."""
        try:
            config, hostname = await asyncio.get_running_loop().run_in_executor(
                None, self._read_config
            )
        except (configmod.ConfigError, OSError, ssl.SSLError) as e:
            log.error("reload failed, keeping the running config: %s", e)
            return
        if bool(config.tls.cert_file) != (self.tls is not None):
            log.warning("turning TLS on or off takes a restart")
        for section, key in RESTART_KEYS:
            if getattr(getattr(config, section), key) != getattr(
                getattr(self.config, section), key
            ):
                log.warning("%s.%s changed: it takes a restart", section, key)
        self.config = config
        self.hostname = hostname
        self.shared.reload(config)
        self.stack.reconfigure(config)
        self.handler.max_recipients = config.smtp.max_recipients
        if self.imap is not None:
            self.imap.reload(config, hostname)
        log.info("config reloaded from %s", config.path)

    async def stop(self, grace: float | None = None) -> None:
        """Stop accepting; let sessions in DATA finish within `grace`; close the rest."""
        grace = self.config.smtp.shutdown_grace if grace is None else grace
        self.shared.stopping = True
        for server in self.servers:
            server.close()
        deadline = time.monotonic() + grace
        while self.shared.sessions and time.monotonic() < deadline:
            for session in list(self.shared.sessions):
                session.shutdown()
            await asyncio.sleep(0.05)
        for session in list(self.shared.sessions):
            if session.transport is not None:
                session.transport.abort()
        if self.watchdog is not None:
            self.watchdog.stop()
        if self.heartbeat is not None:
            self.heartbeat.cancel()
        await self.stack.close()
        self.executor.shutdown(wait=False)


async def start(
    config: Config,
    listen: str | None = None,
    lmtp: bool | None = None,
    sock: socket.socket | None = None,
) -> Daemon:
    """Start one daemon; `sock` is a listening socket made by `serve --workers`."""
    loop = asyncio.get_running_loop()
    malloc.unmap_large_blocks()
    db = open_database(config.database_url, config.database.lock_timeout)
    await loop.run_in_executor(None, check_schema, db)
    executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="receiver")
    stack = await build(config, db, executor)
    shared = Shared.from_config(config)
    metrics.watch_budget(shared.budget)
    use_lmtp = config.smtp.lmtp if lmtp is None else lmtp
    handler = ReceiverHandler(
        stack.pipeline,
        max_recipients=config.smtp.max_recipients,
        lmtp=use_lmtp,
        failed_logins=shared.auth_failures,
    )
    hostname = config.smtp.hostname or await loop.run_in_executor(None, socket.getfqdn)
    daemon = Daemon(
        [],
        stack,
        executor,
        shared,
        handler,
        config,
        "",
        0,
        tls=tls_context(config),
        lmtp=use_lmtp,
        hostname=hostname,
    )
    loop_stage = Stage("event loop")
    daemon.heartbeat = loop.create_task(heartbeat(loop_stage))
    daemon.watchdog = watch([*stack.stages, loop_stage], config, exit_for_restart(EX_SOFTWARE))
    shared.problems = daemon.watchdog.problems
    if sock is not None:
        server = await loop.create_server(daemon.factory(), sock=sock)
    else:
        host, port = parse_hostport(listen or config.smtp.listen)
        server = await loop.create_server(
            daemon.factory(), host=host, port=port, reuse_address=True, backlog=config.smtp.backlog
        )
    daemon.servers.append(server)
    daemon.host, daemon.port = server.sockets[0].getsockname()[:2]
    if config.tls.implicit_listen:
        thost, tport = parse_hostport(config.tls.implicit_listen, "tls.implicit_listen")
        assert daemon.tls is not None  # config validation: implicit TLS needs a certificate
        # TLS is started by the front, after a trusted proxy's header (implicit_tls.py).
        front = Front(
            daemon.tls,
            lambda: shared.settings.proxy_trusted,
            proxy_before_tls,
            daemon.factory(implicit_tls=True),
        )
        tserver = await loop.create_server(
            front,
            host=thost,
            port=tport,
            reuse_address=True,
            backlog=config.smtp.backlog,
            # every worker listens there too
            reuse_port=sock is not None,
        )
        daemon.servers.append(tserver)
        daemon.tls_port = tserver.sockets[0].getsockname()[1]
    daemon.imap = await imap.start(
        config,
        stack.pipeline,
        daemon.tls,
        hostname,
        shared.auth_failures,
        shared.budget,
        reuse_port=sock is not None,
    )
    daemon.servers += daemon.imap.servers.values()
    daemon.imap_ports = {k: s.sockets[0].getsockname()[1] for k, s in daemon.imap.servers.items()}
    return daemon


async def run(
    config: Config, listen: str | None = None, lmtp: bool | None = None, announce=print
) -> None:
    daemon = await start(config, listen, lmtp)
    kind = "LMTP" if daemon.lmtp else "SMTP"
    for key, port in daemon.imap_ports.items():
        announce(f"threads-receiver: IMAP ({imap.KINDS[key]}) on port {port}")
    also = f" (implicit TLS on port {daemon.tls_port})" if daemon.tls_port is not None else ""
    announce(f"threads-receiver: {kind} listening on {daemon.host}:{daemon.port}{also}")
    metrics_http = metrics.start_listener(
        config.metrics.listen,
        lambda: all(s.is_serving() for s in daemon.servers),
        daemon.stack.writer.db,
        daemon.watchdog,
        announce,
    )
    status = f"{kind} on {daemon.host}:{daemon.port}" + "".join(
        f", IMAP ({imap.KINDS[key]}) on port {port}" for key, port in daemon.imap_ports.items()
    )
    await until_signal(daemon, ready=lambda: service.notify("READY=1", f"STATUS={status}"))
    service.notify("STOPPING=1")
    announce("threads-receiver: stopping")
    await daemon.stop()
    announce("threads-receiver: stopped")
    if metrics_http:
        metrics_http.stop()


async def until_signal(daemon: Daemon, ready=lambda: None) -> None:
    """Serve until SIGTERM or SIGINT; SIGHUP reloads the config. `ready` is called once
    the handlers are in place: a reload from then on cannot end the process."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    reloads: set[asyncio.Task] = set()  # strong references: the loop keeps only weak ones

    def on_hup() -> None:
        task = loop.create_task(daemon.reload())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, on_hup)
    if service.take_hangup():  # one came while the daemon started: its config may be old
        on_hup()
    ready()
    await stop.wait()
