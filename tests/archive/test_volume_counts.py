"""The pre-aggregated volume (``mention_counts``, migration 0006) stays equal to the archived rows through
new mentions, reclassifications, redeliveries and retention, on real SQLite and PostgreSQL; the
volume read from it is what counting the rows gives."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.archive.aggregate import volume
from services.archive.db import make_engine
from services.archive.store import ArchiveStore
from veille.models import MentionClassified, MentionIngested

NOW = datetime.now(UTC).replace(second=0, microsecond=0)
SENTIMENTS = ("negative", "neutral", "positive")


def mention(i: int, at: datetime, *, sentiment: str, watches: list[str], version: int = 0) -> MentionClassified:
    return MentionClassified(
        mention=MentionIngested(
            id=f"rss:{i}",
            source="rss",
            text=f"Brasserie Dupré {i}",
            published_at=at,
            ingested_at=at + timedelta(seconds=20),
        ),
        lang="fr",
        sentiment=sentiment,  # type: ignore[arg-type]
        sentiment_score=0.0,
        watches=watches,
        classified_at=NOW + timedelta(seconds=version),
    )


async def counts(engine: AsyncEngine) -> tuple[Counter[tuple[str, str]], Counter[tuple[str, str]]]:
    """(watch, sentiment) totals from mention_counts and from the mention_watches rows."""
    async with engine.connect() as conn:
        kept = (await conn.execute(text("SELECT watch, sentiment, sum(n) FROM mention_counts GROUP BY 1, 2"))).all()
        rows = (await conn.execute(text("SELECT watch, sentiment, count(*) FROM mention_watches GROUP BY 1, 2"))).all()
    return (
        Counter({(w, s): int(n) for w, s, n in kept if n}),
        Counter({(w, s): int(n) for w, s, n in rows}),
    )


async def test_counts_follow_new_reclassified_and_redelivered_mentions(writer: AsyncEngine) -> None:
    store = ArchiveStore(writer, retention=timedelta(days=400))
    await store.prepare()
    first = [
        mention(
            i,
            NOW - timedelta(hours=i % 48, minutes=i % 7),
            sentiment=SENTIMENTS[i % 3],
            watches=["a", "b"][: 1 + i % 2],
        )
        for i in range(300)
    ]
    await store.write_mentions(first)
    await store.write_mentions(first[:50])  # a redelivery writes nothing
    kept, rows = await counts(writer)
    assert kept == rows and rows[("a", "negative")] == 100 and sum(rows.values()) == 450
    # another classification of 60 of them: other sentiment, other watches
    again = [
        mention(i, NOW - timedelta(hours=i % 48, minutes=i % 7), sentiment="positive", watches=["c"], version=1)
        for i in range(60)
    ]
    await store.write_mentions(again)
    kept, rows = await counts(writer)
    assert kept == rows and rows[("c", "positive")] == 60 and sum(rows.values()) == 450 - 90 + 60
    # and the volume read from the counts is the rows', bucket by bucket
    reader = make_engine(writer.url, write=False)
    try:
        series = await volume(
            reader,
            "a",
            NOW - timedelta(days=3),
            NOW + timedelta(minutes=1),
            baseline=False,
            bucket=timedelta(hours=1),
            now=NOW + timedelta(minutes=1),
        )
        async with reader.connect() as conn:
            ts_rows = (await conn.execute(text("SELECT ts, sentiment FROM mention_watches WHERE watch = 'a'"))).all()
    finally:
        await reader.dispose()
    expected: Counter[tuple[datetime, str]] = Counter()
    for ts, sentiment in ts_rows:
        moment = ts if isinstance(ts, datetime) else datetime.fromisoformat(ts)
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
        expected[(moment.replace(minute=0, second=0, microsecond=0), sentiment)] += 1
    got = Counter({(b.start, s): getattr(b, s) for b in series.buckets for s in SENTIMENTS if getattr(b, s)})
    assert got == expected and sum(got.values()) == 300 - 60  # every mention is a's; 60 went to c


async def test_volume_leaves_out_what_retention_dropped(writer: AsyncEngine) -> None:
    old = NOW - timedelta(days=70)
    store = ArchiveStore(writer, retention=timedelta(days=400))
    await store.prepare()
    await store.write_mentions(
        [mention(i, old + timedelta(minutes=i), sentiment="negative", watches=["a"]) for i in range(20)]
        + [mention(100 + i, NOW - timedelta(hours=1, minutes=i), sentiment="neutral", watches=["a"]) for i in range(5)]
    )
    # a retention of 30 days: PostgreSQL drops the old month's partitions, SQLite deletes the rows
    await ArchiveStore(writer, retention=timedelta(days=30)).enforce_retention()
    reader = make_engine(writer.url, write=False)
    try:
        series = await volume(
            reader, "a", NOW - timedelta(days=90), NOW, baseline=False, bucket=timedelta(days=1), now=NOW
        )
    finally:
        await reader.dispose()
    assert sum(b.total for b in series.buckets) == 5
    assert sum(b.negative for b in series.buckets) == 0
    cutoff_bucket = int((NOW - timedelta(days=30)).timestamp()) // 300
    async with writer.connect() as conn:
        left = (
            await conn.execute(text("SELECT count(*) FROM mention_counts WHERE bucket < :b"), {"b": cutoff_bucket})
        ).scalar()
    assert left == 0  # the dropped month's counts went with it (the table does not grow for ever)
