"""The admin CLI: `threads-receiver COMMAND`. Each command group lives in its own module.

Errors an admin can fix come out as one line `error: ...` and a documented exit status
(receiver/exits.py), never as a traceback.
"""

from __future__ import annotations

import logging
import sys

import click
from peewee import InterfaceError, OperationalError

from receiver import logs
from receiver.cli.context import AppContext, CliError
from receiver.exits import EX_CONFIG, EX_SOFTWARE, EX_USAGE
from receiver.config import ConfigError
from receiver.store.db import StoreError
from receiver.store.mailboxes import MailboxError
from receiver.store.queries import NotFound


class _Failure(click.ClickException):
    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        # click declares exit_code on the class; each failure carries its own status.
        self.exit_code = exit_code  # type: ignore[misc]


class _UsageError(click.UsageError):
    # click's own 2 is `verify`'s "altered": a usage error gets sysexits' 64.
    exit_code = EX_USAGE


class _Group(click.Group):
    """Turns the errors an admin can act on into one line and their exit status."""

    def make_context(self, *args, **kwargs) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except click.UsageError as e:
            raise _UsageError(e.format_message(), e.ctx) from None

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except click.UsageError as e:
            raise _UsageError(e.format_message(), e.ctx) from None
        except CliError as e:
            raise _Failure(str(e), e.exit_code) from None
        except ConfigError as e:
            raise _Failure(str(e), EX_CONFIG) from None
        except (StoreError, MailboxError, NotFound) as e:
            raise click.ClickException(str(e)) from None
        except (OperationalError, InterfaceError) as e:
            raise click.ClickException(f"the database is unavailable: {e}".strip()) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    metavar="PATH",
    default=None,
    help="Config file (default: $THREADS_RECEIVER_CONFIG, else the data folder's).",
)
@click.option("-v", "--verbose", is_flag=True, help="Log debug details to stderr.")
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    envvar="THREADS_RECEIVER_LOG_FORMAT",
    show_default=True,
    help="Log lines on stderr as text or as one JSON object each.",
)
@click.version_option(package_name="threads-receiver")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, verbose: bool, log_format: str) -> None:
    """threads-receiver: a self-hosted SMTP push receiver for copied mail."""
    logs.setup(logging.DEBUG if verbose else logging.INFO, log_format)
    ctx.obj = AppContext(config_path)
    ctx.call_on_close(ctx.obj.close)


def _register() -> None:
    from receiver.cli import (
        access,
        database,
        guides,
        mailbox,
        messages,
        quarantine,
        retention,
        setup,
        status,
        threads,
        transfer,
        verify,
    )

    for module in (
        setup,
        mailbox,
        access,
        messages,
        verify,
        quarantine,
        threads,
        database,
        retention,
        transfer,
        status,
        guides,
    ):
        for command in module.COMMANDS:
            cli.add_command(command)


_register()


def main() -> None:
    try:
        cli(prog_name="threads-receiver")
    except Exception as e:
        # A bug, not an admin's mistake: say so in one line; -v logs the traceback.
        logging.getLogger("receiver").debug("unexpected error", exc_info=True)
        click.echo(
            f"error: unexpected {type(e).__name__}: {e} (rerun with -v for details)", err=True
        )
        sys.exit(EX_SOFTWARE)
