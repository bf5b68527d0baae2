"""What every command shares: the config, the open database, JSON and time formatting."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import click
from peewee import Database

from receiver import config as configmod
from receiver.exits import EX_CANTCREAT, EX_ERROR
from receiver.store.db import check_schema, create_schema, open_database, schema_version
from receiver.store.mailboxes import MailboxError, normalize_email


class CliError(Exception):
    """A command that cannot go on; the message tells the admin what to do."""

    def __init__(self, message: str, exit_code: int = EX_ERROR):
        super().__init__(message)
        self.exit_code = exit_code


TEMPLATE_DOMAIN = "push.example.com"


TEMPLATE_DB = 'url = "sqlite:///receiver.db"'


def config_template(domain: str, db_url: str | None = None) -> str:
    text = resources.files("receiver").joinpath("receiver.toml").read_text()
    if db_url:
        text = text.replace(TEMPLATE_DB, f"url = {json.dumps(db_url)}", 1)
    return text.replace(TEMPLATE_DOMAIN, domain)


def make_folder(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CliError(f"cannot create {directory}: {e.strerror}", EX_CANTCREAT) from None


def write_config(
    directory: Path, domain: str, force: bool = False, db_url: str | None = None
) -> Path:
    make_folder(directory)
    path = directory / configmod.CONFIG_NAME
    if path.exists() and not force:
        raise CliError(f"{path} exists already (add --force to overwrite it)")
    try:
        path.write_text(config_template(domain, db_url))
    except OSError as e:
        raise CliError(f"cannot write {path}: {e.strerror}", EX_CANTCREAT) from None
    return path


class AppContext:
    def __init__(self, config_path: str | None):
        self._explicit = config_path
        self._config: configmod.Config | None = None
        self._db: Database | None = None
        self.created_default = False

    @property
    def config(self) -> configmod.Config:
        if self._config is None:
            path = configmod.find_config_path(self._explicit)
            if path is None:
                # No config named: the embedded default in the user's data folder,
                # made on first use so that `serve` just works.
                path = configmod.default_data_dir() / configmod.CONFIG_NAME
                if not path.exists():
                    write_config(path.parent, "localhost")
                    self.created_default = True
            self._config = configmod.load(path)
        return self._config

    def db(self, create: bool = False) -> Database:
        if self._db is None:
            cfg = self.config
            self._db = open_database(cfg.database_url, cfg.database.lock_timeout)
            if (create or self.created_default) and schema_version(self._db) is None:
                create_schema(self._db)
            check_schema(self._db)
        return self._db

    def close(self) -> None:
        if self._db is not None and not self._db.is_closed():
            self._db.close()


def iso(value: dt.datetime | None) -> str | None:
    return value.replace(microsecond=0).isoformat() + "Z" if value else None


# What a text listing prints for a field the message does not have.
NONE = "(none)"
_FOLD = re.compile(r"\r?\n(?=[ \t])")
_LINE_BREAK = re.compile(r"[\r\n]+")


def one_line(text: str | None) -> str:
    """A header value unfolded for display (RFC 5322 2.2.3); the stored bytes keep it."""
    return _LINE_BREAK.sub(" ", _FOLD.sub("", text)) if text else ""


def hostport(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Checks a HOST:PORT option: a bad one is a usage error, before anything runs."""
    if value is not None:
        try:
            configmod.parse_hostport(value, param.name or "")
        except configmod.ConfigError:
            raise click.BadParameter(
                f"expected HOST:PORT, the port from 0 to 65535, got {value!r}"
            ) from None
    return value


class _Email(click.ParamType):
    """A mailbox's EMAIL: one that is no address is a usage error (64), before anything
    runs, as any other bad value; a well-formed one that names no mailbox is not (1)."""

    name = "email"

    def convert(self, value, param, ctx):
        try:
            normalize_email(value)
        except MailboxError as e:
            self.fail(str(e), param, ctx)
        return value


EMAIL = _Email()


def say_if_cut(shown: int, limit: int, total: Callable[[], int]) -> None:
    """A listing stopped at --limit says so on stderr (stdout keeps only the rows)."""
    if limit and shown == limit:
        count = total()
        if count > shown:
            click.echo(f"showing {shown} of {count}; --limit 0 for all", err=True)


def emit_json(data) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def pass_app(f):
    return click.pass_obj(f)
