"""Aggregations on both databases, over a set of mentions whose counts are known by hand (dataset.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from services.archive.aggregate import AggregationError, list_alerts, top, volume
from tests.archive.dataset import H0, load


@pytest.fixture
async def archive(db_url: str) -> AsyncIterator[AsyncEngine]:
    engine = await load(db_url)
    try:
        yield engine
    finally:
        await engine.dispose()


async def test_volume_per_bucket_with_sentiment_share_baseline_and_alerts(archive: AsyncEngine) -> None:
    series = await volume(archive, "dupre", H0 - timedelta(hours=1), H0 + timedelta(hours=4), bucket=timedelta(hours=1))
    assert [b.start for b in series.buckets] == [H0 + timedelta(hours=h) for h in range(-1, 4)]
    assert [b.total for b in series.buckets] == [0, 6, 0, 2, 0]  # the acme mentions of H0 are not dupre's
    spike = series.buckets[1]
    assert (spike.negative, spike.neutral, spike.positive) == (3, 2, 1)
    assert spike.share() == {"negative": 0.5, "neutral": 2 / 6, "positive": 1 / 6}
    assert series.buckets[3].share()["positive"] == 1.0
    # the detector replayed over the archive: nothing expected before the first mention, something after
    expected = [b.expected for b in series.buckets]
    assert expected[0] == 0.0 and expected[2] is not None and expected[2] > 0
    assert [(a.status, a.observed, a.expected) for a in series.alerts] == [("resolved", 2, 1.4), ("firing", 6, 1.5)]
    json = series.as_json()
    assert json["bucket_seconds"] == 3600 and json["buckets"][1]["share"]["negative"] == 0.5


async def test_volume_default_bucket_and_no_baseline(archive: AsyncEngine) -> None:
    series = await volume(archive, "dupre", H0, H0 + timedelta(hours=10), baseline=False)
    assert series.bucket == timedelta(minutes=5)  # 120 five-minute buckets in ten hours
    assert sum(b.total for b in series.buckets) == 8
    assert all(b.expected is None for b in series.buckets)
    assert series.buckets[0].total == 3 and series.buckets[2].total == 1


async def test_top_stories_sources_sites_terms(archive: AsyncEngine) -> None:
    since, until = H0 - timedelta(hours=1), H0 + timedelta(hours=4)
    assert [(e.key, e.count) for e in await top(archive, "sources", since, until, watch="dupre")] == [
        ("rss", 6),
        ("bluesky", 2),
    ]
    assert [(e.key, e.count) for e in await top(archive, "sites", since, until, watch="dupre")] == [
        ("news.example", 4),
        ("blog.example", 2),
        ("bsky.app", 2),
    ]
    assert [(e.key, e.count) for e in await top(archive, "stories", since, until, watch="dupre")] == [
        ("s1", 3),
        ("s2", 1),
    ]
    # every watch: the acme story leads
    assert [(e.key, e.count) for e in await top(archive, "stories", since, until, limit=1)] == [("s9", 5)]
    terms = await top(archive, "terms", since, until, watch="dupre", limit=3)
    assert [(e.key, e.count) for e in terms[:2]] == [("brasserie", 8), ("dupre", 8)]
    assert (terms[2].key, terms[2].count) == ("biere", 3)


async def test_alerts_listed_by_watch_status_and_time(archive: AsyncEngine) -> None:
    everything = await list_alerts(archive)
    assert [(a.id, a.status) for a in everything] == [
        ("dupre-volume-1", "resolved"),
        ("dupre-volume-1", "firing"),
        ("acme-neg-1", "firing"),
    ]
    assert [a.id for a in await list_alerts(archive, watch="dupre", status=["firing"])] == ["dupre-volume-1"]
    assert [a.id for a in await list_alerts(archive, since=H0 + timedelta(hours=1))] == ["dupre-volume-1"]


async def test_bad_aggregations_are_refused_in_words(archive: AsyncEngine) -> None:
    with pytest.raises(AggregationError, match="in the future"):
        await volume(archive, "dupre", H0 + timedelta(days=5))
    with pytest.raises(AggregationError, match="multiple of the detector's bucket"):
        await volume(archive, "dupre", H0, H0 + timedelta(hours=1), bucket=timedelta(minutes=7))
    with pytest.raises(AggregationError, match="more than"):
        await volume(archive, "dupre", H0 - timedelta(days=30), H0, bucket=timedelta(minutes=5))  # 8,640 buckets
    with pytest.raises(AggregationError, match="not one of"):
        await list_alerts(archive, status=["open"])
