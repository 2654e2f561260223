"""The archive's write rate, search and aggregation latency, on SQLite and PostgreSQL (issue 15).

For each database (SQLite: a file in a temporary directory; PostgreSQL: Debian's server started
like the tests do, ``tests/archive/postgres.py``, skipped with a note when it is not installed):

1. **Write rate.** ``--write`` mentions written by the archive's writer
   (``ArchiveStore.write_mentions``, batches of 500, one transaction each: upserts, watches,
   partitions, full-text index) into a fresh database, against a raw ``executemany`` of the same
   driver (sqlite3 under aiosqlite; asyncpg) inserting the same rows into the same ``mentions`` table
   (with its full-text index: FTS5 triggers on SQLite, the tsvector on PostgreSQL), in the same run.
   Raw goes through the schema's triggers as any writer other than the store does: on SQLite the
   full-text and ``mention_tops`` row triggers (the store feeds both per batch, migration 0010), on
   PostgreSQL the statement triggers once per row (asyncpg's ``executemany`` runs one statement per row).
   It writes no ``mention_watches`` rows. Goal: >= 5,000 mentions/s and >= 0.5 of raw.
2. **Search p95** over ``--n`` mentions spread over 90 days: a three-term query with filters
   (``AND`` of three words common in the texts, ``--sentiment negative --since 30d``), newest first,
   one page of 50, ``--repeat`` times. Goal: < 200 ms.
3. **Volume aggregation p95**: one watch over 90 days (``aggregate.volume``, 1-day buckets), with
   the detector's baseline replayed and without it. Goal: < 300 ms.

4. **Service drain** (``--service N``, not in the default run): ``N`` classified mentions published
   to a real nats-server first, then the archive service started as a child process (as ``veille up``
   runs it); the rate is mentions committed *and acked* per second, from the first commit to the last
   ack (JSON decode, validation, cleaning, the write, the acks). Same goal as the write rate.
   ``--profile DIR`` runs that child under cProfile (``bench/childprofile``; its event loop's thread, not
   aiosqlite's), one ``.prof`` per child in DIR.
5. **Memory** (``--memory SECONDS``, a run of its own): classified mentions published at a steady
   ``--memory-rate`` to a real nats-server (with an alert every 10 s), the archive service a child
   process on ``--memory-db`` (sqlite or postgresql), its resident set size sampled every
   ``--sample`` seconds; reported like ``bench/memory_bench.py`` reports services (start, after the
   first 20 %, end, max, least-squares slope over the second half in MiB/h), with the consumer's lag
   and the rows stored at the end. Goal: flat (the slope over the second half near 0).

Texts are real tweets (``/work/shared/data/sentiment/*.csv``, English and French), cycled with a
serial number so every mention is distinct; the bench stops with an error when the data is missing.
Results go to ``bench/results/archive_bench.json`` (memory: ``bench/results/archive_memory_<database>.json``).

Usage::

    PYTHONPATH=shared:. python bench/archive_bench.py [--n 200000] [--write 50000] [--repeat 30]
    PYTHONPATH=shared:. python bench/archive_bench.py --write-only [--service 50000] [--profile DIR]
    PYTHONPATH=shared:. python bench/archive_bench.py --memory 1200 [--memory-rate 300] [--memory-db sqlite]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
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
sys.path[:0] = [str(ROOT / "shared"), str(ROOT), str(ROOT / "bench")]

from memory_bench import rss_mb, slope_mb_per_hour  # noqa: E402  # the service memory bench's sampling and slope
from sqlalchemy.engine import make_url  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncEngine  # noqa: E402

from services.archive.aggregate import volume  # noqa: E402
from services.archive.db import make_engine, migrate  # noqa: E402
from services.archive.search import SearchFilters, search  # noqa: E402
from services.archive.store import ArchiveStore, text_search_config  # noqa: E402
from veille.models import MentionClassified, MentionIngested  # noqa: E402

DATA = Path("/work/shared/data/sentiment")
OUT = ROOT / "bench" / "results" / "archive_bench.json"
MEMORY_OUT = ROOT / "bench" / "results" / "archive_memory_{db}.json"
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


LAYOUTS = ("spread", "live")
"""How the mentions' times are laid out (``--layout``). ``spread``: published at random over the last 90 days,
in no order (a backfill, an import: every insert lands anywhere in the time-keyed indexes). ``live``: as a
running archive receives them, see :func:`live_moment`."""
LIVE_SPAN = 3600.0
"""``live``: the backlog is this many seconds of traffic (an hour's outage caught up), ingested in order."""
LIVE_LAG_MEAN = 120.0
"""``live``: mean seconds between a mention's publication and its ingestion (exponential: most within a few
minutes, as a feed polled every minute or two, a stream at once)."""
LIVE_LATE_SHARE = 0.02
"""``live``: the share published much earlier (1 to 48 hours before ingestion: an RSS feed's old items, a
reply to an old post, a crawler catching up): the inserts that land away from the index's right edge."""


def live_moment(rng: random.Random, i: int, n: int, now: datetime) -> tuple[datetime, datetime]:
    """Mention ``i`` of ``n`` in the ``live`` layout: ingested at an even pace over the :data:`LIVE_SPAN` before
    ``now`` (serial order is ingestion order), published :data:`LIVE_LAG_MEAN` seconds earlier on average, a
    :data:`LIVE_LATE_SHARE` of them hours earlier; so times are near ``now`` and nearly in order. Returns
    (published, ingested)."""
    ingested = now - timedelta(seconds=LIVE_SPAN * (n - i) / n)
    if rng.random() < LIVE_LATE_SHARE:
        lag = rng.uniform(3600.0, 48 * 3600.0)
    else:
        lag = min(rng.expovariate(1 / LIVE_LAG_MEAN), 3600.0)
    return ingested - timedelta(seconds=lag), ingested


def make_mentions(
    texts: list[tuple[str, str, str]],
    n: int,
    *,
    now: datetime,
    seed: int = 7,
    first: int = 0,
    layout: str = "spread",
) -> list[MentionClassified]:
    """``n`` distinct classified mentions (serials from ``first``), their times laid out as ``layout`` says
    (:data:`LAYOUTS`; ``spread``: over the last 90 days, newest ``now``)."""
    rng = random.Random(seed)
    span = 90 * 86400
    out = []
    for i in range(first, first + n):
        body, lang, sentiment = texts[i % len(texts)]
        if layout == "live":
            moment, ingested = live_moment(rng, i - first, n, now)
        else:
            moment = now - timedelta(seconds=rng.random() * span)
            ingested = moment + timedelta(seconds=30)
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
                    ingested_at=ingested,
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
    search_ms: list[float] = []
    hits = 0
    volume_ms: list[float] = []
    volume_plain_ms: list[float] = []
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
    writes = make_mentions(texts, args.write, now=now, seed=1, layout=args.layout)
    result: dict[str, Any] = {
        "database": name,
        "layout": args.layout,
        "write_mentions": args.write,
        "load_start": os.getloadavg()[0],
    }
    raw = raw_sqlite if name == "sqlite" else raw_postgres
    rates, raws = [], []
    for _ in range(args.rounds):  # interleaved, so a busy neighbour on the machine weighs on both
        rates.append(await archive_write(url_for("w"), writes))
        raws.append(await raw(url_for("r"), writes, now))
    result["archive_per_s"] = round(statistics.median(rates))
    result["raw_executemany_per_s"] = round(statistics.median(raws))
    result["rounds"] = {"archive_per_s": [round(r) for r in rates], "raw_executemany_per_s": [round(r) for r in raws]}
    result["ratio"] = round(result["archive_per_s"] / result["raw_executemany_per_s"], 2)
    print(f"{name}: write {result['archive_per_s']:,}/s, raw {result['raw_executemany_per_s']:,}/s", flush=True)
    if args.service:
        rates, cpus = [], []
        for _ in range(args.rounds):
            rate, cpu = await service_drain(url_for("s"), texts, args.service, now, layout=args.layout)
            rates.append(rate)
            if cpu is not None:
                cpus.append(cpu)
        result["service_mentions"] = args.service
        result["service_per_s"] = round(statistics.median(rates))
        if cpus:
            result["service_cpu_us_per_mention"] = round(statistics.median(cpus))
            result["rounds"]["service_cpu_us_per_mention"] = [round(c) for c in cpus]
        result["service_ratio"] = round(result["service_per_s"] / result["raw_executemany_per_s"], 2)
        result["rounds"]["service_per_s"] = [round(r) for r in rates]
        print(f"{name}: service drain {result['service_per_s']:,}/s ({rates})", flush=True)
    if args.write_only:
        result["load_end"] = os.getloadavg()[0]
        return result
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
    result["load_end"] = os.getloadavg()[0]
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


# ---------------------------------------------------------------- the service as a child process

PROFILE_DIR: Path | None = None
"""``--profile DIR``: the archive child runs under cProfile (bench/childprofile; its event loop's thread only,
not aiosqlite's), stats written to DIR at its exit."""


def _child_env(tmp: Path) -> dict[str, str]:
    import os

    env = dict(os.environ)
    env["PYTHONPATH"] = f"{ROOT / 'shared'}:{ROOT}"
    env["VEILLE_ARCHIVE_API_PORT"] = "0"  # a free port: the bench never collides with a running archive
    env["VEILLE_ARCHIVE_API_HOST"] = "127.0.0.1"
    env.pop("VEILLE_ARCHIVE_DATABASE_URL", None)
    if PROFILE_DIR is not None:  # the child under cProfile (bench/childprofile), its stats in PROFILE_DIR
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "bench" / "childprofile"), env["PYTHONPATH"]])
        env["VEILLE_BENCH_PROFILE"] = str(PROFILE_DIR)
    return env


def start_archive(db_url: str, nats_url: str, tmp: Path, batch_size: int = 500) -> Any:
    """The archive service in its own process (``tests/archive/child.py``: the app as ``veille up`` runs it)."""
    import subprocess

    log = (tmp / "archive.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "tests.archive.child", db_url, nats_url, str(tmp), str(batch_size)],
        cwd=ROOT,
        env=_child_env(tmp),
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def stop_archive(child: Any) -> None:
    """SIGTERM, then SIGKILL after 20 s."""
    import subprocess

    if child.poll() is None:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(20)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def classified_payloads(
    texts: list[tuple[str, str, str]], n: int, *, now: datetime, offset: int = 0, layout: str = "spread"
) -> list[bytes]:
    """``n`` classified mentions as the classifier publishes them (``MentionClassified`` JSON)."""
    mentions = make_mentions(texts, n, now=now, seed=offset or 1, first=offset, layout=layout)
    return [m.model_dump_json().encode() for m in mentions]


async def _consumer_state(js: Any) -> tuple[int, int, int]:
    from veille import bus

    info = await js.consumer_info(bus.ARCHIVE_CONSUMER.stream, bus.ARCHIVE_CONSUMER.durable)
    return info.num_pending or 0, info.num_ack_pending or 0, info.ack_floor.stream_seq or 0


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds a process has used so far (Linux ``/proc``), None when unreadable."""
    import os

    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def service_drain(
    db_url: str, texts: list[Any], n: int, now: datetime, *, layout: str = "spread"
) -> tuple[float, float | None]:
    """Mentions/s the archive service commits and acks from a backlog of ``n`` in JetStream, and the
    service's CPU per mention (µs, user + system, all its threads) over the same span: on a machine shared
    with other work the rate follows the CPU share the service gets, the CPU per mention does not."""
    import nats

    from veille import bus
    from veille.natsserver import NatsServerProcess

    tmp = Path(tempfile.mkdtemp(prefix="archive-drain-"))
    server = NatsServerProcess(store_dir=tmp / "store", log_file=tmp / "nats.log")
    server.start()
    child = None
    done = False
    try:
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        await bus.ensure_topology(js)
        payloads = classified_payloads(texts, n, now=now, layout=layout)
        for start in range(0, n, 1000):
            acks = [await js.publish_async(bus.classified_subject("rss"), p) for p in payloads[start : start + 1000]]
            await asyncio.gather(*acks)
        engine = await fresh(db_url)  # migrated before: the drain times writes, not the schema
        await engine.dispose()
        child = start_archive(db_url, server.url, tmp)
        first = last = None
        while True:
            pending, unacked, floor = await _consumer_state(js)
            moment = time.perf_counter()
            if first is None and floor > 0:
                first, first_floor, first_cpu = moment, floor, cpu_seconds(child.pid)
            if pending == 0 and unacked == 0 and floor >= n:
                last, last_cpu = moment, cpu_seconds(child.pid)
                break
            if child.poll() is not None:
                raise SystemExit(f"archive_bench: the archive exited ({child.returncode}), see {tmp}/archive.log")
            await asyncio.sleep(0.05)
        await nc.close()
        assert first is not None and last is not None
        cpu = None if first_cpu is None or last_cpu is None else (last_cpu - first_cpu) * 1e6 / (n - first_floor)
        done = True
        return (n - first_floor) / max(last - first, 1e-3), cpu
    finally:
        if child is not None:
            stop_archive(child)
        server.stop()
        if done:  # a JetStream store of N mentions (36 MiB at 50,000) each round; kept with the log on a failure
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)


async def memory_run(args: argparse.Namespace) -> dict[str, Any]:
    """The archive service under a steady publish rate for ``args.memory`` seconds; its RSS over time."""
    import nats

    from veille import bus
    from veille.models import AlertRaised
    from veille.natsserver import NatsServerProcess

    texts = load_texts()
    tmp = Path(tempfile.mkdtemp(prefix="archive-memory-"))
    postgres = None
    if args.memory_db == "postgresql":
        from tests.archive.postgres import PostgresServer, postgres_unavailable

        reason = postgres_unavailable()
        if reason:
            raise SystemExit(f"archive_bench --memory-db postgresql: {reason}")
        postgres = PostgresServer()
        postgres.start()
        db_url = postgres.create_database()
    else:
        db_url = f"sqlite+aiosqlite:///{tmp}/archive.sqlite3"
    server = NatsServerProcess(store_dir=tmp / "store", log_file=tmp / "nats.log")
    server.start()
    child = None
    samples: list[tuple[float, float]] = []
    published = 0
    try:
        nc = await nats.connect(server.url, max_reconnect_attempts=-1)
        js = nc.jetstream()
        await bus.ensure_topology(js)
        child = start_archive(db_url, server.url, tmp)
        started = time.perf_counter()
        next_sample = started
        pending: set[asyncio.Task[Any]] = set()
        alerts = 0
        block = 2_000  # payloads built ahead, a block at a time (serial ids, times near now)
        queued: list[bytes] = []
        while (elapsed := time.perf_counter() - started) < args.memory:
            due = int(elapsed * args.memory_rate)
            while published < due:
                if not queued:
                    queued = classified_payloads(texts, block, now=datetime.now(UTC), offset=published)[::-1]
                task = asyncio.create_task(js.publish(bus.classified_subject("rss"), queued.pop()))
                pending.add(task)
                task.add_done_callback(pending.discard)
                published += 1
            if elapsed >= alerts * 10:
                alert = AlertRaised(
                    id=f"mem-alert-{alerts}",
                    watch="acme",
                    kind="volume_spike",
                    summary=f"volume spike {alerts}",
                    raised_at=datetime.now(UTC),
                )
                await js.publish(bus.alert_subject("acme"), alert.model_dump_json().encode())
                alerts += 1
            if time.perf_counter() >= next_sample:
                if child.poll() is not None:
                    raise SystemExit(f"archive_bench: the archive exited ({child.returncode}), see {tmp}/archive.log")
                if (mb := rss_mb(child.pid)) is not None:
                    samples.append((elapsed, mb))
                next_sample += args.sample
            await asyncio.sleep(0.01)
        await asyncio.gather(*pending)
        lag, unacked, _ = await _consumer_state(js)
        await nc.close()
    finally:
        if child is not None:
            stop_archive(child)
        server.stop()
    stored = None
    try:
        from sqlalchemy import text

        engine = make_engine(make_url(db_url), write=False)
        async with engine.connect() as conn:
            stored = (await conn.execute(text("SELECT count(*) FROM mentions"))).scalar()
        await engine.dispose()
    finally:
        if postgres is not None:
            postgres.cleanup()
    warm = [p for p in samples if p[0] >= args.memory * 0.2]
    second_half = [p for p in samples if p[0] >= args.memory / 2]
    slope = slope_mb_per_hour(second_half)
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "database": args.memory_db,
        "duration_s": args.memory,
        "rate_per_s": args.memory_rate,
        "published": published,
        "stored": stored,
        "lag_at_end": lag,
        "unacked_at_end": unacked,
        "rss_mb_start": round(samples[0][1], 1) if samples else None,
        "rss_mb_after_warmup": round(warm[0][1], 1) if warm else None,
        "rss_mb_end": round(samples[-1][1], 1) if samples else None,
        "rss_mb_max": round(max(v for _, v in samples), 1) if samples else None,
        "growth_after_warmup_mb": round(samples[-1][1] - warm[0][1], 1) if warm else None,
        "slope_second_half_mb_per_hour": round(slope, 1) if slope is not None else None,
        "samples": [(round(t, 1), round(v, 1)) for t, v in samples],
    }


def _memory_results() -> list[dict[str, Any]]:
    out = []
    for db in ("sqlite", "postgresql"):
        path = Path(str(MEMORY_OUT).format(db=db))
        if path.is_file():
            out.append(json.loads(path.read_text()))
    return out


def markdown_section(result: dict[str, Any]) -> list[str]:
    """The archive section of docs/benchmarks.md (with the last memory runs, when there are any)."""
    rows = result.get("results") or []
    if not rows:
        return []
    out = [
        "## Archive (`bench/archive_bench.py`)",
        "",
        f"Command: `{result.get('command', 'PYTHONPATH=shared:. python bench/archive_bench.py')}` ({result['when']}). "
        "Write: the archive's writer (batches of 500, one transaction each: upsert, watches, full-text index) "
        "against a raw `executemany` of the same driver into the same `mentions` table, medians of interleaved "
        "rounds. Service drain (`--service N`): a backlog of N classified mentions in JetStream drained by the "
        "archive service as a child process (decode, validation, cleaning, write, acks), committed and acked "
        "per second, and the child's CPU (user + system, all threads) per mention over the same span. Texts: the "
        "sentiment tweets, cycled. Times: "
        + (
            "`--layout live`, an hour of traffic in ingestion order, each published minutes before (2 % hours "
            "before), as a running archive receives them."
            if result.get("layout") == "live"
            else "spread at random over 90 days (`--layout spread`: a backfill's worst case for the time-keyed "
            "indexes)."
        ),
        "",
        "| database | archive write /s | raw executemany /s | ratio | service drain /s | drain / raw "
        "| service CPU µs/mention | load (1 min) start-end |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        drain = (
            f"{r['service_per_s']:,} | {r['service_ratio']} | {r.get('service_cpu_us_per_mention', '-')}"
            if "service_per_s" in r
            else "- | - | -"
        )
        load = f"{r['load_start']:.1f}-{r['load_end']:.1f}" if "load_end" in r else "-"
        out.append(
            f"| {r['database']} | {r['archive_per_s']:,} | {r['raw_executemany_per_s']:,} | {r['ratio']} | {drain} "
            f"| {load} |"
        )
    queried = [r for r in rows if "search_p95_ms" in r]
    if queried:
        out += [
            "",
            "Search: `" + QUERY + "`, sentiment negative, since 30 days, a page of 50, newest first. Volume: one "
            "watch (a third of the mentions) over 90 days in 1-day buckets, with the spike detector's baseline "
            "replayed over 5-minute buckets, and without it.",
            "",
            "| database | mentions queried | search p95 ms | volume 90 d p95 ms (baseline) | (no baseline) |",
            "|---|---:|---:|---:|---:|",
        ]
        for r in queried:
            out.append(
                f"| {r['database']} | {r['query_mentions']:,} | {r['search_p95_ms']} | {r['volume_p95_ms']} "
                f"| {r['volume_without_baseline_p95_ms']} |"
            )
    if result.get("postgresql_skipped"):
        out.append(f"\nPostgreSQL skipped: {result['postgresql_skipped']}")
    memory = _memory_results()
    if memory:
        out += [
            "",
            "Memory (`--memory SECONDS`): the archive service as a child process, classified mentions published at "
            "a steady rate (and an alert every 10 s), resident set size sampled every 5 s; slope: least squares "
            "over the second half.",
            "",
            "| database | run | rate /s | published | stored | lag at end | RSS start → after 20 % → end MiB "
            "| max MiB | slope 2nd half MiB/h |",
            "|---|---|---:|---:|---:|---:|---|---:|---:|",
        ]
        for m in memory:
            out.append(
                f"| {m['database']} | {m['duration_s'] / 60:.0f} min ({m['when']}) | {m['rate_per_s']:.0f} "
                f"| {m['published']:,} | {m['stored']:,} | {m['lag_at_end']} "
                f"| {m['rss_mb_start']} → {m['rss_mb_after_warmup']} → {m['rss_mb_end']} | {m['rss_mb_max']} "
                f"| {m['slope_second_half_mb_per_hour']} |"
            )
    return [*out, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200_000, help="mentions searched on SQLite")
    parser.add_argument("--n-postgres", type=int, default=100_000, help="mentions searched on PostgreSQL")
    parser.add_argument("--write", type=int, default=20_000, help="mentions per write-rate run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved write rounds (median)")
    parser.add_argument("--repeat", type=int, default=30, help="searches timed")
    parser.add_argument("--write-only", action="store_true", help="the write rates alone (no search load)")
    parser.add_argument("--service", type=int, default=0, help="also drain N mentions through the service")
    parser.add_argument(
        "--layout",
        choices=LAYOUTS,
        default="spread",
        help="mentions' times: spread at random over 90 days (default), or live (an hour's traffic, in ingestion "
        "order, published minutes before; results to archive_bench_live.json)",
    )
    parser.add_argument("--profile", type=Path, help="run the archive child under cProfile, stats in this folder")
    parser.add_argument("--memory", type=float, default=0, help="a memory run of SECONDS instead of the rest")
    parser.add_argument("--memory-rate", type=float, default=300, help="mentions/s published in the memory run")
    parser.add_argument("--memory-db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--sample", type=float, default=5.0, help="seconds between RSS samples (memory run)")
    args = parser.parse_args()
    if args.profile is not None:
        global PROFILE_DIR
        args.profile.mkdir(parents=True, exist_ok=True)
        PROFILE_DIR = args.profile.resolve()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so a stopped bench still stops its PostgreSQL
    if args.memory:
        memory = asyncio.run(memory_run(args))
        memory["command"] = "PYTHONPATH=shared:. python bench/archive_bench.py " + " ".join(sys.argv[1:])
        out = Path(str(MEMORY_OUT).format(db=args.memory_db))
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(memory, indent=2) + "\n")
        print(json.dumps({k: v for k, v in memory.items() if k != "samples"}, indent=2))
        return
    result = asyncio.run(main_async(args))
    result["command"] = "PYTHONPATH=shared:. python bench/archive_bench.py " + " ".join(sys.argv[1:])
    result["layout"] = args.layout
    out = OUT if args.layout == "spread" else OUT.with_name("archive_bench_live.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print("\n".join(markdown_section(result)))


if __name__ == "__main__":
    main()
