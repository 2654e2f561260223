"""Writing the archive: idempotent batch upserts, monthly partitions, retention.

:class:`ArchiveStore` is the one writer the service uses; every method is one transaction, so a
batch is in the database whole or not at all, and the service acks its messages only after
:meth:`write_mentions` / :meth:`write_alerts` returned.

Idempotence. A mention is one row per id whatever happens: a redelivery, a replay of the stream, a
second replica writing the same message. Its ``ts`` (published, else ingested time) is fixed the
first time it is archived: on SQLite ``mentions.id`` is unique; on PostgreSQL, whose partitioned
table can only be unique on (id, ts), ``mention_keys`` maps each id to the ``ts`` it was first
stored with, and the upsert uses that ``ts``. A row is rewritten only when the message is a later
classification of the mention (a greater ``classified_at``): a plain redelivery writes nothing, and an
older classification arriving after a newer one (two writers, two replicas, a replay) changes nothing
either. An alert is one row per (id, status) and never rewritten.

Writers side by side (PostgreSQL: the service's ``archive.writers``, or replicas) take rows in one order
(ids sorted, each count and top upsert ordered by key), so batches of new mentions wait for each other
but do not deadlock. A batch of reclassifications updates the counts and tops in more than one trigger
pass (what the old classification counted, then the new one), and two such passes can meet another
writer's in the other order: PostgreSQL then ends one transaction as a deadlock, and the store writes
the batch again (up to :data:`CONFLICT_ATTEMPTS` times; the service goes on retrying after that, it never
takes a deadlock for refused data).

Partitions (PostgreSQL). ``mentions`` and ``mention_watches`` have one partition per month of
``ts`` (``mentions_p2026_05``), created before a batch needs them and ahead for the coming months,
under a transaction advisory lock so replicas do not race. Retention drops the partitions whose
whole month is older than the cut-off (the cheapest delete there is: no dead rows, no vacuum), after
deleting their ``mention_keys`` in batches. On SQLite retention deletes in batches of
:data:`DELETE_BATCH` rows, each its own short transaction, so the writer is never blocked long.

A mention older than the retention when it arrives is not stored (it would be deleted at once);
it is counted and acked.

Write paths. The tables are SQLAlchemy Core (:mod:`services.archive.schema`) and so are the readers and
retention, but a batch of mentions goes through the driver in a few statements, because SQLAlchemy's
per-row parameter processing cost more than the database's own work (profiled: the Core upsert ran at
0.3-0.4 of a raw ``executemany`` of the same rows on PostgreSQL). PostgreSQL: three round trips per
batch whatever its size, each column sent as one array (``unnest``); SQLite: one select and a few
``executemany`` in the writer's ``BEGIN IMMEDIATE`` transaction, run in aiosqlite's thread in one hand-off
(:func:`_lite_write`). Both are tested on the real databases
(tests/archive/test_store.py, test_store_writes.py).
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from operator import itemgetter
from typing import Any

import structlog
from sqlalchemy import DateTime, bindparam, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from services.archive.clean import Cleaner
from services.archive.schema import COUNTS_GRAIN, alerts, mentions
from veille.models import MAX_NAME, MAX_SOURCE, MAX_TEXT, MAX_TITLE, MAX_URL, AlertRaised, MentionClassified

__all__ = [
    "DELETE_BATCH",
    "ArchiveStore",
    "WriteResult",
    "is_connection_error",
    "is_write_conflict",
    "month_of",
    "text_search_config",
]

log = structlog.get_logger("archive.store")

DELETE_BATCH = 5_000
CONFLICT_ATTEMPTS = 5
"""Times a PostgreSQL batch is tried when the server ends it as a deadlock or a serialization failure."""
_CONFLICT_STATES = frozenset({"40P01", "40001"})  # deadlock_detected, serialization_failure
PARTITION_LOCK = 0x7665696C6C6502  # advisory lock key for creating and dropping partitions
PARTITIONS_AHEAD = 2
"""Months after the current one whose partitions exist before any mention needs them."""

_UPDATABLE = [
    c.name for c in mentions.columns if c.name not in ("id", "ts", "archived_at")
]  # a new classification of a mention rewrites these

# PostgreSQL's write path: each statement takes the batch as one array per column (``unnest``), so a
# batch is one round trip per statement whatever its size, and the statements are prepared once per
# connection (asyncpg's statement cache). Rows come sorted by id (one lock order for all writers).
_PG_TYPES = {"ts": "timestamptz", "published_at": "timestamptz", "ingested_at": "timestamptz",
             "classified_at": "timestamptz", "archived_at": "timestamptz", "sentiment_score": "float8",
             "watches": "text", "engagement": "text"}  # fmt: skip
_PG_COLUMNS = [c.name for c in mentions.columns] + ["cfg", "doc"]
_PG_WATCHES = _PG_COLUMNS.index("watches")  # sent as JSON text, cast to jsonb
_PG_ENGAGEMENT = _PG_COLUMNS.index("engagement")  # the same
_PG_INPUT = ", ".join(f"${i}::{_PG_TYPES.get(name, 'text')}[]" for i, name in enumerate(_PG_COLUMNS, start=1))

_PG_KEYS = """
WITH input AS (SELECT * FROM unnest($1::text[], $2::timestamptz[]) AS t(id, ts)),
added AS (INSERT INTO mention_keys (id, ts) SELECT id, ts FROM input ON CONFLICT (id) DO NOTHING RETURNING id, ts)
SELECT id, ts, true FROM added
UNION ALL
SELECT k.id, k.ts, false FROM input i CROSS JOIN LATERAL (SELECT id, ts FROM mention_keys WHERE id = i.id LIMIT 1) k
"""
"""Each id's ``ts``: the one it was first stored with, or the batch's for a new id (flagged true). An id
another writer inserted but had not committed when this statement started is in neither half (the
insert waited for it and did nothing, the select's snapshot predates it): :data:`_PG_KEYS_AGAIN` reads it.

The existing ids are read one primary-key probe per id (a ``LATERAL`` subquery the planner cannot flatten
into a join), whatever the table's statistics say. ``k.id = ANY($1)`` let a cached plan made while the
table was nearly empty (an archive filling up, not analyzed yet) read the whole table for every batch:
1,900 mentions/s instead of 4,700 over a 30,000-mention catch-up, depending on when autovacuum ran."""

_PG_KEYS_AGAIN = (
    "SELECT k.id, k.ts FROM unnest($1::text[]) AS i(id) "
    "CROSS JOIN LATERAL (SELECT id, ts FROM mention_keys WHERE id = i.id LIMIT 1) k"
)

_PG_UPSERT = f"""
WITH input AS (SELECT * FROM unnest({_PG_INPUT}) AS t({", ".join(_PG_COLUMNS)})),
up AS (
    INSERT INTO mentions AS m ({", ".join(c.name for c in mentions.columns)}, tsv)
    SELECT {", ".join(f"{c.name}::jsonb" if c.name in ("watches", "engagement") else c.name for c in mentions.columns)},
           to_tsvector(cfg::regconfig, DOCUMENT)
    FROM input
    ON CONFLICT (id, ts) DO UPDATE SET {", ".join(f"{name} = EXCLUDED.{name}" for name in [*_UPDATABLE, "tsv"])}
    WHERE m.classified_at < EXCLUDED.classified_at
    RETURNING m.id, m.ts, m.sentiment, m.watches
),
gone AS (
    DELETE FROM mention_watches w USING up
    WHERE cardinality(${len(_PG_COLUMNS) + 1}::text[]) > 0
      AND w.mention_id = ANY(${len(_PG_COLUMNS) + 1}::text[]) AND w.mention_id = up.id
      AND NOT (w.ts = up.ts AND up.watches ? w.watch)
),
watched AS (
    INSERT INTO mention_watches (watch, ts, mention_id, sentiment)
    SELECT w.watch, up.ts, up.id, up.sentiment
    FROM up CROSS JOIN LATERAL jsonb_array_elements_text(up.watches) AS w(watch)
    ON CONFLICT (watch, ts, mention_id) DO UPDATE SET sentiment = EXCLUDED.sentiment
    WHERE mention_watches.sentiment IS DISTINCT FROM EXCLUDED.sentiment
)
SELECT id FROM up
"""  # noqa: S608 - built from the schema's column names, no input
"""A batch's mentions upserted (a row rewritten only by a later ``classified_at``) and, for the rows
written, their ``mention_watches`` brought in line (watches no longer matched deleted, new ones added, the
sentiment updated); returns the ids written. The last parameter lists the ids already archived before
this batch (the others have no watches to delete), so the delete probes the index for those alone, and
does not run at all when there are none (``cardinality``: a test made once per execution; ``= ANY('{}')``
alone still read every row of a partition whose statistics were stale)."""

_PG_UPSERT_UNACCENT = _PG_UPSERT.replace("DOCUMENT", "unaccent(doc)")
_PG_UPSERT = _PG_UPSERT.replace("DOCUMENT", "doc")

# SQLite's write path: plain ``executemany`` of prepared tuples through the driver (sqlite3 in aiosqlite's
# thread), no per-row statement compilation or type processing; the values are stored exactly as
# SQLAlchemy's types store them (datetimes as UTC text with microseconds, JSON as ``json.dumps``), so the
# readers (search, aggregations, backtest) see no difference. The writer holds the database (BEGIN
# IMMEDIATE) from the first select to the commit, so what the select found is still true at the insert.
_LITE_COLUMNS = [c.name for c in mentions.columns]
_LITE_TS = _LITE_COLUMNS.index("ts")
_LITE_CLASSIFIED = _LITE_COLUMNS.index("classified_at")
_LITE_UPDATED = [_LITE_COLUMNS.index(name) for name in _UPDATABLE]
_LITE_CHUNK = 500  # ids per ``IN (...)``: under SQLite's 32,766 host parameters whatever the batch size
_LITE_SELECT = "SELECT id, ts, classified_at FROM mentions WHERE id IN (%s)"
_LITE_INSERT = f"INSERT INTO mentions ({', '.join(_LITE_COLUMNS)}) VALUES ({', '.join('?' * len(_LITE_COLUMNS))})"  # noqa: S608
_LITE_UPDATE = f"UPDATE mentions SET {', '.join(f'{name} = ?' for name in _UPDATABLE)} WHERE id = ?"  # noqa: S608
_LITE_UNWATCH = "DELETE FROM mention_watches WHERE mention_id = ? AND watch NOT IN (SELECT value FROM json_each(?))"
"""A reclassified mention's watches it no longer matches (the others stay: no delete and re-insert for
the ``mention_counts`` triggers to undo and redo)."""
_LITE_WATCH = (
    "INSERT INTO mention_watches (watch, ts, mention_id, sentiment) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (watch, ts, mention_id) DO UPDATE SET sentiment = excluded.sentiment "
    "WHERE sentiment IS NOT excluded.sentiment"
)

_LITE_COUNTING_TABLE = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'archive_batch'"
_LITE_COUNTING_ON = "INSERT INTO archive_batch (writer) VALUES (1)"
"""While ``archive_batch`` holds a row the insert triggers of ``mentions_fts``, ``mention_counts`` and
``mention_tops`` skip (migration 0010): the store indexes its new rows with one statement and adds their
counts itself, one upsert per distinct key of the batch. The row exists only inside the store's transaction
(:data:`_LITE_COUNTING_OFF` before the commit): no other connection sees it, a crash rolls it back."""
_LITE_COUNTING_OFF = "DELETE FROM archive_batch"
_LITE_LAST_SEQ = "SELECT coalesce(max(seq), 0) FROM mentions"
_LITE_FTS = "INSERT INTO mentions_fts (rowid, title, text) SELECT seq, title, text FROM mentions WHERE seq > ?"
"""The batch's new rows into the full-text index, one statement (a row trigger's insert into FTS5 is a statement
of its own, and FTS5 writes a new segment at each: about 80 us a mention, against 15-20 for the batch's)."""
_LITE_ADD_COUNTS = (
    "INSERT INTO mention_counts (watch, bucket, sentiment, n) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (watch, bucket, sentiment) DO UPDATE SET n = n + excluded.n"
)
_LITE_ADD_TOPS = (
    "INSERT INTO mention_tops (watch, day, dimension, key, n) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (watch, day, dimension, key) DO UPDATE SET n = n + excluded.n"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND = timedelta(seconds=1)


def _sql_div(value: int, by: int) -> int:
    """``value / by`` as SQL's integer division rounds it (toward zero, where Python's ``//`` floors)."""
    return value // by if value >= 0 else -(-value // by)


def _lite_counts(
    fresh: Sequence[tuple[str, dict[str, Any]]],
) -> tuple[list[tuple[str, int, str, int]], list[tuple[str, int, str, str, int]]]:
    """What the insert triggers of migrations 0006 and 0007 would add for these new mentions, summed per key:
    ``mention_counts`` (watch, 5-minute bucket, sentiment) and ``mention_tops`` (watch, UTC day, dimension, key),
    each in its primary key's order. A bucket or day is computed as the triggers compute it from the stored
    text (``CAST(strftime('%s', ts) AS INTEGER) / 300``: whole seconds, SQL's integer division)."""
    volume: Counter[tuple[str, int, str]] = Counter()
    tops: Counter[tuple[str, str, int, str]] = Counter()
    for _key, row in fresh:
        watches = row["watches"]
        if not watches:
            continue
        seconds = (row["ts"] - _EPOCH) // _SECOND  # whole seconds, as strftime('%s') gives them
        bucket = _sql_div(seconds, COUNTS_GRAIN)
        day = _sql_div(seconds, 86_400)
        sentiment = row["sentiment"]
        keys = [(d, k) for d, k in (("stories", row["story_id"]), ("sources", row["source"]), ("sites", row["site"]))
                if k is not None]  # fmt: skip
        for watch in watches:
            volume[(watch, bucket, sentiment)] += 1
            for dimension, value in keys:
                tops[(watch, dimension, day, value)] += 1
    return (
        [(*key, n) for key, n in sorted(volume.items())],
        [(watch, day, dimension, value, n) for (watch, dimension, day, value), n in sorted(tops.items())],
    )


def _lite(value: Any) -> Any:
    """A value as SQLAlchemy's SQLite types store it: datetimes as UTC text, lists and dicts as JSON."""
    if isinstance(value, datetime):
        return value.isoformat(" ", "microseconds")[:26]  # SQLAlchemy's DATETIME format (already UTC)
    if isinstance(value, list | dict):
        return json.dumps(value)
    return value


_LITE_GET = itemgetter(*_LITE_COLUMNS)
_LITE_VALUES = "_lite"
"""Key of a row's SQLite values (:func:`_lite_values`), computed with the row (:meth:`ArchiveStore.mention_row`)."""
_LITE_TIMES = [_LITE_COLUMNS.index(name) for name in ("ts", "published_at", "ingested_at", "classified_at")]
_LITE_ARCHIVED = _LITE_COLUMNS.index("archived_at")
_LITE_WATCHES = _LITE_COLUMNS.index("watches")
_LITE_ENGAGEMENT = _LITE_COLUMNS.index("engagement")


def _lite_values(row: dict[str, Any], archived: str) -> list[Any]:
    """A row's values in ``_LITE_COLUMNS`` order, as :func:`_lite` stores each (``archived``: its archived_at,
    already converted): the per-value calls of ``_lite`` were a tenth of the service's CPU per mention. ``ts``
    is most often ``published_at`` itself (converted once), and a watch list's JSON is remembered."""
    values = list(_LITE_GET(row))
    ts = values[_LITE_TS]
    for index in _LITE_TIMES:
        moment = values[index]
        if moment is not None:
            values[index] = values[_LITE_TS] if moment is ts and index != _LITE_TS else _lite_time(moment)
    values[_LITE_ARCHIVED] = archived
    values[_LITE_WATCHES] = _watches_json(values[_LITE_WATCHES])
    engagement = values[_LITE_ENGAGEMENT]
    if engagement is not None:
        values[_LITE_ENGAGEMENT] = json.dumps(engagement)
    return values


def _watches_json(watches: list[str]) -> str:
    """``json.dumps(watches)``, remembered (see :data:`_WATCHES_JSON`)."""
    key = tuple(watches)
    dumped = _WATCHES_JSON.get(key)
    if dumped is None:
        if len(_WATCHES_JSON) >= _WATCHES_JSON_MAX:
            _WATCHES_JSON.clear()
        dumped = _WATCHES_JSON[key] = json.dumps(watches)
    return dumped


def _lite_time(moment: datetime) -> str:
    """A UTC datetime as SQLAlchemy's SQLite ``DATETIME`` stores it (``isoformat(" ", "microseconds")`` without
    the offset; formatted from the fields: half the time of ``isoformat``, which asks the zone for its offset)."""
    return "%04d-%02d-%02d %02d:%02d:%02d.%06d" % (  # noqa: UP031 - the fastest way, measured
        moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second, moment.microsecond
    )  # fmt: skip


_WATCHES_JSON: dict[tuple[str, ...], str] = {}
"""Watch lists' JSON text (a few hundred distinct lists in a day's traffic), emptied at :data:`_WATCHES_JSON_MAX`."""
_WATCHES_JSON_MAX = 4_096


_CONFIGS = {"fr": "french", "en": "english"}


def text_search_config(lang: str | None) -> str:
    """PostgreSQL text-search configuration for a language: ``french``, ``english``, else ``simple``."""
    return _CONFIGS.get((lang or "").lower()[:2], "simple")


def month_of(moment: datetime) -> date:
    """The first day of ``moment``'s month (UTC)."""
    moment = moment.astimezone(UTC)
    return date(moment.year, moment.month, 1)


def _next_month(month: date) -> date:
    return date(month.year + month.month // 12, month.month % 12 + 1, 1)


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def is_write_conflict(exc: BaseException) -> bool:
    """Whether ``exc`` is PostgreSQL ending a transaction for another's sake (a deadlock, a serialization
    failure): nothing is wrong with the data or the server, the same transaction again goes through."""
    seen: list[BaseException] = []
    candidate: BaseException | None = exc
    while candidate is not None and candidate not in seen and len(seen) < 4:
        seen.append(candidate)
        if (getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)) in _CONFLICT_STATES:
            return True
        candidate = getattr(candidate, "orig", None) or candidate.__cause__
    return False


def is_connection_error(exc: BaseException) -> bool:
    """Whether ``exc`` says the database is unreachable (not that it refused this data)."""
    if isinstance(exc, OSError | TimeoutError | ConnectionError):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, InterfaceError):
        return True
    if isinstance(exc, OperationalError):
        message = str(exc).lower()
        # SQLite: "database is locked" past the busy timeout, "disk I/O error", "unable to open database"
        return any(
            word in message
            for word in (
                "connect",
                "closed",
                "terminat",
                "shutdown",
                "shutting down",
                "locked",
                "i/o",
                "unable to open",
                "starting up",
                "recovery",
                "timeout",
                "timed out",
            )
        )
    name = type(getattr(exc, "orig", None) or exc).__name__
    return name in {
        "ConnectionDoesNotExistError",
        "CannotConnectNowError",
        "ConnectionFailureError",
        "AdminShutdownError",
        "ConnectionRejectionError",
        "TooManyConnectionsError",
        "InterfaceError",
    }


def _lite_write(
    db: sqlite3.Connection, rows: dict[str, dict[str, Any]], counting: bool | None
) -> tuple[set[str], bool]:
    """A batch's statements on SQLite, run in aiosqlite's thread inside the caller's ``BEGIN IMMEDIATE``
    transaction: which ids are archived (and as classified when), then ``executemany`` of the new rows, their
    watches and their counts (``_LITE_*``, :func:`_lite_counts`), then of the reclassified rows and their watches
    (the triggers move those counts). Returns the ids written and whether the schema has 0010's batch marker
    (``counting``, read here when None).

    One hand-off to aiosqlite's thread for the whole batch: through SQLAlchemy each statement was three or four
    (cursor, execute, fetch, close; ~45 a batch), and each waited for the event loop, busy decoding the next
    batch meanwhile (in the service's child: the batch's first select 1.5 -> 31-56 ms once the decode yielded
    between slices)."""
    if counting is None:  # migration 0010: the store indexes and counts its inserts (before: triggers)
        counting = db.execute(_LITE_COUNTING_TABLE).fetchone() is not None
    ordered = sorted(rows)
    known: dict[str, tuple[str, str]] = {}
    for start in range(0, len(ordered), _LITE_CHUNK):
        chunk = ordered[start : start + _LITE_CHUNK]
        found = db.execute(_LITE_SELECT % ", ".join("?" * len(chunk)), chunk).fetchall()
        known.update((key, (ts, classified)) for key, ts, classified in found)
    added: list[tuple[Any, ...]] = []
    updated: list[tuple[Any, ...]] = []
    changed: dict[str, str] = {}
    for key in ordered:
        row = rows[key]
        values = row.get(_LITE_VALUES) or _lite_values(row, _lite(row["archived_at"]))
        stored = known.get(key)
        if stored is None:
            added.append(tuple(values))
            changed[key] = values[_LITE_TS]
        elif stored[1] < values[_LITE_CLASSIFIED]:  # a later classification: rewritten, ts kept (same text format)
            updated.append((*(values[i] for i in _LITE_UPDATED), key))
            changed[key] = stored[0]
    if added:
        fresh = [(key, rows[key]) for key in ordered if key not in known]
        watches = sorted(
            (watch, changed[key], key, row["sentiment"]) for key, row in fresh for watch in row["watches"]
        )  # in the primary key's order: neighbouring pages of the b-tree
        last = 0
        if counting:
            db.execute(_LITE_COUNTING_ON)
            last = db.execute(_LITE_LAST_SEQ).fetchone()[0]
        db.executemany(_LITE_INSERT, added)
        if watches:
            db.executemany(_LITE_WATCH, watches)
        if counting:
            db.execute(_LITE_FTS, (last,))
            volume, tops = _lite_counts(fresh)
            if volume:
                db.executemany(_LITE_ADD_COUNTS, volume)
            if tops:
                db.executemany(_LITE_ADD_TOPS, tops)
            db.execute(_LITE_COUNTING_OFF)
    if updated:
        db.executemany(_LITE_UPDATE, updated)
        again = [key for key in changed if key in known]
        db.executemany(_LITE_UNWATCH, [(key, json.dumps(rows[key]["watches"])) for key in again])
        rewatched = [
            (watch, changed[key], key, rows[key]["sentiment"]) for key in again for watch in rows[key]["watches"]
        ]
        if rewatched:
            db.executemany(_LITE_WATCH, rewatched)
    return set(changed), counting


@dataclass
class WriteResult:
    """What one batch did: rows written (inserted or rewritten), unchanged, and skipped as too old."""

    written: int = 0
    unchanged: int = 0
    expired: int = 0


class ArchiveStore:
    """The archive's writer on one engine (SQLite or PostgreSQL)."""

    def __init__(self, engine: AsyncEngine, *, retention: timedelta, clock: Any = None) -> None:
        """Write through ``engine``; mentions and alerts older than ``retention`` are not kept."""
        self.engine = engine
        self.retention = retention
        self.postgres = engine.dialect.name == "postgresql"
        self.clock = clock or (lambda: datetime.now(UTC))
        self.cleaner = Cleaner()
        self.unaccent = False
        self._warned = False
        self._partitions: set[date] = set()
        self._counting: bool | None = (
            None  # SQLite: whether the schema lets the store index and count its inserts (0010)
        )
        self._archived: tuple[datetime | None, str] = (None, "")  # the last archived_at and its SQLite text
        self.on_conflict: Callable[[], None] | None = None  # called at each conflict (is_write_conflict)

    # ---------------------------------------------------------------- set-up and probes

    async def prepare(self) -> None:
        """Read what the schema has (extensions, partitions) and create the coming months' partitions."""
        if not self.postgres:
            return
        async with self.engine.connect() as conn:
            self.unaccent = bool(
                (await conn.execute(text("SELECT count(*) FROM pg_extension WHERE extname = 'unaccent'"))).scalar()
            )
        if not self.unaccent and not self._warned:
            self._warned = True
            log.warning(
                "archive.unaccent_unavailable",
                effect="full-text search does not fold accents (é and e differ); CREATE EXTENSION unaccent "
                "as a superuser in this database, then restart the archive",
            )
        self._partitions = set(await self.partitions())
        today = month_of(self.clock())
        months = [today]
        for _ in range(PARTITIONS_AHEAD):
            months.append(_next_month(months[-1]))
        await self.ensure_partitions(months)

    async def ping(self) -> None:
        """Raise unless the database answers a trivial query."""
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def partitions(self) -> list[date]:
        """Months that have a ``mentions`` partition (PostgreSQL), oldest first."""
        if not self.postgres:
            return []
        query = text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'mentions'"
        )
        async with self.engine.connect() as conn:
            names = (await conn.execute(query)).scalars().all()
        months = []
        for name in names:
            try:
                year, month = name.removeprefix("mentions_p").split("_")
                months.append(date(int(year), int(month), 1))
            except ValueError:
                continue
        return sorted(months)

    async def ensure_partitions(self, months: Iterable[date]) -> None:
        """Create the partitions of ``months`` that do not exist yet (PostgreSQL; nothing on SQLite)."""
        missing = sorted(set(months) - self._partitions)
        if not self.postgres or not missing:
            return
        async with self.engine.begin() as conn:
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PARTITION_LOCK})
            for month in missing:
                end = _next_month(month)
                for parent in ("mentions", "mention_watches"):
                    await conn.exec_driver_sql(
                        f"CREATE TABLE IF NOT EXISTS {parent}_p{month:%Y_%m} PARTITION OF {parent} "
                        f"FOR VALUES FROM ('{month.isoformat()} 00:00:00+00') TO ('{end.isoformat()} 00:00:00+00')"
                    )
        self._partitions.update(missing)
        log.info("archive.partitions_created", months=[f"{m:%Y-%m}" for m in missing])

    # ---------------------------------------------------------------- writes

    def _mention_row(self, classified: MentionClassified, now: datetime) -> dict[str, Any]:
        clean = self.cleaner.text
        mention = classified.mention
        published = _utc(mention.published_at)
        ingested = _utc(mention.ingested_at)
        assert ingested is not None
        title = clean("title", mention.title, MAX_TITLE)
        body = clean("text", mention.text, MAX_TEXT) or ""
        lang = clean("lang", classified.lang or mention.lang, 16)
        watches = [w for w in (clean("watches", w, MAX_NAME) for w in classified.watches) if w]
        row: dict[str, Any] = {
            "id": clean("id", mention.id, 512),
            "ts": published or ingested,
            "source": clean("source", mention.source, MAX_SOURCE),
            "watch": clean("watch", mention.watch, MAX_NAME),
            "url": clean("url", str(mention.url) if mention.url else None, MAX_URL),
            "title": title,
            "text": body,
            "author": clean("author", mention.author, MAX_NAME),
            "site": clean("site", mention.site, MAX_NAME),
            "lang": lang,
            "sentiment": classified.sentiment,
            "sentiment_score": classified.sentiment_score,
            "story_id": clean("story_id", classified.story_id, 512),
            "watches": list(dict.fromkeys(watches)),
            "engagement": mention.engagement.model_dump(exclude_none=True) or None,
            "published_at": published,
            "ingested_at": ingested,
            "classified_at": _utc(classified.classified_at),
            "archived_at": now,
        }
        if self.postgres:
            row["cfg"] = text_search_config(lang)
            row["doc"] = f"{title or ''}\n{body}"
        return row

    def mention_row(self, classified: MentionClassified, now: datetime | None = None) -> dict[str, Any]:
        """The row :meth:`write_mention_rows` stores for ``classified``, cleaned (the cleaner counts what changed)
        and, on SQLite, with its values as stored; ``now`` is its ``archived_at``. The service builds each row when
        its message is decoded, while the previous batch is being written, so the write does only the database's
        part."""
        row = self._mention_row(classified, now or self.clock())
        if not self.postgres:
            archived = row["archived_at"]
            if archived is not self._archived[0]:  # one conversion per batch of rows built together
                self._archived = (archived, _lite(archived))
            row[_LITE_VALUES] = _lite_values(row, self._archived[1])
        return row

    async def write_mentions(self, batch: Sequence[MentionClassified]) -> WriteResult:
        """Upsert classified mentions and their watches in one transaction (see the module's notes)."""
        now = self.clock()
        return await self.write_mention_rows([self.mention_row(classified, now) for classified in batch])

    async def write_mention_rows(self, batch: Sequence[dict[str, Any]]) -> WriteResult:
        """:meth:`write_mentions` of rows :meth:`mention_row` built (with this store)."""
        cutoff = self.clock() - self.retention
        result = WriteResult()
        rows: dict[str, dict[str, Any]] = {}
        for row in batch:  # of two copies of an id (a redelivery), the later classification, else the last
            if row["ts"] < cutoff:
                result.expired += 1
                continue
            kept = rows.get(row["id"])
            if kept is None or row["classified_at"] >= kept["classified_at"]:
                rows[row["id"]] = row
        if not rows:
            return result
        if self.postgres:
            await self.ensure_partitions(month_of(r["ts"]) for r in rows.values())
            changed = await self._write_postgres(rows)
        else:
            changed = await self._write_sqlite(rows)
        result.written = len(changed)
        result.unchanged = len(rows) - len(changed)
        return result

    async def _write_postgres(self, rows: dict[str, dict[str, Any]]) -> set[str]:
        """:meth:`_write_postgres_once`, again when PostgreSQL ended it for another transaction's sake
        (:func:`is_write_conflict`; the whole transaction was rolled back, so the batch is simply written anew)."""
        for attempt in range(1, CONFLICT_ATTEMPTS + 1):
            try:
                return await self._write_postgres_once(rows)
            except DBAPIError as exc:
                if not is_write_conflict(exc):
                    raise
                if self.on_conflict is not None:
                    self.on_conflict()  # every conflict counted here, the last attempt's too
                if attempt == CONFLICT_ATTEMPTS:
                    raise  # the service tries the batch again later
                log.warning(
                    "archive.write_conflict",
                    attempt=attempt,
                    size=len(rows),
                    error=str(exc.orig or exc).splitlines()[0][:300],
                    then="the batch is written again",
                )
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    async def _write_postgres_once(self, rows: dict[str, dict[str, Any]]) -> set[str]:
        """Keys, mentions and watches of a batch in one transaction, three round trips (see ``_PG_*``)."""
        ordered = sorted(rows)  # one lock order for every writer: two replicas on one batch cannot deadlock
        async with self.engine.begin() as conn:
            stored: Sequence[Any] = (
                await conn.exec_driver_sql(_PG_KEYS, (ordered, [rows[key]["ts"] for key in ordered]))
            ).all()
            fresh: set[str] = set()
            found: set[str] = set()
            for key, ts, inserted in stored:
                rows[key]["ts"] = ts
                found.add(key)
                if inserted:
                    fresh.add(key)
            missing = [key for key in ordered if key not in found]
            if missing:  # an id another writer committed after this statement's snapshot: read it again
                again: Sequence[Any] = (await conn.exec_driver_sql(_PG_KEYS_AGAIN, (missing,))).all()
                for key, ts in again:
                    rows[key]["ts"] = ts
            months = {month_of(r["ts"]) for r in rows.values()} - self._partitions
            if months:  # an id first stored in a month whose partition this process has not seen
                self._partitions.update(await self.partitions())
            columns: list[list[Any]] = [[rows[key][name] for key in ordered] for name in _PG_COLUMNS]
            columns[_PG_WATCHES] = [_watches_json(v) for v in columns[_PG_WATCHES]]
            columns[_PG_ENGAGEMENT] = [None if v is None else json.dumps(v) for v in columns[_PG_ENGAGEMENT]]
            parameters = (*columns, [key for key in ordered if key not in fresh])
            statement = _PG_UPSERT_UNACCENT if self.unaccent else _PG_UPSERT
            changed = await conn.exec_driver_sql(statement, parameters)
            return {key for (key,) in changed}

    async def _write_sqlite(self, rows: dict[str, dict[str, Any]]) -> set[str]:
        """:meth:`_write_sqlite_batch`; when it fails, the schema is read again (a downgrade below 0010 or an
        upgrade to it while the service runs: the marker table came or went) and, if it changed, the batch is
        written once more the schema's way; otherwise the failure is the caller's, as before."""
        known = self._counting
        try:
            return await self._write_sqlite_batch(rows)
        except Exception as exc:
            if known is None:  # read at this very write: nothing to re-check
                raise
            try:
                async with self.engine.connect() as conn:
                    counting = bool((await conn.exec_driver_sql(_LITE_COUNTING_TABLE)).first())
            except Exception:  # the database is down: the write's own error says so
                raise exc from None
            if counting == known:
                raise
            self._counting = counting
            log.warning("archive.schema_changed", batch_marker=counting, then="writing the batch again")
        return await self._write_sqlite_batch(rows)

    async def _write_sqlite_batch(self, rows: dict[str, dict[str, Any]]) -> set[str]:
        """A batch in one ``BEGIN IMMEDIATE`` transaction, its statements run by :func:`_lite_write` in aiosqlite's
        thread in one hand-off (see there)."""
        async with self.engine.begin() as conn:
            raw = await conn.get_raw_connection()
            driver: Any = raw.driver_connection  # aiosqlite's Connection: its thread owns the sqlite3 connection
            try:
                written: tuple[set[str], bool] = await driver._execute(_lite_write, driver._conn, rows, self._counting)
            except sqlite3.Error as exc:  # as SQLAlchemy raises it: the service tells unavailable from refused so
                raise DBAPIError.instance(None, None, exc, sqlite3.Error) from exc
        changed, self._counting = written
        return changed

    async def write_alerts(self, batch: Sequence[AlertRaised]) -> WriteResult:
        """Insert alerts (one row per id and status; a repeat is ignored) in one transaction."""
        now = self.clock()
        cutoff = now - self.retention
        result = WriteResult()
        rows: dict[tuple[str, str], dict[str, Any]] = {}
        clean = self.cleaner.text
        for alert in batch:
            raised = _utc(alert.raised_at)
            assert raised is not None
            if raised < cutoff:
                result.expired += 1
                continue
            payload = self.cleaner.deep("alert.payload", json.loads(alert.model_dump_json()))
            key = (clean("alert.id", alert.id, 512) or "", alert.status)
            rows[key] = {
                "id": key[0],
                "status": alert.status,
                "watch": clean("alert.watch", alert.watch, MAX_NAME),
                "kind": alert.kind,
                "severity": alert.severity,
                "summary": clean("alert.summary", alert.summary, 2_000),
                "lang": clean("alert.lang", alert.lang, 16),
                "source": clean("alert.source", alert.source, MAX_SOURCE),
                "observed": alert.observed,
                "expected": alert.expected,
                "mention_count": alert.mention_count,
                "started_at": _utc(alert.started_at),
                "ends_at": _utc(alert.ends_at),
                "raised_at": raised,
                "payload": payload,
                "archived_at": now,
            }
        if not rows:
            return result
        insert_ = pg_insert(alerts) if self.postgres else sqlite_insert(alerts)
        statement = insert_.on_conflict_do_nothing(index_elements=["id", "status"]).returning(alerts.c.id)
        async with self.engine.begin() as conn:
            written = len((await conn.execute(statement, list(rows.values()))).all())
        result.written = written
        result.unchanged = len(rows) - written
        return result

    # ---------------------------------------------------------------- retention

    async def enforce_retention(self) -> Counter[str]:
        """Delete what is older than the retention; return how many rows (or partitions) went, by kind."""
        cutoff = self.clock() - self.retention
        gone: Counter[str] = Counter()
        if self.postgres:
            for month in await self.partitions():
                if _next_month(month) > cutoff.date():
                    continue
                boundary = datetime(_next_month(month).year, _next_month(month).month, 1, tzinfo=UTC)
                gone["mention_keys"] += await self._delete_batches(
                    "DELETE FROM mention_keys WHERE id IN (SELECT id FROM mention_keys WHERE ts < :cutoff LIMIT :n)",
                    boundary,
                )
                async with self.engine.begin() as conn:
                    await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PARTITION_LOCK})
                    for parent in ("mention_watches", "mentions"):
                        await conn.exec_driver_sql(f"DROP TABLE IF EXISTS {parent}_p{month:%Y_%m}")
                    # dropping a partition fires no trigger: its days' top counts (migration 0007) and its
                    # 5-minute volume counts (0006) go too, or both tables would grow for ever
                    await conn.execute(
                        text("DELETE FROM mention_tops WHERE day < :day"),
                        {"day": (boundary.date() - date(1970, 1, 1)).days},
                    )
                    await conn.execute(
                        text("DELETE FROM mention_counts WHERE bucket < :bucket"),
                        {"bucket": int(boundary.timestamp()) // COUNTS_GRAIN},
                    )
                self._partitions.discard(month)
                gone["partitions"] += 1
                log.info("archive.partition_dropped", month=f"{month:%Y-%m}", cutoff=cutoff.isoformat())
            gone["alerts"] += await self._delete_batches(
                "DELETE FROM alerts WHERE (id, status) IN "
                "(SELECT id, status FROM alerts WHERE raised_at < :cutoff LIMIT :n)",
                cutoff,
            )
        else:
            gone["mentions"] += await self._delete_batches(
                "DELETE FROM mentions WHERE seq IN (SELECT seq FROM mentions WHERE ts < :cutoff LIMIT :n)", cutoff
            )
            gone["mention_watches"] += await self._delete_batches(
                "DELETE FROM mention_watches WHERE rowid IN "
                "(SELECT rowid FROM mention_watches WHERE ts < :cutoff LIMIT :n)",
                cutoff,
            )
            gone["alerts"] += await self._delete_batches(
                "DELETE FROM alerts WHERE rowid IN (SELECT rowid FROM alerts WHERE raised_at < :cutoff LIMIT :n)",
                cutoff,
            )
            # the triggers brought the deleted rows' 5-minute counts (migration 0006) to zero; the rows go
            async with self.engine.begin() as conn:
                await conn.execute(
                    text("DELETE FROM mention_counts WHERE bucket < :bucket AND n = 0"),
                    {"bucket": int(cutoff.timestamp()) // COUNTS_GRAIN},
                )
        return gone

    async def _delete_batches(self, sql: str, cutoff: datetime) -> int:
        total = 0
        statement = text(sql).bindparams(bindparam("cutoff", type_=DateTime(timezone=True)))
        while True:
            async with self.engine.begin() as conn:
                deleted = (await conn.execute(statement, {"cutoff": cutoff, "n": DELETE_BATCH})).rowcount
            total += deleted
            if deleted < DELETE_BATCH:
                return total
