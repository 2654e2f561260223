"""Per-batch writes (migration 0010): on SQLite the store feeds the full-text index and the pre-counts of a batch
itself, once per key, and every count still equals counting the rows; other writers keep the triggers.

Real SQLite files and PostgreSQL (Debian's package), the archive's own store and migrations."""

from __future__ import annotations

import sqlite3
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

from alembic import command
from sqlalchemy import text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from services.archive.db import _alembic_config, make_engine, migrate, revision
from services.archive.store import ArchiveStore
from tests.archive.test_tops import NOW, check, mention
from veille.models import MentionClassified

# the triggers' own arithmetic (migrations 0006 and 0007), recomputed from the base rows
_LITE_COUNTS = (
    "SELECT watch, CAST(strftime('%s', ts) AS INTEGER) / 300, sentiment, count(*) FROM mention_watches GROUP BY 1, 2, 3"
)
_LITE_TOPS = " UNION ALL ".join(
    f"SELECT w.value, CAST(strftime('%s', m.ts) AS INTEGER) / 86400, '{dimension}', m.{column}, count(*) "
    f"FROM mentions AS m, json_each(m.watches) AS w WHERE m.{column} IS NOT NULL GROUP BY 1, 2, 4"
    for dimension, column in (("stories", "story_id"), ("sources", "source"), ("sites", "site"))
)
_PG_COUNTS = (
    "SELECT watch, CAST(floor(extract(epoch FROM ts) / 300) AS bigint), sentiment, count(*) FROM mention_watches "
    "GROUP BY 1, 2, 3"
)
_PG_TOPS = (
    "SELECT w.watch, CAST(floor(extract(epoch FROM m.ts) / 86400) AS integer), d.dimension, d.key, count(*) "
    "FROM mentions AS m CROSS JOIN LATERAL jsonb_array_elements_text(m.watches) AS w(watch) "
    "CROSS JOIN LATERAL (VALUES ('stories', m.story_id), ('sources', m.source), ('sites', m.site)) "
    "AS d(dimension, key) "
    "WHERE d.key IS NOT NULL GROUP BY 1, 2, 3, 4"
)


async def exact_counts(engine: AsyncEngine) -> None:
    """Every ``mention_counts`` (watch, bucket, sentiment) and ``mention_tops`` (watch, day, dimension, key) count
    equals the rows counted the triggers' way (zero counts kept by the volume table are left out)."""
    postgres = engine.dialect.name == "postgresql"
    tops_sql = _PG_TOPS if postgres else _LITE_TOPS
    async with engine.connect() as conn:
        kept = Counter({tuple(r[:-1]): r[-1] for r in (await conn.execute(text(
            "SELECT watch, bucket, sentiment, n FROM mention_counts WHERE n <> 0"))).all()})  # fmt: skip
        counts_sql = _PG_COUNTS if postgres else _LITE_COUNTS
        rows = Counter({tuple(r[:-1]): r[-1] for r in (await conn.execute(text(counts_sql))).all()})
        assert kept == rows and sum(rows.values()) > 0
        tops = Counter({tuple(r[:-1]): r[-1] for r in (await conn.execute(text(
            "SELECT watch, day, dimension, key, n FROM mention_tops WHERE n <> 0"))).all()})  # fmt: skip
        want = Counter({tuple(r[:-1]): r[-1] for r in (await conn.execute(text(tops_sql))).all()})
        assert tops == want and sum(want.values()) > 0


def _fts_intact(path: Path) -> int:
    """FTS5's own check that ``mentions_fts`` holds exactly the words of ``mentions`` (raises otherwise);
    returns how many mentions a phrase query finds."""
    db = sqlite3.connect(path)
    try:
        db.execute("INSERT INTO mentions_fts (mentions_fts) VALUES ('integrity-check')")
        return int(
            db.execute("SELECT count(*) FROM mentions_fts WHERE mentions_fts MATCH '\"brasserie dupre\"'").fetchone()[0]
        )
    finally:
        db.close()


def _insert_elsewhere(path: Path, copies: range) -> None:
    """Rows written by a plain connection, not the store (as ``bench/archive_corpus.py`` bulk-loads): copies of
    stored mentions (``seq`` 1, 2, ...) under other ids, with their watch rows."""
    db = sqlite3.connect(path)
    for n, i in enumerate(copies, start=1):
        db.execute(
            "INSERT INTO mentions (id, ts, source, watch, url, title, text, author, site, lang, sentiment, "
            "sentiment_score, story_id, watches, engagement, published_at, ingested_at, classified_at, "
            "archived_at) SELECT 'copy:' || ?, ts, source, watch, url, title, text, author, site, lang, "
            "sentiment, sentiment_score, story_id, watches, engagement, published_at, ingested_at, "
            "classified_at, archived_at FROM mentions WHERE seq = ?",
            (i, n),
        )
        db.execute(
            "INSERT INTO mention_watches (watch, ts, mention_id, sentiment) SELECT w.value, m.ts, m.id, "
            "m.sentiment FROM mentions AS m, json_each(m.watches) AS w WHERE m.id = 'copy:' || ?",
            (i,),
        )
    db.commit()
    db.close()


def _again(i: int, *, version: int, **changes: Any) -> MentionClassified:
    first = mention(i, NOW - timedelta(hours=(i * 5) % 150, minutes=i % 50))
    return first.model_copy(update={"classified_at": NOW + timedelta(seconds=version), **changes})


async def test_a_batch_writes_each_count_once_and_the_full_text_index_whole(tmp_path: Path) -> None:
    """SQLite: 120 new mentions of one watch, one day and three sources go in as one upsert per distinct count key
    (before: one per mention and dimension, 360 top-list upserts); every count equals the rows, FTS5's integrity
    check passes and a phrase search finds every mention; the batch marker is never left behind. Rows another
    connection inserts beside the store's batches are still indexed and counted by the triggers."""
    path = tmp_path / "archive.sqlite3"
    writer = make_engine(make_url(f"sqlite+aiosqlite:///{path}"))
    try:
        await migrate(writer)
        db = sqlite3.connect(path)
        db.execute("CREATE TABLE audit (what TEXT NOT NULL)")
        for table in ("mention_counts", "mention_tops"):
            for op in ("INSERT", "UPDATE"):
                db.execute(
                    f"CREATE TRIGGER audit_{table}_{op.lower()} AFTER {op} ON {table} "
                    f"BEGIN INSERT INTO audit VALUES ('{table}'); END"
                )
        db.commit()
        moment = NOW.replace(minute=0) - timedelta(hours=2)
        batch = [
            mention(i, moment + timedelta(seconds=i), watches=["acme"]).model_copy(
                update={"story_id": f"story-{i % 4}", "sentiment": ("negative", "neutral", "positive")[i % 3]}
            )
            for i in range(120)
        ]
        store = ArchiveStore(writer, retention=timedelta(days=400))
        assert (await store.write_mentions(batch)).written == 120
        written = Counter(what for (what,) in db.execute("SELECT what FROM audit"))
        tops = db.execute("SELECT count(*) FROM mention_tops").fetchone()[0]
        buckets = db.execute("SELECT count(*) FROM mention_counts").fetchone()[0]
        assert tops <= 4 + 4 + 5 and buckets == 3  # 4 stories, 4 sources, 5 sites; one bucket, three sentiments
        assert written == {"mention_tops": tops, "mention_counts": buckets}  # one write per key
        assert db.execute("SELECT count(*) FROM archive_batch").fetchone()[0] == 0
        db.close()
        assert _fts_intact(path) == 120
        await exact_counts(writer)
        # other writers beside the store's batches: the triggers index and count their rows, exactly
        _insert_elsewhere(path, range(1000, 1030))
        await store.write_mentions([_again(i, version=0) for i in range(200, 240)])
        assert _fts_intact(path) == 190
        await exact_counts(writer)
    finally:
        await writer.dispose()


def _downgrade(connection: Connection, target: str) -> None:
    config = _alembic_config()
    config.attributes["connection"] = connection
    command.downgrade(config, target)
    connection.commit()


async def test_upgrade_from_0009_and_downgrade_keep_every_count_equal_to_the_rows(db_url: str) -> None:
    """An archive written at 0009, upgraded to the newest, written again (new, redelivered and reclassified
    mentions), then downgraded to 0009 and written again: the counts equal the rows at every step (and on
    SQLite the full-text index holds exactly the mentions' words)."""
    writer = make_engine(make_url(db_url))
    path = Path(make_url(db_url).database or "")
    try:
        assert await migrate(writer, "0009") == "0009"
        store = ArchiveStore(writer, retention=timedelta(days=400))
        await store.prepare()
        await store.write_mentions([_again(i, version=0) for i in range(100)])
        await migrate(writer)
        assert await revision(writer) != "0009"
        store = ArchiveStore(writer, retention=timedelta(days=400))
        await store.prepare()
        await store.write_mentions(
            [_again(i, version=0) for i in range(50)]  # a redelivery
            + [_again(i, version=1, sentiment="neutral", watches=["c"]) for i in range(50, 80)]  # reclassified
            + [_again(i, version=0) for i in range(100, 180)]  # new
        )
        await exact_counts(writer)
        if writer.dialect.name == "sqlite":
            assert _fts_intact(path) > 0
        async with writer.connect() as conn:
            await conn.run_sync(_downgrade, "0009")
        assert await revision(writer) == "0009"
        store = ArchiveStore(writer, retention=timedelta(days=400))
        await store.prepare()
        await store.write_mentions(
            [_again(i, version=2, sentiment="positive", watches=["a", "b"]) for i in range(60, 90)]
            + [_again(i, version=0) for i in range(180, 240)]
        )
        await exact_counts(writer)
        assert await check(writer) > 50
        if writer.dialect.name == "sqlite":
            assert _fts_intact(path) > 0
    finally:
        await writer.dispose()


async def test_a_running_store_follows_a_downgrade_to_0009_without_a_restart(tmp_path: Path) -> None:
    """SQLite: the store learnt at its first write that the schema has 0010's batch marker; the archive is then
    downgraded to 0009 beside it (``veille db downgrade`` while the service runs). Its next batch is written
    whole, through 0009's triggers, with every count equal to the rows and the full-text index intact (before:
    every write failed with "no such table: archive_batch" until a restart, and the service dead-lettered each
    mention as refused by the database); upgraded again, the store goes back to its per-batch writes."""
    path = tmp_path / "archive.sqlite3"
    writer = make_engine(make_url(f"sqlite+aiosqlite:///{path}"))
    try:
        await migrate(writer)
        store = ArchiveStore(writer, retention=timedelta(days=400))
        assert (await store.write_mentions([_again(i, version=0) for i in range(40)])).written == 40
        async with writer.connect() as conn:
            await conn.run_sync(_downgrade, "0009")
        result = await store.write_mentions(
            [_again(i, version=1, sentiment="neutral", watches=["c"]) for i in range(20, 30)]  # reclassified
            + [_again(i, version=0) for i in range(40, 90)]  # new
        )
        assert (result.written, result.unchanged) == (60, 0)
        await exact_counts(writer)
        assert _fts_intact(path) == 90
        await migrate(writer)
        assert (await store.write_mentions([_again(i, version=0) for i in range(90, 130)])).written == 40
        await exact_counts(writer)
        assert _fts_intact(path) == 130
        db = sqlite3.connect(path)
        try:
            assert db.execute("SELECT count(*) FROM archive_batch").fetchone()[0] == 0
        finally:
            db.close()
    finally:
        await writer.dispose()
