"""The archive's write pipeline: the next batch is read and decoded while the last one commits, and on
PostgreSQL two batches are written side by side.

SQLite is the database of the first test (a file this test can lock from outside: a second connection holding
the write lock makes the archive's commit wait, exactly as a long checkpoint or another writer would); the
second holds a row lock in Debian's PostgreSQL. nats-server real.
"""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
from nats.js import JetStreamContext
from sqlalchemy.engine import make_url

from services.archive.db import make_engine
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
from veille import bus
from veille.natsserver import NatsServerProcess


async def _consumer(js: JetStreamContext) -> tuple[int, int, int]:
    """(not delivered, delivered and unacked, ack floor) of the archive's mention consumer."""
    info = await js.consumer_info(bus.ARCHIVE_CONSUMER.stream, bus.ARCHIVE_CONSUMER.durable)
    assert info.ack_floor is not None
    return info.num_pending or 0, info.num_ack_pending or 0, info.ack_floor.stream_seq or 0


async def test_the_next_batch_is_decoded_while_a_commit_waits_and_acked_only_after_its_own_commit(
    nats_server: NatsServerProcess, js: JetStreamContext, tmp_path: Path
) -> None:
    """While the archive's commit waits for the database, the mentions after that batch are taken and
    decoded (a bad one among them is dead-lettered at once), nothing is acked before it is committed,
    and once the database is free every mention is stored once and acked."""
    path = tmp_path / "archive.sqlite3"
    db_url = f"sqlite+aiosqlite:///{path}"
    reader = make_engine(make_url(db_url), write=False)
    app = make_archive(nats_server.url, db_url, tmp_path, batch_size=50)
    await app.start()
    # check_same_thread=False: BEGIN IMMEDIATE is taken in a worker thread. Blocking the event loop while
    # SQLite waits for the write lock would stall the archive's own transaction in flight (its statements
    # are sent from this loop): each would wait for the other until "database is locked".
    lock = sqlite3.connect(path, isolation_level=None, timeout=60, check_same_thread=False)
    try:
        await wait_for(lambda: is_true(app.health.problems() == {}), "the archive ready")
        # the database's write lock, held: the archive's commit waits for it
        await asyncio.to_thread(lock.execute, "BEGIN IMMEDIATE")
        await publish_mentions(js, [encode(classified(i)) for i in range(30)])
        await wait_for(lambda: _consumer_is(js, (0, 30, 0)), "the first 30 mentions taken, none acked")
        await publish_mentions(js, [b"{not json", *(encode(classified(i)) for i in range(30, 40))])
        dead = app.metrics.messages.labels("archive", bus.ARCHIVE_CONSUMER.stream, "dead_lettered")
        await wait_for(lambda: is_true(dead._value.get() == 1), "the bad message of the next batch dead-lettered")
        await wait_for(lambda: _consumer_is(js, (0, 40, 0)), "the next 10 mentions taken, none acked")
        await asyncio.sleep(0.5)
        assert await _consumer(js) == (0, 40, 0), "acked before the commit"
        assert (await js.stream_info(bus.DEADLETTER.name)).state.messages == 1
        lock.execute("ROLLBACK")
        await wait_for(lambda: _consumer_is(js, (0, 0, 41)), "every message acked once the database is free")
        assert await scalar(reader, "SELECT count(*) FROM mentions") == 40
        assert await scalar(reader, "SELECT count(DISTINCT id) FROM mentions") == 40
        assert app.written.labels("mentions", "written")._value.get() == 40
        assert app.health.problems() == {}
    finally:
        lock.close()
        await app.stop()
        await reader.dispose()


async def _consumer_is(js: JetStreamContext, expected: tuple[int, int, int]) -> bool:
    return await _consumer(js) == expected


async def test_postgres_a_batch_waiting_for_a_lock_does_not_hold_up_the_next_one(
    nats_server: NatsServerProcess, js: JetStreamContext, tmp_path: Path, postgres: Any
) -> None:
    """PostgreSQL, ``archive.writers`` 2 (the default): while one batch waits (here for a mention key another
    session inserted and has not committed, as a second replica would), the batches after it are written and
    acked beside it; the first is written once the lock goes, and every mention is stored once. With one
    writer they would all wait behind the first."""
    db_url = postgres.create_database()
    parsed = make_url(db_url)
    reader = make_engine(parsed, write=False)
    app = make_archive(nats_server.url, db_url, tmp_path, batch_size=10)
    assert app.writers == 2
    await app.start()
    side = await asyncpg.connect(host=parsed.host, port=parsed.port, user=parsed.username, database=parsed.database)
    try:
        await wait_for(lambda: is_true(app.health.problems() == {}), "the archive ready")
        blocked = classified(0)
        await side.execute("BEGIN")
        await side.execute(
            "INSERT INTO mention_keys (id, ts) VALUES ($1, $2)",
            blocked["mention"]["id"],
            datetime.fromisoformat(blocked["mention"]["published_at"]),
        )
        await publish_mentions(js, [encode(blocked)])
        await wait_for(lambda: _consumer_is(js, (0, 1, 0)), "the first batch taken, waiting for the key's lock")
        await publish_mentions(js, [encode(classified(i)) for i in range(1, 20)])
        await wait_for(
            lambda: equals(scalar(reader, "SELECT count(*) FROM mentions"), 19),
            "the next batches stored while the first waits",
        )
        await wait_for(lambda: _consumer_is(js, (0, 1, 0)), "the next batches acked, the first not")
        assert await scalar(reader, "SELECT min(id) FROM mentions") == classified(1)["mention"]["id"]
        await side.execute("ROLLBACK")
        await wait_for(lambda: _consumer_is(js, (0, 0, 20)), "every message acked once the lock is gone")
        assert await scalar(reader, "SELECT count(*) FROM mentions") == 20
        assert await scalar(reader, "SELECT count(DISTINCT id) FROM mentions") == 20
        assert app.written.labels("mentions", "written")._value.get() == 20
    finally:
        await side.close()
        await app.stop()
        await reader.dispose()
