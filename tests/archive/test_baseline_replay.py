"""The volume's baseline at scale: the detector's replay starts on a weekly grid and is resumed from
the copy the process kept, with the same floats as a replay from scratch (issue 15, aggregation at
scale). Real SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import delete, func, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from services.archive import aggregate
from services.archive.aggregate import REPLAY_GRID, clear_replay_cache, volume
from services.archive.db import make_engine, migrate
from services.archive.schema import volume_baselines
from services.archive.store import ArchiveStore
from veille.models import MentionClassified, MentionIngested

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# a Thursday 00:00 UTC (the replay grid) one to two weeks ago: every time below is in the past
G = _EPOCH + ((datetime.now(UTC) - _EPOCH) // REPLAY_GRID - 1) * REPLAY_GRID
HOUR = timedelta(hours=1)


def mention(i: int, at: datetime) -> MentionClassified:
    return MentionClassified(
        mention=MentionIngested(
            id=f"rss:{i}",
            source="rss",
            text=f"Brasserie Dupré, nouvelle {i}",
            site="news.example",
            published_at=at,
            ingested_at=at + timedelta(seconds=30),
        ),
        lang="fr",
        sentiment="neutral",
        sentiment_score=0.0,
        watches=["dupre"],
    )


def count_steps(monkeypatch: pytest.MonkeyPatch) -> list[datetime]:
    """The times of every detector step the volume's replay takes from now on (appended as it steps)."""
    steps: list[datetime] = []
    original = aggregate.SpikeDetector.update

    def counted(self: aggregate.SpikeDetector, ts: datetime, value: float) -> Any:
        steps.append(ts)
        return original(self, ts, value)

    monkeypatch.setattr(aggregate.SpikeDetector, "update", counted)
    return steps


async def forget_everything(engine: AsyncEngine) -> None:
    """No replay kept, in this process or in the database: the next volume replays from scratch."""
    clear_replay_cache()
    async with engine.begin() as conn:
        await conn.execute(delete(volume_baselines))


@pytest.fixture
async def steady(db_url: str) -> AsyncIterator[tuple[AsyncEngine, ArchiveStore]]:
    """'dupre': 1 to 3 mentions an hour from three days before G to six days after it."""
    writer = make_engine(make_url(db_url))
    await migrate(writer)
    store = ArchiveStore(writer, retention=timedelta(days=400))
    await store.prepare()
    batch, i = [], 0
    for hour in range(-72, 6 * 24):
        for k in range(hour % 3 + 1):
            batch.append(mention(i, G + hour * HOUR + timedelta(minutes=7 * k)))
            i += 1
    await store.write_mentions(batch)
    reader = make_engine(make_url(db_url), write=False)
    clear_replay_cache()
    try:
        yield reader, store
    finally:
        clear_replay_cache()
        await reader.dispose()
        await writer.dispose()


async def test_a_buckets_baseline_does_not_move_with_the_ranges_start(
    steady: tuple[AsyncEngine, ArchiveStore],
) -> None:
    reader, _ = steady
    until = G + timedelta(days=5)
    wide = await volume(reader, "dupre", G + timedelta(days=3), until, bucket=HOUR, now=until)
    narrow = await volume(reader, "dupre", G + timedelta(days=4), until, bucket=HOUR, now=until)
    shared = {b.start: b.expected for b in wide.buckets if b.start >= G + timedelta(days=4)}
    assert len(shared) == 24 and all(e is not None and e > 0 for e in shared.values())
    # the last day's baseline is the same in the 2-day and the 1-day view (both replay from G)
    assert {b.start: b.expected for b in narrow.buckets} == shared


async def test_a_kept_replay_gives_what_a_fresh_one_gives_after_new_mentions(
    steady: tuple[AsyncEngine, ArchiveStore],
) -> None:
    reader, store = steady
    since, until = G + timedelta(days=3), G + timedelta(days=5)
    before = await volume(reader, "dupre", since, until, bucket=HOUR, now=until)
    assert len(aggregate._REPLAYS) == 1
    # a late burst in the range's last hours, then the same call: resumed from the kept detector
    late = G + timedelta(days=4, hours=20)
    await store.write_mentions([mention(100_000 + k, late + timedelta(minutes=k)) for k in range(40)])
    resumed = await volume(reader, "dupre", since, until, bucket=HOUR, now=until)
    await forget_everything(reader)
    fresh = await volume(reader, "dupre", since, until, bucket=HOUR, now=until)
    assert [b.total for b in resumed.buckets] == [b.total for b in fresh.buckets]
    assert [b.expected for b in resumed.buckets] == [b.expected for b in fresh.buckets]
    # the burst is counted, and the detector saw it: the hours after it expect otherwise than before
    changed = [i for i, (b, a) in enumerate(zip(before.buckets, resumed.buckets, strict=True)) if b.total != a.total]
    assert [resumed.buckets[i].start for i in changed] == [late]
    after = changed[0] + 1
    assert resumed.buckets[after].expected != before.buckets[after].expected
    assert resumed.buckets[0].expected == before.buckets[0].expected  # nothing before the burst moved


async def test_a_new_process_resumes_the_replay_the_database_keeps(
    steady: tuple[AsyncEngine, ArchiveStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    reader, store = steady
    since, until = G + timedelta(days=3), G + timedelta(days=5)
    steps = count_steps(monkeypatch)
    await forget_everything(reader)
    first = await volume(reader, "dupre", since, until, bucket=HOUR, now=until)
    assert len(steps) == 5 * 288 + 1  # from G (the weekly grid) to until's bucket
    async with reader.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(volume_baselines))).scalar() == 1
    # another process (nothing kept in memory): resumed near the end, the same floats
    clear_replay_cache()
    steps.clear()
    again = await volume(reader, "dupre", since, until, bucket=HOUR, now=until)
    assert 0 < len(steps) <= aggregate.TAIL_SNAPSHOT
    assert [b.expected for b in again.buckets] == [b.expected for b in first.buckets]
    # a late burst, then a new process: resumed from the day before it, what a replay from scratch gives
    late = G + timedelta(days=4, hours=20)
    await store.write_mentions([mention(200_000 + k, late + timedelta(minutes=k)) for k in range(40)])
    clear_replay_cache()
    steps.clear()
    resumed = await volume(reader, "dupre", since, until, bucket=HOUR, now=until)
    assert len(steps) <= 2 * 288
    await forget_everything(reader)
    fresh = await volume(reader, "dupre", since, until, bucket=HOUR, now=until)
    assert [b.total for b in resumed.buckets] == [b.total for b in fresh.buckets]
    assert [b.expected for b in resumed.buckets] == [b.expected for b in fresh.buckets]
    assert resumed.buckets[-1].expected != first.buckets[-1].expected  # the burst moved the baseline
    # an unreadable kept replay (another version's, a damaged row) is replayed again, not an error
    async with reader.begin() as conn:
        await conn.execute(update(volume_baselines).values(state=b"not a replay"))
    clear_replay_cache()
    damaged = await volume(reader, "dupre", since, until, bucket=HOUR, now=until)
    assert [b.expected for b in damaged.buckets] == [b.expected for b in fresh.buckets]


async def test_a_replay_saved_by_another_detector_release_is_not_resumed(
    steady: tuple[AsyncEngine, ArchiveStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An upgrade that changes what the detector expects (same settings) replays again, once, instead of
    resuming the old release's expectations."""
    reader, _store = steady
    since, until = G + timedelta(days=3), G + timedelta(days=5)
    await forget_everything(reader)
    await volume(reader, "dupre", since, until, bucket=HOUR, now=until)  # saved by "this" release
    steps = count_steps(monkeypatch)
    monkeypatch.setattr(aggregate, "BEHAVIOUR_REVISION", aggregate.BEHAVIOUR_REVISION + 1)  # the next release
    clear_replay_cache()  # a new process
    await volume(reader, "dupre", since, until, bucket=HOUR, now=until)
    assert len(steps) == 5 * 288 + 1  # the whole replay from the weekly grid, not the kept tail
