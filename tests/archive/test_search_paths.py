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
from veille.query import Document, parse_query

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


async def test_searches_over_many_months_give_the_row_by_row_answer(db_url: str) -> None:
    """PostgreSQL reads the full-text index one month (one partition) at a time, newest first, and a
    watch filter from the row's own list of watches: pages cross months, a range starts mid-month,
    a mention dated in the future is found; the hits are exactly what checking every row gives."""
    engine = make_engine(make_url(db_url))
    await migrate(engine)
    store = ArchiveStore(engine, retention=timedelta(days=400))
    await store.prepare()
    words = ["brasserie", "dupré", "rappel", "bière", "lager"]
    rows = []
    for i in range(160):  # every 19 hours over about four months, and one 2 days ahead
        at = NOW + timedelta(days=2) if i == 0 else NOW - timedelta(hours=19 * i)
        body = " ".join(words[(i + k) % len(words)] for k in range(i % 3 + 1)) + f" numéro {i}"
        watches = [w for w, keep in (("dupre", i % 2 == 0), ("other", i % 3 == 0)) if keep]
        rows.append((f"rss:{i:03d}", body, at, watches, "negative" if i % 5 == 0 else "neutral"))
    await store.write_mentions(
        [
            MentionClassified(
                mention=MentionIngested(id=key, source="rss", text=body, published_at=at),
                lang="fr",
                sentiment=sentiment,  # type: ignore[arg-type]
                sentiment_score=0.0,
                watches=watches,
            )
            for key, body, at, watches, sentiment in rows
        ]
    )
    await engine.dispose()
    reader = make_engine(make_url(db_url), write=False)

    def row_by_row(query: str, watch: str | None, since: datetime | None, sentiment: str | None) -> list[str]:
        parsed = parse_query(query)
        kept = [
            (at, key)
            for key, body, at, watches, feeling in rows
            if parsed.matches(Document(text=body, lang="fr", source="rss"))
            and (watch is None or watch in watches)
            and (since is None or at >= since)
            and (sentiment is None or feeling == sentiment)
        ]
        return [key for _, key in sorted(kept, reverse=True)]

    try:
        for query, watch, since, sentiment in [
            ("brasserie", None, None, None),
            ("brasserie AND dupré", "dupre", None, None),
            ("rappel AND NOT lager", None, NOW - timedelta(days=50, hours=5), None),
            ("dupré OR lager", "dupre", NOW - timedelta(days=100), "negative"),
            ('"dupré rappel"', None, NOW - timedelta(days=33), None),
        ]:
            filters = SearchFilters(
                watch=watch,
                since=since,
                sentiment=[sentiment] if sentiment else [],  # type: ignore[list-item]
            )
            got, cursor = [], None
            while True:
                page = await search(reader, query, filters, limit=6, cursor=cursor)
                got += [h.id for h in page.hits]
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
            expected = row_by_row(query, watch, since, sentiment)
            assert len(expected) > 6, (query, len(expected))  # several pages
            assert got == expected, query
    finally:
        await reader.dispose()
