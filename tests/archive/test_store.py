"""The archive's writer on both databases: retention, partitions, reclassification, full text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from services.archive.db import make_engine, migrate
from services.archive.store import ArchiveStore
from tests.archive.conftest import scalar
from veille.models import AlertRaised, MentionClassified, MentionIngested


def mention(index: int, published: datetime, *, watches: list[str] | None = None, **extra: object) -> MentionClassified:
    """A classified mention published at ``published``."""
    return MentionClassified(
        mention=MentionIngested(
            id=f"rss:{index}",
            source="rss",
            title=f"Brasserie Dupré {index}",
            text="La bière est très amère, déçus",
            lang="fr",
            published_at=published,
        ),
        lang="fr",
        sentiment="negative",
        sentiment_score=-0.7,
        watches=watches if watches is not None else ["dupre"],
        **extra,  # type: ignore[arg-type]
    )


class Clock:
    """A clock the test moves."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def test_retention_removes_what_is_older_and_keeps_the_rest(db_url: str, reader: AsyncEngine) -> None:
    """Mentions of January and June; a year later January's are gone (whole partitions on PostgreSQL), June's stay."""
    clock = Clock(datetime(2025, 7, 1, tzinfo=UTC))
    engine = make_engine(make_url(db_url))
    try:
        await migrate(engine)
        store = ArchiveStore(engine, retention=timedelta(days=400), clock=clock)
        await store.prepare()
        january = [mention(i, datetime(2025, 1, 10, 12, tzinfo=UTC)) for i in range(30)]
        june = [mention(100 + i, datetime(2025, 6, 10, 12, tzinfo=UTC)) for i in range(20)]
        result = await store.write_mentions(january + june)
        assert result.written == 50
        await store.write_alerts(
            [AlertRaised(id="old", watch="dupre", kind="volume_spike", summary="x", raised_at=clock.now)]
        )
        assert await scalar(reader, "SELECT count(*) FROM mentions") == 50
        clock.now = datetime(2026, 3, 10, tzinfo=UTC)  # 400 days back: 2025-02-03, past the end of January
        gone = await store.enforce_retention()
        assert await scalar(reader, "SELECT count(*) FROM mentions") == 20
        assert await scalar(reader, "SELECT count(*) FROM mention_watches") == 20
        assert await scalar(reader, "SELECT count(*) FROM alerts") == 1
        if store.postgres:
            assert gone["partitions"] == 1 and gone["mention_keys"] == 30
            assert "mentions_p2025_01" not in await scalar(
                reader, "SELECT string_agg(relname, ',') FROM pg_class WHERE relname LIKE 'mentions_p%'"
            )
        else:
            assert gone["mentions"] == 30
        # January's mentions come back (a replay): older than the retention, not stored again
        result = await store.write_mentions(january)
        assert (result.written, result.expired) == (0, 30)
        clock.now = datetime(2026, 9, 1, tzinfo=UTC)  # cut-off 2025-07-28: June and the alert go
        await store.enforce_retention()
        assert await scalar(reader, "SELECT count(*) FROM mentions") == 0
        assert await scalar(reader, "SELECT count(*) FROM alerts") == 0
    finally:
        await engine.dispose()


async def test_a_reclassified_mention_is_rewritten_in_place_with_its_new_watches(
    db_url: str, reader: AsyncEngine
) -> None:
    """The same id classified again (other watches, later classified_at, other ingested time) stays one row."""
    engine = make_engine(make_url(db_url))
    try:
        await migrate(engine)
        store = ArchiveStore(engine, retention=timedelta(days=400))
        await store.prepare()
        first = MentionClassified(
            mention=MentionIngested(id="rss:1", source="rss", text="Dupré", ingested_at=datetime.now(UTC)),
            sentiment="neutral",
            sentiment_score=0.0,
            watches=["a", "b"],
            classified_at=datetime.now(UTC) - timedelta(hours=1),
        )
        again = first.model_copy(
            update={
                "mention": first.mention.model_copy(update={"ingested_at": datetime.now(UTC) - timedelta(days=40)}),
                "watches": ["c"],
                "sentiment": "negative",
                "classified_at": datetime.now(UTC),
            }
        )
        assert (await store.write_mentions([first])).written == 1
        assert (await store.write_mentions([first])).unchanged == 1
        assert (await store.write_mentions([again])).written == 1
        assert await scalar(reader, "SELECT count(*) FROM mentions") == 1
        assert await scalar(reader, "SELECT sentiment FROM mentions") == "negative"
        assert await scalar(reader, "SELECT count(*) FROM mention_watches") == 1
        assert await scalar(reader, "SELECT watch FROM mention_watches") == "c"
    finally:
        await engine.dispose()


async def test_full_text_folds_accents_in_both_databases(db_url: str, reader: AsyncEngine) -> None:
    """'decus' finds 'déçus' (unaccent on PostgreSQL with the french configuration, FTS5 remove_diacritics)."""
    engine = make_engine(make_url(db_url))
    try:
        await migrate(engine)
        store = ArchiveStore(engine, retention=timedelta(days=400))
        await store.prepare()
        await store.write_mentions([mention(1, datetime.now(UTC))])
        if store.postgres:
            assert store.unaccent
            found = await scalar(
                reader, "SELECT count(*) FROM mentions WHERE tsv @@ to_tsquery('french', unaccent('decus & amere'))"
            )
        else:
            found = await scalar(reader, "SELECT count(*) FROM mentions_fts WHERE mentions_fts MATCH 'decus amere'")
        assert found == 1
    finally:
        await engine.dispose()
