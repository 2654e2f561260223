"""Backtesting a watch from the archive, when the stream no longer holds that far back.

``veille backtest --config FILE --watch NAME --since 90d`` replays raw mentions through the classifier
and the spike detector (:mod:`services.classifier.backtest`). JetStream keeps mentions for a while
only; the archive keeps them for ``archive.retention`` (400 days). When the stream's oldest mention
is younger than the start asked for (:func:`stream_start`), the backtest reads the archive instead:

- :func:`archived_mentions` yields each archived mention as the ingestor published it
  (:class:`~veille.models.MentionIngested`: id, source, watch, url, title, text, author, site,
  language, published and ingested times), so the replay classifies it afresh with the
  configuration under test (a changed query, new languages or sources, a new watch) exactly as it
  classifies the stream's.
- :func:`replay_archive` is :func:`~services.classifier.backtest.replay_stream` over them: the same
  :class:`~services.classifier.logic.Classifier`, the same buckets by ingested time, the same
  detectors, so the alerts are the ones the service would raise with that configuration.

What the archive cannot give back: mentions that matched no watch when they arrived were never
archived if the classifier did not publish them, and the original ingestor's declared language is
replaced by the language the classifier settled on. Rows are read in time order of the archive's
``ts`` (published, else ingested time) from ``since``; the watch's query narrows them with the
full-text index first (its necessary words, as a search does), then the classifier decides.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, text, tuple_
from sqlalchemy.ext.asyncio import AsyncEngine

from services.archive.schema import mentions
from services.archive.search import SearchFilters, _bind_ts, _parse, _statement, _utc
from veille.config import VeilleConfig
from veille.models import MentionIngested
from veille.query import Query

__all__ = ["archive_reaches", "archived_mentions", "replay_archive", "stream_start"]

Progress = Callable[[int, int], None]
CHUNK = 2_000


def _ingested(values: Any) -> MentionIngested | None:
    engagement = values.get("engagement")
    if isinstance(engagement, str):
        engagement = json.loads(engagement)
    try:
        return MentionIngested(
            id=values["id"],
            source=values["source"],
            watch=values.get("watch"),
            url=values["url"],
            title=values["title"],
            text=values["text"],
            author=values["author"],
            site=values["site"],
            lang=(values["lang"] or None) and values["lang"][:2],
            published_at=_utc(values["published_at"]),
            ingested_at=_utc(values["ingested_at"]),  # type: ignore[arg-type]  # NOT NULL
            **({"engagement": engagement} if engagement else {}),
        )
    except ValueError:
        return None  # an archived row that no longer validates (a URL cut when stored): skipped, not fatal


async def archived_mentions(
    engine: AsyncEngine,
    since: datetime,
    until: datetime | None = None,
    *,
    query: str | Query | None = None,
) -> AsyncIterator[MentionIngested]:
    """Every archived mention with ``since <= ts < until`` (oldest first), as the ingestor published it.

    ``query`` (a watch's query) narrows the rows with the full-text index to those that may match it:
    a necessary condition only (the caller's classifier decides). Reads in keyset pages of
    :data:`CHUNK` rows, so memory stays flat whatever the range.
    """
    parsed = _parse(query) if isinstance(query, str) else query
    async with engine.connect() as conn:
        if parsed is not None and engine.dialect.name == "postgresql":
            extension = "SELECT count(*) FROM pg_extension WHERE extname = 'unaccent'"
            if not (await conn.execute(text(extension))).scalar():
                parsed = None  # unfolded vectors could miss accented words: read them all
        base, _ = _statement(engine, parsed, SearchFilters(since=since, until=until))
        base = base.add_columns(mentions.c.engagement)
        last: tuple[datetime, str] | None = None
        while True:
            statement = base
            if last is not None:
                statement = statement.where(
                    tuple_(mentions.c.ts, mentions.c.id) > tuple_(_bind_ts(engine, last[0]), last[1])
                )
            rows = (await conn.execute(statement.order_by(mentions.c.ts, mentions.c.id).limit(CHUNK))).all()
            for row in rows:
                values = row._mapping
                last = (_utc(values["ts"]), values["id"])  # type: ignore[assignment]
                mention = _ingested(values)
                if mention is not None:
                    yield mention
            if len(rows) < CHUNK:
                return


async def replay_archive(
    engine: AsyncEngine,
    config: VeilleConfig,
    watch_name: str,
    since: timedelta,
    *,
    sentiment: Any = None,
    progress: Progress | None = None,
    now: datetime | None = None,
) -> Any:
    """:func:`~services.classifier.backtest.replay_stream`, reading the archive from ``since`` ago.

    Returns its ``BacktestResult``; ``progress(done, 0)`` as mentions are read (the total is not
    known in advance). Raises ``KeyError`` for a watch the configuration does not have.
    """
    from services.classifier.backtest import WatchReplay
    from services.classifier.logic import Classifier
    from services.classifier.surges import mention_terms
    from veille.language import detect_language
    from veille.sentiment import make_backend

    watches = {w.name: w for w in config.watches}
    if watch_name not in watches:
        raise KeyError(watch_name)
    backend = sentiment or make_backend()

    def score(body: str, lang: str | None) -> tuple[Any, float]:
        found = backend.analyze(body, lang)
        return found.label, found.score

    classifier = Classifier(config, score, detect_language)
    replay = WatchReplay(watches[watch_name])
    end = now or datetime.now(UTC)
    read = 0
    async for mention in archived_mentions(engine, end - since, end, query=watches[watch_name].query):
        read += 1
        classified = classifier.classify(mention)
        if watch_name in classified.mention.watches:
            replay.add(classified.mention, mention_terms(classified.body))
        if progress is not None and read % 500 == 0:
            progress(read, 0)
    if progress is not None:
        progress(read, read)
    result = replay.finish()
    result.mentions_read = read
    return result


async def archive_reaches(engine: AsyncEngine, since: datetime, before: datetime | None) -> bool:
    """Whether the archive holds a mention with ``since <= ts < before`` (False when it cannot be read)."""
    statement = select(mentions.c.id).where(mentions.c.ts >= since)
    if before is not None:
        statement = statement.where(mentions.c.ts < before)
    try:
        async with engine.connect() as conn:
            return (await conn.execute(statement.limit(1))).first() is not None
    except Exception:  # no archive here, not migrated, unreachable: the stream it is
        return False


async def stream_start(js: Any) -> datetime | None:
    """When the oldest raw mention the stream still holds was stored (None: the stream is empty)."""
    from nats.js.errors import NotFoundError

    from veille import bus

    try:
        info = await js.stream_info(bus.MENTIONS.name)
    except NotFoundError:
        return None
    if not info.state.messages:
        return None
    first = await js.get_msg(bus.MENTIONS.name, seq=info.state.first_seq)  # the oldest message still stored
    moment: Any = first.time
    if isinstance(moment, str):
        moment = _rfc3339(moment)
    return _utc(moment) if isinstance(moment, datetime) else None


def _rfc3339(value: str) -> datetime:
    """NATS's times: RFC 3339 with up to nine fraction digits and Z (Python reads six)."""
    head = value.rstrip("Z").partition("+")[0]
    if "." in head:
        head, fraction = head.split(".", 1)
        head = f"{head}.{fraction[:6]}"
    return datetime.fromisoformat(head).replace(tzinfo=UTC)
