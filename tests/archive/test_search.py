"""Searching the archive on both databases: the watches' query language, filters, cursor pages, bad input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from services.archive.db import make_engine, migrate
from services.archive.search import SearchError, SearchFilters, search
from services.archive.store import ArchiveStore
from veille.models import MentionClassified, MentionIngested

NOW = datetime.now(UTC).replace(microsecond=0)
TEXTS = [
    # (text, lang, sentiment, source, watches)
    ("La Brasserie Dupré a déçu ses clients avec une bière amère", "fr", "negative", "rss", ["dupre"]),
    ("Dupré brewery recalls its lager after complaints", "en", "negative", "bluesky", ["dupre"]),
    ("Brasserie Dupré: le nouveau festival est un succès", "fr", "positive", "rss", ["dupre"]),
    ("Another brewery opens downtown, no recall so far", "en", "neutral", "rss", []),
    ("Le rappel de la bière Dupré touche trois régions", "fr", "negative", "hackernews", ["dupre", "rappel"]),
]


@pytest.fixture
async def archive(db_url: str) -> AsyncEngine:
    engine = make_engine(make_url(db_url))
    await migrate(engine)
    store = ArchiveStore(engine, retention=timedelta(days=400))
    await store.prepare()
    batch = []
    for i, (body, lang, sentiment, source, watches) in enumerate(TEXTS * 10):
        batch.append(
            MentionClassified(
                mention=MentionIngested(
                    id=f"{source}:{i}", source=source, text=body, title=None, published_at=NOW - timedelta(hours=i)
                ),
                lang=lang,
                sentiment=sentiment,  # type: ignore[arg-type]
                sentiment_score=0.0,
                watches=watches,
            )
        )
    await store.write_mentions(batch)
    await engine.dispose()
    return make_engine(make_url(db_url), write=False)


async def test_queries_match_as_watches_do(archive: AsyncEngine) -> None:
    """Words, accents, phrases, NOT, OR and field filters give exactly the mentions a watch would match."""

    async def count(query: str, **filters: object) -> int:
        page = await search(archive, query, SearchFilters(**filters), limit=1000)  # type: ignore[arg-type]
        return len(page.hits)

    assert await count("dupre") == 40
    assert await count("deçu") == 10
    assert await count('"biere amere"') == 10
    assert await count("dupre NOT rappel") == 30
    assert await count("recall OR rappel") == 20  # "recalls" is another word, as in a watch
    assert await count("brewery AND lang:en") == 20
    assert await count("dupre", sentiment=["negative"], source=["rss"]) == 10
    assert await count("", watch="rappel") == 10
    assert await count("", since=NOW - timedelta(hours=9, minutes=30)) == 10
    await archive.dispose()


async def test_cursor_pages_cover_every_hit_once_newest_first(archive: AsyncEngine) -> None:
    seen: list[str] = []
    cursor = None
    while True:
        page = await search(archive, "dupre", limit=7, cursor=cursor)
        seen += [hit.id for hit in page.hits]
        times = [hit.ts for hit in page.hits]
        assert times == sorted(times, reverse=True)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert len(seen) == len(set(seen)) == 40
    await archive.dispose()


async def test_bad_searches_are_refused_in_words(archive: AsyncEngine) -> None:
    with pytest.raises(SearchError, match="not valid"):
        await search(archive, '"unbalanced quote')
    with pytest.raises(SearchError, match="not valid"):
        await search(archive, " OR ".join(f"t{i}" for i in range(10_000)))
    with pytest.raises(SearchError, match="in the future"):
        await search(archive, "dupre", SearchFilters(since=NOW + timedelta(days=1)))
    with pytest.raises(SearchError, match="cursor"):
        await search(archive, "dupre", cursor="not-a-cursor")
    await archive.dispose()


async def test_relevance_sort_puts_the_best_match_first(db_url: str) -> None:
    """bm25 (SQLite) / ts_rank (PostgreSQL): a short mention saying "recall" four times beats a newer
    long one saying it once, which time order puts first; pages by relevance cover every hit once."""
    engine = make_engine(make_url(db_url))
    await migrate(engine)
    store = ArchiveStore(engine, retention=timedelta(days=400))
    await store.prepare()
    long_text = "Acme annual report mentions a recall among many other words about weather, sport, music and food"
    texts = [
        ("dense", "Recall, recall, recall: the Acme recall", NOW - timedelta(days=2)),
        ("sparse", long_text, NOW - timedelta(hours=1)),
        *[
            (f"other{i}", f"Acme recall notice number {i} for the dryer model", NOW - timedelta(days=1, hours=i))
            for i in range(5)
        ],
        ("none", "Acme opens a new shop", NOW),
    ]
    await store.write_mentions(
        [
            MentionClassified(
                mention=MentionIngested(id=key, source="rss", text=body, published_at=ts),
                lang="en",
                sentiment="neutral",
                sentiment_score=0.0,
            )
            for key, body, ts in texts
        ]
    )
    await engine.dispose()
    reader = make_engine(make_url(db_url), write=False)
    try:
        by_time = await search(reader, "recall", limit=10)
        assert by_time.hits[0].id == "sparse"
        by_rank = await search(reader, "recall", limit=10, sort="relevance")
        assert by_rank.hits[0].id == "dense"
        assert len(by_rank.hits) == 7
        seen, cursor = [], None
        while True:
            page = await search(reader, "recall OR notice", limit=3, sort="relevance", cursor=cursor)
            seen += [h.id for h in page.hits]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert len(seen) == len(set(seen)) == 7
        assert set(seen[:5]) == {f"other{i}" for i in range(5)} and seen[-1] == "sparse"  # both words first
        with pytest.raises(SearchError, match="relevance-sorted"):
            await search(reader, "recall", sort="relevance", cursor=by_time.next_cursor or "e30")
    finally:
        await reader.dispose()
