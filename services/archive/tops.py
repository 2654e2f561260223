"""A watch's top stories, sources and sites over a time range, from the pre-aggregated ``mention_tops``.

``mention_tops`` (migration 0007, kept by triggers on ``mentions``) counts each watch's mentions per
UTC day and story, source or site. A range's whole days are summed from it; its two partial days at
the edges (``since`` to the next midnight, the last midnight to ``until``) are counted from the
``mention_watches`` rows joined to their mentions, and the two are added up in one statement: the
counts are exactly what counting every row of the range gives (tests/archive/test_tops.py checks
it on both databases after inserts, redeliveries, reclassifications and retention). Counts are read
only from the day of the watch's oldest remaining row on: PostgreSQL's retention drops whole months
without firing the triggers.

Each entry's example is its newest mention's title (stories) or URL (sources, sites) that has one,
newest by ``ts`` then id: looked for first in the newest day the key has in the range (a few rows
by the key's ``(key, ts)`` index), then, if none of that day's has one, in the whole range.

Cost for the biggest watch of a 1-million-mention archive (69,000 mentions in 30 days): a few
thousand pre-aggregated rows and at most two days of mention rows per list, instead of 69,000 joins.
"""

from __future__ import annotations

import sys
import threading
from collections import Counter, OrderedDict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Column, ColumnElement, Integer, MetaData, Table, Text, and_, exists, func, literal, select

from services.archive.schema import mention_watches, mentions

__all__ = ["DAY", "KEYED", "count_terms", "keyed_top", "mention_tops"]

DAY = 86_400
"""Seconds per ``mention_tops`` bucket (a UTC day)."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

mention_tops = Table(
    "mention_tops",
    MetaData(),
    Column("watch", Text, primary_key=True),
    Column("dimension", Text, primary_key=True, doc="stories, sources or sites"),
    Column("day", Integer, primary_key=True, doc="floor(seconds since the epoch of ts / 86400)"),
    Column("key", Text, primary_key=True, doc="story_id, source or site"),
    Column("n", Integer, nullable=False),
)

Keyed = Literal["stories", "sources", "sites"]
KEYED: dict[str, ColumnElement[Any]] = {
    "stories": mentions.c.story_id,
    "sources": mentions.c.source,
    "sites": mentions.c.site,
}
_EXAMPLES = {"stories": mentions.c.title, "sources": mentions.c.url, "sites": mentions.c.url}


def _day(moment: datetime) -> int:
    return int((moment - _EPOCH).total_seconds()) // DAY


def _midnight(day: int) -> datetime:
    return _EPOCH + timedelta(days=day)


def _utc(moment: Any) -> datetime:
    assert isinstance(moment, datetime)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


async def keyed_top(
    conn: Any, dimension: str, watch: str, start: datetime, end: datetime, limit: int
) -> list[tuple[str, int, str | None]]:
    """``watch``'s ``limit`` most frequent keys of ``dimension`` in ``[start, end)``: (key, count, example),
    most first, ties by key (see the module's notes)."""
    column = KEYED[dimension]
    w = mention_watches.c
    oldest = (await conn.execute(select(func.min(w.ts)).where(w.watch == watch))).scalar()
    if oldest is None:
        return []
    first = max(-(-int((start - _EPOCH).total_seconds()) // DAY), _day(_utc(oldest)))  # first whole day counted
    last = _day(end)  # days before this one are whole (end's own day is counted from its rows)
    postgres = conn.dialect.name == "postgresql"
    # PostgreSQL: joined by id alone (unique across partitions: mention_keys), each side bounded by the
    # range. Joined on (id, ts), the planner probes the ts index for each row, and thousands of
    # mentions stamped with the same instant (a feed's dates without times) make that quadratic
    same = mentions.c.id == w.mention_id if postgres else and_(mentions.c.id == w.mention_id, mentions.c.ts == w.ts)
    joined = mention_watches.join(mentions, same)
    from services.archive.aggregate import epoch_bucket  # here: aggregate imports this module

    def counted_rows(low: datetime, high: datetime) -> Any:
        # one plain range per statement: an OR of two ranges makes SQLite read every row of the watch
        return (
            select(column.label("key"), func.count().label("n"), func.max(epoch_bucket(w.ts, DAY)).label("day"))
            .select_from(joined)
            .where(w.watch == watch, w.ts >= low, w.ts < high, column.is_not(None))
            .where(*((mentions.c.ts >= low, mentions.c.ts < high) if postgres else ()))
            .group_by(column)
        )

    parts: list[Any] = []
    if first < last:
        t = mention_tops.c
        parts.append(
            select(t.key.label("key"), t.n.label("n"), t.day.label("day")).where(
                t.watch == watch, t.dimension == dimension, t.day >= first, t.day < last, t.n != 0
            )
        )
        if start < _midnight(first):
            parts.append(counted_rows(start, _midnight(first)))
        if _midnight(last) < end:
            parts.append(counted_rows(_midnight(last), end))
    else:
        parts.append(counted_rows(start, end))
    union = parts[0].union_all(*parts[1:]).subquery() if len(parts) > 1 else parts[0].subquery()
    total = func.sum(union.c.n).label("total")
    statement = (
        select(union.c.key, total, func.max(union.c.day))
        .group_by(union.c.key)
        .order_by(total.desc(), union.c.key)
        .limit(limit)
    )
    ranked = [(str(key), int(n), int(newest)) for key, n, newest in (await conn.execute(statement)).all()]
    ranked = [entry for entry in ranked if entry[1] > 0]
    windows = [(max(start, _midnight(newest)), min(end, _midnight(newest + 1))) for _, _, newest in ranked]
    asked = [(key, *window) for (key, _, _), window in zip(ranked, windows, strict=True)]
    examples = await _examples(conn, dimension, watch, asked)
    retry = [i for i, value in enumerate(examples) if value is None and windows[i] != (start, end)]
    if retry:  # none of the newest day's mentions has one: the whole range
        again = await _examples(conn, dimension, watch, [(ranked[i][0], start, end) for i in retry])
        for i, value in zip(retry, again, strict=True):
            examples[i] = value
    return [(key, n, example) for (key, n, _), example in zip(ranked, examples, strict=True)]


async def _examples(
    conn: Any, dimension: str, watch: str, asked: list[tuple[str, datetime, datetime]]
) -> list[str | None]:
    """For each (key, start, end): the title (stories) or URL of the key's newest mention of ``watch`` in
    ``[start, end)`` that has one; all in one statement (one scalar subquery each)."""
    if not asked:
        return []
    column, shown = KEYED[dimension], _EXAMPLES[dimension]
    w = mention_watches.c
    watched = exists(select(literal(1)).where(w.watch == watch, w.ts == mentions.c.ts, w.mention_id == mentions.c.id))
    each = [
        select(shown)
        .where(column == key, mentions.c.ts >= low, mentions.c.ts < high, shown.is_not(None), watched)
        .order_by(mentions.c.ts.desc(), mentions.c.id.desc())
        .limit(1)
        .scalar_subquery()
        .label(f"e{i}")
        for i, (key, low, high) in enumerate(asked)
    ]
    row = (await conn.execute(select(*each))).one()
    return [None if value is None else str(value) for value in row]


# ------------------------------------------------------------------------ terms

TERMS_KEPT = 20_000
"""Mentions whose content words the process keeps (least recently used dropped first): a few MB."""
_TERMS: OrderedDict[tuple[str, str], tuple[str, ...]] = OrderedDict()
_TERMS_LOCK = threading.Lock()


def count_terms(rows: Sequence[Any]) -> Counter[str]:
    """The content words of sampled mentions, counted: ``rows`` are (id, classified_at, title, text), in
    the sample's order (ties keep it). A mention's words are kept for the next call (by its id and
    classification, so a rewritten mention is read again): tokenising 2,000 texts costs 0.1-0.3 s of
    CPU, and the overview's ranges and its next loads sample mostly the same newest mentions."""
    from services.classifier.surges import mention_terms

    keys = [(str(row[0]), str(row[1])) for row in rows]
    with _TERMS_LOCK:
        known = {key: _TERMS[key] for key in keys if key in _TERMS}
        for key in known:
            _TERMS.move_to_end(key)
    fresh: dict[tuple[str, str], tuple[str, ...]] = {}
    counter: Counter[str] = Counter()
    for key, row in zip(keys, rows, strict=True):
        words = known.get(key) or fresh.get(key)
        if words is None:
            words = fresh[key] = tuple(sys.intern(word) for word in mention_terms(f"{row[2] or ''} {row[3]}"))
        counter.update(words)
    if fresh:
        with _TERMS_LOCK:
            _TERMS.update(fresh)
            while len(_TERMS) > TERMS_KEPT:
                _TERMS.popitem(last=False)
    return counter
