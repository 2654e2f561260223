"""Writers side by side (``archive.writers`` on PostgreSQL, or two replicas): batches may commit out of stream
order, and PostgreSQL may end one writer's transaction as a deadlock. Neither loses, duplicates or regresses a
mention. Real databases: SQLite files and Debian's PostgreSQL (``tests/archive/postgres.py``)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
from nats.js import JetStreamContext
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from services.archive.db import make_engine, migrate
from services.archive.store import ArchiveStore
from tests.archive.conftest import (
    classified,
    encode,
    equals,
    is_true,
    make_archive,
    publish_mentions,
    scalar,
    wait_for,
)
from tests.archive.test_archive_faults import settled
from tests.archive.test_tops import NOW, mention
from veille import bus
from veille.natsserver import NatsServerProcess


async def test_an_older_classification_arriving_after_a_newer_one_changes_nothing(
    db_url: str, reader: AsyncEngine
) -> None:
    """Two batches of the same mentions committed out of order (the later classification first): the archive
    keeps the later classification, its watches and their counts; the older one is counted as unchanged."""
    engine = make_engine(make_url(db_url))
    try:
        await migrate(engine)
        store = ArchiveStore(engine, retention=timedelta(days=400))
        await store.prepare()
        at = NOW - timedelta(hours=2)
        newer = [
            mention(i, at, version=2, watches=["b"]).model_copy(update={"sentiment": "positive"}) for i in range(20)
        ]
        older = [mention(i, at, version=1, watches=["a"]) for i in range(20)]
        assert (await store.write_mentions(newer)).written == 20
        result = await store.write_mentions(older)
        assert (result.written, result.unchanged) == (0, 20)
        assert await scalar(reader, "SELECT count(*) FROM mentions WHERE sentiment = 'positive'") == 20
        assert await scalar(reader, "SELECT count(*) FROM mention_watches WHERE watch = 'b'") == 20
        assert await scalar(reader, "SELECT count(*) FROM mention_watches WHERE watch = 'a'") == 0
        assert await scalar(reader, "SELECT sum(n) FROM mention_counts WHERE watch = 'b'") == 20
        assert not await scalar(reader, "SELECT sum(n) FROM mention_counts WHERE watch = 'a'")
        # and a later classification still replaces it
        latest = [mention(i, at, version=3, watches=["a"]) for i in range(20)]
        assert (await store.write_mentions(latest)).written == 20
        assert await scalar(reader, "SELECT count(*) FROM mentions WHERE sentiment = 'negative'") == 20
        assert await scalar(reader, "SELECT sum(n) FROM mention_counts WHERE watch = 'a'") == 20
        # new mentions, both copies in one batch, the older last (a redelivery behind the newer): the newer kept
        both = [
            copy
            for i in range(100, 105)
            for copy in (
                mention(i, at, version=2, watches=["b"]).model_copy(update={"sentiment": "positive"}),
                mention(i, at, version=1, watches=["a"]),
            )
        ]
        assert (await store.write_mentions(both)).written == 5
        assert await scalar(reader, "SELECT count(*) FROM mentions WHERE sentiment = 'positive'") == 5
    finally:
        await engine.dispose()


async def _wait_until_waiting_for_a_lock(side: asyncpg.Connection) -> None:
    """Until the archive's session waits for a lock (pg_stat_activity), or fail after 30 s."""
    for _ in range(300):
        waiting = await side.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'veille-archive' "
            "AND wait_event_type = 'Lock'"
        )
        if waiting:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the archive's batch never waited for the lock the test holds")


async def test_postgres_a_batch_ended_as_a_deadlock_is_written_again(postgres: Any) -> None:
    """Another session holds the volume-count row the batch's trigger must update, then inserts the very
    mention key the batch has just inserted: a real deadlock, which PostgreSQL breaks by ending the batch's
    transaction (its deadlock_timeout is the shorter). The store writes the batch again, counts the conflict,
    and every mention ends up stored once, the counts exact."""
    url = postgres.create_database()
    engine = make_engine(make_url(url))
    conflicts: list[int] = []
    parsed = make_url(url)
    side = await asyncpg.connect(host=parsed.host, port=parsed.port, user=parsed.username, database=parsed.database)
    # the archive's sessions look for a deadlock 5 s after they start waiting (1 s by default): the side
    # session's insert, which closes the cycle, starts well within that even on a loaded machine
    await side.execute(f"ALTER DATABASE {parsed.database} SET deadlock_timeout = '5s'")
    try:
        await migrate(engine)
        store = ArchiveStore(engine, retention=timedelta(days=400))
        store.on_conflict = lambda: conflicts.append(1)
        await store.prepare()
        at = NOW - timedelta(hours=1)
        first = mention(0, at, watches=["a"])
        assert (await store.write_mentions([first])).written == 1
        later = mention(4, at + timedelta(seconds=1), watches=["a"])  # the same 5-minute bucket, watch, sentiment
        await side.execute("SET deadlock_timeout = '60s'")  # so PostgreSQL ends the archive's side, not this one
        await side.execute("BEGIN")
        assert await side.fetchval("SELECT count(*) FROM (SELECT 1 FROM mention_counts WHERE watch = 'a' FOR UPDATE) l")
        writing = asyncio.create_task(store.write_mentions([later]))
        await _wait_until_waiting_for_a_lock(side)  # the batch holds its new key and waits for the count row
        await side.execute(
            "INSERT INTO mention_keys (id, ts) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
            later.mention.id,
            later.mention.published_at,
        )  # waits for the batch's key: a cycle, which PostgreSQL breaks after the batch's deadlock_timeout (5 s)
        await side.execute("COMMIT")
        result = await asyncio.wait_for(writing, 60)
        assert result.written == 1
        assert conflicts == [1]
        async with engine.connect() as conn:
            assert (await conn.exec_driver_sql("SELECT count(*) FROM mentions")).scalar_one() == 2
            assert (await conn.exec_driver_sql("SELECT count(*) FROM mention_keys")).scalar_one() == 2
            assert (await conn.exec_driver_sql("SELECT sum(n) FROM mention_counts WHERE watch = 'a'")).scalar_one() == 2
            assert (await conn.exec_driver_sql("SELECT count(*) FROM mention_watches")).scalar_one() == 2
    finally:
        await side.close()
        await engine.dispose()


async def test_postgres_a_batch_deadlocked_again_and_again_is_stored_never_dead_lettered(
    nats_server: NatsServerProcess, js: JetStreamContext, tmp_path: Path, postgres: Any
) -> None:
    """PostgreSQL ends the same batch as a deadlock seven times in a row (a trigger raising SQLSTATE 40P01
    while a sequence, which no rollback undoes, is under 8): the store's five attempts run out, the service
    goes on trying later instead of taking it for refused data, and the mentions are stored once, acked,
    none dead-lettered; each conflict is counted."""
    db_url = postgres.create_database()
    parsed = make_url(db_url)
    reader = make_engine(parsed, write=False)
    app = make_archive(nats_server.url, db_url, tmp_path, batch_size=50)
    await app.start()
    side = await asyncpg.connect(host=parsed.host, port=parsed.port, user=parsed.username, database=parsed.database)
    try:
        await wait_for(lambda: is_true(app.health.problems() == {}), "the archive ready")
        await side.execute(
            """
            CREATE SEQUENCE deadlocks;
            CREATE FUNCTION deadlock_now() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF nextval('deadlocks') < 8 THEN
                    RAISE EXCEPTION 'deadlock detected (test)' USING ERRCODE = 'deadlock_detected';
                END IF;
                RETURN NULL;
            END $$;
            CREATE TRIGGER deadlock_now AFTER INSERT ON mention_keys FOR EACH STATEMENT EXECUTE FUNCTION deadlock_now();
            """
        )
        await publish_mentions(js, [encode(classified(i)) for i in range(20)])
        await wait_for(
            lambda: equals(scalar(reader, "SELECT count(*) FROM mentions"), 20),
            "the mentions stored after the deadlocks",
            timeout=120,
        )
        await wait_for(lambda: settled(js), "every mention acked, none pending")
        assert await scalar(reader, "SELECT count(DISTINCT id) FROM mentions") == 20
        assert (await js.stream_info(bus.DEADLETTER.name)).state.messages == 0
        assert app.database_errors.labels("conflict")._value.get() == 7
        assert app.database_errors.labels("refused")._value.get() == 0
    finally:
        await side.close()
        await app.stop()
        await reader.dispose()
