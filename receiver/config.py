"""Configuration: one TOML file, overridden by THREADS_RECEIVER_* variables, then by CLI flags.

Every key has a default here, so an empty file (or none at all) is a working config.
The generic override for any key is THREADS_RECEIVER_<SECTION>_<KEY>; a few short
names (DB, DNS_SERVERS) exist because admins reach for them first.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

ENV_PREFIX = "THREADS_RECEIVER_"
CONFIG_NAME = "receiver.toml"

# Every key, its type and its default, one frozen section each: the single source of
# truth. A list in the TOML is a tuple here, so a loaded config cannot change under a
# component that holds it.


@dataclass(frozen=True, slots=True)
class ReceiverSection:
    # Domains whose addresses this receiver accepts; the first one is printed.
    domains: tuple[str, ...] = ("localhost",)
    # authserv-id written into Authentication-Results; empty means the first domain.
    authserv_id: str = ""
    # How long a rotated-away receiver address keeps working.
    rotate_grace_days: int = 7


@dataclass(frozen=True, slots=True)
class DatabaseSection:
    # sqlite:///relative/or/absolute/path (relative to the config's folder) or postgresql://...
    url: str = "sqlite:///receiver.db"
    # Seconds a write may wait for a lock before the sender is told 451 and retries.
    lock_timeout: float = 10.0
    # Deliveries committed together in one transaction (group commit).
    batch_max: int = 64


@dataclass(frozen=True, slots=True)
class SmtpSection:
    listen: str = "127.0.0.1:2525"
    # Processes sharing the listening port (SO_REUSEPORT), one core each.
    workers: int = 1
    lmtp: bool = False
    # Name in the greeting and in our trace columns; empty means the host's FQDN.
    hostname: str = ""
    max_message_size: int = 50 * 1024 * 1024
    max_recipients: int = 100
    # Longest DATA line accepted; RFC 5321 says 1000 but real senders exceed it.
    max_line_length: int = 10000
    # Seconds a command line may take; a session that sends one byte every few
    # seconds is closed when it runs out.
    timeout: int = 300
    # Seconds the whole DATA phase may take.
    data_timeout: int = 600
    # Commands that make no progress (NOOP, RSET, VRFY, EXPN, ETRN, HELP, and refused
    # ones), and error replies, since the session's last accepted message; the last
    # one allowed is answered, then 421 4.7.0 and close.
    max_commands: int = 1000
    max_errors: int = 10
    # Concurrent sessions, in total and per client address; past either: 421 4.7.0.
    max_sessions: int = 200
    max_sessions_per_ip: int = 20
    # Front MTAs relaying here (e.g. the Postfix in front): held to max_sessions only,
    # never to max_sessions_per_ip. LMTP peers always are.
    trusted_networks: tuple[str, ...] = ()
    # From this share of max_sessions open on, the idle timeout is stress_timeout
    # seconds instead of timeout (Postfix's stress mode), until the pressure is gone.
    stress_threshold: float = 0.8
    stress_timeout: int = 10
    # Connections the kernel queues before they are accepted (listen(2) backlog;
    # the kernel caps it at net.core.somaxconn).
    backlog: int = 4096
    # Bytes of message data held in memory across all sessions; past it: 452 4.3.1.
    # Peak memory is about twice this, plus the parse workers (bench/RESULTS.md).
    max_inflight_bytes: int = 64 * 1024 * 1024
    # Seconds SIGTERM waits for sessions in DATA before the receiver exits.
    shutdown_grace: float = 30.0
    # Expect a PROXY protocol v1/v2 header from these networks (the real client
    # address is then the one recorded and limited); others are direct clients.
    proxy_trusted: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TlsSection:
    # PEM certificate chain and key; empty: no STARTTLS, no AUTH, no implicit TLS.
    cert_file: str = ""
    key_file: str = ""
    # A second listener speaking TLS from the first byte (port 465); empty: none.
    implicit_listen: str = ""
    # Refuse MAIL until STARTTLS (530).
    require_starttls: bool = False
    # Oldest protocol accepted: TLSv1.2 or TLSv1.3.
    min_version: str = "TLSv1.2"
    # TLS 1.2 cipher suites (OpenSSL syntax): AEAD only, the "intermediate" profile of
    # Mozilla's server-side TLS guidelines. TLS 1.3 suites are all AEAD already.
    ciphers: str = (
        "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
        "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
        "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
        "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:"
        "DHE-RSA-CHACHA20-POLY1305"
    )


@dataclass(frozen=True, slots=True)
class ImapSection:
    # HOST:PORT of the IMAP listener (STARTTLS; 143 in production) and of the one
    # speaking TLS from the first byte (993); empty: none. Both need tls.cert_file.
    listen: str = ""
    implicit_listen: str = ""
    # Commands answered BAD in a row before the connection is closed.
    max_errors: int = 10
    # Seconds a client may stay silent (IDLE included) before BYE; RFC 3501 asks for
    # at least 30 minutes.
    timeout: int = 1800
    # Concurrent connections, in total and per client address; past either: BYE.
    max_sessions: int = 200
    max_sessions_per_ip: int = 20
    # Expect a PROXY protocol v1/v2 header from these networks on `listen` (the real
    # client address is then the one recorded and limited), as smtp.proxy_trusted does
    # for SMTP; not inherited from it, since a balancer may front one protocol only.
    proxy_trusted: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AuthSection:
    # Failed AUTH attempts per client address within failure_window seconds before
    # further attempts are refused with 454 4.7.0.
    max_failures: int = 5
    failure_window: float = 300.0


@dataclass(frozen=True, slots=True)
class ParseSection:
    # Budget of the parse worker; past any of them the copy is stored raw and flagged.
    timeout: float = 10.0
    max_depth: int = 100
    max_parts: int = 5000
    max_bytes: int = 64 * 1024 * 1024
    # Worker processes, and the address space each may use (bytes).
    workers: int = 2
    max_memory: int = 2 * 1024 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class PolicySection:
    # What to do with a copy judged altered: reject | quarantine | accept.
    altered: str = "quarantine"
    # What to do with a copy nobody can vouch for: accept | quarantine.
    unverifiable: str = "accept"
    # Unwrap a wrapped copy (forward as attachment, Exchange journal report): the
    # enclosed original is verified, stored and threaded; the wrapper kept as evidence.
    unwrap: bool = True


@dataclass(frozen=True, slots=True)
class ThreadsSection:
    # Join reply-prefixed orphans to a same-subject thread with a shared participant.
    subject_join: bool = True
    subject_window_days: int = 30


@dataclass(frozen=True, slots=True)
class RetentionSection:
    # Days a quarantined copy waits for an admin before `prune` deletes it; 0 keeps it.
    quarantine_days: int = 30


@dataclass(frozen=True, slots=True)
class MetricsSection:
    # HOST:PORT for Prometheus /metrics and /healthz; empty: no listener.
    listen: str = ""


@dataclass(frozen=True, slots=True)
class StagesSection:
    # A stage (store writer, verifier, parse workers, event loop) holding waiting work
    # with no progress for this many seconds is stuck: /healthz 503, new sessions 421,
    # the deliveries waiting on it 451.
    stall_seconds: float = 60.0
    # Seconds a stuck stage may take to recover before the daemon exits (status 70)
    # for systemd to restart it; 0: never exit.
    exit_after: float = 30.0
    # Longest wait from the end of DATA to the reply; past it 451 4.3.0 (a copy
    # committed meanwhile makes the sender's retry an idempotent duplicate).
    reply_seconds: float = 120.0


@dataclass(frozen=True, slots=True)
class DnsSection:
    # host:port strings; empty means the system resolver.
    servers: tuple[str, ...] = ()
    timeout: float = 5.0


SECTIONS: dict[str, type] = {
    "receiver": ReceiverSection,
    "database": DatabaseSection,
    "smtp": SmtpSection,
    "tls": TlsSection,
    "imap": ImapSection,
    "auth": AuthSection,
    "parse": ParseSection,
    "policy": PolicySection,
    "threads": ThreadsSection,
    "retention": RetentionSection,
    "metrics": MetricsSection,
    "stages": StagesSection,
    "dns": DnsSection,
}


def _toml_value(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


# The defaults as the TOML spells them (lists, not tuples): the template is checked
# against this, and each key's type is the type of its default.
DEFAULTS: dict[str, dict[str, Any]] = {
    name: {f.name: _toml_value(getattr(cls(), f.name)) for f in fields(cls)}
    for name, cls in SECTIONS.items()
}


@dataclass(frozen=True, slots=True)
class Config:
    """Resolved settings plus where they came from (for messages to the admin)."""

    path: Path | None
    receiver: ReceiverSection
    database: DatabaseSection
    smtp: SmtpSection
    tls: TlsSection
    imap: ImapSection
    auth: AuthSection
    parse: ParseSection
    policy: PolicySection
    threads: ThreadsSection
    retention: RetentionSection
    metrics: MetricsSection
    stages: StagesSection
    dns: DnsSection

    @property
    def base_dir(self) -> Path:
        return self.path.parent if self.path else Path.cwd()

    @property
    def database_url(self) -> str:
        return resolve_sqlite_url(self.database.url, self.base_dir)

    @property
    def domains(self) -> list[str]:
        return [d.lower() for d in self.receiver.domains]

    @property
    def authserv_id(self) -> str:
        return self.receiver.authserv_id or self.domains[0]


class ConfigError(Exception):
    """A config file or override that cannot be used; the message says which key."""


def resolve_sqlite_url(url: str, base_dir: Path) -> str:
    """Make a relative sqlite path absolute against the config's folder."""
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///") :])
        if not path.is_absolute():
            return "sqlite:///" + str((base_dir / path).resolve())
    return url


def _coerce(value: str, default: Any, name: str) -> Any:
    if isinstance(default, bool):
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name}: expected true or false, got {value!r}")
    if isinstance(default, int):
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"{name}: expected a whole number, got {value!r}") from None
    if isinstance(default, float):
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{name}: expected a number, got {value!r}") from None
    if isinstance(default, list):
        return [v.strip() for v in value.split(",") if v.strip()]
    return value


ENV_ALIASES = {
    "DB": ("database", "url"),
    "DNS_SERVERS": ("dns", "servers"),
}


def _merge(data: dict[str, Any], overrides: dict[str, Any], origin: str) -> None:
    for section, values in overrides.items():
        if section not in data:
            raise ConfigError(f"{origin}: unknown section [{section}]")
        if not isinstance(values, dict):
            raise ConfigError(f"{origin}: [{section}] must be a table")
        for key, value in values.items():
            if key not in data[section]:
                raise ConfigError(f"{origin}: unknown key {section}.{key}")
            default = DEFAULTS[section][key]
            if (
                isinstance(default, float)
                and isinstance(value, int)
                and not isinstance(value, bool)
            ):
                value = float(value)
            if type(value) is not type(default):
                raise ConfigError(
                    f"{origin}: {section}.{key} must be {type(default).__name__}, "
                    f"got {type(value).__name__}"
                )
            data[section][key] = value


def find_config_path(explicit: str | None) -> Path | None:
    """The config to use: --config, then THREADS_RECEIVER_CONFIG, else none."""
    chosen = explicit or os.environ.get(ENV_PREFIX + "CONFIG")
    return Path(chosen).expanduser().resolve() if chosen else None


def load(path: Path | None, environ: dict[str, str] | None = None) -> Config:
    """The config: defaults, then the file, then the environment; validated."""
    env = os.environ if environ is None else environ
    data = {section: dict(values) for section, values in DEFAULTS.items()}
    if path is not None:
        try:
            with open(path, "rb") as f:
                _merge(data, tomllib.load(f), str(path))
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: {e}") from None
    for section, values in DEFAULTS.items():
        for key, default in values.items():
            name = f"{ENV_PREFIX}{section.upper()}_{key.upper()}"
            if name in env:
                data[section][key] = _coerce(env[name], default, name)
    for alias, (section, key) in ENV_ALIASES.items():
        name = ENV_PREFIX + alias
        if name in env:
            data[section][key] = _coerce(env[name], DEFAULTS[section][key], name)
    config = Config(
        path,
        **{
            section: SECTIONS[section](
                **{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
            )
            for section, values in data.items()
        },
    )
    _validate(config)
    return config


def _validate(config: Config) -> None:
    if not config.domains:
        raise ConfigError("receiver.domains: at least one domain is needed")
    if config.policy.altered not in ("reject", "quarantine", "accept"):
        raise ConfigError("policy.altered: one of reject, quarantine, accept")
    if config.policy.unverifiable not in ("accept", "quarantine"):
        raise ConfigError("policy.unverifiable: one of accept, quarantine")
    if not 1 <= config.smtp.workers <= 64:
        raise ConfigError("smtp.workers: a number from 1 to 64")
    for server in config.dns.servers:
        parse_hostport(server if ":" in server else f"{server}:53", "dns.servers")
    for key in ("stall_seconds", "reply_seconds"):
        if getattr(config.stages, key) <= 0:
            raise ConfigError(f"stages.{key}: seconds, more than 0")
    if config.stages.exit_after < 0:
        raise ConfigError("stages.exit_after: seconds, 0 or more")
    if config.dns.timeout <= 0:
        raise ConfigError("dns.timeout: seconds, more than 0")
    url = config.database.url
    if not url.startswith(("sqlite:///", "postgresql://", "postgres://")):
        raise ConfigError("database.url: use sqlite:///path or postgresql://...")
    parse_hostport(config.smtp.listen, "smtp.listen")
    tls = config.tls
    if bool(tls.cert_file) != bool(tls.key_file):
        raise ConfigError("tls.cert_file and tls.key_file: set both or neither")
    if tls.implicit_listen:
        if not tls.cert_file:
            raise ConfigError("tls.implicit_listen needs tls.cert_file and tls.key_file")
        parse_hostport(tls.implicit_listen, "tls.implicit_listen")
    if tls.require_starttls and not tls.cert_file:
        raise ConfigError("tls.require_starttls needs tls.cert_file and tls.key_file")
    if tls.min_version not in ("TLSv1.2", "TLSv1.3"):
        raise ConfigError("tls.min_version: TLSv1.2 or TLSv1.3")
    for key in ("listen", "implicit_listen"):
        if getattr(config.imap, key):
            if not tls.cert_file:
                raise ConfigError(f"imap.{key} needs tls.cert_file and tls.key_file")
            parse_hostport(getattr(config.imap, key), f"imap.{key}")
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).set_ciphers(tls.ciphers)
    except ssl.SSLError:
        raise ConfigError(
            f"tls.ciphers: no cipher suite OpenSSL knows in {tls.ciphers!r}"
        ) from None
    for section, key in (
        ("smtp", "proxy_trusted"),
        ("smtp", "trusted_networks"),
        ("imap", "proxy_trusted"),
    ):
        for net in getattr(getattr(config, section), key):
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError:
                raise ConfigError(f"{section}.{key}: not a network: {net!r}") from None
    if not 0 < config.smtp.stress_threshold <= 1:
        raise ConfigError(
            "smtp.stress_threshold: a share of smtp.max_sessions, more than 0 and at most 1"
        )
    if config.smtp.stress_timeout <= 0:
        raise ConfigError("smtp.stress_timeout: seconds, more than 0")
    if config.smtp.backlog < 1:
        raise ConfigError("smtp.backlog: at least 1")


def parse_hostport(value: str, name: str = "listen") -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"{name}: expected HOST:PORT (port 0 to 65535), got {value!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def default_data_dir() -> Path:
    """Where `serve` without a config keeps its data: the XDG data folder."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "threads-receiver"
