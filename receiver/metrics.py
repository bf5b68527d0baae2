"""Prometheus metrics, the hooks that feed them, and the optional HTTP listener.

The SMTP handler, the pipeline and the store call one-line hooks here, so instrumentation
stays out of their logic. `[metrics] listen = "127.0.0.1:9464"` serves /metrics and
/healthz (200 only while the SMTP listener accepts, the database answers and no stage of
the pipeline is dead or stuck; the body names what is wrong).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from socketserver import ThreadingMixIn
from collections.abc import Callable
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app
from peewee import Database

from receiver import logs
from receiver.stages import Watchdog

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)

SESSIONS = Counter("receiver_smtp_sessions", "SMTP/LMTP connections accepted.", registry=REGISTRY)
SESSIONS_OPEN = Gauge(
    "receiver_smtp_sessions_open", "SMTP/LMTP connections open now.", registry=REGISTRY
)
DELIVERIES = Counter(
    "receiver_deliveries",
    "Copies handled, per mailbox recipient, by outcome.",
    ["source", "outcome"],
    registry=REGISTRY,
)
VERDICTS = Counter(
    "receiver_verdicts",
    "Copies checked, per mailbox recipient, by verdict.",
    ["source", "verdict"],
    registry=REGISTRY,
)
BYTES = Counter(
    "receiver_received_bytes",
    "Message bytes received (DATA or import).",
    ["source"],
    registry=REGISTRY,
)
DKIM = Counter(
    "receiver_dkim_signatures", "DKIM signatures checked, by result.", ["result"], registry=REGISTRY
)
DATA_SECONDS = Histogram(
    "receiver_delivery_seconds",
    "From the end of DATA to the reply: verify, policy, parse, commit.",
    ["source"],
    registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
COMMIT_SECONDS = Histogram(
    "receiver_db_commit_seconds",
    "One group commit of the store writer.",
    registry=REGISTRY,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5),
)
COMMIT_BATCH = Histogram(
    "receiver_db_commit_batch",
    "Delivery requests per group commit.",
    registry=REGISTRY,
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
THREADS_MERGED = Counter(
    "receiver_threads_merged",
    "Threads merged into another one (rolled-back batches included).",
    registry=REGISTRY,
)
IMAP_SESSIONS = Counter("receiver_imap_sessions", "IMAP connections accepted.", registry=REGISTRY)
IMAP_SESSIONS_OPEN = Gauge(
    "receiver_imap_sessions_open", "IMAP connections open now.", registry=REGISTRY
)
IMAP_LOGINS = Counter(
    "receiver_imap_logins",
    "IMAP logins, by result (ok, failed, blocked).",
    ["result"],
    registry=REGISTRY,
)
INFLIGHT = Gauge(
    "receiver_inflight_bytes", "Message bytes between DATA and the reply.", registry=REGISTRY
)
BUDGET_HELD = Gauge(
    "receiver_inflight_budget_bytes",
    "Bytes of SMTP DATA and IMAP literals held against smtp.max_inflight_bytes now.",
    registry=REGISTRY,
)
BUDGET_PEAK = Gauge(
    "receiver_inflight_budget_peak_bytes",
    "The most bytes held against smtp.max_inflight_bytes at once since the start.",
    registry=REGISTRY,
)


# --- hooks -----------------------------------------------------------------------------


def session_opened(protocol) -> None:
    # aiosmtpd calls connection_made again after STARTTLS: one connection, counted once.
    if getattr(protocol, "receiver_started", None) is None:
        protocol.receiver_started = time.monotonic()
        SESSIONS.inc()
        SESSIONS_OPEN.inc()


def session_closed(protocol, error: BaseException | None = None) -> None:
    SESSIONS_OPEN.dec()
    logs.session_line(protocol.session, protocol.receiver_started, error)


def watch_budget(budget) -> None:
    """The daemon's in-flight byte budget (receiver.smtp.limits.ByteBudget), read when
    the metrics are scraped."""
    BUDGET_HELD.set_function(lambda: budget.used)
    BUDGET_PEAK.set_function(lambda: budget.peak)


def imap_session_opened() -> None:
    IMAP_SESSIONS.inc()
    IMAP_SESSIONS_OPEN.inc()


def imap_session_closed() -> None:
    IMAP_SESSIONS_OPEN.dec()


def imap_login(result: str) -> None:
    IMAP_LOGINS.labels(result).inc()


def verdicts_seen(source: str, verdicts) -> None:
    for v in verdicts:
        VERDICTS.labels(source, v.kind).inc()
        for sig in v.evidence.dkim if v.evidence is not None else []:
            DKIM.labels(sig.result).inc()


def observe_delivery(deliver):
    """Decorates Pipeline.deliver: latency, bytes in flight, outcomes by verdict."""

    @functools.wraps(deliver)
    async def wrapper(self, mail, envelope, rcpts, *args, **kwargs):
        size = len(mail.raw)
        INFLIGHT.inc(size)
        BYTES.labels(envelope.source).inc(size)
        started = time.monotonic()
        try:
            outcomes = await deliver(self, mail, envelope, rcpts, *args, **kwargs)
        finally:
            INFLIGHT.dec(size)
            DATA_SECONDS.labels(envelope.source).observe(time.monotonic() - started)
        for o in outcomes:
            DELIVERIES.labels(envelope.source, o.status).inc()
        return outcomes

    return wrapper


def timed_commit(transaction):
    """Decorates the store writer's transaction: its duration and batch size."""

    @functools.wraps(transaction)
    def wrapper(self, jobs):
        started = time.monotonic()
        result = transaction(self, jobs)
        COMMIT_SECONDS.observe(time.monotonic() - started)
        COMMIT_BATCH.observe(len(jobs))
        return result

    return wrapper


def threads_merged(n: int) -> None:
    THREADS_MERGED.inc(n)


# --- the HTTP listener -------------------------------------------------------------------


def database_answers(db: Database) -> str | None:
    """None when a trivial query succeeds; else why not."""
    try:
        with db.connection_context():
            db.execute_sql("SELECT 1")
        return None
    except Exception as e:  # any failure means unhealthy; the reason goes in the reply
        return f"database: {type(e).__name__}: {e}".strip()


def health(
    smtp_up: Callable[[], bool], db: Database, watchdog: Watchdog | None
) -> tuple[bool, str]:
    """(healthy, text): every problem on its own line, naming the stage or listener."""
    problems = list(watchdog.problems()) if watchdog is not None else []
    if not smtp_up():
        problems.append("smtp: the listener is not accepting connections")
    problem = database_answers(db)
    if problem:
        problems.append(problem)
    if problems:
        return False, "\n".join(problems)
    notes = [r.line for r in watchdog.reports() if r.detail != "ok"] if watchdog else []
    return True, "\n".join(["ok", *notes])


def wsgi_app(smtp_up: Callable[[], bool], db: Database, watchdog: Watchdog | None):
    metrics_app = make_wsgi_app(REGISTRY)

    def app(environ, start_response):
        if environ.get("PATH_INFO") == "/healthz":
            ok, text = health(smtp_up, db, watchdog)
            start_response(
                "200 OK" if ok else "503 Service Unavailable",
                [("Content-Type", "text/plain; charset=utf-8")],
            )
            return [text.encode() + b"\n"]
        if environ.get("PATH_INFO") == "/metrics":
            return metrics_app(environ, start_response)
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"not found: /metrics and /healthz are served here\n"]

    return app


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # scrapes every few seconds: debug only
        log.debug("metrics %s: " + format, self.address_string(), *args)


class MetricsListener:
    def __init__(
        self,
        host: str,
        port: int,
        smtp_up: Callable[[], bool],
        db: Database,
        watchdog: Watchdog | None,
    ):
        self.httpd = make_server(
            host, port, wsgi_app(smtp_up, db, watchdog), _Server, _QuietHandler
        )
        self.port = self.httpd.server_port
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="metrics", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def start_listener(
    listen: str,
    smtp_up: Callable[[], bool],
    db: Database,
    watchdog: Watchdog | None,
    announce=print,
) -> MetricsListener | None:
    """Serve /metrics and /healthz on `listen` (HOST:PORT); an empty value serves nothing."""
    if not listen:
        return None
    from receiver.config import parse_hostport

    host, port = parse_hostport(listen, "metrics.listen")
    listener = MetricsListener(host, port, smtp_up, db, watchdog)
    announce(f"threads-receiver: metrics on http://{host}:{listener.port}/metrics")
    return listener
