"""The search's faster SQL paths give the same hits (issue 15, search at scale), on real SQLite and PostgreSQL:
words with a watch filter (each full-text candidate checked by its own watch key), and words that a
text-search configuration drops as stop words (PostgreSQL: then the full-text condition is left out)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from services.archive.db import make_engine, migrate
from services.archive.search import SearchFilters, search
from services.archive.store import ArchiveStore
from veille.models import MentionClassified, MentionIngested

NOW = datetime.now(UTC).replace(microsecond=0)
TEXTS = [
    # (text, lang, watches)
    ("La brasserie Dupré rappelle sa bière", "fr", ["dupre"]),
    ("La brasserie Dupré rappelle sa bière", "fr", ["other"]),  # the same words, another watch
    ("Dupré brewery recalls the lager", "en", ["dupre", "recall"]),
    ("Une autre brasserie, pas de rappel", "fr", []),
]


@pytest.fixture
async def archive(db_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(make_url(db_url))
    await migrate(engine)
    store = ArchiveStore(engine, retention=timedelta(days=400))
    await store.prepare()
    batch = [
        MentionClassified(
            mention=MentionIngested(id=f"rss:{i}", source="rss", text=body, published_at=NOW - timedelta(hours=i)),
            lang=lang,
            sentiment="neutral",
            sentiment_score=0.0,
            watches=watches,
        )
        for i, (body, lang, watches) in enumerate(TEXTS * 25)
    ]
    await store.write_mentions(batch)
    await engine.dispose()
    reader = make_engine(make_url(db_url), write=False)
    yield reader
    await reader.dispose()


async def ids(engine: AsyncEngine, query: str, **filters: object) -> list[str]:
    out, cursor = [], None
    while True:
        page = await search(engine, query, SearchFilters(**filters), limit=7, cursor=cursor)  # type: ignore[arg-type]
        out += [h.id for h in page.hits]
        if page.next_cursor is None:
            return out
        cursor = page.next_cursor


async def test_words_with_a_watch_filter(archive: AsyncEngine) -> None:
    got = await ids(archive, "brasserie AND dupre", watch="dupre")
    assert got == [f"rss:{i}" for i in range(0, 100, 4)]  # not the same text under 'other'
    since = NOW - timedelta(hours=30)
    assert await ids(archive, "dupre", watch="recall", since=since) == [f"rss:{i}" for i in range(2, 31, 4)]
    assert await ids(archive, "dupre", watch="nobody") == []
    ranked = await search(archive, "dupre OR brewery", SearchFilters(watch="recall"), limit=50, sort="relevance")
    assert {h.id for h in ranked.hits} == {f"rss:{i}" for i in range(2, 100, 4)}


async def test_stop_words_still_find_their_mentions(archive: AsyncEngine) -> None:
    # "la" is a French stop word (not in the french vectors), "the" an English one
    assert len(await ids(archive, "la AND brasserie")) == 50
    assert await ids(archive, "the AND lager", watch="dupre") == [f"rss:{i}" for i in range(2, 100, 4)]


async def test_a_language_filter_narrows_the_full_text_condition_not_the_hits(archive: AsyncEngine) -> None:
    # PostgreSQL then asks only the language's configuration (a French stop word among the words included)
    assert len(await ids(archive, "la AND brasserie", lang=["fr"])) == 50
    assert len(await ids(archive, "la AND brasserie", lang=["en"])) == 0
    assert len(await ids(archive, "the AND lager", lang=["en", "fr"])) == 25
    assert len(await ids(archive, "dupre", lang=["e"])) == 25  # one letter: every configuration
