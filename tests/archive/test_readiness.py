"""The archive's readiness while one of its writes fails and another succeeds.

Each lane (mentions, alerts) writes its own batches, and on PostgreSQL two mention batches are written side
by side. When one write fails for want of the database (its connection refused) while another one commits,
``/readyz`` must not flip back to ready at each success: a batch is still held, unacked, waiting for the
database. And a batch held with a long retry delay is tried again as soon as another write has committed,
instead of sleeping out its delay. SQLite and nats-server real; the mentions lane's write fails by a
connection error raised in front of the store's own write, as a dropped connection raises it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from nats.js import JetStreamContext
from sqlalchemy.engine import make_url

from services.archive.app import ArchiveApp
from services.archive.db import make_engine
from services.archive.store import WriteResult
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
from veille.models import AlertRaised
from veille.natsserver import NatsServerProcess

MentionsWrite = Callable[[Sequence[Any]], Awaitable[WriteResult]]


def _archive(nats_url: str, db_url: str, tmp_path: Path, mentions_write: MentionsWrite) -> ArchiveApp:
    """An archive whose mentions lane writes with ``mentions_write``, and whose failed writes wait an hour before
    they are tried again: only another write's success can make one try again sooner."""
    app = make_archive(nats_url, db_url, tmp_path, retry_delay=3600.0, max_retry_delay=3600.0)
    mentions_lane, alerts_lane = app.lanes
    app.lanes = (dataclasses.replace(mentions_lane, write=mentions_write), alerts_lane)
    return app


async def _publish_alert(js: JetStreamContext, i: int) -> None:
    """A negative-mention alert for the alerts lane to commit."""
    alert = AlertRaised(id=f"acme-neg-{i}", watch="acme", kind="negative_mention", summary=f"negative {i}")
    await js.publish(bus.alert_subject("acme"), alert.model_dump_json().encode())


async def test_one_write_failing_beside_one_that_succeeds_keeps_the_archive_not_ready_until_it_is_stored(
    nats_server: NatsServerProcess, js: JetStreamContext, tmp_path: Path
) -> None:
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'archive.sqlite3'}"
    reader = make_engine(make_url(db_url), write=False)
    broken = True
    attempts = 0

    async def write(rows: Sequence[Any]) -> WriteResult:
        nonlocal attempts
        attempts += 1
        if broken:
            raise ConnectionRefusedError("the mentions' connection was dropped")
        return await app.store.write_mention_rows(rows)  # the store's own write

    app = _archive(nats_server.url, db_url, tmp_path, write)
    readiness: list[float] = []
    database_up_set = app.database_up.set
    app.database_up.set = lambda value: (readiness.append(value), database_up_set(value))[1]  # type: ignore[method-assign]

    async def alerts_stored(n: int) -> bool:
        return await scalar(reader, "SELECT count(*) FROM alerts") == n

    await app.start()
    try:
        await wait_for(lambda: is_true(app.health.problems() == {}), "the archive ready")
        await publish_mentions(js, [encode(classified(i)) for i in range(20)])
        await wait_for(lambda: is_true("database" in app.health.problems()), "/readyz to name the database")
        readiness.clear()
        for i in range(3):  # the alerts lane commits three times while the mentions' batch is held
            await _publish_alert(js, i)
            await wait_for(lambda n=i + 1: alerts_stored(n), f"alert {i} stored")
        assert "database" in app.health.problems(), "ready again while a batch still waits for the database"
        assert 1 not in readiness, f"veille_archive_database_up went back to 1 with a batch held: {readiness}"
        assert app.held._value.get() >= 1  # the batch being retried (the rest may wait behind it, in a second one)
        # woken by those commits, the held batch is tried again (at most once a second), fails, and stays held
        await wait_for(lambda: is_true(attempts >= 2), "the held batch tried again after another write succeeded")
        assert "database" in app.health.problems()
        assert 1 not in readiness

        broken = False
        await _publish_alert(js, 3)  # its commit wakes the held batch, which is now written
        await wait_for(lambda: equals(scalar(reader, "SELECT count(*) FROM mentions"), 20), "the held mentions stored")
        await wait_for(lambda: is_true(app.health.problems() == {}), "the archive ready again")
        assert readiness[-1] == 1
        assert app.held._value.get() == 0
    finally:
        await app.stop()
        await reader.dispose()


async def test_a_held_batch_the_database_then_refuses_leaves_the_archive_ready(
    nats_server: NatsServerProcess, js: JetStreamContext, tmp_path: Path
) -> None:
    """Held for the database, then refused by it once it answers (dead-lettered): nothing waits any more, so
    ``/readyz`` is ready again even with no further traffic to commit."""
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'archive.sqlite3'}"
    answers: list[str] = []
    answer = "down"

    async def write(rows: Sequence[Any]) -> WriteResult:
        answers.append(answer)
        if answer == "down":
            raise ConnectionRefusedError("the mentions' connection was dropped")
        raise ValueError("the database refused this row")  # the database answers its ping: refused, not down

    app = _archive(nats_server.url, db_url, tmp_path, write)
    dead = app.metrics.messages.labels("archive", bus.ARCHIVE_CONSUMER.stream, "dead_lettered")
    await app.start()
    try:
        await wait_for(lambda: is_true(app.health.problems() == {}), "the archive ready")
        await publish_mentions(js, [encode(classified(0))])
        await wait_for(lambda: is_true("database" in app.health.problems()), "/readyz to name the database")
        answer = "refused"
        await _publish_alert(js, 0)  # commits, and wakes the held one
        await wait_for(lambda: is_true(dead._value.get() == 1), "the held mention refused and dead-lettered")
        await wait_for(lambda: is_true(app.health.problems() == {}), "the archive ready with nothing held")
        assert answers == ["down", "refused"]
        assert app.database_up._value.get() == 1
        assert app.held._value.get() == 0
    finally:
        await app.stop()
