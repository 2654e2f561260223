"""The archive service on real processes: nats-server, PostgreSQL (Debian's package) and SQLite files.

Each test runs on both databases (``db_url``): a stream of classified mentions becomes rows exactly
once, bad input is stored cleaned (or dead-lettered when it is no message), and two replicas that
start at once migrate the schema and share the work.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from nats.js import JetStreamContext
from sqlalchemy.ext.asyncio import AsyncEngine

from services.archive.db import head_revision, revision
from services.archive.store import ArchiveStore
from tests.archive.conftest import classified, encode, make_archive, publish_mentions, scalar, wait_for
from veille import bus
from veille.models import MAX_TEXT, TRUNCATION_MARKER, AlertRaised, MentionClassified
from veille.natsserver import NatsServerProcess


async def pending(js: JetStreamContext, consumer: bus.Consumer) -> tuple[int, int]:
    """(messages not yet delivered, delivered but not acked) of a durable consumer."""
    info = await js.consumer_info(consumer.stream, consumer.durable)
    return info.num_pending or 0, info.num_ack_pending or 0


async def test_classified_mentions_and_alerts_become_rows_exactly_once(
    nats_server: NatsServerProcess, js: JetStreamContext, db_url: str, reader: AsyncEngine, tmp_path: Path
) -> None:
    """300 mentions and 2 alerts are archived; replaying all of them (new stream messages) adds no row."""
    messages = [classified(i, watches=("acme", "acme-fr") if i % 2 else ("acme",)) for i in range(300)]
    await publish_mentions(js, [encode(m) for m in messages])
    alert = AlertRaised(id="alert-1", watch="acme", kind="volume_spike", summary="3x the usual volume")
    resolved = alert.model_copy(update={"status": "resolved"})
    for item in (alert, resolved):
        await js.publish(bus.alert_subject("acme"), item.model_dump_json().encode())
    app = make_archive(nats_server.url, db_url, tmp_path, batch_size=64)
    await app.start()
    try:
        await wait_for(lambda: _equals(reader, "SELECT count(*) FROM mentions", 300), "300 mentions archived")
        await wait_for(lambda: _equals(reader, "SELECT count(*) FROM alerts", 2), "2 alerts archived")
        await wait_for(lambda: _settled(js), "every message acked")
        assert await scalar(reader, "SELECT count(*) FROM mention_watches") == 450
        assert await scalar(reader, "SELECT count(*) FROM mention_watches WHERE watch = 'acme-fr'") == 150
        title = await scalar(reader, "SELECT title FROM mentions WHERE id = 'rss:00000007'")
        assert title == "Acme story 7"
        # A replay: every message again, as new stream messages (another Nats-Msg-Id), plus one new mention.
        await publish_mentions(js, [encode(m) for m in messages] + [encode(classified(300))])
        for item in (alert, resolved):
            await js.publish(bus.alert_subject("acme"), item.model_dump_json().encode())
        await wait_for(lambda: _equals(reader, "SELECT count(*) FROM mentions", 301), "the new mention archived")
        await wait_for(lambda: _settled(js), "the replay acked")
        assert await scalar(reader, "SELECT count(*) FROM mentions") == 301
        assert await scalar(reader, "SELECT count(DISTINCT id) FROM mentions") == 301
        assert await scalar(reader, "SELECT count(*) FROM mention_watches") == 451
        assert await scalar(reader, "SELECT count(*) FROM alerts") == 2
        written = app.written.labels("mentions", "written")._value.get()
        unchanged = app.written.labels("mentions", "unchanged")._value.get()
        assert (written, unchanged) == (301, 300)
        assert app.health.problems() == {}
    finally:
        await app.stop()


async def _equals(engine: AsyncEngine, sql: str, expected: int) -> bool:
    return await scalar(engine, sql) == expected


async def _settled(js: JetStreamContext) -> bool:
    for consumer in (bus.ARCHIVE_CONSUMER, bus.ARCHIVE_ALERTS_CONSUMER):
        if await pending(js, consumer) != (0, 0):
            return False
    return True


async def test_bad_input_is_stored_cleaned_or_dead_lettered_and_the_archive_goes_on(
    nats_server: NatsServerProcess, js: JetStreamContext, db_url: str, reader: AsyncEngine, tmp_path: Path
) -> None:
    """A 1,000,001-character text with NULs and lone surrogates is stored cut and clean, a non-JSON
    payload becomes a dead letter, and the mentions after them are archived."""
    huge = "acme \x00 " + "x" * 1_000_001
    bad = classified(1, text=huge)
    bad["mention"]["title"] = "Acme \ud800 recall \x00"
    payload = json.dumps(bad).encode()  # ensure_ascii: the lone surrogate is written as \ud800, as it arrives
    assert b"\\ud800" in payload and len(payload) < 1024 * 1024
    await publish_mentions(js, [payload, b"{not json", encode(classified(2))])
    app = make_archive(nats_server.url, db_url, tmp_path)
    await app.start()
    try:
        await wait_for(lambda: _equals(reader, "SELECT count(*) FROM mentions", 2), "both mentions archived")
        await wait_for(lambda: _settled(js), "every message acked")
        text = await scalar(reader, "SELECT text FROM mentions WHERE id = 'rss:00000001'")
        title = await scalar(reader, "SELECT title FROM mentions WHERE id = 'rss:00000001'")
        assert len(text) <= MAX_TEXT and text.endswith(TRUNCATION_MARKER) and text.startswith("acme  x")
        assert "\x00" not in text and "\x00" not in title
        assert title == "Acme \ufffd recall "
        cleaned = {
            (sample.labels["field"], sample.labels["action"]): sample.value
            for metric in app.cleaned.collect()
            for sample in metric.samples
            if sample.name.endswith("_total")
        }
        assert cleaned[("title", "nul_removed")] == 1
        assert cleaned[("message.mention.title", "surrogate_replaced")] == 1
        assert cleaned[("message.mention.text", "truncated")] == 1
        info = await js.stream_info(bus.DEADLETTER.name)
        assert info.state.messages == 1
        letter = await js.get_last_msg(bus.DEADLETTER.name, bus.deadletter_subject("archive", "invalid_json"))
        assert json.loads(letter.data)["error_kind"] == "invalid_json"
        assert app.health.problems() == {}
    finally:
        await app.stop()


async def test_two_replicas_starting_at_once_migrate_once_and_share_the_stream(
    nats_server: NatsServerProcess, js: JetStreamContext, db_url: str, reader: AsyncEngine, tmp_path: Path
) -> None:
    """Two archives on one empty database start together: one migrates, the other waits; 2,000
    mentions split between them are each stored once."""
    await publish_mentions(js, [encode(classified(i)) for i in range(2000)])
    first = make_archive(nats_server.url, db_url, tmp_path, batch_size=100)
    second = make_archive(nats_server.url, db_url, tmp_path, batch_size=100)
    await asyncio.gather(first.start(), second.start())
    try:
        await wait_for(lambda: _equals(reader, "SELECT count(*) FROM mentions", 2000), "2,000 mentions archived")
        await wait_for(lambda: _settled(js), "every message acked")
        assert await scalar(reader, "SELECT count(DISTINCT id) FROM mentions") == 2000
        assert await revision(reader) == head_revision()
        for app in (first, second):
            assert app.health.problems() == {}
            assert app.written.labels("mentions", "written")._value.get() > 0, "both replicas wrote"
    finally:
        await asyncio.gather(first.stop(), second.stop())


async def test_mentions_older_than_the_retention_are_not_stored(
    nats_server: NatsServerProcess, js: JetStreamContext, db_url: str, reader: AsyncEngine, tmp_path: Path
) -> None:
    """A mention published 500 days ago (retention 400d) is acked and counted, not stored."""
    old = classified(1, published=datetime.now(UTC) - timedelta(days=500))
    await publish_mentions(js, [encode(old), encode(classified(2))])
    app = make_archive(nats_server.url, db_url, tmp_path)
    await app.start()
    try:
        await wait_for(lambda: _settled(js), "both acked")
        await wait_for(lambda: _equals(reader, "SELECT count(*) FROM mentions", 1), "the recent mention archived")
        assert await scalar(reader, "SELECT id FROM mentions") == "rss:00000002"
        assert app.written.labels("mentions", "expired")._value.get() == 1
    finally:
        await app.stop()


async def test_a_message_no_row_can_be_made_of_is_dead_lettered_as_such_and_the_rest_archived(
    nats_server: NatsServerProcess, js: JetStreamContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A valid mention the archive fails to turn into a row (a bug in the row building, made here for one id) is
    dead-lettered as ``unstorable`` with the error, when it is decoded, and the mentions around it are archived in
    their batch. Before, the failure came out of the batch's write: the whole batch was retried row by row and
    that mention dead-lettered as refused by a database that never saw it."""
    original = ArchiveStore._mention_row

    def failing(self: ArchiveStore, message: MentionClassified, now: datetime) -> dict[str, Any]:
        if message.mention.id == "rss:00000002":
            raise ValueError("no row for this one")
        return original(self, message, now)

    monkeypatch.setattr(ArchiveStore, "_mention_row", failing)
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'archive.sqlite3'}"
    await publish_mentions(js, [encode(classified(i)) for i in range(5)])
    app = make_archive(nats_server.url, db_url, tmp_path)
    await app.start()
    try:
        await wait_for(lambda: _settled(js), "every message acked")
        assert await scalar(app.engine, "SELECT count(*) FROM mentions") == 4
        letter = await js.get_last_msg(bus.DEADLETTER.name, bus.deadletter_subject("archive", "unstorable"))
        body = json.loads(letter.data)
        assert body["error_kind"] == "unstorable" and "no row for this one" in body["reason"]
        assert (await js.stream_info(bus.DEADLETTER.name)).state.messages == 1
        refused = app.database_errors.labels("refused")._value.get()
        assert refused == 0
    finally:
        await app.stop()
