"""The archive's batch write path on a real database: what the one-statement-per-batch upsert must keep."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import insert, select
from sqlalchemy.engine import make_url

from services.archive.db import make_engine, migrate
from services.archive.schema import mentions
from services.archive.store import ArchiveStore, month_of
from tests.archive.conftest import scalar
from tests.archive.postgres import PostgresServer
from veille.models import MentionClassified, MentionIngested


def _mention(index: int, ingested: datetime, watches: list[str]) -> MentionClassified:
    """A mention without a published time: its archive time is its ingested time (which a re-ingest moves)."""
    return MentionClassified(
        mention=MentionIngested(id=f"rss:{index}", source="rss", text=f"Acme recall {index}", ingested_at=ingested),
        sentiment="negative",
        sentiment_score=-0.5,
        watches=watches,
    )


async def test_an_id_another_writer_is_committing_keeps_that_writers_time(postgres: PostgresServer) -> None:
    """Two replicas archive the same mention with different ingested times, the second while the first's
    transaction is still open: the second waits, then stores nothing new and uses the first one's time
    (one row, one key, both at the first time), and its other mentions are stored as usual."""
    url = postgres.create_database()
    engine = make_engine(make_url(url))
    now = datetime.now(UTC).replace(microsecond=0)
    first_time, second_time = now - timedelta(hours=2), now - timedelta(hours=1)
    parsed = make_url(url)
    other = await asyncpg.connect(host=parsed.host, port=parsed.port, user=parsed.username, database=parsed.database)
    try:
        await migrate(engine)
        store = ArchiveStore(engine, retention=timedelta(days=400))
        await store.prepare()
        await store.ensure_partitions({month_of(first_time), month_of(second_time)})
        # the first replica, mid-transaction: its key for rss:1 is written, not committed
        transaction = other.transaction()
        await transaction.start()
        await other.execute("INSERT INTO mention_keys (id, ts) VALUES ('rss:1', $1)", first_time)
        write = asyncio.create_task(
            store.write_mentions([_mention(1, second_time, ["acme"]), _mention(2, second_time, ["acme"])])
        )
        await asyncio.sleep(1.0)
        assert not write.done(), "the second writer did not wait for the first one's key"
        await other.execute(
            "INSERT INTO mentions (id, ts, source, text, sentiment, sentiment_score, watches, ingested_at, "
            "classified_at, archived_at) VALUES ('rss:1', $1, 'rss', 'Acme recall 1', 'negative', -0.5, "
            "'[\"acme\"]', $1, $1, $1)",
            first_time,
        )
        await transaction.commit()
        result = await asyncio.wait_for(write, 30)
        assert (result.written, result.unchanged) == (2, 0)  # rss:1 reclassified (a later classified_at), rss:2 new
        reader = make_engine(make_url(url), write=False)
        try:
            assert await scalar(reader, "SELECT count(*) FROM mentions WHERE id = 'rss:1'") == 1
            stored = await scalar(reader, "SELECT ts FROM mentions WHERE id = 'rss:1'")
            assert stored == first_time
            assert await scalar(reader, "SELECT ts FROM mention_keys WHERE id = 'rss:1'") == first_time
            assert await scalar(reader, "SELECT ts FROM mention_watches WHERE mention_id = 'rss:1'") == first_time
            assert await scalar(reader, "SELECT ts FROM mentions WHERE id = 'rss:2'") == second_time
        finally:
            await reader.dispose()
    finally:
        await other.close()
        await engine.dispose()


@pytest.mark.parametrize("size", [1, 1200])
async def test_a_replayed_batch_writes_nothing_and_a_reclassified_one_moves_only_its_watches(
    db_url: str, size: int
) -> None:
    """A batch written twice: the second time nothing is written; the same mentions reclassified (new
    classified_at, one watch swapped, one dropped, sentiment changed): every row rewritten in place,
    the watches table holds exactly the new watches with the new sentiment, nothing twice."""
    engine = make_engine(make_url(db_url))
    now = datetime.now(UTC).replace(microsecond=0)
    try:
        await migrate(engine)
        store = ArchiveStore(engine, retention=timedelta(days=400))
        await store.prepare()
        batch = [_mention(i, now - timedelta(minutes=i), ["acme", "globex"]) for i in range(size)]
        assert (await store.write_mentions(batch)).written == size
        assert (await store.write_mentions(batch)).unchanged == size
        again = [
            m.model_copy(
                update={
                    "watches": ["acme", "initech"] if i % 2 else ["acme"],
                    "sentiment": "positive",
                    "classified_at": datetime.now(UTC) + timedelta(seconds=1),  # later than the first: it wins
                }
            )
            for i, m in enumerate(batch)
        ]
        assert (await store.write_mentions(again)).written == size
        reader = make_engine(make_url(db_url), write=False)
        try:
            assert await scalar(reader, "SELECT count(*) FROM mentions") == size
            expected = size + size // 2
            assert await scalar(reader, "SELECT count(*) FROM mention_watches") == expected
            assert await scalar(reader, "SELECT count(*) FROM mention_watches WHERE watch = 'globex'") == 0
            assert await scalar(reader, "SELECT count(*) FROM mention_watches WHERE watch = 'initech'") == size // 2
            assert await scalar(reader, "SELECT count(*) FROM mention_watches WHERE sentiment = 'positive'") == expected
            assert await scalar(reader, "SELECT count(*) FROM mentions WHERE sentiment = 'positive'") == size
        finally:
            await reader.dispose()
    finally:
        await engine.dispose()


async def test_sqlite_rows_are_stored_as_sqlalchemys_types_store_them(tmp_path: Path) -> None:
    """The writer's SQLite values are byte for byte what SQLAlchemy's column types write (the readers parse them
    with those types, and rows archived before by the Core upsert must compare equal): a mention first stored
    through SQLAlchemy Core, then replayed through the writer, is unchanged; a new one reads back the same."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'archive.sqlite3'}"
    engine = make_engine(make_url(url))
    moment = datetime(2026, 3, 1, 8, 30, 5, 120, tzinfo=timezone(timedelta(hours=2)))
    try:
        await migrate(engine)
        store = ArchiveStore(engine, retention=timedelta(days=4000))
        old = _mention(1, moment, ["acme"]).model_copy(update={"classified_at": moment})
        row = store._mention_row(old, moment)
        async with engine.begin() as conn:  # what the Core upsert wrote for it before
            await conn.execute(insert(mentions), {k: v for k, v in row.items() if k in mentions.c})
        assert (await store.write_mentions([old])).unchanged == 1
        new = _mention(2, moment, ["acme", "globex"]).model_copy(update={"classified_at": moment})
        assert (await store.write_mentions([new])).written == 1
        async with engine.connect() as conn:
            raw = (
                await conn.exec_driver_sql(
                    "SELECT ts, ingested_at, classified_at, watches, engagement FROM mentions WHERE id = 'rss:2'"
                )
            ).one()
            typed = (
                await conn.execute(
                    select(mentions.c.ts, mentions.c.classified_at, mentions.c.watches).where(mentions.c.id == "rss:2")
                )
            ).one()
        assert raw.ts == raw.ingested_at == "2026-03-01 06:30:05.000120"  # UTC, microseconds, as DATETIME stores
        assert typed.ts == datetime(2026, 3, 1, 6, 30, 5, 120)
        assert typed.classified_at == typed.ts
        assert typed.watches == ["acme", "globex"]
        assert raw.engagement is None
    finally:
        await engine.dispose()
