"""The archive on the command line: ``veille db upgrade|current``, ``mentions search``, ``alerts list``.

Three click groups, ``db``, ``mentions`` and ``alerts``, for the ``veille`` command to register. The database is
the archive's own (``$VEILLE_ARCHIVE_DATABASE_URL``, else ``archive.database_url`` in the
configuration, else ``archive.sqlite3`` in the data directory), or ``--database-url``.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from services.archive.aggregate import AggregationError, ArchivedAlert, list_alerts
from services.archive.db import DatabaseConfigError, database_url, describe_url, make_engine, migrate, revision
from services.archive.search import SearchError, SearchFilters, SearchPage, search
from veille.config import ConfigError, VeilleConfig, load_config
from veille.durations import parse_duration
from veille.settings import SettingsError, load_settings

__all__ = ["alerts", "archive_engine", "db", "mentions"]


def _engine(database: str | None, config_path: Path | None, *, write: bool) -> Any:
    return make_engine(_url(database, config_path), write=write)


def _url(database: str | None, config_path: Path | None) -> Any:
    try:
        settings = load_settings(**({"config": config_path} if config_path else {}))
        config = load_config(settings.config) if Path(settings.config).exists() else VeilleConfig()
        if database:
            config = config.model_copy(update={"archive": config.archive.model_copy(update={"database_url": database})})
        return database_url(settings, config.archive, env={} if database else None)
    except (SettingsError, ConfigError, DatabaseConfigError) as exc:
        raise click.ClickException(str(exc)) from None


def archive_engine(config_path: Path | None = None, database: str | None = None, *, existing: bool = False) -> Any:
    """A read engine on the archive's database, found as the service finds it (for ``veille backtest``);
    ``existing``: None when that database is a SQLite file that does not exist (no archive ran here)."""
    url = _url(database, config_path)
    if existing and url.get_backend_name() == "sqlite" and not Path(url.database or "").exists():
        return None
    return make_engine(url, write=False)


_database = click.option("--database-url", "database", help="The archive's database (default: as the service).")
_config = click.option(
    "--config", "config_path", type=click.Path(path_type=Path), help="veille.yaml (default: $VEILLE_CONFIG)."
)


async def _on_schema(
    database: str | None, config_path: Path | None, step: Callable[[Any], Awaitable[str | None]], *, write: bool
) -> str | None:
    """``step`` (migrate or revision) on the archive's engine; a failure is one line naming the database."""
    engine = _engine(database, config_path, write=write)
    try:
        return await step(engine)
    except Exception as exc:
        raise click.ClickException(f"{describe_url(engine.url)}: {type(exc).__name__}: {exc}") from None
    finally:
        await engine.dispose()


@click.group()
def db() -> None:
    """The archive's database: schema migrations."""


@db.command("upgrade")
@_database
@_config
def upgrade(database: str | None, config_path: Path | None) -> None:
    """Migrate the archive's schema to the newest revision (the service does it at start too)."""

    click.echo(f"archive schema at revision {asyncio.run(_on_schema(database, config_path, migrate, write=True))}")


@db.command("current")
@_database
@_config
def current(database: str | None, config_path: Path | None) -> None:
    """Print the schema revision the archive's database is at."""

    click.echo(
        asyncio.run(_on_schema(database, config_path, revision, write=False)) or "not migrated yet (veille db upgrade)"
    )


def _moment(value: str | None) -> datetime | None:
    """``90d`` (that long ago) or an ISO 8601 time (UTC when no offset)."""
    if value is None:
        return None
    try:
        return datetime.now(UTC) - parse_duration(value)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is neither a duration (90d, 12h) nor a time (2026-05-01T08:00)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@click.group()
def mentions() -> None:
    """The archived mentions."""


@mentions.command("search")
@click.argument("query", required=False, default="")
@click.option("--watch", help="Only mentions that matched this watch.")
@click.option("--since", help="From this long ago (90d) or this time (ISO 8601).")
@click.option("--until", help="Up to this long ago or this time.")
@click.option("--sentiment", type=click.Choice(["negative", "neutral", "positive"]), multiple=True)
@click.option("--lang", multiple=True, help="Language (ISO 639-1); repeat for several.")
@click.option("--source", multiple=True, help="Source (rss, bluesky ...); repeat for several.")
@click.option("--site", multiple=True)
@click.option("--story", help="Only this story (syndicated copies).")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--cursor", help="The next_cursor a previous search printed.")
@click.option(
    "--sort", type=click.Choice(["time", "relevance"]), default="time", show_default=True, help="Order of the hits."
)
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@_database
@_config
def search_command(
    query: str,
    watch: str | None,
    since: str | None,
    until: str | None,
    sentiment: tuple[str, ...],
    lang: tuple[str, ...],
    source: tuple[str, ...],
    site: tuple[str, ...],
    story: str | None,
    limit: int,
    cursor: str | None,
    sort: str,
    fmt: str,
    database: str | None,
    config_path: Path | None,
) -> None:
    """Search archived mentions with the watches' query language, newest first (or by relevance)."""
    filters = SearchFilters(
        watch=watch,
        since=_moment(since),
        until=_moment(until),
        sentiment=sentiment,  # type: ignore[arg-type]
        lang=lang,
        source=source,
        site=site,
        story=story,
    )

    async def run() -> SearchPage:
        engine = _engine(database, config_path, write=False)
        try:
            return await search(engine, query, filters, limit=limit, cursor=cursor, sort=sort)  # type: ignore[arg-type]
        except SearchError as exc:
            raise click.ClickException(str(exc)) from None
        except Exception as exc:
            raise click.ClickException(f"{describe_url(engine.url)}: {type(exc).__name__}: {exc}") from None
        finally:
            await engine.dispose()

    page = asyncio.run(run())
    rows = [hit.as_json() for hit in page.hits]
    if fmt == "json":
        click.echo(json.dumps({"mentions": rows, "next_cursor": page.next_cursor}, ensure_ascii=False, indent=2))
        return
    if fmt == "csv":
        out = io.StringIO()
        columns = list(rows[0]) if rows else ["id", "ts", "source", "url", "title", "text", "sentiment"]
        writer = csv.DictWriter(out, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (";".join(v) if isinstance(v, list) else v) for k, v in row.items()})
        click.echo(out.getvalue(), nl=False)
    else:
        for hit in page.hits:
            line = (hit.title or hit.text).replace("\n", " ")[:90]
            click.echo(f"{hit.ts:%Y-%m-%d %H:%M}  {hit.sentiment:<8}  {hit.source:<10}  {line}")
        if not page.hits:
            click.echo("no mention found")
    if page.next_cursor:
        click.echo(f"more: --cursor {page.next_cursor}", err=fmt != "table")


@click.group()
def alerts() -> None:
    """The archived alerts."""


_ALERT_COLUMNS = [
    "raised_at",
    "status",
    "watch",
    "kind",
    "severity",
    "observed",
    "expected",
    "mention_count",
    "summary",
    "id",
    "started_at",
    "ends_at",
    "lang",
    "source",
]


@alerts.command("list")
@click.option("--since", default="7d", show_default=True, help="Raised from this long ago (90d) or this time.")
@click.option("--until", help="Raised before this long ago or this time.")
@click.option("--watch", help="Only this watch's alerts.")
@click.option("--status", type=click.Choice(["firing", "resolved"]), multiple=True, help="Repeat for both.")
@click.option("--kind", type=click.Choice(["negative_mention", "volume_spike", "negative_spike"]), multiple=True)
@click.option("--limit", type=click.IntRange(1, 100_000), default=1_000, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@_database
@_config
def alerts_list(
    since: str,
    until: str | None,
    watch: str | None,
    status: tuple[str, ...],
    kind: tuple[str, ...],
    limit: int,
    fmt: str,
    database: str | None,
    config_path: Path | None,
) -> None:
    """List archived alerts, newest first (a firing alert and its resolution are two rows)."""
    start, end = _moment(since), _moment(until)

    async def run() -> list[ArchivedAlert]:
        engine = _engine(database, config_path, write=False)
        try:
            return await list_alerts(engine, watch=watch, since=start, until=end, status=status, kind=kind, limit=limit)
        except AggregationError as exc:
            raise click.ClickException(str(exc)) from None
        except Exception as exc:
            raise click.ClickException(f"{describe_url(engine.url)}: {type(exc).__name__}: {exc}") from None
        finally:
            await engine.dispose()

    rows = asyncio.run(run())
    if fmt == "json":
        click.echo(json.dumps({"alerts": [row.as_json() for row in rows]}, ensure_ascii=False, indent=2))
        return
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=_ALERT_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: v for k, v in row.as_json().items() if k in _ALERT_COLUMNS})
        click.echo(out.getvalue(), nl=False)
        return
    if not rows:
        click.echo("no alert found")
        return
    for row in rows:
        ratio = ""
        if row.observed is not None and row.expected is not None:
            ratio = f"{row.observed:g}/{row.expected:.1f}"
        click.echo(
            f"{row.raised_at:%Y-%m-%d %H:%M}  {row.status:<8}  {row.severity:<8}  {row.watch:<16}  "
            f"{row.kind:<16}  {ratio:>10}  {row.summary[:60]}"
        )
