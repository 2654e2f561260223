"""Command-line side of the console: ``veille corrections export`` and ``veille users`` (add, list,
set-role, disable, enable, passwd).

Two click groups, ``corrections`` and ``users``, for the ``veille`` command to register. They use
the archive's database like the console (``--database-url`` or the archive's settings) and bring its
schema up to date first (the console's tables are Alembic revision 0004).
"""

from __future__ import annotations

import asyncio
import csv
import getpass
import sys
from pathlib import Path
from typing import Any

import click
from sqlalchemy.exc import DBAPIError

from services.archive.cli import _config, _database, _engine
from services.archive.db import migrate
from services.console.auth import hash_password
from services.console.store import ROLES, Account, ConsoleStore

__all__ = ["corrections", "users"]


async def _with_store(database: str | None, config_path: Path | None, work: Any, *, upgrade: bool = True) -> Any:
    engine = _engine(database, config_path, write=upgrade)
    try:
        if upgrade:
            await migrate(engine)
        return await work(ConsoleStore(engine))
    except DBAPIError as exc:
        raise click.ClickException(
            f"the archive's database cannot answer ({str(exc.orig).splitlines()[0] if exc.orig else exc}); "
            "is its schema up to date (veille db upgrade)?"
        ) from None
    finally:
        await engine.dispose()


@click.group()
def corrections() -> None:
    """Sentiment corrections made in the console (labelled data to measure and retrain the model)."""


@corrections.command("export")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="CSV file (default: stdout).")
@_database
@_config
def export(output: Path | None, database: str | None, config_path: Path | None) -> None:
    """Write the corrections as CSV with a header ``text,label`` (each mention's latest correction)."""
    # no migration here: its log line would land in the CSV on stdout
    rows = asyncio.run(_with_store(database, config_path, lambda store: store.corrections(), upgrade=False))
    handle = output.open("w", newline="", encoding="utf-8") if output else sys.stdout
    try:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["text", "label"])
        for row in rows:
            writer.writerow([row["text"], row["label"]])
    finally:
        if output:
            handle.close()
    if output:
        click.echo(f"{len(rows)} corrections written to {output}", err=True)


def _actor() -> str:
    """Who a command-line change is recorded as: ``cli:<system user>``."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _check_password(password: str) -> None:
    if len(password) < 8:
        raise click.ClickException("the password must be at least 8 characters")
    if len(password) > 1000:
        raise click.ClickException("the password must be at most 1,000 characters")


async def _change(store: ConsoleStore, work: Any) -> Any:
    try:
        return await work(store)
    except LookupError as exc:
        raise click.ClickException(str(exc.args[0]) if exc.args else "no such account") from None
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


def _when(moment: Any) -> str:
    return moment.strftime("%Y-%m-%d %H:%M") if moment else "never"


@click.group()
def users() -> None:
    """The console's accounts: local ones, and those single sign-on made."""


@users.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), default="viewer", show_default=True)
@click.password_option(
    "--password", help="Asked twice when not given (or $VEILLE_CONSOLE_PASSWORD).", envvar="VEILLE_CONSOLE_PASSWORD"
)
@_database
@_config
def add(name: str, role: str, password: str, database: str | None, config_path: Path | None) -> None:
    """Add an account NAME (or change its role and password); argon2 hash stored in the database."""
    if not name.strip() or len(name) > 200:
        raise click.ClickException("the name must be 1 to 200 characters")
    _check_password(password)
    digest = hash_password(password)
    actor = _actor()
    asyncio.run(
        _with_store(
            database,
            config_path,
            lambda store: _change(store, lambda s: s.put_user(name.strip(), role, digest, actor=actor)),
        )
    )
    click.echo(f"user {name.strip()} ({role}) saved; restart the console if it served without accounts")


@users.command("list")
@_database
@_config
def list_users(database: str | None, config_path: Path | None) -> None:
    """Every account: name, role, source (local or sso), state, created, last login."""
    accounts: list[Account] = asyncio.run(
        _with_store(database, config_path, lambda store: store.accounts(), upgrade=False)
    )
    if not accounts:
        click.echo("no accounts (the console serves 127.0.0.1 only, as 'local'); add one: veille users add NAME")
        return
    rows = [("NAME", "ROLE", "SOURCE", "STATE", "CREATED (UTC)", "LAST LOGIN (UTC)", "EMAIL")]
    rows += [
        (
            a.name,
            a.role,
            a.source,
            "disabled" if a.disabled else "active",
            _when(a.created_at),
            _when(a.last_login),
            a.email or "",
        )
        for a in accounts
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


@users.command("set-role")
@click.argument("name")
@click.argument("role", type=click.Choice(ROLES))
@_database
@_config
def set_role(name: str, role: str, database: str | None, config_path: Path | None) -> None:
    """Give the local account NAME the role ROLE (at its next page in the console)."""
    actor = _actor()
    before: Account = asyncio.run(
        _with_store(database, config_path, lambda store: _change(store, lambda s: s.set_role(name, role, actor)))
    )
    click.echo(f"user {name}: {before.role} -> {role}" if before.role != role else f"user {name} is already {role}")


def _set_disabled(name: str, disabled: bool, database: str | None, config_path: Path | None) -> None:
    actor = _actor()
    before: Account = asyncio.run(
        _with_store(
            database, config_path, lambda store: _change(store, lambda s: s.set_disabled(name, disabled, actor))
        )
    )
    word = "disabled" if disabled else "enabled"
    if before.disabled == disabled:
        click.echo(f"user {name} was already {word}")
    else:
        click.echo(f"user {name} {word}" + ("; its sessions end at their next request" if disabled else ""))


@users.command("disable")
@click.argument("name")
@_database
@_config
def disable(name: str, database: str | None, config_path: Path | None) -> None:
    """Disable NAME: no login, and its open sessions stop at their next request."""
    _set_disabled(name, True, database, config_path)


@users.command("enable")
@click.argument("name")
@_database
@_config
def enable(name: str, database: str | None, config_path: Path | None) -> None:
    """Enable NAME again."""
    _set_disabled(name, False, database, config_path)


@users.command("passwd")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the new password from standard input (one line).")
@_database
@_config
def passwd(name: str, password_stdin: bool, database: str | None, config_path: Path | None) -> None:
    """Set a new password for the local account NAME (asked twice, or read from stdin)."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("New password", hide_input=True, confirmation_prompt=True)
    _check_password(password)
    digest = hash_password(password)
    actor = _actor()
    asyncio.run(
        _with_store(database, config_path, lambda store: _change(store, lambda s: s.set_password(name, digest, actor)))
    )
    click.echo(f"password of {name} changed")
