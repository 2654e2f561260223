"""Aggregations over the archive, one module for the HTTP API, the CLI and the console to come.

- :func:`volume`: one watch's mentions per bucket over a time range, split by sentiment (so the
  sentiment share of each bucket comes with it), with the spike detector's baseline and the
  archived alerts of that watch on the same time axis.
- :func:`top`: the most frequent stories, sources, sites or terms of a time range (one watch, or all).
- :func:`list_alerts`: the archived alerts, newest first, by watch, status, kind and time.

Every query is SQLAlchemy Core, the same statement on SQLite and PostgreSQL; the only construct each
database spells its own way is :class:`epoch_bucket` (the bucket a time falls in, as a number of
bucket widths since the Unix epoch), compiled for each dialect.

**What "baseline" means here.** The number of mentions the watch's spike detector
(:class:`veille.spikes.SpikeDetector`, the watch's own ``spike`` settings or the defaults) expected in
a bucket *before* seeing it: the detector is stepped causally over the archived counts of the watch at
its own bucket width (5 minutes by default), starting at least one warm-up (a day by default) before
``since`` so the baseline is learned when the range begins, and its expectations are summed into the
display buckets. The replay starts on a weekly grid (:data:`REPLAY_GRID`: the Thursday 00:00 UTC at
or before ``since - warmup``), so every range starting in the same week replays the same history and
a bucket's baseline does not move when the range's start does; and the process keeps the last
replays (:data:`REPLAYS_KEPT`, copies of the detector once a day and near the end), so a repeated
call, or one that a new mention changed only near the end, replays only from the first count that
differs. A replay that stepped over a day of buckets or more is also written to ``volume_baselines``
(migration 0008: the counts it was fed, its expectations, the detector's state once a day), so the
first call of a new process resumes it the same way instead of replaying everything. The result is
the same floats as a replay from scratch (the detector's state survives JSON exactly); a replay from
scratch costs about 100 µs of CPU per 5-minute bucket (28,000 buckets for 90 days), run in a worker
thread so the event loop stays free. ``volume_baselines`` is a cache the readers write: a write that
fails (a read-only role) is logged and changes no answer; rows not written for :data:`PERSISTED_DAYS`
days go when their watch's next one is written. It is a replay over the archive, not the live
detector's memory: the archive buckets mentions by their published time (the archive's ``ts``), the
classifier by ingested time, and a configuration changed since then replays with today's settings; so
it shows what the detector makes of this history, and an alert's own ``observed``/``expected`` (from
the archived ``alerts`` table, what the live detector said when it fired) may differ from it slightly.
Buckets in the warm-up's first day (a watch younger than the range) have a baseline still learning.

Bucket boundaries are aligned on the Unix epoch (UTC), like the classifier's buckets.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import threading
import zlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import structlog
from sqlalchemy import ColumnElement, Integer, and_, delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from services.archive.schema import COUNTS_GRAIN, alerts, mention_counts, mention_watches, mentions, volume_baselines
from veille.spikes import DetectorSettings, SpikeDetector
from veille.spikes.detector import BEHAVIOUR_REVISION

__all__ = [
    "DIMENSIONS",
    "AggregationError",
    "ArchivedAlert",
    "Bucket",
    "TopEntry",
    "VolumeSeries",
    "choose_bucket",
    "epoch_bucket",
    "list_alerts",
    "top",
    "volume",
]

Dimension = Literal["stories", "sources", "sites", "terms"]
DIMENSIONS: tuple[Dimension, ...] = ("stories", "sources", "sites", "terms")
SENTIMENTS = ("negative", "neutral", "positive")
REPLAY_GRID = timedelta(days=7)
"""The baseline's replay starts on this grid (from the epoch, UTC), at least one warm-up before the range."""
SNAPSHOT_EVERY = 288
"""A kept replay holds a copy of the detector every this-many of its buckets (a day of 5-minute buckets)."""
TAIL_SNAPSHOT = 12
"""... and one this-many buckets before its end (an hour of 5-minute buckets): where the next call resumes."""
REPLAYS_KEPT = 16
"""Replays kept in the process (least recently used dropped first): a few dozen MB at most."""
PERSIST_AFTER = SNAPSHOT_EVERY
"""A replay that stepped the detector over at least this many buckets is written to ``volume_baselines``
(migration 0008), so that the next process resumes it instead of replaying them again."""
PERSISTED_DAYS = 14
"""Rows of ``volume_baselines`` not written for this many days are deleted when their watch's is written."""
MAX_BUCKETS = 5_000
"""Most display buckets one volume query returns (a wider bucket is asked for instead)."""
TERMS_SAMPLE = 2_000
"""Top terms are counted over the newest this-many mentions of the range (texts are read, not indexes)."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
log = structlog.get_logger("archive.aggregate")
_NICE = [timedelta(minutes=m) for m in (5, 10, 15, 30, 60, 180, 360, 720, 1440, 10080)]


class AggregationError(ValueError):
    """An aggregation that cannot run as asked; the message says why, in words."""


class epoch_bucket(FunctionElement[int]):
    """``floor(seconds since the epoch of ts / width)``: the bucket a time falls in, per dialect."""

    type = Integer()
    inherit_cache = True


@compiles(epoch_bucket, "sqlite")
def _bucket_sqlite(element: epoch_bucket, compiler: SQLCompiler, **kw: Any) -> str:
    ts, width = list(element.clauses)
    # SQLite keeps times as UTC text ('2026-05-20 10:00:00.000000'): strftime('%s') reads it
    return f"(CAST(strftime('%s', {compiler.process(ts, **kw)}) AS INTEGER) / {compiler.process(width, **kw)})"


@compiles(epoch_bucket, "postgresql")
def _bucket_postgres(element: epoch_bucket, compiler: SQLCompiler, **kw: Any) -> str:
    ts, width = list(element.clauses)
    return f"CAST(floor(extract(epoch FROM {compiler.process(ts, **kw)}) / {compiler.process(width, **kw)}) AS bigint)"


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _floor(moment: datetime, width: timedelta) -> datetime:
    return _EPOCH + ((moment - _EPOCH) // width) * width


def _range(since: datetime, until: datetime | None, now: datetime | None) -> tuple[datetime, datetime]:
    now = _utc(now) or datetime.now(UTC)
    start, end = _utc(since), _utc(until) or now
    assert start is not None and end is not None
    if start > now:
        raise AggregationError(f"since ({start.isoformat()}) is in the future: nothing can have been archived yet")
    if start >= end:
        raise AggregationError(f"since ({start.isoformat()}) must be before until ({end.isoformat()})")
    return start, end


def choose_bucket(span: timedelta, detector: timedelta = timedelta(minutes=5), target: int = 120) -> timedelta:
    """A round display bucket giving about ``target`` buckets over ``span``, a multiple of ``detector``."""
    for width in _NICE:
        if width >= detector and width % detector == timedelta(0) and span / width <= target:
            return width
    weeks = max(1, -(-span // (timedelta(days=7) * target)))
    return timedelta(days=7) * weeks


# ------------------------------------------------------------------------ volume


@dataclass
class Bucket:
    """One display bucket: counts by sentiment and the detector's expected count (None: not computed)."""

    start: datetime
    total: int = 0
    negative: int = 0
    neutral: int = 0
    positive: int = 0
    expected: float | None = None

    def share(self) -> dict[str, float]:
        """Each sentiment's share of the bucket's mentions (0 when the bucket is empty)."""
        return {s: (getattr(self, s) / self.total if self.total else 0.0) for s in SENTIMENTS}

    def as_json(self) -> dict[str, Any]:
        """JSON-ready values (ISO 8601 start, expected rounded to 3 decimals)."""
        return {
            "start": self.start.isoformat(),
            "total": self.total,
            "negative": self.negative,
            "neutral": self.neutral,
            "positive": self.positive,
            "share": {k: round(v, 4) for k, v in self.share().items()},
            "expected": None if self.expected is None else round(self.expected, 3),
        }


@dataclass(frozen=True)
class ArchivedAlert:
    """One archived alert row (a firing and its resolution are two)."""

    id: str
    status: str
    watch: str
    kind: str
    severity: str
    summary: str
    lang: str | None
    source: str | None
    observed: float | None
    expected: float | None
    mention_count: int
    started_at: datetime
    ends_at: datetime | None
    raised_at: datetime

    def as_json(self) -> dict[str, Any]:
        """JSON-ready values (ISO 8601 times)."""
        out = asdict(self)
        for key in ("started_at", "ends_at", "raised_at"):
            if out[key] is not None:
                out[key] = out[key].isoformat()
        return out


@dataclass
class VolumeSeries:
    """A watch's volume per bucket over ``[since, until)``, with the baseline and the alerts."""

    watch: str
    since: datetime
    until: datetime
    bucket: timedelta
    detector_bucket: timedelta
    buckets: list[Bucket] = field(default_factory=list)
    alerts: list[ArchivedAlert] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """JSON-ready values (widths in seconds)."""
        return {
            "watch": self.watch,
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "bucket_seconds": int(self.bucket.total_seconds()),
            "detector_bucket_seconds": int(self.detector_bucket.total_seconds()),
            "buckets": [b.as_json() for b in self.buckets],
            "alerts": [a.as_json() for a in self.alerts],
        }


async def volume(
    engine: AsyncEngine,
    watch: str,
    since: datetime,
    until: datetime | None = None,
    *,
    bucket: timedelta | None = None,
    settings: DetectorSettings | None = None,
    baseline: bool = True,
    now: datetime | None = None,
) -> VolumeSeries:
    """``watch``'s archived mentions per bucket in ``[since, until)`` (see the module's notes).

    ``bucket`` (default: a round width giving about 120 buckets) must be a multiple of the detector's
    bucket (``settings.bucket``, 5 minutes by default). ``baseline=False`` skips the detector replay.
    """
    start, end = _range(since, until, now)
    settings = settings or DetectorSettings()
    step = settings.bucket
    width = bucket or choose_bucket(end - start, step)
    if width <= timedelta(0) or width % step:
        raise AggregationError(
            f"bucket ({int(width.total_seconds())} s) must be a positive multiple of the detector's bucket "
            f"({int(step.total_seconds())} s)"
        )
    first, last = _floor(start, width), _floor(end - timedelta(microseconds=1), width)
    if (last - first) / width + 1 > MAX_BUCKETS:
        raise AggregationError(f"that is more than {MAX_BUCKETS} buckets: ask for a wider bucket or a shorter range")
    read_from = replay_start(first, settings)
    buckets = [Bucket(first + i * width) for i in range(int((last - first) / width) + 1)]
    by_start = {b.start: b for b in buckets}
    # counted by the database: the display buckets by sentiment, and for the baseline the detector's
    # buckets from the replay's start (totals only)
    width_s = int(width.total_seconds())
    totals: dict[int, int] = {}
    step_s = int(step.total_seconds())
    async with engine.connect() as conn:
        display = await _counts(conn, watch, first, end, width_s)
        detector = await _counts(conn, watch, read_from, end, step_s, by_sentiment=False) if baseline else []
        for index, sentiment, n in display:
            target = by_start.get(_EPOCH + timedelta(seconds=index * width_s))
            if target is None:
                continue
            target.total += n
            if sentiment in SENTIMENTS:
                setattr(target, sentiment, getattr(target, sentiment) + n)
        for index, _, n in detector:
            totals[index] = totals.get(index, 0) + n
        alert_rows = await _alerts(conn, watch=watch, since=start, until=end)
    if baseline:
        expected = await _baseline(engine, watch, totals, settings, read_from, end)
        _sum_expected(buckets, by_start, expected, settings.bucket, width)
    return VolumeSeries(watch, start, end, width, step, buckets, alert_rows)


async def _counts(
    conn: Any, watch: str, since: datetime, end: datetime, grain: int, *, by_sentiment: bool = True
) -> list[tuple[int, str | None, int]]:
    """``watch``'s mentions in ``[since, end)`` per bucket of ``grain`` seconds (its index on the epoch grid)
    and, ``by_sentiment``, sentiment (else None), counted by the database.

    From the pre-aggregated ``mention_counts`` (5-minute buckets, kept by triggers: migration 0006)
    when ``grain`` and ``since`` are on its 5-minute grid, only from the watch's oldest remaining
    ``mention_watches`` row on (a month dropped by retention leaves its counts behind), plus the rows
    of ``end``'s own, unfinished 5-minute bucket; otherwise from the ``mention_watches`` rows.
    """
    ts = mention_watches.c.ts
    scope = (mention_watches.c.watch == watch, ts < end)
    sentiment: list[Any] = [mention_watches.c.sentiment] if by_sentiment else []
    low = int((since - _EPOCH).total_seconds())
    out: list[tuple[int, str | None, int]] = []

    def add(rows: Any) -> None:
        for row in rows:
            out.append((int(row[0]), row[1] if by_sentiment else None, int(row[-1])))

    if grain % COUNTS_GRAIN or low % COUNTS_GRAIN:
        key = epoch_bucket(ts, grain).label("b")
        add(
            await conn.execute(
                select(key, *sentiment, func.count()).where(*scope, ts >= since).group_by(key, *sentiment)
            )
        )
        return out
    oldest = (await conn.execute(select(func.min(ts)).where(mention_watches.c.watch == watch))).scalar()
    if oldest is None:
        return out
    first_row = _utc(oldest)
    assert first_row is not None
    low = max(low // COUNTS_GRAIN, int((first_row - _EPOCH).total_seconds()) // COUNTS_GRAIN)
    high = int((end - _EPOCH).total_seconds()) // COUNTS_GRAIN  # end's bucket: counted from its rows
    c = mention_counts.c
    group = (c.bucket // (grain // COUNTS_GRAIN)).label("g")
    split: list[Any] = [c.sentiment] if by_sentiment else []
    scope_ = (c.watch == watch, c.bucket >= low, c.bucket < high, c.n != 0)
    if grain == COUNTS_GRAIN and by_sentiment:  # the table's own rows: nothing to group
        counted = select(c.bucket, c.sentiment, c.n).where(*scope_)
    else:
        counted = select(group, *split, func.sum(c.n).label("n")).where(*scope_).group_by(group, *split)
    if conn.dialect.name == "postgresql":
        # tens of thousands of buckets as arrays in one row (read by index only: migration 0008): the
        # driver decodes them in a few ms, where as many result rows cost a fifth of a second of Python
        inner = counted.subquery()
        arrays = (await conn.execute(select(*(func.array_agg(col) for col in inner.c)))).one()
        if arrays[0]:
            out.extend((int(v[0]), v[1] if by_sentiment else None, int(v[-1])) for v in zip(*arrays, strict=True))
    else:
        add(await conn.execute(counted))
    tail = _EPOCH + timedelta(seconds=max(high, low) * COUNTS_GRAIN)
    if tail < end:
        index = int((tail - _EPOCH).total_seconds()) // grain
        rows = await conn.execute(select(*sentiment, func.count()).where(*scope, ts >= tail).group_by(*sentiment))
        out.extend((index, row[0] if by_sentiment else None, int(row[-1])) for row in rows)
    return out


def replay_start(first: datetime, settings: DetectorSettings) -> datetime:
    """Where the baseline's replay may start for display buckets from ``first``: at least one warm-up
    earlier, on the :data:`REPLAY_GRID` (so every range starting in the same week replays the same
    history, and a bucket's baseline does not move with the range's start within it)."""
    return _floor(first - settings.warmup, REPLAY_GRID)


@dataclass
class _Replay:
    """A replay kept for the next call: its first detector bucket, the counts it was fed, what it
    expected for each bucket, and copies of the detector before some buckets (by offset): a
    detector, or its :meth:`SpikeDetector.to_state` when read back from ``volume_baselines``."""

    start: int
    counts: list[int]
    expected: list[float]
    snapshots: dict[int, SpikeDetector | dict[str, Any]]


_REPLAYS: OrderedDict[tuple[Any, ...], _Replay] = OrderedDict()
_REPLAYS_LOCK = threading.Lock()


def clear_replay_cache() -> None:
    """Forget every replay kept in this process (the ones in ``volume_baselines`` stay: a new process)."""
    with _REPLAYS_LOCK:
        _REPLAYS.clear()


def settings_digest(settings: DetectorSettings) -> str:
    """A short digest of the detector's settings and behaviour: a persisted replay is resumed only with the same.

    The detector's :data:`BEHAVIOUR_REVISION` is part of it: after an upgrade that changes what the
    detector expects, a replay the old code saved is not resumed (it is made again, once).
    """
    key = f"{BEHAVIOUR_REVISION}:{settings.model_dump_json()}"
    return hashlib.sha256(key.encode()).hexdigest()[:24]


async def _baseline(
    engine: AsyncEngine,
    watch: str,
    counts: dict[int, int],
    settings: DetectorSettings,
    read_from: datetime,
    end: datetime,
) -> dict[int, float]:
    """The detector's expectations (:func:`_replay`), resumed from the replay this process keeps, else
    from the one ``volume_baselines`` keeps; a replay that stepped over many buckets is written back."""
    if not counts:
        return {}
    step = settings.bucket
    start = max(min(counts), (read_from - _EPOCH) // step)
    key = (engine.url.render_as_string(hide_password=True), watch, settings)
    digest = settings_digest(settings)
    with _REPLAYS_LOCK:
        kept = _REPLAYS.get((*key, start))
    if kept is None:
        kept = await _load_replay(engine, watch, digest, start)
        if kept is not None:
            with _REPLAYS_LOCK:
                _REPLAYS.setdefault((*key, start), kept)
    expected, replayed, replay = await asyncio.to_thread(_replay, key, counts, settings, read_from, end)
    if replayed >= PERSIST_AFTER:
        await _store_replay(engine, watch, digest, replay)
    return expected


async def _load_replay(engine: AsyncEngine, watch: str, digest: str, start: int) -> _Replay | None:
    """The replay ``volume_baselines`` keeps for (watch, settings, start), or None (none, or unreadable)."""
    b = volume_baselines.c
    try:
        async with engine.connect() as conn:
            blob = (
                await conn.execute(select(b.state).where(b.watch == watch, b.settings == digest, b.start == start))
            ).scalar()
    except SQLAlchemyError as exc:  # an archive without the table (not migrated): replay from scratch
        log.warning("volume_baseline_unreadable", watch=watch, error=str(exc).splitlines()[0])
        return None
    if blob is None:
        return None
    try:
        return await asyncio.to_thread(_decode_replay, start, bytes(blob))
    except (ValueError, KeyError, TypeError, zlib.error) as exc:
        log.warning("volume_baseline_undecodable", watch=watch, error=str(exc))
        return None


def _decode_replay(start: int, blob: bytes) -> _Replay:
    data = json.loads(zlib.decompress(blob))
    counts = [int(n) for n in data["counts"]]
    expected = [float(x) for x in data["expected"]]
    if len(counts) != len(expected):
        raise ValueError("counts and expectations differ in length")
    snapshots: dict[int, SpikeDetector | dict[str, Any]] = {int(o): dict(v) for o, v in data["snapshots"].items()}
    return _Replay(start, counts, expected, snapshots)


def _encode_replay(replay: _Replay) -> bytes:
    snapshots = {str(o): (d if isinstance(d, dict) else d.to_state()) for o, d in sorted(replay.snapshots.items())}
    data = {"counts": replay.counts, "expected": replay.expected, "snapshots": snapshots}
    return zlib.compress(json.dumps(data, separators=(",", ":")).encode(), 1)


async def _store_replay(engine: AsyncEngine, watch: str, digest: str, replay: _Replay) -> None:
    """Write ``replay`` to ``volume_baselines`` (a cache: a failure is logged and changes no answer)."""
    blob = await asyncio.to_thread(_encode_replay, replay)
    now = datetime.now(UTC)
    b = volume_baselines.c
    values = {"watch": watch, "settings": digest, "start": replay.start, "state": blob, "updated_at": now}
    try:
        async with engine.begin() as conn:
            insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
            statement = insert(volume_baselines).values(**values)
            statement = statement.on_conflict_do_update(
                index_elements=[b.watch, b.settings, b.start],
                set_={"state": statement.excluded.state, "updated_at": statement.excluded.updated_at},
            )
            await conn.execute(statement)
            await conn.execute(
                delete(volume_baselines).where(b.watch == watch, b.updated_at < now - timedelta(days=PERSISTED_DAYS))
            )
    except SQLAlchemyError as exc:  # read-only role, locked database: the next process replays again
        log.warning("volume_baseline_not_kept", watch=watch, error=str(exc).splitlines()[0])


def _replay(
    key: tuple[Any, ...], counts: dict[int, int], settings: DetectorSettings, read_from: datetime, end: datetime
) -> tuple[dict[int, float], int, _Replay]:
    """The detector's expectation for each of its buckets from the first counted one (not before
    ``read_from``) to ``end``'s: a fresh detector stepped causally over the counts; with how many
    buckets it stepped over in this call, and the replay kept.

    The same inputs always give the same floats: a replay kept from an earlier call (same watch,
    settings and first bucket) is resumed from its copy of the detector at the last snapshot before
    the first count that differs, so a new mention in the last minutes replays only the last hours.
    """
    step = settings.bucket
    start = max(min(counts), (read_from - _EPOCH) // step)
    stop = (end - _EPOCH) // step
    series = [counts.get(index, 0) for index in range(start, stop + 1)]
    with _REPLAYS_LOCK:
        kept = _REPLAYS.get((*key, start))
    offset, detector, expected = 0, SpikeDetector(settings), []
    snapshots: dict[int, SpikeDetector | dict[str, Any]] = {}
    if kept is not None:
        same = 0
        limit = min(len(kept.counts), len(series))
        while same < limit and kept.counts[same] == series[same]:
            same += 1
        for usable in sorted((o for o in kept.snapshots if o <= same), reverse=True):
            snapshot = kept.snapshots[usable]
            try:
                detector = (
                    SpikeDetector.from_state(settings, snapshot)
                    if isinstance(snapshot, dict)
                    else copy.deepcopy(snapshot)
                )
            except (ValueError, KeyError, TypeError):  # a state this version cannot read: an earlier one
                continue
            offset = usable
            expected = kept.expected[:offset]
            snapshots = {o: d for o, d in kept.snapshots.items() if o <= offset}
            break
    tail = max(0, len(series) - TAIL_SNAPSHOT)
    replayed = len(series) - offset
    for j in range(offset, len(series)):
        if (j % SNAPSHOT_EVERY == 0 or j == tail) and j not in snapshots:
            snapshots[j] = copy.deepcopy(detector)
        moment = _EPOCH + (start + j) * step
        expected.append(detector.expected(moment))
        detector.update(moment, series[j])
    # keep the day snapshots and the one near the end (where the next call most likely differs)
    snapshots = {o: d for o, d in snapshots.items() if o % SNAPSHOT_EVERY == 0 or o == tail}
    replay = _Replay(start, series, expected, snapshots)
    with _REPLAYS_LOCK:
        _REPLAYS[(*key, start)] = replay
        _REPLAYS.move_to_end((*key, start))
        while len(_REPLAYS) > REPLAYS_KEPT:
            _REPLAYS.popitem(last=False)
    return {start + j: value for j, value in enumerate(expected)}, replayed, replay


def _sum_expected(
    buckets: list[Bucket],
    by_start: dict[datetime, Bucket],
    expected: dict[int, float],
    step: timedelta,
    width: timedelta,
) -> None:
    """Sum the detector's expectations into the display buckets (0 where it expected nothing yet)."""
    if not expected:
        return
    for each in buckets:
        each.expected = 0.0
    per = int(width / step)  # detector buckets per display bucket (both on the epoch grid)
    by_index = {int((b.start - _EPOCH) / width): b for b in buckets}
    for index, value in expected.items():
        target = by_index.get(index // per)
        if target is not None and target.expected is not None:
            target.expected += value


# ------------------------------------------------------------------------ alerts


def _alert(row: Any) -> ArchivedAlert:
    values = row._mapping
    return ArchivedAlert(
        id=values["id"],
        status=values["status"],
        watch=values["watch"],
        kind=values["kind"],
        severity=values["severity"],
        summary=values["summary"],
        lang=values["lang"],
        source=values["source"],
        observed=values["observed"],
        expected=values["expected"],
        mention_count=values["mention_count"],
        started_at=_utc(values["started_at"]),  # type: ignore[arg-type]
        ends_at=_utc(values["ends_at"]),
        raised_at=_utc(values["raised_at"]),  # type: ignore[arg-type]
    )


async def _alerts(
    conn: Any,
    *,
    watch: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    status: Sequence[str] = (),
    kind: Sequence[str] = (),
    limit: int | None = None,
) -> list[ArchivedAlert]:
    columns = [c for c in alerts.columns if c.name not in ("payload", "archived_at")]
    conditions: list[ColumnElement[bool]] = []
    if watch:
        conditions.append(alerts.c.watch == watch)
    if since is not None:
        conditions.append(alerts.c.raised_at >= since)
    if until is not None:
        conditions.append(alerts.c.raised_at < until)
    if status:
        conditions.append(alerts.c.status.in_(list(status)))
    if kind:
        conditions.append(alerts.c.kind.in_(list(kind)))
    statement = select(*columns).order_by(alerts.c.raised_at.desc(), alerts.c.id, alerts.c.status)
    if conditions:
        statement = statement.where(and_(*conditions))
    if limit is not None:
        statement = statement.limit(limit)
    return [_alert(row) for row in (await conn.execute(statement)).all()]


async def list_alerts(
    engine: AsyncEngine,
    *,
    watch: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    status: Sequence[str] = (),
    kind: Sequence[str] = (),
    limit: int = 1_000,
    now: datetime | None = None,
) -> list[ArchivedAlert]:
    """Archived alerts raised in ``[since, until)``, newest first; ``status`` firing/resolved, ``kind`` as alerts."""
    if not 1 <= limit <= 100_000:
        raise AggregationError("limit must be between 1 and 100000")
    start, end = _utc(since), _utc(until)
    if start is not None:
        start, end = _range(start, until, now)
    unknown = set(status) - {"firing", "resolved"}
    if unknown:
        raise AggregationError(f"status {sorted(unknown)[0]!r} is not one of firing, resolved")
    async with engine.connect() as conn:
        return await _alerts(conn, watch=watch, since=start, until=end, status=status, kind=kind, limit=limit)


# ------------------------------------------------------------------------ top lists


@dataclass(frozen=True)
class TopEntry:
    """One entry of a top list: its key (story id, source, site or term), how many mentions, and an example."""

    key: str
    count: int
    example: str | None = None

    def as_json(self) -> dict[str, Any]:
        """JSON-ready values."""
        return asdict(self)


_COLUMNS = {"stories": mentions.c.story_id, "sources": mentions.c.source, "sites": mentions.c.site}


def _scope(watch: str | None, start: datetime, end: datetime) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = [mentions.c.ts >= start, mentions.c.ts < end]
    if watch:
        # the same ts on both tables: PostgreSQL prunes partitions and uses the (id, ts) key
        watched = select(mention_watches.c.mention_id).where(
            mention_watches.c.watch == watch, mention_watches.c.ts >= start, mention_watches.c.ts < end
        )
        conditions.append(mentions.c.id.in_(watched))
    return conditions


async def top(
    engine: AsyncEngine,
    dimension: Dimension,
    since: datetime,
    until: datetime | None = None,
    *,
    watch: str | None = None,
    limit: int = 10,
    now: datetime | None = None,
) -> list[TopEntry]:
    """The ``limit`` most frequent stories, sources, sites or terms of the range, most first.

    Stories, sources and sites are counted over every mention of the range: for one watch, its whole
    days from the pre-aggregated ``mention_tops`` and the partial days at the edges from the rows
    (:mod:`services.archive.tops`; the example is the newest mention's title, or URL, that has one);
    for all watches, in SQL over the rows (the example is the greatest title, or URL). Terms are the
    mentions' content words (folded, stop words and numbers out, as the alerts' explanations count
    them), counted over the newest :data:`TERMS_SAMPLE` mentions.
    """
    if dimension not in DIMENSIONS:
        raise AggregationError(f"{dimension!r} is not one of {', '.join(DIMENSIONS)}")
    if not 1 <= limit <= 1_000:
        raise AggregationError("limit must be between 1 and 1000")
    start, end = _range(since, until, now)
    conditions = _scope(watch, start, end)
    async with engine.connect() as conn:
        if dimension == "terms":
            from services.archive.tops import count_terms

            statement = select(mentions.c.id, mentions.c.classified_at, mentions.c.title, mentions.c.text)
            if watch:
                # the watch's newest rows by its (watch, ts) index, then each mention by its key: a few
                # thousand lookups instead of every id of the watch in the range against every mention
                w = mention_watches.c
                statement = (
                    statement.select_from(
                        # PostgreSQL: by id alone (unique across partitions), not by the ts index,
                        # which many mentions stamped with one instant make quadratic (tops.py)
                        mention_watches.join(
                            mentions,
                            mentions.c.id == w.mention_id
                            if conn.dialect.name == "postgresql"
                            else and_(mentions.c.id == w.mention_id, mentions.c.ts == w.ts),
                        )
                    )
                    .where(w.watch == watch, w.ts >= start, w.ts < end)
                    .where(
                        *((mentions.c.ts >= start, mentions.c.ts < end) if conn.dialect.name == "postgresql" else ())
                    )
                    .order_by(w.ts.desc())
                    .limit(TERMS_SAMPLE)
                )
            else:
                statement = statement.where(*conditions).order_by(mentions.c.ts.desc()).limit(TERMS_SAMPLE)
            sample = (await conn.execute(statement)).all()
            # tokenised in a worker thread (the event loop serves the page's other queries meanwhile),
            # each mention's words kept for the next call
            counter = await asyncio.to_thread(count_terms, sample)
            return [TopEntry(term, n) for term, n in counter.most_common(limit)]
        if watch:  # whole days from the pre-aggregated counts (migration 0007), the edges from the rows
            from services.archive.tops import keyed_top

            return [TopEntry(*entry) for entry in await keyed_top(conn, dimension, watch, start, end, limit)]
        column = _COLUMNS[dimension]
        example = func.max(mentions.c.title) if dimension == "stories" else func.max(mentions.c.url)
        n = func.count().label("n")
        statement = select(column, n, example).where(*conditions, column.is_not(None))
        statement = statement.group_by(column).order_by(n.desc(), column).limit(limit)
        rows: list[Any] = list((await conn.execute(statement)).all())
        return [TopEntry(str(key), int(count), ex) for key, count, ex in rows]


async def aggregations(
    engine: AsyncEngine,
    watch: str,
    since: datetime,
    until: datetime | None = None,
    *,
    bucket: timedelta | None = None,
    settings: DetectorSettings | None = None,
    top_limit: int = 10,
    baseline: bool = True,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Everything the API's ``/aggregations`` answers for one watch: volume (with baseline, sentiment share
    and alerts) and the top stories, sources, sites and terms, as JSON-ready values."""
    start, end = _range(since, until, now)
    # the five queries are independent: each on its own connection, run at once (SQLite readers in WAL
    # mode run in parallel, each in its driver thread; PostgreSQL has a pool)
    series, tops = await asyncio.gather(
        volume(engine, watch, start, end, bucket=bucket, settings=settings, baseline=baseline, now=now),
        asyncio.gather(
            *(top(engine, dimension, start, end, watch=watch, limit=top_limit, now=now) for dimension in DIMENSIONS)
        ),
    )
    out: dict[str, Any] = series.as_json()
    out["top"] = {
        dimension: [e.as_json() for e in entries] for dimension, entries in zip(DIMENSIONS, tops, strict=True)
    }
    return out


def dumps(value: Any) -> str:
    """Compact JSON of an aggregation (dates already ISO strings)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
