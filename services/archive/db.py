"""The archive's database: its URL, its engine, and its migrations (``veille db upgrade``).

One code path for both databases, SQLAlchemy 2 Core over asyncio drivers:

- **SQLite** (``sqlite+aiosqlite``), the embedded default under ``veille up``: a file in the data
  directory, WAL journal (readers never block the writer), ``synchronous=NORMAL`` (a commit
  survives a process crash; an OS crash may lose the last transactions, which JetStream then
  redelivers: nothing is acked before its commit), a 30 s busy timeout, and ``BEGIN IMMEDIATE``
  for writers so two writers queue instead of failing on a lock upgrade. A writer's connections
  keep up to :data:`WRITER_CACHE_KIB` of pages (SQLite's default is 2 MiB), and a writer engine holds
  at most :data:`WRITER_CONNECTIONS` of them.
- **PostgreSQL** (``postgresql+asyncpg``), for compose and production: a small pool with pre-ping,
  a 10 s connect timeout and a statement timeout, and the application name ``veille-archive``.

:func:`migrate` brings the schema to the newest Alembic revision. Replicas starting at once take
turns: a PostgreSQL session advisory lock, or an exclusive ``flock`` on ``<database>.migrate.lock``
beside the SQLite file; the second one finds the schema up to date and does nothing.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import structlog
from alembic import command
from alembic.config import Config
from pydantic import Field, SecretStr
from sqlalchemy import Connection, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from veille.config import ArchiveConfig
from veille.settings import ServiceSettings, SettingsError, read_secret_file

__all__ = [
    "DEFAULT_FILE",
    "MIGRATIONS",
    "WRITER_CONNECTIONS",
    "ArchiveSettings",
    "DatabaseConfigError",
    "database_url",
    "describe_url",
    "make_engine",
    "migrate",
    "revision",
]

log = structlog.get_logger("archive.db")

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
DEFAULT_FILE = "archive.sqlite3"
URL_VARIABLE = "VEILLE_ARCHIVE_DATABASE_URL"
PASSWORD_VARIABLE = "VEILLE_ARCHIVE_DATABASE_PASSWORD"  # noqa: S105 - the variable's name
MIGRATION_LOCK = 0x7665696C6C6501  # "veille\x01": the advisory lock key migrations take on PostgreSQL
WRITER_CACHE_KIB = 32_768
"""SQLite page cache of a writer connection, KiB (``PRAGMA cache_size``; an upper bound, filled as pages are
read). A batch's rows land all over the indexes of ``mentions`` and ``mention_watches`` (ids, stories,
sources, sites, times); with SQLite's default 2 MiB those pages were read again from the OS at every
batch: 50,000 mentions went in at 2,075-2,402/s (127-166 us of CPU each) with 2 MiB, 2,997-3,256/s with
32 MiB (interleaved, load 5.5); the mentions' insert 98-114 -> 55-62 us a mention, the watches' 53-60 -> 28."""
WRITER_CONNECTIONS = 4
"""Connections a SQLite writer engine holds at most (SQLAlchemy's default pool opens up to 15, and with
:data:`WRITER_CACHE_KIB` each that was up to ~480 MiB of page cache; now at most 128 MiB). Writes are serialised
by ``BEGIN IMMEDIATE`` anyway; the archive's writers at once are the mentions' and the alerts' batches, retention
and a ping after a failed write, the console's are short transactions. A caller past these waits its turn in
the pool (:data:`WRITER_POOL_TIMEOUT`), as it would have waited for SQLite's lock; the pool hands out the
connection used last (LIFO), so a lone writer keeps one connection and its warm cache."""
WRITER_POOL_TIMEOUT = 60.0
"""Seconds a caller waits for a writer connection: twice SQLite's busy timeout (30 s), so a queue in the pool
never fails before the same queue on SQLite's lock would have."""
_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg", "postgres": "postgresql+asyncpg"}


class ArchiveSettings(ServiceSettings):
    """The archive's deployment settings from the environment (compose passes the database so)."""

    archive_database_url: str | None = Field(
        default=None, description="The archive's database URL; wins over archive.database_url in the config."
    )
    archive_database_password: SecretStr | None = Field(
        default=None, description="Its password when the URL has none (or VEILLE_ARCHIVE_DATABASE_PASSWORD_FILE)."
    )


class DatabaseConfigError(SettingsError):
    """The archive's database settings are wrong; the message says which and why (a settings mistake:
    ``veille run archive`` says it in one line and exits 2, as for any ``VEILLE_*`` mistake)."""


def database_url(settings: ServiceSettings, config: ArchiveConfig, env: Mapping[str, str] | None = None) -> URL:
    """The archive's database URL: ``$VEILLE_ARCHIVE_DATABASE_URL``, else ``archive.database_url``, else SQLite.

    ``env`` (tests) stands for the environment, else :class:`ArchiveSettings` reads it (with the
    ``*_FILE`` forms). The default is ``archive.sqlite3`` in the data directory. ``postgresql://`` and ``sqlite://``
    get the asyncio drivers. The password, when not in the URL, comes from
    ``$VEILLE_ARCHIVE_DATABASE_PASSWORD`` or ``archive.password_file`` (compose passes it so).
    """
    if env is None:
        archive = ArchiveSettings()
        secret = archive.archive_database_password
        env = {
            URL_VARIABLE: archive.archive_database_url or "",
            PASSWORD_VARIABLE: secret.get_secret_value() if secret else "",
        }
    raw = env.get(URL_VARIABLE) or config.database_url
    if not raw:
        return make_url(f"sqlite+aiosqlite:///{(Path(settings.data_dir) / DEFAULT_FILE).resolve()}")
    try:
        url = make_url(raw)
    except ArgumentError:
        raise DatabaseConfigError(
            "archive database URL is not a URL such as postgresql://veille@postgres/veille or "
            "sqlite:///var/archive.sqlite3"
        ) from None
    backend = url.get_backend_name()
    if backend not in _DRIVERS:
        raise DatabaseConfigError(f"archive database {backend!r} is not supported: use postgresql or sqlite")
    if "+" not in url.drivername:
        url = url.set(drivername=_DRIVERS[backend])
    if backend == "sqlite" and url.database in (None, "", ":memory:"):
        raise DatabaseConfigError("archive database: SQLite needs a file (an in-memory database is lost on restart)")
    password = env.get(PASSWORD_VARIABLE)
    if not password and config.password_file is not None:
        try:
            password = read_secret_file(config.password_file)
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise DatabaseConfigError(f"archive.password_file {config.password_file}: {reason}") from None
    if password and url.password is None:
        url = url.set(password=password)
    return url


def describe_url(url: URL) -> str:
    """The URL with its password hidden, for logs and messages."""
    return url.render_as_string(hide_password=True)


def make_engine(url: URL, *, write: bool = True, command_timeout: float | None = 120.0, **options: Any) -> AsyncEngine:
    """An async engine set up for ``url``'s database (see the module's notes); ``write`` for the writer.

    ``command_timeout`` (PostgreSQL): seconds a statement may run before the driver gives up; None for
    none (migrations, whose backfills of a large archive take minutes)."""
    if url.get_backend_name() == "sqlite":
        Path(url.database or "").parent.mkdir(parents=True, exist_ok=True)
        if write:
            options.setdefault("pool_size", WRITER_CONNECTIONS)
            options.setdefault("max_overflow", 0)
            options.setdefault("pool_timeout", WRITER_POOL_TIMEOUT)
            options.setdefault("pool_use_lifo", True)
        engine = create_async_engine(url, connect_args={"timeout": 30}, **options)
        begin = "BEGIN IMMEDIATE" if write else "BEGIN"

        @event.listens_for(engine.sync_engine, "connect")
        def _connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself (below)
            cursor = dbapi_connection.cursor()
            for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=30000", "foreign_keys=ON"):
                cursor.execute(f"PRAGMA {pragma}")
            if write:
                cursor.execute(f"PRAGMA cache_size = -{WRITER_CACHE_KIB}")
            cursor.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _begin(connection: Connection) -> None:
            connection.exec_driver_sql(begin)

        return engine
    options.setdefault("pool_size", 5)
    options.setdefault("max_overflow", 5)
    # the connection used last first: a lone writer keeps one connection, its prepared statements and their
    # plans (FIFO rotated the archive's batches over the connections the start-up's retention had opened
    # beside them: twice the statement preparations and plans, pg_stat_statements)
    options.setdefault("pool_use_lifo", True)
    return create_async_engine(
        url,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args={
            "timeout": 10,
            "command_timeout": command_timeout,
            "server_settings": {"application_name": "veille-archive"},
        },
        **options,
    )


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str:
    """The newest revision the migrations shipped in the package lead to (the chain is linear)."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no migration in {MIGRATIONS}")
    return head


def _upgrade(connection: Connection, target: str) -> None:
    config = _alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, target)
    connection.commit()


def _current(connection: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    from services.archive.schema import VERSION_TABLE

    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


async def revision(engine: AsyncEngine) -> str | None:
    """The schema revision the database is at (None: never migrated)."""
    async with engine.connect() as connection:
        return await connection.run_sync(_current)


def _lock_file(path: Path) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except BaseException:
        os.close(fd)
        raise
    return fd


async def migrate(engine: AsyncEngine, target: str = "head") -> str | None:
    """Upgrade the schema to ``target``, one replica at a time; return the revision it is at."""
    if engine.dialect.name == "sqlite":
        lock = Path(f"{engine.url.database}.migrate.lock")
        fd = await asyncio.to_thread(_lock_file, lock)
        try:
            async with engine.connect() as connection:
                await connection.run_sync(_upgrade, target)
        finally:
            os.close(fd)  # closing the descriptor releases the flock
    else:
        # no statement time-out here: a migration's backfill of a 10-million-mention archive takes minutes
        # (it failed at the service's 120 s, for ever), and a second replica waits for the lock as long
        migrator = make_engine(engine.url, command_timeout=None, pool_size=1, max_overflow=0)
        try:
            async with migrator.connect() as connection:
                await connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK})
                await connection.commit()
                try:
                    await connection.run_sync(_upgrade, target)
                finally:
                    await connection.rollback()
                    await connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK})
                    await connection.commit()
        finally:
            await migrator.dispose()
    current = await revision(engine)
    log.info("archive.schema_ready", revision=current, database=describe_url(engine.url))
    return current
