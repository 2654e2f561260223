"""The archive's write rate, search and aggregation latency, on SQLite and PostgreSQL (issue 15).

For each database (SQLite: a file in a temporary directory; PostgreSQL: Debian's server started
like the tests do, ``tests/archive/postgres.py``, skipped with a note when it is not installed):

1. **Write rate.** ``--write`` mentions written by the archive's writer
   (``ArchiveStore.write_mentions``, batches of 500, one transaction each: upserts, watches,
   partitions, full-text index) into a fresh database, against a raw ``executemany`` of the same
   driver (sqlite3 under aiosqlite; asyncpg) inserting the same rows into the same ``mentions`` table
   (with its full-text index: FTS5 triggers on SQLite, the tsvector on PostgreSQL), in the same run.
   Goal: >= 5,000 mentions/s and >= 0.5 of raw.
2. **Search p95** over ``--n`` mentions spread over 90 days: a three-term query with filters
   (``AND`` of three words common in the texts, ``--sentiment negative --since 30d``), newest first,
   one page of 50, ``--repeat`` times. Goal: < 200 ms.
3. **Volume aggregation p95**: one watch over 90 days (``aggregate.volume``, 1-day buckets), with
   the detector's baseline replayed and without it. Goal: < 300 ms.

Texts are real tweets (``/work/shared/data/sentiment/*.csv``, English and French), cycled with a
serial number so every mention is distinct; the bench stops with an error when the data is missing.
Results go to ``bench/results/archive_bench.json``.

Usage::

    PYTHONPATH=shared:. python bench/archive_bench.py [--n 200000] [--write 50000] [--repeat 30]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import random
import signal
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "shared"), str(ROOT)]

from sqlalchemy.engine import make_url  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncEngine  # noqa: E402

from services.archive.aggregate import volume  # noqa: E402
from services.archive.db import make_engine, migrate  # noqa: E402
from services.archive.search import SearchFilters, search  # noqa: E402
from services.archive.store import ArchiveStore, text_search_config  # noqa: E402
from veille.models import MentionClassified, MentionIngested  # noqa: E402

DATA = Path("/work/shared/data/sentiment")
OUT = ROOT / "bench" / "results" / "archive_bench.json"
BATCH = 500
WATCHES = ["acme", "globex", "initech", "umbrella"]
SOURCES = ["rss", "bluesky", "mastodon", "hackernews", "reddit"]
QUERY = "tomorrow AND going AND night"  # three content words frequent in the tweets (each in 1-3% of them)


def load_texts() -> list[tuple[str, str, str]]:
    """(text, lang, sentiment) of every tweet in the sentiment data; SystemExit when it is missing."""
    files = [("en_tweets_train.csv", "en"), ("en_tweets_dev.csv", "en"), ("fr_tweets_dev.csv", "fr")]
    missing = [name for name, _ in files if not (DATA / name).is_file()]
    if missing:
        raise SystemExit(f"archive_bench: the tweet texts are missing ({', '.join(missing)} in {DATA})")
    out = []
    for name, lang in files:
        with (DATA / name).open(encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle):
                out.append((row["text"], lang, row["label_name"]))
    return out


def make_mentions(
    texts: list[tuple[str, str, str]], n: int, *, now: datetime, seed: int = 7
) -> list[MentionClassified]:
    """``n`` distinct classified mentions over the last 90 days (newest ``now``), watches at random."""
    rng = random.Random(seed)
    span = 90 * 86400
    out = []
    for i in range(n):
        body, lang, sentiment = texts[i % len(texts)]
        moment = now - timedelta(seconds=rng.random() * span)
        source = SOURCES[i % len(SOURCES)]
        out.append(
            MentionClassified(
                mention=MentionIngested(
                    id=f"{source}:{i}",
                    source=source,
                    text=f"{body} #{i}",
                    title=None,
                    site=f"site{i % 50}.example",
                    url=f"https://site{i % 50}.example/{i}",  # type: ignore[arg-type]
                    published_at=moment,
                    ingested_at=moment + timedelta(seconds=30),
                ),
                lang=lang,
                sentiment=sentiment,  # type: ignore[arg-type]
                sentiment_score={"negative": -0.5, "neutral": 0.0, "positive": 0.5}[sentiment],
                watches=[WATCHES[0]] if i % 3 == 0 else ([rng.choice(WATCHES[1:])] if i % 3 == 1 else []),
                story_id=f"story-{i // 4}",
            )
        )
    return out


def p95(values: list[float]) -> float:
    """The 95th percentile (nearest rank), in the values' unit."""
    ordered = sorted(values)
    return ordered[max(0, round(0.95 * len(ordered)) - 1)]


async def fresh(url: str) -> AsyncEngine:
    engine = make_engine(make_url(url))
    await migrate(engine)
    return engine


async def archive_write(url: str, batch: list[MentionClassified]) -> float:
    """Mentions/s written by ArchiveStore in batches of BATCH into a fresh database."""
    engine = await fresh(url)
    store = ArchiveStore(engine, retention=timedelta(days=400))
    await store.prepare()
    started = time.perf_counter()
    for start in range(0, len(batch), BATCH):
        await store.write_mentions(batch[start : start + BATCH])
    elapsed = time.perf_counter() - started
    await engine.dispose()
    return len(batch) / elapsed


def _raw_rows(batch: list[MentionClassified], now: datetime) -> list[tuple[Any, ...]]:
    rows = []
    for c in batch:
        m = c.mention
        ts = m.published_at or m.ingested_at
        rows.append(
            (
                m.id,
                ts,
                m.source,
                m.url and str(m.url),
                m.title,
                m.text,
                m.site,
                c.lang,
                c.sentiment,
                c.sentiment_score,
                c.story_id,
                json.dumps(c.watches),
                m.published_at,
                m.ingested_at,
                c.classified_at,
                now,
            )
        )
    return rows


_COLUMNS = (
    "id, ts, source, url, title, text, site, lang, sentiment, sentiment_score, story_id, watches, "
    "published_at, ingested_at, classified_at, archived_at"
)


async def raw_sqlite(url: str, batch: list[MentionClassified], now: datetime) -> float:
    """Mentions/s of aiosqlite's executemany into the same mentions table (FTS5 triggers included)."""
    import aiosqlite

    engine = await fresh(url)
    await engine.dispose()
    rows = [
        tuple(v.strftime("%Y-%m-%d %H:%M:%S.%f") if isinstance(v, datetime) else v for v in r)
        for r in _raw_rows(batch, now)
    ]
    async with aiosqlite.connect(make_url(url).database or "") as conn:
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA synchronous=NORMAL")
        sql = f"INSERT INTO mentions ({_COLUMNS}) VALUES ({', '.join('?' * 16)})"
        started = time.perf_counter()
        for start in range(0, len(rows), BATCH):
            await conn.executemany(sql, rows[start : start + BATCH])
            await conn.commit()
        elapsed = time.perf_counter() - started
    return len(rows) / elapsed


async def raw_postgres(url: str, batch: list[MentionClassified], now: datetime) -> float:
    """Mentions/s of asyncpg's executemany into the same (partitioned) mentions table, tsvector included."""
    import asyncpg

    engine = await fresh(url)
    store = ArchiveStore(engine, retention=timedelta(days=400))
    await store.prepare()
    from services.archive.store import month_of

    await store.ensure_partitions({month_of(c.mention.published_at or c.mention.ingested_at) for c in batch})
    await engine.dispose()
    rows = [(*r, text_search_config(r[7])) for r in _raw_rows(batch, now)]
    parsed = make_url(url)
    conn = await asyncpg.connect(
        host=parsed.host, port=parsed.port, user=parsed.username, password=parsed.password, database=parsed.database
    )
    try:
        placeholders = ", ".join(f"${i}" for i in range(1, 17))
        sql = (
            f"INSERT INTO mentions ({_COLUMNS}, tsv) VALUES ({placeholders}, "
            "to_tsvector($17::regconfig, coalesce($5, '') || ' ' || $6))"
        )
        started = time.perf_counter()
        for start in range(0, len(rows), BATCH):
            async with conn.transaction():
                await conn.executemany(sql, rows[start : start + BATCH])
        elapsed = time.perf_counter() - started
    finally:
        await conn.close()
    return len(rows) / elapsed


async def latencies(url: str, repeat: int, now: datetime) -> dict[str, Any]:
    """Search and volume-aggregation latencies (ms) over the loaded database."""
    reader = make_engine(make_url(url), write=False)
    filters = SearchFilters(sentiment=["negative"], since=now - timedelta(days=30))
    search_ms, hits = [], 0
    volume_ms, volume_plain_ms = [], []
    try:
        await search(reader, QUERY, filters, limit=50, now=now)  # warm the caches once
        for _ in range(repeat):
            started = time.perf_counter()
            page = await search(reader, QUERY, filters, limit=50, now=now)
            search_ms.append((time.perf_counter() - started) * 1000)
            hits = len(page.hits)
        for baseline, into, times in ((True, volume_ms, 3), (False, volume_plain_ms, max(5, repeat // 3))):
            for _ in range(times):  # the replay takes seconds: three of them
                started = time.perf_counter()
                series = await volume(
                    reader, "acme", now - timedelta(days=90), now, bucket=timedelta(days=1), baseline=baseline, now=now
                )
                into.append((time.perf_counter() - started) * 1000)
        total = sum(b.total for b in series.buckets)
    finally:
        await reader.dispose()
    return {
        "search_query": QUERY,
        "search_filters": "sentiment=negative, since=30d, limit 50",
        "search_hits_per_page": hits,
        "search_p95_ms": round(p95(search_ms), 1),
        "search_median_ms": round(statistics.median(search_ms), 1),
        "volume_mentions": total,
        "volume_p95_ms": round(p95(volume_ms), 1),  # of 3 runs: their maximum
        "volume_median_ms": round(statistics.median(volume_ms), 1),
        "volume_without_baseline_p95_ms": round(p95(volume_plain_ms), 1),
    }


async def load_for_queries(url: str, mentions: list[MentionClassified]) -> float:
    """Write the query set with the archive's writer; return the rate (mentions/s)."""
    return await archive_write(url, mentions)


async def bench_database(name: str, url_for: Any, args: argparse.Namespace, texts: list[Any]) -> dict[str, Any]:
    now = datetime.now(UTC).replace(microsecond=0)
    writes = make_mentions(texts, args.write, now=now, seed=1)
    result: dict[str, Any] = {"database": name, "write_mentions": args.write}
    raw = raw_sqlite if name == "sqlite" else raw_postgres
    rates, raws = [], []
    for _ in range(args.rounds):  # interleaved, so a busy neighbour on the machine weighs on both
        rates.append(await archive_write(url_for("w"), writes))
        raws.append(await raw(url_for("r"), writes, now))
    result["archive_per_s"] = round(statistics.median(rates))
    result["raw_executemany_per_s"] = round(statistics.median(raws))
    result["ratio"] = round(result["archive_per_s"] / result["raw_executemany_per_s"], 2)
    print(f"{name}: write {result['archive_per_s']:,}/s, raw {result['raw_executemany_per_s']:,}/s", flush=True)
    n = args.n if name == "sqlite" else args.n_postgres
    query_url = url_for("q")
    started = time.perf_counter()
    for start in range(0, n, 100_000):
        chunk = make_mentions(texts, min(100_000, n - start), now=now, seed=100 + start)
        chunk = [
            c.model_copy(update={"mention": c.mention.model_copy(update={"id": f"q{start}-{c.mention.id}"})})
            for c in chunk
        ]
        engine = make_engine(make_url(query_url))
        if start == 0:
            await migrate(engine)
        store = ArchiveStore(engine, retention=timedelta(days=400))
        await store.prepare()
        for s in range(0, len(chunk), BATCH):
            await store.write_mentions(chunk[s : s + BATCH])
        await engine.dispose()
    result["query_mentions"] = n
    result["load_seconds"] = round(time.perf_counter() - started, 1)
    if name == "postgresql":
        engine = make_engine(make_url(query_url))
        async with engine.begin() as conn:
            from sqlalchemy import text

            await conn.execute(text("ANALYZE"))
        await engine.dispose()
    result.update(await latencies(query_url, args.repeat, now))
    print(f"{name}: {json.dumps(result)}", flush=True)
    return result


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    texts = load_texts()
    out: dict[str, Any] = {"when": datetime.now(UTC).isoformat(timespec="seconds"), "results": []}
    with tempfile.TemporaryDirectory(prefix="archive-bench-") as tmp:
        out["results"].append(
            await bench_database(
                "sqlite", lambda tag: f"sqlite+aiosqlite:///{tmp}/{tag}-{time.monotonic_ns()}.sqlite3", args, texts
            )
        )
    from tests.archive.postgres import PostgresServer, postgres_unavailable

    reason = postgres_unavailable()
    if reason:
        out["postgresql_skipped"] = reason
        print(f"postgresql skipped: {reason}", flush=True)
        return out
    server = PostgresServer()
    server.start()
    try:
        out["results"].append(await bench_database("postgresql", lambda _tag: server.create_database(), args, texts))
    finally:
        server.cleanup()
    return out


def markdown_section(result: dict[str, Any]) -> list[str]:
    """The archive section of docs/benchmarks.md."""
    rows = result.get("results") or []
    if not rows:
        return []
    out = [
        "## Archive (`bench/archive_bench.py`)",
        "",
        f"Command: `{result.get('command', 'PYTHONPATH=shared:. python bench/archive_bench.py')}` ({result['when']}). "
        "Write: the archive's writer (batches of 500, one transaction each: upsert, watches, full-text index) "
        "against a raw `executemany` of the same driver into the same `mentions` table, medians of interleaved "
        "rounds. Search: `" + QUERY + "`, sentiment negative, since 30 days, a page of 50, newest first. "
        "Volume: one watch (a third of the mentions) over 90 days in 1-day buckets, with the spike detector's "
        "baseline replayed over 5-minute buckets, and without it. Texts: the sentiment tweets, cycled.",
        "",
        "| database | archive write /s | raw executemany /s | ratio | mentions queried | search p95 ms "
        "| volume 90 d p95 ms (baseline) | (no baseline) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        out.append(
            f"| {r['database']} | {r['archive_per_s']:,} | {r['raw_executemany_per_s']:,} | {r['ratio']} "
            f"| {r['query_mentions']:,} | {r['search_p95_ms']} | {r['volume_p95_ms']} "
            f"| {r['volume_without_baseline_p95_ms']} |"
        )
    if result.get("postgresql_skipped"):
        out.append(f"\nPostgreSQL skipped: {result['postgresql_skipped']}")
    return [*out, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200_000, help="mentions searched on SQLite")
    parser.add_argument("--n-postgres", type=int, default=100_000, help="mentions searched on PostgreSQL")
    parser.add_argument("--write", type=int, default=20_000, help="mentions per write-rate run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved write rounds (median)")
    parser.add_argument("--repeat", type=int, default=30, help="searches timed")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so a stopped bench still stops its PostgreSQL
    result = asyncio.run(main_async(args))
    result["command"] = "PYTHONPATH=shared:. python bench/archive_bench.py " + " ".join(sys.argv[1:])
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print("\n".join(markdown_section(result)))


if __name__ == "__main__":
    main()
