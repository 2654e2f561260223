"""Searching the archive: the watches' query language over the database, with filters and cursor pages.

One module for the HTTP API, the CLI and the console to come. :func:`search` takes a
:mod:`veille.query` query (the same Lucene-style language as watches) and filters (watch, time
range, sentiment, language, source, site, story), and returns one page of mentions, newest first,
with a cursor for the next page.

How a query runs. The database narrows, Python decides:

1. The filters are SQL (indexed: ``ts``; ``mention_watches (watch, ts)``; ``source``, ``story_id``).
2. From the query, :func:`prefilter` derives a *necessary* condition on words (a mention that matches
   the query surely contains them): terms and phrase words joined by AND/OR, ``NOT`` and filters left
   out. It runs as full-text search: FTS5 ``MATCH`` on SQLite, ``tsvector @@ tsquery`` on PostgreSQL
   (the ``french``, ``english`` and ``simple`` configurations OR-ed, since a mention is indexed with
   its own language's; ``unaccent`` on the query when the extension is there).
3. Each candidate row is checked with :meth:`veille.query.Query.matches` (phrases, NEAR, wildcards,
   fields, NOT, ``lang:``/``site:`` filters: exactly what a watch would match).

On PostgreSQL, what the full-text index costs is its posting lists over a whole partition (a
month), whatever the ``LIMIT``: with words to look up, a search by time reads one calendar month
at a time, newest first (:func:`_months`; each a single partition, no parallel workers), and stops
when the page is full, so a page filled by this month's mentions never reads an older month's
index. A watch filter there is the row's own ``watches`` list (``@>``, the list the store writes the
``mention_watches`` rows from), a test on the row already read instead of a probe into every
partition's key. :func:`_probe`'s answer (``unaccent``, stop words) is kept for the process.

Pages. Rows come in ``(ts, id)`` order, descending; the cursor is the last row *examined* (opaque,
base64 JSON), so a page never repeats or skips a row even when the Python check dropped some. One
call examines at most ``max_scan`` candidates: a page may hold fewer hits than ``limit`` and still
have a ``next_cursor``, which means "go on"; ``next_cursor`` None means the end.

Relevance (``sort="relevance"``): the candidates come best first by the full-text rank of the
query's necessary words (FTS5's ``rank``, i.e. ``bm25``, on SQLite; the best ``ts_rank`` of the three
configurations on PostgreSQL), newest first among equals; the cursor is then a position in that
order. A query without such words (empty, or only NOT and filters) has no rank: it comes newest first.
Aggregations are in :mod:`services.archive.aggregate`.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import (
    ColumnElement,
    Float,
    Select,
    and_,
    bindparam,
    column,
    exists,
    func,
    literal_column,
    or_,
    select,
    table,
    text,
    tuple_,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from services.archive.schema import mention_watches, mentions
from veille.query import And, Document, Field, Near, Or, Phrase, Query, QuerySyntaxError, Term, parse_query

__all__ = ["MentionHit", "SearchError", "SearchFilters", "SearchPage", "decode_cursor", "prefilter", "search"]

MAX_LIMIT = 1_000
Sentiment = Literal["negative", "neutral", "positive"]
Sort = Literal["time", "relevance"]
_WORD = re.compile(r"^\w+$")


class SearchError(ValueError):
    """A search that cannot run as asked; the message says why, in words."""


@dataclass(frozen=True)
class SearchFilters:
    """What every hit must be: all given filters apply (AND); lists are alternatives (OR)."""

    watch: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    sentiment: Sequence[Sentiment] = ()
    lang: Sequence[str] = ()
    source: Sequence[str] = ()
    site: Sequence[str] = ()
    story: str | None = None


@dataclass(frozen=True)
class MentionHit:
    """One archived mention."""

    id: str
    ts: datetime
    source: str
    url: str | None
    title: str | None
    text: str
    author: str | None
    site: str | None
    lang: str | None
    sentiment: str
    sentiment_score: float
    story_id: str | None
    watches: list[str]
    published_at: datetime | None
    ingested_at: datetime

    def as_json(self) -> dict[str, Any]:
        """The hit as JSON-ready values (ISO 8601 times)."""
        out = asdict(self)
        for key in ("ts", "published_at", "ingested_at"):
            if out[key] is not None:
                out[key] = out[key].isoformat()
        return out


@dataclass
class SearchPage:
    """One page of hits and the cursor of the next (None: no more)."""

    hits: list[MentionHit] = field(default_factory=list)
    next_cursor: str | None = None
    examined: int = 0


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def encode_cursor(ts: datetime, key: str) -> str:
    """The opaque cursor after row ``(ts, key)``."""
    raw = json.dumps({"ts": _utc(ts).isoformat(), "id": key}, separators=(",", ":"))  # type: ignore[union-attr]
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def encode_position(offset: int) -> str:
    """The opaque cursor after the first ``offset`` candidates of a relevance-sorted search."""
    raw = json.dumps({"o": offset}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _raw_cursor(cursor: str) -> Any:
    try:
        return json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise SearchError("the cursor is not one a search returned (copy next_cursor as it is)") from None


def decode_position(cursor: str) -> int:
    """The offset a relevance cursor stands for; :class:`SearchError` when it is not one."""
    raw = _raw_cursor(cursor)
    if not isinstance(raw, dict) or not isinstance(raw.get("o"), int) or raw["o"] < 0:
        raise SearchError("the cursor is not one a relevance-sorted search returned (same query, same sort)")
    return int(raw["o"])


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The ``(ts, id)`` a cursor stands for; :class:`SearchError` when it is not one of ours."""
    try:
        raw = _raw_cursor(cursor)
        ts = datetime.fromisoformat(raw["ts"])
        key = raw["id"]
        if not isinstance(key, str):
            raise TypeError(key)
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise SearchError("the cursor is not one a search returned (copy next_cursor as it is)") from None
    return _utc(ts), key  # type: ignore[return-value]


# ------------------------------------------------------------------------ the query's necessary words

Words = tuple[str, tuple[Any, ...]]  # ("and" | "or" | "word", operands or (word,))


def prefilter(query: Query, *, alternatives: bool = True) -> Words | None:
    """A word condition every match of ``query`` satisfies, or None when none can be said.

    ``("word", ("acme",))``, ``("and", (...))`` or ``("or", (...))``. Words are the query's own
    normalised words (lower case, accents folded), kept only when they are plain word characters.
    ``alternatives=False`` gives up on OR (PostgreSQL drops stop words from an OR, which would make
    the condition stricter than the query; from an AND it only makes it looser).
    """
    if isinstance(query, Term):
        return ("word", (query.word,)) if _WORD.match(query.word) else None
    if isinstance(query, Phrase):
        words = [("word", (w,)) for w in query.words if _WORD.match(w)]
        return _join("and", words)
    if isinstance(query, Field):
        return prefilter(query.query, alternatives=alternatives) if query.name in ("title", "text") else None
    if isinstance(query, Near):
        parts = [prefilter(query.left, alternatives=alternatives), prefilter(query.right, alternatives=alternatives)]
        return _join("and", [p for p in parts if p is not None])
    if isinstance(query, And):
        parts = [prefilter(q, alternatives=alternatives) for q in query.operands]
        return _join("and", [p for p in parts if p is not None])
    if isinstance(query, Or):
        if not alternatives:
            return None
        parts = [prefilter(q) for q in query.operands]
        if any(p is None for p in parts):
            return None
        return _join("or", [p for p in parts if p is not None])
    return None  # Not, Filter, Wildcard: Python decides


def _join(op: str, parts: list[Words]) -> Words | None:
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    return (op, tuple(parts))


def _fts5(words: Words) -> str:
    op, parts = words
    if op == "word":
        return f'"{parts[0]}"'
    return "(" + f" {op.upper()} ".join(_fts5(p) for p in parts) + ")"


def _tsquery(words: Words) -> str:
    op, parts = words
    if op == "word":
        return str(parts[0])
    glue = " & " if op == "and" else " | "
    return "(" + glue.join(_tsquery(p) for p in parts) + ")"


# ------------------------------------------------------------------------ the search


def _parse(query: str | None) -> Query | None:
    if query is None or not query.strip():
        return None
    try:
        return parse_query(query)
    except QuerySyntaxError as exc:
        raise SearchError(f"the query is not valid: {exc}") from None


def _check(filters: SearchFilters, limit: int, now: datetime) -> None:
    if not 1 <= limit <= MAX_LIMIT:
        raise SearchError(f"limit must be between 1 and {MAX_LIMIT}")
    since, until = _utc(filters.since), _utc(filters.until)
    if since is not None and since > now:
        raise SearchError(f"since ({since.isoformat()}) is in the future: nothing can have been archived yet")
    if since is not None and until is not None and since >= until:
        raise SearchError(f"since ({since.isoformat()}) must be before until ({until.isoformat()})")


_CONFIGS = ("french", "english", "simple")


def _configs(filters: SearchFilters) -> tuple[str, ...]:
    """The text-search configurations the candidates' vectors can have been made with (PostgreSQL).

    Every one, unless a language filter says which: a mention is indexed with its language's
    configuration (``store.text_search_config``, from its first two letters), so a filter ``en``
    (``lang LIKE 'en%'``) only meets ``english`` vectors. A filter shorter than two letters says nothing.
    """
    if not filters.lang or any(len(lang) < 2 for lang in filters.lang):
        return _CONFIGS
    from services.archive.store import text_search_config

    return tuple(sorted({text_search_config(lang) for lang in filters.lang}))


def _any_config(configs: tuple[str, ...]) -> str:
    return "(" + " || ".join(f"to_tsquery('{c}', :tsq)" for c in configs) + ")"


_PROBES: dict[tuple[str, str, tuple[str, ...]], tuple[bool, bool]] = {}
"""What :func:`_probe` answered, by (database, words, configurations): a search's first round trip, saved."""
_PROBES_KEPT = 1_024


async def _probe(conn: Any, words: Words | None, configs: tuple[str, ...] = _CONFIGS) -> tuple[bool, bool]:
    """PostgreSQL: whether ``unaccent`` is there, and whether the words are all stop words of one of ``configs``.

    The answer depends on the database's extensions and configurations only: it is kept for the
    process (a database that gains ``unaccent`` later is seen by the next process)."""
    key = (conn.engine.url.render_as_string(hide_password=True), _tsquery(words) if words else "", configs)
    known = _PROBES.get(key)
    if known is not None:
        return known
    if len(_PROBES) >= _PROBES_KEPT:
        _PROBES.clear()
    _PROBES[key] = answer = await _probe_server(conn, words, configs)
    return answer


async def _probe_server(conn: Any, words: Words | None, configs: tuple[str, ...]) -> tuple[bool, bool]:
    numnodes = ", ".join(f"numnode(to_tsquery('{c}', :tsq))" for c in configs)
    row = (
        await conn.execute(
            text(f"SELECT (SELECT count(*) FROM pg_extension WHERE extname = 'unaccent'), {numnodes}"),  # noqa: S608 - constants
            {"tsq": _tsquery(words) if words is not None else "x"},
        )
    ).one()
    return bool(row[0]), any(n == 0 for n in row[1:])


_FTS = table("mentions_fts", column("rowid"), column("rank", Float))
"""SQLite's FTS5 index (its hidden ``rank`` column is ``bm25``: lower is more relevant)."""


def _statement(
    engine: AsyncEngine,
    query: Query | None,
    filters: SearchFilters,
    *,
    rank: bool = False,
    stop_words_only: bool = False,
) -> tuple[Select[Any], ColumnElement[Any] | None]:
    """The candidates' statement, and (``rank``) a relevance expression, higher is better (None: no words).

    ``stop_words_only`` (PostgreSQL): some configuration makes an empty query of the necessary words
    (:func:`_probe`), so the full-text condition is left out.
    """
    columns = [c for c in mentions.columns if c.name not in ("engagement", "classified_at", "archived_at")]
    statement = select(*columns)
    relevance: ColumnElement[Any] | None = None
    conditions: list[ColumnElement[bool]] = []
    if filters.since is not None:
        conditions.append(mentions.c.ts >= _utc(filters.since))
    if filters.until is not None:
        conditions.append(mentions.c.ts < _utc(filters.until))
    if filters.sentiment:
        conditions.append(mentions.c.sentiment.in_(list(filters.sentiment)))
    if filters.lang:
        conditions.append(or_(*(mentions.c.lang.like(f"{lang.lower()}%") for lang in filters.lang)))
    if filters.source:
        conditions.append(mentions.c.source.in_([s.lower() for s in filters.source]))
    if filters.site:
        conditions.append(mentions.c.site.in_(list(filters.site)))
    if filters.story:
        conditions.append(mentions.c.story_id == filters.story)
    postgres = engine.dialect.name == "postgresql"
    words = prefilter(query, alternatives=not postgres) if query is not None else None
    if filters.watch and words is not None and postgres:
        # the full-text index yields the candidates: each is checked against its own list of watches
        # (the ``watches`` column the store writes with its ``mention_watches`` rows, from the same
        # list): a test on the row already read, instead of an index probe into every partition
        conditions.append(mentions.c.watches.op("@>")(func.jsonb_build_array(filters.watch)))
    elif filters.watch and words is not None:
        # the full-text index yields the candidates: each is checked by its own (watch, ts, id) key,
        # rather than against every id the watch has in the range (tens of thousands for a big watch)
        conditions.append(
            exists()
            .where(
                mention_watches.c.watch == filters.watch,
                mention_watches.c.ts == mentions.c.ts,
                mention_watches.c.mention_id == mentions.c.id,
            )
            .correlate(mentions)
        )
    elif filters.watch:
        watched = select(mention_watches.c.mention_id).where(mention_watches.c.watch == filters.watch)
        if filters.since is not None:
            watched = watched.where(mention_watches.c.ts >= _utc(filters.since))
        if filters.until is not None:
            watched = watched.where(mention_watches.c.ts < _utc(filters.until))
        conditions.append(mentions.c.id.in_(watched))
    if words is not None:
        if postgres:
            # one tsquery OR-ing the three configurations' (a mention is indexed with its own language's):
            # one GIN index scan. A word that is a stop word of a configuration is not in the vectors made
            # with it, so such a configuration constrains nothing (numnode = 0): then neither does the
            # condition (``stop_words_only``, asked of the server by the caller), so it stays necessary
            if not stop_words_only:
                matches = text(f"mentions.tsv @@ {_any_config(_configs(filters))}").bindparams(tsq=_tsquery(words))
                conditions.append(and_(matches))
        elif rank:
            # a join, so that FTS5 computes rank (bm25) for the matching rows only
            statement = statement.join_from(mentions, _FTS, _FTS.c.rowid == literal_column("mentions.seq"))
            conditions.append(literal_column("mentions_fts").op("MATCH")(bindparam("fts", _fts5(words))))
            relevance = -_FTS.c.rank
        else:
            conditions.append(
                literal_column("mentions.seq").in_(
                    text("SELECT rowid FROM mentions_fts WHERE mentions_fts MATCH :fts").bindparams(fts=_fts5(words))
                )
            )
    if rank and postgres and query is not None:
        # ranking needs no necessary condition: OR-ed words rank too (a dropped stop word only ranks nothing)
        ranked = prefilter(query)
        if ranked is not None:
            relevance = func.greatest(
                *(
                    text(f"ts_rank(mentions.tsv, to_tsquery('{config}', :rtsq))").bindparams(rtsq=_tsquery(ranked))
                    for config in ("french", "english", "simple")
                )
            )
    if conditions:
        statement = statement.where(and_(*conditions))
    return statement, relevance


def _hit(row: Any) -> MentionHit:
    values = row._mapping
    watches = values["watches"]
    if isinstance(watches, str):
        watches = json.loads(watches)
    return MentionHit(
        id=values["id"],
        ts=_utc(values["ts"]),  # type: ignore[arg-type]
        source=values["source"],
        url=values["url"],
        title=values["title"],
        text=values["text"],
        author=values["author"],
        site=values["site"],
        lang=values["lang"],
        sentiment=values["sentiment"],
        sentiment_score=values["sentiment_score"],
        story_id=values["story_id"],
        watches=list(watches or []),
        published_at=_utc(values["published_at"]),
        ingested_at=_utc(values["ingested_at"]),  # type: ignore[arg-type]
    )


async def search(
    engine: AsyncEngine,
    query: str | None,
    filters: SearchFilters | None = None,
    *,
    limit: int = 50,
    cursor: str | None = None,
    max_scan: int = 20_000,
    now: datetime | None = None,
    sort: Sort = "time",
) -> SearchPage:
    """One page of mentions matching ``query`` and ``filters``, newest first or by relevance (module notes)."""
    filters = filters or SearchFilters()
    now = now or datetime.now(UTC)
    parsed = _parse(query)
    _check(filters, limit, now)
    if sort not in ("time", "relevance"):
        raise SearchError(f"sort {sort!r} is not one of time, relevance")
    if sort == "relevance" and parsed is not None:
        ranked = await _search_ranked(engine, parsed, filters, limit, cursor, max_scan)
        if ranked is not None:
            return ranked
    after = decode_cursor(cursor) if cursor else None
    page = SearchPage()
    chunk = min(max(limit * 4, 200), 2_000)  # the Python check may drop half of them: mostly one round
    if engine.dialect.name == "postgresql" and parsed is not None:
        # each round runs the GIN bitmap scan again, whose cost (frequent words' posting lists) does
        # not depend on LIMIT: take as many candidates as one round may
        chunk = 2_000
    last: tuple[datetime, str] | None = after
    async with engine.connect() as conn:
        fulltext, stop_words_only = True, False
        postgres = engine.dialect.name == "postgresql"
        if postgres:
            await _custom_plans(conn)
        if postgres and parsed is not None:
            # the documents' words lost their accents only through unaccent: without it the query's
            # folded words would miss them, so the query is checked in Python alone
            fulltext, stop_words_only = await _probe(conn, prefilter(parsed, alternatives=False), _configs(filters))
        base, _ = _statement(engine, parsed if fulltext else None, filters, stop_words_only=stop_words_only)
        windows: list[tuple[datetime | None, datetime | None]] = [(None, None)]
        if (
            postgres
            and parsed is not None
            and fulltext
            and not stop_words_only
            and prefilter(parsed, alternatives=False)
        ):
            # the full-text index's cost is a whole partition's posting lists, whatever the LIMIT: one
            # month (one partition) at a time, newest first, so a page filled by this month's mentions
            # never reads the older months' index
            windows = await _months(conn, filters, after, now)
            await conn.execute(text("SET LOCAL max_parallel_workers_per_gather = 0"))
        for low, high in windows:
            while page.examined < max_scan:
                statement = base
                if low is not None:
                    statement = statement.where(mentions.c.ts >= low)
                if high is not None:
                    statement = statement.where(mentions.c.ts < high)
                if last is not None:
                    statement = statement.where(
                        tuple_(mentions.c.ts, mentions.c.id) < tuple_(_bind_ts(engine, last[0]), last[1])
                    )
                statement = statement.order_by(mentions.c.ts.desc(), mentions.c.id.desc()).limit(chunk)
                rows = (await conn.execute(statement)).all()
                for row in rows:
                    page.examined += 1
                    hit = _hit(row)
                    last = (hit.ts, hit.id)
                    if parsed is None or parsed.matches(_document(hit)):
                        page.hits.append(hit)
                        if len(page.hits) == limit:
                            page.next_cursor = encode_cursor(hit.ts, hit.id)
                            return page
                    if page.examined >= max_scan:
                        break
                if len(rows) < chunk:
                    break  # this window is done: the next (older) one
            if page.examined >= max_scan:
                break
        else:
            return page  # the end: no next cursor
        if last is not None:
            page.next_cursor = encode_cursor(*last)
    return page


async def _custom_plans(conn: Any) -> None:
    """PostgreSQL: plan each statement for its own values in this transaction.

    The driver prepares each statement once per connection; after five runs the server may switch to
    a generic plan, made without knowing the words or the window's bounds (on the 10M archive a
    search by time went from ~80 to ~300 ms from its sixth run on a connection). Planning each time
    costs about a millisecond."""
    await conn.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))


def _month(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


async def _months(
    conn: Any, filters: SearchFilters, after: tuple[datetime, str] | None, now: datetime
) -> list[tuple[datetime | None, datetime | None]]:
    """``[low, high)`` windows covering the search's range, newest first, one calendar month (UTC: the
    archive's partitions on PostgreSQL) each; the newest is open-ended upwards when no ``until`` bounds
    it (a mention dated in the future is still found), the oldest starts at ``since``, else at the
    oldest archived mention."""
    since, until = _utc(filters.since), _utc(filters.until)
    if since is None:
        oldest = (await conn.execute(select(func.min(mentions.c.ts)))).scalar()
        if oldest is None:
            return [(None, None)]
        since = _utc(oldest)
    assert since is not None
    top = until or now
    if after is not None:
        top = min(top, after[0])
    if top < since:
        top = since
    windows: list[tuple[datetime | None, datetime | None]] = []
    high: datetime | None = until
    month = _month(top)
    while True:
        low = max(month, since)
        windows.append((low, high))
        if month <= since:
            return windows
        high = month
        month = _month(month - timedelta(days=1))


async def _search_ranked(
    engine: AsyncEngine, parsed: Query, filters: SearchFilters, limit: int, cursor: str | None, max_scan: int
) -> SearchPage | None:
    """A relevance-sorted page, or None when the query has no words to rank by (then: newest first)."""
    postgres = engine.dialect.name == "postgresql"
    if prefilter(parsed) is None:
        return None
    offset = decode_position(cursor) if cursor else 0
    page = SearchPage()
    chunk = min(max(limit * 4, 200), 2_000)  # the Python check may drop half of them: mostly one round
    if engine.dialect.name == "postgresql" and parsed is not None:
        # each round runs the GIN bitmap scan again, whose cost (frequent words' posting lists) does
        # not depend on LIMIT: take as many candidates as one round may
        chunk = 2_000
    async with engine.connect() as conn:
        stop_words_only = False
        if postgres:
            await _custom_plans(conn)
            unaccent, stop_words_only = await _probe(conn, prefilter(parsed, alternatives=False), _configs(filters))
            if not unaccent:
                return None  # no folded vectors to rank (see search)
        base, relevance = _statement(engine, parsed, filters, rank=True, stop_words_only=stop_words_only)
        if relevance is None:
            return None
        ordered = base.order_by(relevance.desc(), mentions.c.ts.desc(), mentions.c.id.desc())
        while page.examined < max_scan:
            rows = (await conn.execute(ordered.offset(offset).limit(chunk))).all()
            for row in rows:
                page.examined += 1
                offset += 1
                hit = _hit(row)
                if parsed.matches(_document(hit)):
                    page.hits.append(hit)
                    if len(page.hits) == limit:
                        page.next_cursor = encode_position(offset)
                        return page
                if page.examined >= max_scan:
                    break
            if len(rows) < chunk:
                return page
        page.next_cursor = encode_position(offset)
    return page


def _bind_ts(engine: AsyncEngine, moment: datetime) -> Any:
    return bindparam("cursor_ts", moment, type_=mentions.c.ts.type)


def _document(hit: MentionHit) -> Document:
    return Document(
        text=hit.text, title=hit.title, url=hit.url, site=hit.site, author=hit.author, lang=hit.lang, source=hit.source
    )
