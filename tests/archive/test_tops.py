"""A watch's top stories, sources and sites read from the pre-aggregated ``mention_tops`` (migration 0007,
services/archive/tops.py) are exactly what counting the archived rows one by one gives, on real SQLite
and PostgreSQL, after new mentions, redeliveries, reclassifications (other story, site, watches) and
retention; and retention leaves no count behind."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.archive.aggregate import TopEntry, aggregations, top
from services.archive.db import make_engine
from services.archive.store import ArchiveStore
from veille.models import MentionClassified, MentionIngested

NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(minutes=37)
LATER = NOW + timedelta(minutes=1)
SOURCES = ("rss", "bluesky", "mastodon", "reddit")
SITES = ("news.example", "bsky.app", "piaille.fr", "reddit.com", "blog.example")
WATCHES = (["a"], ["a", "b"], ["b"], [], ["a"])
KEYED = {"stories": "story_id", "sources": "source", "sites": "site"}
SHOWN = {"stories": "title", "sources": "url", "sites": "url"}


def mention(i: int, at: datetime, *, version: int = 0, watches: list[str] | None = None) -> MentionClassified:
    site = SITES[(i + version) % len(SITES)]
    return MentionClassified(
        mention=MentionIngested(
            id=f"{SOURCES[i % 4]}:{i}",
            source=SOURCES[i % 4],
            site=site,
            url=None if i % 6 == 0 else f"https://{site}/{i}",
            title=None if i % 3 == 0 else f"Title {i} v{version}",
            text=f"Brasserie Dupré {i}",
            published_at=at,
            ingested_at=at + timedelta(seconds=20),
        ),
        lang="fr",
        sentiment="negative",
        sentiment_score=0.0,
        story_id=None if i % 4 == 1 else f"story-{(i // 7 + version) % 9}",
        watches=WATCHES[i % len(WATCHES)] if watches is None else watches,
        classified_at=NOW + timedelta(seconds=version),
    )


def _utc(value: Any) -> datetime:
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


async def row_by_row(engine: AsyncEngine, dimension: str, watch: str, start: datetime, end: datetime) -> list[TopEntry]:
    """The reference: every (watch, mention) row of the range read and counted here; the example is the
    newest (ts, then id) mention's title or URL that has one."""
    column, shown = KEYED[dimension], SHOWN[dimension]
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    f"SELECT m.{column}, m.ts, m.id, m.{shown} FROM mention_watches w "
                    "JOIN mentions m ON m.id = w.mention_id AND m.ts = w.ts WHERE w.watch = :watch"
                ),
                {"watch": watch},
            )
        ).all()
    counts: Counter[str] = Counter()
    newest: dict[str, tuple[datetime, str, str]] = {}
    for key, ts, mention_id, example in rows:
        moment = _utc(ts)
        if key is None or not start <= moment < end:
            continue
        counts[key] += 1
        if example is not None and (key not in newest or (moment, mention_id) > newest[key][:2]):
            newest[key] = (moment, mention_id, example)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
    return [TopEntry(key, n, newest[key][2] if key in newest else None) for key, n in ranked]


RANGES = [
    (NOW - timedelta(days=6, hours=5), LATER),  # whole days and two partial ones
    (NOW - timedelta(days=2), NOW - timedelta(hours=7)),  # ends mid-day
    (NOW - timedelta(hours=5), NOW - timedelta(hours=2)),  # inside one day
    (NOW - timedelta(days=90), LATER),  # back past retention
]


async def check(engine: AsyncEngine) -> int:
    """Every list of every range equals the reference; returns how many entries were compared."""
    reader = make_engine(engine.url, write=False)
    compared = 0
    try:
        for watch in ("a", "b"):
            for start, end in RANGES:
                for dimension in KEYED:
                    got = await top(reader, dimension, start, end, watch=watch, now=LATER)  # type: ignore[arg-type]
                    want = await row_by_row(engine, dimension, watch, start, end)
                    assert got == want, (watch, start, end, dimension)
                    compared += len(want)
    finally:
        await reader.dispose()
    return compared


async def stored_counts(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text("SELECT count(*) FROM mention_tops"))).scalar_one())


async def test_tops_equal_the_rows_through_writes_reclassification_and_retention(writer: AsyncEngine) -> None:
    store = ArchiveStore(writer, retention=timedelta(days=400))
    await store.prepare()
    recent = [mention(i, NOW - timedelta(hours=(i * 5) % 150, minutes=i % 50)) for i in range(400)]
    old = [mention(1000 + i, NOW - timedelta(days=70, minutes=i)) for i in range(30)]
    await store.write_mentions(recent + old)
    assert await check(writer) > 50
    await store.write_mentions(recent[:60])  # a redelivery: nothing changes
    assert await check(writer) > 50
    # another classification of 80: another story, another site, other watches
    await store.write_mentions(
        [mention(i, NOW - timedelta(hours=(i * 5) % 150, minutes=i % 50), version=1, watches=["b"]) for i in range(80)]
    )
    assert await check(writer) > 50
    async with writer.connect() as conn:
        story_b = (
            await conn.execute(text("SELECT count(*) FROM mentions WHERE story_id = 'story-1' AND title LIKE '% v1'"))
        ).scalar_one()
    assert story_b > 0  # the reclassification did move mentions to other stories
    # retention of 30 days: SQLite deletes the rows, PostgreSQL drops the old month's partitions
    before = await stored_counts(writer)
    await ArchiveStore(writer, retention=timedelta(days=30)).enforce_retention()
    assert await check(writer) > 50
    cutoff_day = (NOW - timedelta(days=30) - datetime(1970, 1, 1, tzinfo=UTC)).days
    async with writer.connect() as conn:
        left = (
            await conn.execute(text("SELECT count(*) FROM mention_tops WHERE day < :d"), {"d": cutoff_day})
        ).scalar()
    assert left == 0 and await stored_counts(writer) < before  # the old days' counts went with their rows


async def test_overview_aggregations_carry_the_same_tops(writer: AsyncEngine) -> None:
    store = ArchiveStore(writer, retention=timedelta(days=400))
    await store.prepare()
    await store.write_mentions([mention(i, NOW - timedelta(hours=(i * 5) % 150, minutes=i % 50)) for i in range(200)])
    reader = make_engine(writer.url, write=False)
    try:
        since = NOW - timedelta(days=7)
        data = await aggregations(reader, "a", since, LATER, baseline=False, now=LATER)
    finally:
        await reader.dispose()
    for dimension in KEYED:
        want = await row_by_row(writer, dimension, "a", since, LATER)
        assert data["top"][dimension] == [e.as_json() for e in want]
    assert sum(b["total"] for b in data["buckets"]) == sum(1 for i in range(200) if "a" in WATCHES[i % 5])
