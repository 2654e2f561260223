"""A small archive whose aggregations are known by hand, on either database (for the aggregation,
API, CLI and backtest tests)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from services.archive.db import make_engine, migrate
from services.archive.store import ArchiveStore
from veille.models import AlertRaised, MentionClassified, MentionIngested

# two days ago, on the hour: well inside the retention and the past
H0 = (datetime.now(UTC) - timedelta(days=2)).replace(minute=0, second=0, microsecond=0)

# (minutes after H0, watches, sentiment, source, site, story, text)
MENTIONS = [
    (1, ["dupre"], "negative", "rss", "news.example", "s1", "La brasserie Dupré rappelle sa bière blonde"),
    (2, ["dupre"], "negative", "rss", "news.example", "s1", "Rappel: la brasserie Dupré retire sa bière"),
    (3, ["dupre"], "negative", "bluesky", "bsky.app", "s1", "Brasserie Dupré, encore un rappel de bière"),
    (10, ["dupre"], "neutral", "rss", "news.example", "s2", "La brasserie Dupré publie ses comptes"),
    (20, ["dupre"], "neutral", "rss", "news.example", None, "Visite de la brasserie Dupré samedi"),
    (40, ["dupre"], "positive", "bluesky", "bsky.app", None, "Brasserie Dupré: festival réussi"),
    (125, ["dupre"], "positive", "rss", "blog.example", None, "Brasserie Dupré, la meilleure ambrée"),
    (130, ["dupre"], "positive", "rss", "blog.example", None, "Une ambrée de la brasserie Dupré primée"),
    # another watch in the same hour: never counted for dupre
    *[(5 + i, ["acme"], "negative", "hackernews", "news.ycombinator.com", "s9", f"Acme outage {i}") for i in range(5)],
]

ALERTS = [
    AlertRaised(
        id="dupre-volume-1",
        watch="dupre",
        kind="volume_spike",
        severity="critical",
        summary="6 mentions against 1.5 expected",
        observed=6,
        expected=1.5,
        mention_count=6,
        started_at=H0,
        raised_at=H0 + timedelta(minutes=30),
    ),
    AlertRaised(
        id="dupre-volume-1",
        watch="dupre",
        kind="volume_spike",
        status="resolved",
        summary="back to normal",
        observed=2,
        expected=1.4,
        mention_count=6,
        started_at=H0,
        raised_at=H0 + timedelta(hours=3),
    ),
    AlertRaised(
        id="acme-neg-1",
        watch="acme",
        kind="negative_mention",
        summary="Acme outage 0",
        mention_count=1,
        started_at=H0,
        raised_at=H0 + timedelta(minutes=6),
    ),
]


async def load(db_url: str) -> AsyncEngine:
    """Migrate ``db_url``, write the mentions and alerts above, and return a read engine on it."""
    engine = make_engine(make_url(db_url))
    await migrate(engine)
    store = ArchiveStore(engine, retention=timedelta(days=400))
    await store.prepare()
    batch = [
        MentionClassified(
            mention=MentionIngested(
                id=f"{source}:{i}",
                source=source,
                text=body,
                title=None,
                site=site,
                url=f"https://{site}/{i}",  # type: ignore[arg-type]
                published_at=H0 + timedelta(minutes=minute),
                ingested_at=H0 + timedelta(minutes=minute, seconds=30),
            ),
            lang="fr",
            sentiment=sentiment,  # type: ignore[arg-type]
            sentiment_score={"negative": -0.6, "neutral": 0.0, "positive": 0.6}[sentiment],
            watches=watches,
            story_id=story,
        )
        for i, (minute, watches, sentiment, source, site, story, body) in enumerate(MENTIONS)
    ]
    await store.write_mentions(batch)
    await store.write_alerts(ALERTS)
    await engine.dispose()
    return make_engine(make_url(db_url), write=False)
