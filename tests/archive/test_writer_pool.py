"""The SQLite writer engine's connections: each keeps up to 32 MiB of pages (``db.WRITER_CACHE_KIB``), so the
engine holds only a few (``db.WRITER_CONNECTIONS``; SQLAlchemy's default pool opened up to 15, ~480 MiB of page
cache at worst). More writers at once than that queue for a connection, as they queue for SQLite's write lock
anyway, and every one of them commits.

A real SQLite file, the archive's own migrations, store and engine set-up."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from services.archive.db import WRITER_CACHE_KIB, WRITER_CONNECTIONS, make_engine, migrate
from services.archive.store import ArchiveStore, is_connection_error
from tests.archive.test_tops import NOW, mention


async def test_many_writers_at_once_share_a_few_connections_and_all_commit(tmp_path: Path) -> None:
    """Twelve batches written at once (the mentions' and alerts' consumers, retention, the console's writes ...
    under a burst): every mention is stored, and the writer engine never opened more than its bound, each
    connection with the writer's page cache. Before: one connection per concurrent batch (twelve here)."""
    path = tmp_path / "archive.sqlite3"
    writer = make_engine(make_url(f"sqlite+aiosqlite:///{path}"))
    opened: list[int] = []

    @event.listens_for(writer.sync_engine, "connect")
    def _count(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA cache_size")
        opened.append(int(cursor.fetchone()[0]))
        cursor.close()

    try:
        await migrate(writer)
        store = ArchiveStore(writer, retention=timedelta(days=400))
        batches = [[mention(b * 100 + i, NOW - timedelta(hours=b, minutes=i)) for i in range(40)] for b in range(12)]
        results = await asyncio.gather(*(store.write_mentions(batch) for batch in batches))
        assert [r.written for r in results] == [40] * 12
        assert 1 <= len(opened) <= WRITER_CONNECTIONS
        assert set(opened) == {-WRITER_CACHE_KIB}
    finally:
        await writer.dispose()
    db = sqlite3.connect(path)
    try:
        assert db.execute("SELECT count(*) FROM mentions").fetchone()[0] == 480
    finally:
        db.close()


async def test_postgres_writer_keeps_writing_on_the_connection_it_used_last(postgres: Any) -> None:
    """PostgreSQL: after a moment when two callers held a connection each (the archive's first batch beside
    its start-up retention), the batches that follow one another go through one connection, the one used
    last: its prepared statements and their plans serve every batch, and a DBA sees one busy session. Before
    (the pool's first-in first-out order) the batches alternated over both sessions, each preparing and
    planning the same statements (pg_stat_statements: twice the plans of the store bench's lone writer)."""
    writer = make_engine(make_url(postgres.create_database()))
    try:
        await migrate(writer)
        store = ArchiveStore(writer, retention=timedelta(days=400))
        await store.prepare()
        async with writer.connect() as one, writer.connect() as two:  # two callers at once: two sessions open
            await one.exec_driver_sql("SELECT 1")
            await two.exec_driver_sql("SELECT 1")
        used: list[int] = []

        @event.listens_for(writer.sync_engine, "checkout")
        def _used(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
            used.append(id(dbapi_connection))

        for b in range(6):
            await store.write_mentions([mention(b * 100 + i, NOW - timedelta(hours=b, minutes=i)) for i in range(5)])
        sessions = used[:]
        assert len(set(sessions)) == 1, f"consecutive batches went through sessions {sessions}"
        async with writer.connect() as conn:
            assert (await conn.exec_driver_sql("SELECT count(*) FROM mentions")).scalar_one() == 30
    finally:
        await writer.dispose()


async def test_sqlite_a_refused_batch_is_rolled_back_and_said_in_sqlalchemys_terms(tmp_path: Path) -> None:
    """SQLite runs a batch's statements in aiosqlite's thread in one hand-off (``store._lite_write``): an error
    there still reaches the service as SQLAlchemy's exception (how it tells "refused" from "unavailable": the
    former isolates the row, the latter holds the batch), the whole batch is rolled back, and the next batch
    commits on the same engine."""
    path = tmp_path / "archive.sqlite3"
    writer = make_engine(make_url(f"sqlite+aiosqlite:///{path}"))
    try:
        await migrate(writer)
        async with writer.begin() as conn:
            await conn.exec_driver_sql(
                "CREATE TRIGGER refuse BEFORE INSERT ON mentions WHEN NEW.id LIKE '%:5' "
                "BEGIN SELECT RAISE(ABORT, 'refused by a check'); END"
            )
        store = ArchiveStore(writer, retention=timedelta(days=400))
        with pytest.raises(DBAPIError, match="refused by a check") as caught:
            await store.write_mentions([mention(i, NOW - timedelta(minutes=i)) for i in range(4, 8)])
        assert not is_connection_error(caught.value)
        result = await store.write_mentions([mention(i, NOW - timedelta(minutes=i)) for i in range(10, 14)])
        assert result.written == 4
    finally:
        await writer.dispose()
    db = sqlite3.connect(path)
    try:
        assert [r[0] for r in db.execute("SELECT id FROM mentions ORDER BY id")] == [f"{s}:{i}" for s, i in
            sorted((mention(i, NOW).mention.source, i) for i in range(10, 14))]  # fmt: skip
        assert db.execute("SELECT count(*) FROM mention_watches WHERE mention_id LIKE '%:5'").fetchone()[0] == 0
    finally:
        db.close()
