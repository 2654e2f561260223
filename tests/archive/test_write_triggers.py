"""The write path's derived rows (migration 0009): a reclassification rewrites only what changed, and the
pre-counts stay equal to the row-by-row answer, on a fresh schema and on an archive upgraded from 0007.

Real SQLite files and PostgreSQL (Debian's package), the archive's own store and migrations."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

from sqlalchemy.engine import make_url

from services.archive.db import make_engine, migrate, revision
from services.archive.store import ArchiveStore
from tests.archive.test_tops import NOW, check, mention
from tests.archive.test_volume_counts import counts
from veille.models import MentionClassified

_AUDITED = ("mention_watches", "mention_counts", "mention_tops")


def _audit(path: Path) -> None:
    """Log every row written to the derived tables (triggers of the test's own) in ``audit``."""
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE audit (what TEXT NOT NULL)")
    for table in _AUDITED:
        for op in ("INSERT", "UPDATE", "DELETE"):
            db.execute(
                f"CREATE TRIGGER audit_{table}_{op.lower()} AFTER {op} ON {table} "
                f"BEGIN INSERT INTO audit VALUES ('{table} {op.lower()}'); END"
            )
    db.commit()
    db.close()


def _written(path: Path) -> tuple[list[str], int]:
    """(what the audit logged, rows of the full-text index's segment table), the audit emptied."""
    db = sqlite3.connect(path)
    try:
        logged = sorted({what for (what,) in db.execute("SELECT what FROM audit")})
        segments = db.execute("SELECT count(*) FROM mentions_fts_data").fetchone()[0]
        db.execute("DELETE FROM audit")
        db.commit()
    finally:
        db.close()
    return logged, segments


def _again(i: int, *, version: int, score: float = 0.0, **changes: object) -> MentionClassified:
    """Mention ``i`` of test_tops classified once more (``version``: another classified_at)."""
    first = mention(i, NOW - timedelta(hours=(i * 5) % 150, minutes=i % 50))
    return first.model_copy(
        update={"classified_at": NOW + timedelta(seconds=version), "sentiment_score": score, **changes}
    )


async def test_a_reclassification_that_moves_no_count_rewrites_no_derived_row(tmp_path: Path) -> None:
    """SQLite: another classification that changes only the score rewrites the mention alone (no watch row,
    no volume or top count, no full-text entry); one that changes sentiment and watches moves exactly those,
    and every count equals the rows."""
    path = tmp_path / "archive.sqlite3"
    writer = make_engine(make_url(f"sqlite+aiosqlite:///{path}"))
    try:
        await migrate(writer)
        store = ArchiveStore(writer, retention=timedelta(days=400))
        first = [_again(i, version=0) for i in range(100)]
        assert (await store.write_mentions(first)).written == 100
        _audit(path)
        _, segments = _written(path)

        result = await store.write_mentions([_again(i, version=1, score=0.25) for i in range(100)])
        assert result.written == 100  # the rows are rewritten (another classified_at, another score) ...
        assert _written(path) == ([], segments)  # ... and nothing derived from them
        kept, rows = await counts(writer)
        assert kept == rows and sum(rows.values()) > 0

        changed = [
            _again(i, version=2, sentiment="positive", watches=["b", "c"] if i % 2 else ["a"]) for i in range(40)
        ]
        assert (await store.write_mentions(changed)).written == 40
        logged, _ = _written(path)
        assert {"mention_watches insert", "mention_watches delete", "mention_counts update"} <= set(logged)
        kept, rows = await counts(writer)
        assert kept == rows and rows[("c", "positive")] == 20
        assert await check(writer) > 50
    finally:
        await writer.dispose()


async def test_an_archive_upgraded_from_0007_keeps_counts_equal_to_the_rows(db_url: str) -> None:
    """An archive written at revision 0007, upgraded to the newest: redeliveries, reclassifications and new
    mentions afterwards leave its volume and top counts equal to counting the rows."""
    writer = make_engine(make_url(db_url))
    try:
        assert await migrate(writer, "0007") == "0007"
        store = ArchiveStore(writer, retention=timedelta(days=400))
        await store.prepare()
        await store.write_mentions([_again(i, version=0) for i in range(150)])
        await migrate(writer)
        assert await revision(writer) != "0007"
        store = ArchiveStore(writer, retention=timedelta(days=400))
        await store.prepare()
        await store.write_mentions([_again(i, version=0) for i in range(50)])  # a redelivery
        await store.write_mentions([_again(i, version=1, score=0.5) for i in range(50, 100)])  # the score alone
        await store.write_mentions(
            [_again(i, version=2, sentiment="neutral", watches=["c"]) for i in range(100, 130)]
            + [_again(i, version=0) for i in range(150, 220)]  # and new ones
        )
        kept, rows = await counts(writer)
        assert kept == rows and rows[("c", "neutral")] == 30
        assert await check(writer) > 50
    finally:
        await writer.dispose()
