"""A large, realistic archive for benchmarks, built fast and cached (issue 15: 1,000,000 mentions on
SQLite, 10,000,000 on PostgreSQL).

:func:`ensure_archive` returns the URL of an archive of ``n`` mentions, building it the first time
and reusing it afterwards. The schema is the archive's own (its Alembic migrations run first), and
the rows are what :class:`services.archive.store.ArchiveStore` writes (same columns, same time
format, ``mention_keys`` and ``mention_watches`` filled, the FTS5 index on SQLite, the ``tsv``
column on PostgreSQL computed by ``to_tsvector(french|english|simple, unaccent(title \\n text))`` in
the server itself), so the archive's search and aggregations read it as their own. Only the path
differs: bulk writes instead of the writer's 500-row upserts (SQLite: ``executemany`` in
transactions of 100,000 rows; PostgreSQL: ``COPY`` into each month's partition table, then
``ATTACH PARTITION``, which builds its indexes in one pass).

The mentions: texts of the real tweets in ``/work/shared/data/sentiment`` (English and French, their
own sentiment labels; the build stops with an error when the data is missing), 50 watches of very
unequal size (Zipf-like: the biggest has about 14 % of the mentions), 6 sources with their sites
(news sites carry a title), stories of a few to a few hundred mentions, times over the
:data:`DAYS` days before the corpus's end with a daily cycle (night at a fifth of the afternoon) and
a few bursts per big watch. Everything is drawn from a seeded generator: the same ``n`` and
``VERSION`` give the same archive. Times drawn after the corpus's end are clipped to its last second,
so about 0.13 % of the mentions (12,800 of 10M) share that one instant, as a feed giving dates without
times would: a join that finds mentions through the ``ts`` index alone meets them all at once.

Cache: ``/var/tmp/veille-bench/archive-sqlite-<n>-v<VERSION>.sqlite3``, and for PostgreSQL the
database ``archive_<n>_v<VERSION>`` of one cluster in ``/var/tmp/veille-bench/pg`` (Debian's server,
started like ``tests/archive/postgres.py`` does, on a free loopback port, kept between runs). A
``.json`` manifest beside each says it is complete and when the corpus ends (:func:`manifest`);
without it the archive is rebuilt.

Usage (build ahead, e.g. in the background)::

    PYTHONPATH=shared:. python bench/archive_corpus.py sqlite 1000000
    PYTHONPATH=shared:. python bench/archive_corpus.py postgresql 10000000 --stop
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import csv
import json
import os
import pwd
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
for entry in (str(ROOT / "shared"), str(ROOT)):
    if entry not in sys.path:
        sys.path.insert(0, entry)

from sqlalchemy.engine import make_url  # noqa: E402

from services.archive.db import make_engine, migrate  # noqa: E402
from services.archive.store import ArchiveStore, text_search_config  # noqa: E402

__all__ = ["CACHE", "DAYS", "VERSION", "WATCHES", "ensure_archive", "manifest", "postgres_server", "stop_postgres"]

VERSION = 1
"""Bump when the generated rows change: cached archives of another version are not reused."""
CACHE = Path(os.environ.get("VEILLE_BENCH_CACHE", "/var/tmp/veille-bench"))
DATA = ROOT.parent / "shared" / "data" / "sentiment"
DAYS = 120
"""The corpus spans this many days before its end."""
N_WATCHES = 50
WATCHES = [f"watch{i:02d}" for i in range(N_WATCHES)]
"""The watches, biggest first (``watch00`` holds about 14 % of the mentions)."""
_SOURCES = [  # (source, weight, sites, titled)
    ("rss", 0.30, [f"news{i}.example" for i in range(300)], True),
    ("bluesky", 0.25, ["bsky.app"], False),
    ("mastodon", 0.15, ["mastodon.social", "piaille.fr", "mstdn.io", "fosstodon.org"], False),
    ("reddit", 0.12, ["reddit.com"], False),
    ("hackernews", 0.08, ["news.ycombinator.com"], True),
    ("youtube", 0.10, ["youtube.com"], True),
]
# relative volume by hour of day (UTC): quiet nights, busy afternoons
_HOURS = np.array([2, 1.5, 1, 1, 1, 1.5, 3, 5, 7, 8, 8.5, 9, 9, 9.5, 10, 10, 9.5, 9, 8.5, 8, 7, 6, 4.5, 3], dtype=float)
_COLUMNS = [
    "id",
    "ts",
    "source",
    "watch",
    "url",
    "title",
    "text",
    "author",
    "site",
    "lang",
    "sentiment",
    "sentiment_score",
    "story_id",
    "watches",
    "engagement",
    "published_at",
    "ingested_at",
    "classified_at",
    "archived_at",
]

Kind = Literal["sqlite", "postgresql"]


def log(message: str) -> None:
    print(f"[archive_corpus {datetime.now(UTC):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------ the mentions


def load_texts() -> list[tuple[str, str, str]]:
    """(text, lang, sentiment) of the sentiment tweets; SystemExit naming the files when they are missing."""
    files = [("en_tweets_train.csv", "en"), ("en_tweets_dev.csv", "en"), ("fr_tweets_dev.csv", "fr")]
    missing = [name for name, _ in files if not (DATA / name).is_file()]
    if missing:
        raise SystemExit(f"archive_corpus: the tweet texts are missing ({', '.join(missing)} in {DATA})")
    out = []
    for name, lang in files:
        with (DATA / name).open(encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle):
                text = row["text"].replace("\x00", "").strip()
                if text:
                    out.append((text, lang, row["label_name"]))
    return out


class Corpus:
    """``n`` mentions as column arrays, in time order (what both databases load)."""

    def __init__(self, n: int, end: datetime, seed: int = 15) -> None:
        rng = np.random.default_rng(seed)
        self.n = n
        self.end = end
        self.texts = load_texts()
        t = len(self.texts)
        end_s = int(end.timestamp())
        day0 = end_s // 86400 * 86400 - (DAYS - 1) * 86400
        # times: a day, then an hour by the daily cycle, then a second; a few bursts for big watches
        day = rng.integers(0, DAYS, n)
        hour = rng.choice(24, n, p=_HOURS / _HOURS.sum())
        ts = day0 + day * 86400 + hour * 3600 + rng.integers(0, 3600, n)
        # watches: Zipf-like sizes; 84 % of mentions match one, 11 % two, 5 % none
        weights = 1.0 / np.arange(1, N_WATCHES + 1) ** 1.1
        weights /= weights.sum()
        w1 = rng.choice(N_WATCHES, n, p=weights)
        w2 = rng.choice(N_WATCHES, n, p=weights)
        kinds = rng.random(n)
        w1 = np.where(kinds < 0.05, -1, w1)
        w2 = np.where((kinds >= 0.05) & (kinds < 0.16) & (w2 != w1), w2, -1)
        bursts = rng.random(n) < 0.01  # 1 %: moved into a 2-hour burst of its watch (3 bursts per watch)
        burst_at = day0 + rng.integers(1, DAYS, (N_WATCHES, 3)) * 86400 + rng.integers(8, 20, (N_WATCHES, 3)) * 3600
        which = rng.integers(0, 3, n)
        has = bursts & (w1 >= 0)
        ts = np.where(has, burst_at[np.maximum(w1, 0), which] + rng.integers(0, 7200, n), ts)
        ts = np.minimum(ts, end_s - 1)
        order = np.argsort(ts, kind="stable")
        self.ts = ts[order]
        self.w1 = w1[order]
        self.w2 = w2[order]
        self.text = rng.integers(0, t, n)
        source_p = np.array([s[1] for s in _SOURCES])
        self.source = rng.choice(len(_SOURCES), n, p=source_p / source_p.sum())
        self.site = rng.integers(0, 1 << 30, n)
        self.author = rng.integers(0, 200_000, n)
        self.delay = rng.integers(5, 900, n)  # published -> ingested, seconds
        self.score_noise = rng.random(n)
        # stories: a third of the mentions, a story per (watch, day, one of 40)
        self.story = np.where(rng.random(n) < 0.33, rng.integers(0, 40, n), -1)
        self.engagement = rng.integers(0, 500, n)

    def titled(self, i: int) -> bool:
        return bool(_SOURCES[int(self.source[i])][3])

    def doc_key(self, i: int) -> tuple[int, bool]:
        """The (text index, titled) pair the row's title and text depend on (its tsvector too)."""
        return int(self.text[i]), self.titled(i)

    @staticmethod
    def title_of(text: str) -> str:
        return " ".join(text.split()[:8])

    def rows(self, start: int, stop: int, *, when: str) -> Iterator[tuple[Any, ...]]:
        """Rows ``start..stop`` as tuples in :data:`_COLUMNS` order, times as ``when`` (sqlite | postgresql)."""
        suffix = ".000000" if when == "sqlite" else "+00"  # SQLAlchemy's SQLite format; PostgreSQL's input
        days: dict[int, str] = {}

        def stamp(moment: int) -> str:
            day, second = divmod(moment, 86400)
            text = days.get(day)
            if text is None:
                text = days[day] = datetime.fromtimestamp(day * 86400, UTC).strftime("%Y-%m-%d ")
            return f"{text}{_TOD[second]}{suffix}"

        columns = zip(
            range(start, stop),
            self.text[start:stop].tolist(),
            self.source[start:stop].tolist(),
            self.site[start:stop].tolist(),
            self.ts[start:stop].tolist(),
            self.delay[start:stop].tolist(),
            self.w1[start:stop].tolist(),
            self.w2[start:stop].tolist(),
            self.score_noise[start:stop].tolist(),
            self.story[start:stop].tolist(),
            self.author[start:stop].tolist(),
            self.engagement[start:stop].tolist(),
            strict=True,
        )
        for i, text_index, source_index, site_index, ts, delay, w1, w2, noise, story, author, likes in columns:
            text, lang, sentiment = self.texts[text_index]
            source, _, sites, titled = _SOURCES[source_index]
            site = sites[site_index % len(sites)]
            watches = [WATCHES[w] for w in (w1, w2) if w >= 0]
            if sentiment == "negative":
                score = -0.4 - 0.6 * noise
            elif sentiment == "positive":
                score = 0.4 + 0.6 * noise
            else:
                score = 0.3 * noise - 0.15
            key = f"{source}:{i:09d}"
            published = stamp(ts)
            yield (
                key,
                published,
                source,
                watches[0] if watches else None,
                f"https://{site}/{i:09d}",
                self.title_of(text) if titled else None,
                text,
                f"user{author}",
                site,
                lang,
                sentiment,
                round(score, 4),
                f"{watches[0] if watches else 'none'}-{ts // 86400}-{story}" if story >= 0 else None,
                "[" + ", ".join(f'"{w}"' for w in watches) + "]",
                f'{{"likes": {likes}}}',
                published,
                stamp(ts + delay),
                stamp(ts + delay + 1),
                stamp(ts + delay + 3),
            )


_TOD = [f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}" for s in range(86400)]


# ------------------------------------------------------------------------ manifests


def _manifest_path(kind: Kind, n: int) -> Path:
    return CACHE / f"archive-{kind}-{n}-v{VERSION}.json"


def manifest(kind: Kind, n: int) -> dict[str, Any] | None:
    """The cached archive's manifest (``end``: the corpus's last moment, ISO 8601; ``url``; build time), or None."""
    path = _manifest_path(kind, n)
    if not path.is_file():
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _end_of_corpus() -> datetime:
    # the start of the current hour: the corpus's "now" (searches and aggregations pass it as now)
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


# ------------------------------------------------------------------------ SQLite


def _build_sqlite(n: int, path: Path, end: datetime) -> None:
    url = f"sqlite+aiosqlite:///{path}"
    for suffix in ("", "-wal", "-shm", ".migrate.lock"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)

    async def schema() -> None:
        engine = make_engine(make_url(url))
        await migrate(engine)
        await engine.dispose()

    _run(schema())
    corpus = Corpus(n, end)
    log(f"sqlite: {n:,} mentions generated, loading")
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-400000")
    insert = f"INSERT INTO mentions ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"
    watch_insert = "INSERT INTO mention_watches (watch, ts, mention_id, sentiment) VALUES (?, ?, ?, ?)"
    step = 100_000
    started = time.monotonic()
    for start in range(0, n, step):
        rows = list(corpus.rows(start, min(n, start + step), when="sqlite"))
        watch_rows = [(w, r[1], r[0], r[10]) for r in rows for w in json.loads(r[13])]
        conn.execute("BEGIN")
        conn.executemany(insert, rows)
        conn.executemany(watch_insert, watch_rows)
        conn.execute("COMMIT")
        done = start + len(rows)
        log(f"sqlite: {done:,}/{n:,} ({done / (time.monotonic() - started):,.0f}/s)")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


# ------------------------------------------------------------------------ PostgreSQL


def postgres_server() -> Any:
    """The benchmark's PostgreSQL cluster (``CACHE/pg``), started if it is not running; reused between runs.

    Debian's server like ``tests/archive/postgres.py`` starts it (initdb once, pg_ctl on a free
    loopback port, ``fsync=off``), with ``shared_buffers=1GB`` and ``maintenance_work_mem=1GB``.
    Stop it with :func:`stop_postgres`.
    """
    from tests.archive.postgres import PostgresServer, postgres_unavailable

    reason = postgres_unavailable()
    if reason:
        raise SystemExit(f"archive_corpus: PostgreSQL cannot run here: {reason}")
    if os.geteuid() == 0:
        CACHE.mkdir(parents=True, exist_ok=True)
        entry = pwd.getpwnam("postgres")
        os.chown(CACHE, entry.pw_uid, entry.pw_gid)
    server = PostgresServer(
        CACHE / "pg",
        options="-c shared_buffers=1GB -c maintenance_work_mem=1GB -c effective_cache_size=8GB -c max_wal_size=8GB",
    )
    server.start()
    return server


def stop_postgres() -> None:
    """Stop the benchmark's PostgreSQL cluster if it runs (its files stay, for the next run)."""
    if (CACHE / "pg" / "data" / "postmaster.pid").is_file():
        postgres_server().stop()


def _csv_field(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return '"' + value.replace('"', '""') + '"'
    return str(value)


async def _build_postgres(n: int, server: Any, database: str, end: datetime) -> None:
    import asyncpg

    with contextlib.suppress(subprocess.CalledProcessError):
        server._cmd("dropdb", "-h", "127.0.0.1", "-p", str(server.port), "-U", "veille", "--if-exists", database)
    server._cmd("createdb", "-h", "127.0.0.1", "-p", str(server.port), "-U", "veille", database)
    url = server.url(database)
    engine = make_engine(make_url(url))
    await migrate(engine)
    store = ArchiveStore(engine, retention=timedelta(days=400), clock=lambda: end)
    await store.prepare()  # the coming months' partitions, as the service makes them
    await engine.dispose()
    corpus = Corpus(n, end)
    log(f"postgresql: {n:,} mentions generated, loading")
    conn = await asyncpg.connect(host="127.0.0.1", port=server.port, user="veille", database=database)
    await conn.execute("SET maintenance_work_mem = '1GB'")
    unaccent = bool(await conn.fetchval("SELECT count(*) FROM pg_extension WHERE extname = 'unaccent'"))
    # the tsvector of each distinct (title, text): computed by the server as the writer would
    keys = sorted({(int(t), bool(_SOURCES[int(s)][3])) for t, s in zip(corpus.text, corpus.source, strict=True)})
    docs = []
    for text_index, titled in keys:
        text, lang, _ = corpus.texts[text_index]
        title = Corpus.title_of(text) if titled else None
        docs.append((text_index, titled, text_search_config(lang), f"{title or ''}\n{text}"))
    await conn.execute("CREATE TEMP TABLE docs (t int, titled bool, cfg text, doc text)")
    await conn.copy_records_to_table("docs", records=docs)
    document = "unaccent(doc)" if unaccent else "doc"
    vectors = await conn.fetch(f"SELECT t, titled, to_tsvector(cfg::regconfig, {document})::text FROM docs")
    tsv = {(r[0], r[1]): _csv_field(r[2]) for r in vectors}
    log(f"postgresql: {len(tsv):,} distinct documents' vectors computed")
    months = sorted(
        {datetime.fromtimestamp(int(x), UTC).replace(day=1, hour=0, minute=0, second=0) for x in corpus.ts[::1000]}
        | {datetime.fromtimestamp(int(corpus.ts[-1]), UTC).replace(day=1, hour=0, minute=0, second=0)}
    )
    # mention_keys: dropped keys, one COPY, keys built again at the end
    await conn.execute("ALTER TABLE mention_keys DROP CONSTRAINT mention_keys_pkey")
    await conn.execute("DROP INDEX mention_keys_ts_idx")
    bounds = np.searchsorted(corpus.ts, [int(m.timestamp()) for m in months] + [1 << 62])
    started = time.monotonic()
    done = 0
    for month, lo, hi in zip(months, bounds[:-1], bounds[1:], strict=True):
        if hi <= lo:
            continue
        nxt = (month + timedelta(days=32)).replace(day=1)
        name = f"p{month:%Y_%m}"
        for parent in ("mentions", "mention_watches"):
            await conn.execute(f"DROP TABLE IF EXISTS {parent}_{name}")
            await conn.execute(f"CREATE TABLE {parent}_{name} (LIKE {parent} INCLUDING DEFAULTS)")
        chunk = 200_000
        for start in range(int(lo), int(hi), chunk):
            stop = min(int(hi), start + chunk)
            lines, keys_lines, watch_lines = [], [], []
            for i, row in zip(range(start, stop), corpus.rows(start, stop, when="postgresql"), strict=True):
                fields = ",".join(_csv_field(v) for v in row)
                lines.append(f"{fields},{tsv[corpus.doc_key(i)]}\n")
                keys_lines.append(f"{row[0]},{row[1]}\n")
                for w in (int(corpus.w1[i]), int(corpus.w2[i])):
                    if w >= 0:
                        watch_lines.append(f"{WATCHES[w]},{row[1]},{row[0]},{row[10]}\n")
            await conn.copy_to_table(
                f"mentions_{name}",
                source=_Bytes("".join(lines)),
                columns=[*_COLUMNS, "tsv"],
                format="csv",
            )
            await conn.copy_to_table("mention_keys", source=_Bytes("".join(keys_lines)), format="csv")
            await conn.copy_to_table(f"mention_watches_{name}", source=_Bytes("".join(watch_lines)), format="csv")
            done += stop - start
            log(f"postgresql: {done:,}/{n:,} copied ({done / (time.monotonic() - started):,.0f}/s)")
        for parent in ("mentions", "mention_watches"):
            exists = await conn.fetchval(
                "SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE c.relname = $1",
                f"{parent}_{name}",
            )
            if exists:
                continue
            log(f"postgresql: attaching {parent}_{name} (its indexes are built now)")
            await conn.execute(
                f"ALTER TABLE {parent} ATTACH PARTITION {parent}_{name} FOR VALUES FROM "
                f"('{month:%Y-%m-%d} 00:00:00+00') TO ('{nxt:%Y-%m-%d} 00:00:00+00')"
            )
    # COPY into tables not yet attached fired no trigger: the pre-aggregated counts (migration 0006)
    # are filled as that migration fills them
    if await conn.fetchval("SELECT to_regclass('mention_counts') IS NOT NULL"):
        log("postgresql: mention_counts")
        await conn.execute("TRUNCATE mention_counts")
        await conn.execute(
            "INSERT INTO mention_counts (watch, bucket, sentiment, n) SELECT watch, "
            "CAST(floor(extract(epoch FROM ts) / 300) AS bigint) AS b, sentiment, count(*) "
            "FROM mention_watches GROUP BY watch, b, sentiment"
        )
    log("postgresql: mention_keys' keys")
    await conn.execute("ALTER TABLE mention_keys ADD CONSTRAINT mention_keys_pkey PRIMARY KEY (id)")
    await conn.execute("CREATE INDEX mention_keys_ts_idx ON mention_keys (ts)")
    log("postgresql: VACUUM ANALYZE")
    await conn.execute("VACUUM ANALYZE")
    await conn.close()
    # the months a fresh ArchiveStore expects (prepare() made the coming ones before the load)
    engine = make_engine(make_url(url))
    store = ArchiveStore(engine, retention=timedelta(days=400), clock=lambda: end)
    await store.prepare()
    await engine.dispose()


class _Bytes:
    """An async iterator of one CSV payload in 1 MiB pieces (asyncpg's copy_to_table source)."""

    def __init__(self, text: str) -> None:
        self.data = text.encode()
        self.pos = 0

    def __aiter__(self) -> _Bytes:
        return self

    async def __anext__(self) -> bytes:
        if self.pos >= len(self.data):
            raise StopAsyncIteration
        piece = self.data[self.pos : self.pos + (1 << 20)]
        self.pos += len(piece)
        return piece


# ------------------------------------------------------------------------ the entry point


def _run(coroutine: Any) -> Any:
    """Run ``coroutine`` to its end, also when called from a running event loop (in a thread of its own)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


async def _upgrade(url: str) -> None:
    engine = make_engine(make_url(url))
    try:
        await migrate(engine)
    finally:
        await engine.dispose()


def ensure_archive(kind: Kind, n: int, *, rebuild: bool = False) -> str:
    """The SQLAlchemy URL of a cached archive of ``n`` mentions on ``kind``, built first when needed.

        STABLE INTERFACE: other benchmarks import this (``bench/console_bench`` among them); keep the
        signature ``ensure_archive(kind: 'sqlite' | 'postgresql', n: int, ...) -> url`` and add only
        keyword arguments with defaults. It may be called from a running event loop (it then works
    in a thread of its own). The corpus's "now" is ``manifest(kind, n)["end"]``: pass it
        as ``now`` to searches and aggregations. For PostgreSQL the cached cluster is started if needed
        and left running: call :func:`stop_postgres` when done. A cached archive is migrated to the newest
    revision first (what the service does at start), so it follows the schema. Raises SystemExit when the tweet texts
        (``../shared/data/sentiment``) or PostgreSQL are missing.
    """
    if kind not in ("sqlite", "postgresql"):
        raise ValueError(f"kind {kind!r} is not sqlite or postgresql")
    if n < 1:
        raise ValueError("n must be at least 1")
    CACHE.mkdir(parents=True, exist_ok=True)
    known = manifest(kind, n)
    if kind == "sqlite":
        path = CACHE / f"archive-sqlite-{n}-v{VERSION}.sqlite3"
        url = f"sqlite+aiosqlite:///{path}"
        if known and path.is_file() and not rebuild:
            _run(_upgrade(url))  # a newer migration since the build: as the service would at start
            return url
        _manifest_path(kind, n).unlink(missing_ok=True)
        end = _end_of_corpus()
        started = time.monotonic()
        _build_sqlite(n, path, end)
    else:
        server = postgres_server()
        database = f"archive_{n}_v{VERSION}"
        url = server.url(database)
        if known and not rebuild:
            present = server.psql("postgres", f"SELECT count(*) FROM pg_database WHERE datname = '{database}'")
            if present == "1":
                _run(_upgrade(str(url)))
                return str(url)
        _manifest_path(kind, n).unlink(missing_ok=True)
        end = _end_of_corpus()
        started = time.monotonic()
        _run(_build_postgres(n, server, database, end))
    seconds = round(time.monotonic() - started, 1)
    _manifest_path(kind, n).write_text(
        json.dumps(
            {"kind": kind, "n": n, "version": VERSION, "end": end.isoformat(), "build_seconds": seconds}, indent=2
        )
        + "\n"
    )
    log(f"{kind}: {n:,} mentions built in {seconds:,} s")
    return str(url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", nargs="?", choices=["sqlite", "postgresql"])
    parser.add_argument("n", nargs="?", type=int)
    parser.add_argument("--rebuild", action="store_true", help="build again even when cached")
    parser.add_argument("--stop", action="store_true", help="stop the PostgreSQL cluster afterwards")
    args = parser.parse_args()
    if args.kind is None or args.n is None:
        print("archive_corpus: nothing to build (give a kind and a size; bench/archive_scale_bench.py builds its own)")
        return
    try:
        print(ensure_archive(args.kind, args.n, rebuild=args.rebuild))
    finally:
        if args.stop and args.kind == "postgresql":
            stop_postgres()


if __name__ == "__main__":
    main()
