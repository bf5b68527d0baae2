"""Running the daemon: the store writer, the pipeline, the aiosmtpd listener, signals."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP

from receiver.config import Config, parse_hostport
from receiver.pipeline import Pipeline
from receiver.smtp.handler import ReceiverHandler
from receiver.store.db import check_schema, open_database
from receiver.store.writer_process import ProcessWriter
from receiver.verify import Verifier

log = logging.getLogger(__name__)


@dataclass
class Daemon:
    """The running parts, so tests and the CLI can start and stop them alike."""

    server: asyncio.AbstractServer
    writer: ProcessWriter
    executor: ThreadPoolExecutor
    verifier: Verifier
    host: str
    port: int

    async def stop(self) -> None:
        self.server.close()
        await self.server.wait_closed()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.writer.stop)
        await self.verifier.close()
        self.executor.shutdown(wait=False)


def protocol_factory(config: Config, handler: ReceiverHandler, lmtp: bool):
    base = LMTP if lmtp else SMTP

    class ReceiverSMTP(base):
        # DATA lines: RFC 5321 says 1000 octets, real senders exceed it; configurable.
        line_length_limit = config.get("smtp", "max_line_length")

    hostname = config.get("smtp", "hostname") or socket.getfqdn()

    def factory():
        return ReceiverSMTP(
            handler,
            data_size_limit=config.get("smtp", "max_message_size"),
            enable_SMTPUTF8=True,
            decode_data=False,
            hostname=hostname,
            ident="threads-receiver",
            timeout=config.get("smtp", "timeout"),
        )

    return factory


async def start(config: Config, listen: str | None = None, lmtp: bool | None = None,
                sock: socket.socket | None = None) -> Daemon:
    """Start one daemon; `sock` is a listening socket made by the caller (workers)."""
    db = open_database(config.database_url, config.get("database", "lock_timeout"))
    await asyncio.get_running_loop().run_in_executor(None, check_schema, db)
    writer = ProcessWriter(db, config.database_url, config.get("database", "lock_timeout"),
                           config.get("database", "batch_max"))
    executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="receiver")
    verifier = Verifier(config)
    pipeline = Pipeline(config, writer, verifier, executor)
    use_lmtp = config.get("smtp", "lmtp") if lmtp is None else lmtp
    handler = ReceiverHandler(pipeline, max_recipients=config.get("smtp", "max_recipients"),
                              lmtp=use_lmtp)
    factory = protocol_factory(config, handler, use_lmtp)
    if sock is not None:
        server = await asyncio.get_running_loop().create_server(factory, sock=sock)
    else:
        host, port = parse_hostport(listen or config.get("smtp", "listen"))
        server = await asyncio.get_running_loop().create_server(
            factory, host=host, port=port, reuse_address=True)
    bound = server.sockets[0].getsockname()
    return Daemon(server, writer, executor, verifier, bound[0], bound[1])


async def until_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def run(config: Config, listen: str | None = None, lmtp: bool | None = None,
              announce=print) -> None:
    daemon = await start(config, listen, lmtp)
    use_lmtp = config.get("smtp", "lmtp") if lmtp is None else lmtp
    announce(f"threads-receiver: {'LMTP' if use_lmtp else 'SMTP'} listening on {daemon.host}:{daemon.port}")
    await until_signal()
    announce("threads-receiver: stopping")
    await daemon.stop()
