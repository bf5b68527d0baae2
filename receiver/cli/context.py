"""What every command shares: the config, the open database, JSON and time formatting."""

from __future__ import annotations

import datetime as dt
import json
from importlib import resources
from pathlib import Path

import click
from peewee import Database

from receiver import config as configmod
from receiver.store.db import check_schema, create_schema, open_database, schema_version


class CliError(Exception):
    """A command that cannot go on; the message tells the admin what to do."""


TEMPLATE_DOMAIN = "push.example.com"


def config_template(domain: str) -> str:
    text = resources.files("receiver").joinpath("receiver.toml").read_text()
    return text.replace(TEMPLATE_DOMAIN, domain)


def write_config(directory: Path, domain: str, force: bool = False) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / configmod.CONFIG_NAME
    if path.exists() and not force:
        raise CliError(f"{path} exists already (add --force to overwrite it)")
    path.write_text(config_template(domain))
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


def emit_json(data) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def pass_app(f):
    return click.pass_obj(f)
