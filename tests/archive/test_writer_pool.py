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

from sqlalchemy import event
from sqlalchemy.engine import make_url

from services.archive.db import WRITER_CACHE_KIB, WRITER_CONNECTIONS, make_engine, migrate
from services.archive.store import ArchiveStore
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
