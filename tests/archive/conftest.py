"""Fixtures for the archive: a real PostgreSQL (Debian's package) and SQLite files, and message helpers."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from nats.js import JetStreamContext
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from services.archive.api import ApiSettings
from services.archive.app import ArchiveApp, create_app
from services.archive.db import make_engine, migrate
from tests.archive.postgres import PostgresServer, postgres_unavailable
from veille import bus
from veille.config import ArchiveConfig, VeilleConfig
from veille.settings import ServiceSettings


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the session; each test takes its own database."""
    reason = postgres_unavailable()
    if reason:
        pytest.skip(reason)
    server = PostgresServer()
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty archive database: a SQLite file, or a new database on the PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'archive.sqlite3'}"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.create_database()


@pytest.fixture
async def writer(db_url: str) -> AsyncIterator[AsyncEngine]:
    """A writing engine on a database migrated to the newest schema."""
    engine = make_engine(make_url(db_url))
    await migrate(engine)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
async def reader(db_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine to read what the archive wrote."""
    engine = make_engine(make_url(db_url), write=False)
    try:
        yield engine
    finally:
        await engine.dispose()


async def scalar(engine: AsyncEngine, sql: str, **params: Any) -> Any:
    """One value from ``sql``; None while the archive has not created the tables yet."""
    try:
        async with engine.connect() as conn:
            return (await conn.execute(text(sql), params)).scalar()
    except Exception:
        return None


def settings_for(nats_url: str, data_dir: Path) -> ServiceSettings:
    """Service settings for an archive on the test NATS server."""
    return ServiceSettings(nats_url=nats_url, data_dir=data_dir, config=data_dir / "veille.yaml")


def make_archive(nats_url: str, db_url: str, data_dir: Path, **options: Any) -> ArchiveApp:
    """An archive app writing to ``db_url``; options as ``create_app`` takes them."""
    config = VeilleConfig(archive=ArchiveConfig(database_url=db_url))
    options.setdefault("api", ApiSettings(archive_api_port=0))
    options.setdefault("retry_delay", 0.1)
    options.setdefault("max_retry_delay", 0.5)
    return create_app(settings_for(nats_url, data_dir), config=config, **options)


def classified(
    index: int,
    *,
    watches: tuple[str, ...] = ("acme",),
    text: str | None = None,
    published: datetime | None = None,
    sentiment: str = "negative",
    lang: str = "en",
) -> dict[str, Any]:
    """A classified mention as the classifier publishes it (``MentionClassified`` JSON)."""
    published = published or datetime.now(UTC) - timedelta(minutes=index % 600)
    return {
        "schema_version": 1,
        "mention": {
            "schema_version": 1,
            "id": f"rss:{index:08d}",
            "source": "rss",
            "url": f"https://news.example/{index}",
            "title": f"Acme story {index}",
            "text": text if text is not None else f"Acme Corp recalls product number {index}",
            "author": "A. Writer",
            "site": "news.example",
            "lang": lang,
            "published_at": published.isoformat(),
            "ingested_at": datetime.now(UTC).isoformat(),
        },
        "lang": lang,
        "sentiment": sentiment,
        "sentiment_score": -0.6 if sentiment == "negative" else 0.1,
        "watches": list(watches),
        "story_id": f"story-{index // 3}",
        "classified_at": datetime.now(UTC).isoformat(),
    }


async def publish_mentions(
    js: JetStreamContext, payloads: list[bytes], *, msg_ids: list[str | None] | None = None
) -> None:
    """Publish raw payloads on the classified stream, many in flight, and wait for every stream ack."""
    ids = msg_ids or [None] * len(payloads)
    for start in range(0, len(payloads), 500):
        futures = [
            await js.publish_async(
                bus.classified_subject("rss"), payload, headers={"Nats-Msg-Id": mid} if mid else None
            )
            for payload, mid in zip(payloads[start : start + 500], ids[start : start + 500], strict=True)
        ]
        await asyncio.gather(*futures)


def encode(message: dict[str, Any]) -> bytes:
    """JSON bytes of a message."""
    return json.dumps(message).encode()


async def is_true(value: bool) -> bool:
    """``value``, as a check :func:`wait_for` can await (``lambda: is_true(app.health.problems() == {})``)."""
    return value


async def equals(value: Awaitable[Any], expected: Any) -> bool:
    """Whether the awaited ``value`` is ``expected`` (``lambda: equals(scalar(reader, sql), 20)``)."""
    return await value == expected


async def wait_for(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 60.0) -> None:
    """Poll ``check`` until it is true, or fail saying ``what`` never happened."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)
