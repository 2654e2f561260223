"""Command-line side of the console: ``veille corrections export`` and ``veille users add``.

Two click groups, ``corrections`` and ``users``, for the ``veille`` command to register. They use
the archive's database like the console (``--database-url`` or the archive's settings) and bring its
schema up to date first (the console's tables are Alembic revision 0004).
"""

from __future__ import annotations

import asyncio
import csv
import sys
from pathlib import Path
from typing import Any

import click
from sqlalchemy.exc import DBAPIError

from services.archive.cli import _config, _database, _engine
from services.archive.db import migrate
from services.console.auth import hash_password
from services.console.store import ROLES, ConsoleStore

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


@click.group()
def users() -> None:
    """The console's local accounts."""


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
    if len(password) < 8:
        raise click.ClickException("the password must be at least 8 characters")
    digest = hash_password(password)
    asyncio.run(_with_store(database, config_path, lambda store: store.put_user(name.strip(), role, digest)))
    click.echo(f"user {name.strip()} ({role}) saved; restart the console if it served without accounts")
