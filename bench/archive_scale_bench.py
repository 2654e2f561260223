"""Search and aggregation latency over a large archive (issue 15): 1,000,000 mentions on SQLite,
10,000,000 on PostgreSQL.

The archives come from :mod:`bench.archive_corpus` (real tweets, 50 watches, 120 days, built once and
cached under /var/tmp/veille-bench). Against each, with the archive's own functions
(``services.archive.search.search``, ``services.archive.aggregate``), timed in this process:

- **search**: three-term queries (``AND`` of three words, three queries of different selectivity in
  turn) with the filters watch, time range (last 30 days), sentiment (negative) and language (en),
  a page of 50, sorted by time and by relevance, the first page and the page after its cursor;
- **volume**: one watch (the biggest, ``watch00``, about 14 % of the mentions) over 90 days in 1-day
  buckets with the spike detector's baseline as the API returns it: with nothing kept anywhere
  (``volume_baselines`` emptied), the first call of this process (the replay kept in the database)
  and the calls after it; and without the baseline;
- **top**: stories, sources, sites and terms of that watch over 90 days (3 calls each: not a goal).

Each figure is p50/p95 over ``--repeat`` calls (nearest rank), with the load average beside it
(the machine is shared). Goals: search p95 < 200 ms, volume over 90 days < 300 ms. Results go to
``bench/results/archive_scale.json``; the markdown rows are printed.

Usage::

    PYTHONPATH=shared:. python bench/archive_scale_bench.py [--sqlite 1000000] [--postgresql 10000000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for entry in (str(ROOT / "bench"), str(ROOT / "shared"), str(ROOT)):
    if entry not in sys.path:
        sys.path.insert(0, entry)

from archive_corpus import ensure_archive, manifest, stop_postgres  # noqa: E402
from sqlalchemy import delete  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncEngine  # noqa: E402

from services.archive import aggregate  # noqa: E402
from services.archive.db import make_engine  # noqa: E402
from services.archive.schema import volume_baselines  # noqa: E402
from services.archive.search import SearchFilters, Sort, search  # noqa: E402

OUT = ROOT / "bench" / "results" / "archive_scale.json"
QUERIES = [
    "tomorrow AND going AND night",
    "going AND see AND tomorrow",
    "tomorrow AND day AND work",
]
"""Three-term queries, timed in turn: 92, 164 and 49 of the 52,000 tweets match them (0.1-0.3 %)."""
WATCH = "watch00"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[max(0, round(q * len(ordered)) - 1)], 1)


def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


async def timed(repeat: int, call: Callable[[int], Awaitable[Any]]) -> tuple[dict[str, Any], Any]:
    times, last = [], None
    for i in range(repeat):
        started = time.perf_counter()
        last = await call(i)
        times.append((time.perf_counter() - started) * 1000)
    return {"p50_ms": pct(times, 0.5), "p95_ms": pct(times, 0.95), "n": repeat, "load": load()}, last


async def bench_one(kind: str, n: int, repeat: int, tops: bool = True) -> dict[str, Any]:
    built = time.monotonic()
    url = ensure_archive(kind, n)  # type: ignore[arg-type]
    info = manifest(kind, n)  # type: ignore[arg-type]
    assert info is not None
    now = datetime.fromisoformat(info["end"])
    out: dict[str, Any] = {"database": kind, "mentions": n, "build_seconds": info.get("build_seconds")}
    out["ensure_seconds"] = round(time.monotonic() - built, 1)
    engine: AsyncEngine = make_engine(make_url(url), write=False)
    filters = SearchFilters(watch=WATCH, since=now - timedelta(days=30), until=now, sentiment=["negative"], lang=["en"])
    try:
        for q in QUERIES:  # warm the caches once (a dashboard's first query is not what is measured)
            await search(engine, q, filters, limit=50, now=now)
        rows: dict[str, Any] = {}
        sorts: list[Sort] = ["time", "relevance"]
        for sort in sorts:

            async def first(i: int, sort: Sort = sort) -> Any:
                return await search(engine, QUERIES[i % len(QUERIES)], filters, limit=50, now=now, sort=sort)

            stats, page = await timed(repeat, first)
            stats["hits_last_page"] = len(page.hits)
            rows[f"search_{sort}_page1"] = stats
            cursors = [(await search(engine, q, filters, limit=50, now=now, sort=sort)).next_cursor for q in QUERIES]

            async def second(i: int, sort: Sort = sort, cursors: list[Any] = cursors) -> Any:
                k = [j for j, c in enumerate(cursors) if c][i % sum(1 for c in cursors if c)]
                return await search(engine, QUERIES[k], filters, limit=50, now=now, sort=sort, cursor=cursors[k])

            if any(cursors):
                stats, page = await timed(repeat, second)
                stats["hits_last_page"] = len(page.hits)
            else:  # no query had more than a page of hits
                stats = {"p50_ms": "n/a", "p95_ms": "n/a", "n": 0, "load": load()}
            rows[f"search_{sort}_page2"] = stats
            print(f"{kind} {n:,}: search {sort}: {rows[f'search_{sort}_page1']} / {stats}", flush=True)
        since = now - timedelta(days=90)

        async def vol(_i: int, baseline: bool = True) -> Any:
            return await aggregate.volume(
                engine, WATCH, since, now, bucket=timedelta(days=1), baseline=baseline, now=now
            )

        # nothing kept anywhere (an archive whose baselines were never asked for): the whole replay
        async with engine.begin() as conn:
            await conn.execute(delete(volume_baselines))
        aggregate.clear_replay_cache()
        stats, series = await timed(1, vol)
        rows["volume_baseline_cold"] = stats
        # a new process (nothing kept in memory): resumed from the replay volume_baselines keeps
        aggregate.clear_replay_cache()
        stats, series = await timed(1, vol)
        rows["volume_baseline_first"] = stats
        stats, series = await timed(max(5, repeat // 3), vol)
        rows["volume_baseline"] = stats
        rows["volume_mentions"] = sum(b.total for b in series.buckets)
        stats, _ = await timed(max(5, repeat // 3), lambda i: vol(i, baseline=False))
        rows["volume_no_baseline"] = stats
        print(
            f"{kind} {n:,}: volume {rows['volume_baseline_cold']} {rows['volume_baseline_first']} "
            f"{rows['volume_baseline']} "
            f"{rows['volume_no_baseline']}",
            flush=True,
        )
        for dimension in aggregate.DIMENSIONS if tops else ():

            async def top(_i: int, d: aggregate.Dimension = dimension) -> Any:
                return await aggregate.top(engine, d, since, now, watch=WATCH, now=now)

            stats, _ = await timed(3, top)
            rows[f"top_{dimension}"] = stats
        if tops:
            print(f"{kind} {n:,}: top {[rows[f'top_{d}'] for d in aggregate.DIMENSIONS]}", flush=True)
    finally:
        await engine.dispose()
    out.update(rows)
    return out


def markdown(result: dict[str, Any]) -> list[str]:
    """The table of the results (one row per database)."""
    lines = [
        "| database | mentions | search by time p50/p95 (page 1; cursor page) | by relevance p50/p95 "
        "(page 1; cursor page) | volume 90 d + baseline p50/p95 (first call in a new process; nothing kept) "
        "| volume, no baseline p50/p95 "
        "| top p95 (stories/sources/sites/terms) | load (1/5/15 min) | run |",
        "|---|---:|---|---|---|---|---|---|---|",
    ]
    for r in result["results"]:

        def s(key: str, r: dict[str, Any] = r) -> str:
            return f"{r[key]['p50_ms']}/{r[key]['p95_ms']}"

        tops = "/".join(str(r.get(f"top_{d}", {}).get("p95_ms", "–")) for d in aggregate.DIMENSIONS)
        lines.append(
            f"| {r['database']} | {r['mentions']:,} | {s('search_time_page1')}; {s('search_time_page2')} "
            f"| {s('search_relevance_page1')}; {s('search_relevance_page2')} "
            f"| {s('volume_baseline')} ({r['volume_baseline_first']['p95_ms']}; "
            f"{r.get('volume_baseline_cold', {}).get('p95_ms', '–')}) "
            f"| {s('volume_no_baseline')} | {tops} "
            f"| {r['search_time_page1']['load']} … {r['volume_no_baseline']['load']} | {r.get('when', '')[:16]} |"
        )
    return lines


def markdown_section(result: dict[str, Any]) -> list[str]:
    """The section of docs/benchmarks.md (heading, conditions, table), for bench/run_all.py."""
    if not result.get("results"):
        return []
    return [
        "## Archive search and aggregation at scale (`bench/archive_scale_bench.py`)",
        "",
        "Archives built by `bench/archive_corpus.py` (real tweets, 50 watches, 120 days, daily cycle; cached in "
        "/var/tmp/veille-bench). Search: three-term `AND` queries in turn (`" + "`, `".join(QUERIES) + "`), "
        "filters watch `watch00` (the biggest, ~14 % of the mentions), last 30 days, negative, `en`, a page "
        "of 50. Volume: `watch00` over 90 days in 1-day buckets; with the baseline, the calls resume the "
        "detector's replay kept in the process; the first call of a new process resumes the one kept in the "
        "database (`volume_baselines`); with nothing kept anywhere, the whole replay (28,000 5-minute "
        "buckets) runs once and is kept. Times in ms, in-process, "
        "while other work loaded the 2-core machine (load column).",
        "",
        *markdown(result),
        "",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sqlite", type=int, default=1_000_000, help="mentions on SQLite (0: skip)")
    parser.add_argument("--postgresql", type=int, default=10_000_000, help="mentions on PostgreSQL (0: skip)")
    parser.add_argument("--repeat", type=int, default=30, help="calls timed per search figure")
    parser.add_argument("--no-top", action="store_true", help="skip the top lists (slow, not a goal)")
    args = parser.parse_args()
    result: dict[str, Any] = {
        "when": datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": "PYTHONPATH=shared:. python bench/archive_scale_bench.py " + " ".join(sys.argv[1:]),
        "results": [],
    }
    try:
        if args.sqlite:
            result["results"].append(asyncio.run(bench_one("sqlite", args.sqlite, args.repeat, not args.no_top)))
        if args.postgresql:
            result["results"].append(
                asyncio.run(bench_one("postgresql", args.postgresql, args.repeat, not args.no_top))
            )
    finally:
        if args.postgresql:
            stop_postgres()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    if OUT.exists():  # a database skipped (0) this time keeps its last figures, marked by their own run
        ran = {r["database"] for r in result["results"]}
        before = json.loads(OUT.read_text())
        for earlier in before.get("results", []):
            if earlier["database"] not in ran:
                earlier.setdefault("when", before.get("when"))
                earlier.setdefault("command", before.get("command"))
                result["results"].append(earlier)
    for r in result["results"]:
        r.setdefault("when", result["when"])
        r.setdefault("command", result["command"])
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print("\n".join(markdown_section(result)))


if __name__ == "__main__":
    main()
