"""Console benchmark (issue 16, "Measured"): page loads and the live page over a large archive.

What runs, all as real processes on loopback: a nats-server (JetStream), the console
(``python -m services.console``, as ``veille run console`` starts it) on an archive of ``--n``
mentions, a logged-in HTTP client and Debian's chromium under Playwright.

1. **Archive**: ``bench/archive_corpus.py``'s ``ensure_archive(kind, n)`` (bulk-built from the
   sentiment tweets in /work/shared/data, cached under /var/tmp/veille-bench); ``--alerts`` alerts
   across its busiest watches are added with the archive's own writer (ids fixed: a repeat is
   ignored), and an account with ``veille users add``.
2. **Server-side page loads**: each page fetched ``--requests`` times with aiohttp and the session
   cookie, pages interleaved round by round (time until the whole body is read): the watch overview
   for 24 h / 7 d / 30 d, alerts, an alert, a three-term search, its CSV export, silences, live; and
   two floors measured in the same rounds: a static file and the login page (no session, no database).
3. **Browser page loads**: the same pages (but the CSV) in chromium, ``--browser-loads`` times each,
   the navigation's ``loadEventEnd`` (Navigation Timing, from the start of the navigation).
4. **Live page**: chromium on ``/live/<watch>``; ``--rate`` classified mentions/s for ``--duration``
   seconds published with JetStream to ``veille.mentions.classified.<source>`` (the classifier's
   subject, the one the console subscribes to); a MutationObserver records when each mention's row
   enters the page (``performance.timeOrigin + performance.now()``, the same wall clock as the
   publisher's ``time.time()``). Lag p50/p95/p99/max, how many appeared, the share within 2 s (the
   issue's goal), the lag in the first and the last 10 s, and the CPU each process used meanwhile.

The load average is recorded beside each phase (the machine is shared). Stops with a message when
/work/shared/data is missing (no toy fallback). Writes ``bench/results/console_bench.json``;
``--doc`` also replaces the "Console" section of docs/benchmarks.md (``make bench`` writes it
through ``bench/run_all.py``).

Usage::

    PYTHONPATH=shared:. python bench/console_bench.py [--n 1000000] [--requests 50] [--duration 60] [--doc]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
from sqlalchemy import text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "shared"), str(ROOT), str(ROOT / "bench")]

from services.archive.db import make_engine, migrate  # noqa: E402
from services.archive.store import ArchiveStore  # noqa: E402
from veille import bus  # noqa: E402
from veille.models import AlertRaised, MentionClassified  # noqa: E402
from veille.natsserver import NatsServerProcess, die_with_parent, free_port  # noqa: E402

DATA = Path("/work/shared/data/sentiment")
OUT = ROOT / "bench" / "results" / "console_bench.json"
DOC = ROOT / "docs" / "benchmarks.md"
CHROMIUM = "/usr/bin/chromium"
USER, PASSWORD = "bench-viewer", "bench console password"
QUERY = "tomorrow AND going AND night"  # archive_bench's three-term query: words in 1-3% of the tweets
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
SOURCES = ["rss", "bluesky", "mastodon", "hackernews", "reddit"]
SECTION = "## Console (`bench/console_bench.py`)"

# The live page's probe: when each mention's row enters #live, on the page's wall clock.
OBSERVER = """
window.__seen = {};
document.addEventListener("DOMContentLoaded", () => {
  const list = document.getElementById("live");
  if (!list) { return; }
  new MutationObserver((records) => {
    const t = performance.timeOrigin + performance.now();
    for (const r of records) {
      for (const n of r.addedNodes) {
        if (n.dataset && n.dataset.id && !(n.dataset.id in window.__seen)) { window.__seen[n.dataset.id] = t; }
      }
    }
  }).observe(list, { childList: true });
});
"""


def loadavg() -> list[float]:
    """The 1, 5 and 15-minute load averages."""
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def pct(values: list[float], q: float) -> float | None:
    """The ``q`` quantile (0-1) by nearest rank; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))], 1)


def summary(values: list[float]) -> dict[str, Any]:
    return {"n": len(values), "p50": pct(values, 0.5), "p95": pct(values, 0.95), "max": pct(values, 1.0)}


def check_data() -> None:
    """Stop loudly when the shared tweets the archive is built from are missing."""
    missing = [n for n in ("en_tweets_train.csv", "en_tweets_dev.csv", "fr_tweets_dev.csv") if not (DATA / n).is_file()]
    if missing:
        raise SystemExit(f"console_bench: the tweet texts are missing ({', '.join(missing)} in {DATA}); no fallback")


# ------------------------------------------------------------------------------------------ archive


def archive_url(n: int) -> tuple[str, datetime]:
    """The SQLite archive of ``n`` mentions from bench/archive_corpus.py (built once, cached), and its end."""
    from archive_corpus import ensure_archive, manifest  # bench/ is on sys.path

    url = str(ensure_archive("sqlite", n))
    known = manifest("sqlite", n) or {}
    return url, datetime.fromisoformat(known["end"]) if known.get("end") else datetime.now(UTC)


async def prepare_archive(url: str, alerts: int, end: datetime) -> dict[str, Any]:
    """The archive's watches (busiest in the 30 days to ``end`` first) and size; ``alerts`` alerts added
    across the ten busiest, raised over those 30 days (so the overview shows them)."""
    engine = make_engine(make_url(url))
    try:
        await migrate(engine)
        async with engine.connect() as conn:
            total = (await conn.execute(text("SELECT count(*) FROM mentions"))).scalar_one()
            rows = (
                await conn.execute(
                    text(
                        "SELECT watch, count(*) FROM mention_watches WHERE ts >= :since "
                        "GROUP BY watch ORDER BY 2 DESC, 1"
                    ),
                    {"since": end - timedelta(days=30)},
                )
            ).all()
        watches = [(str(w), int(c)) for w, c in rows if re.fullmatch(r"[a-z0-9][a-z0-9_-]*", str(w))]
        if not watches:
            raise SystemExit(f"console_bench: the archive at {url} has no mention in a watch in the last 30 days")
        batch = []
        for i in range(alerts):
            watch = watches[i % min(10, len(watches))][0]
            raised = end - timedelta(minutes=(i * 30 * 24 * 60) // max(alerts, 1))
            batch.append(
                AlertRaised.model_validate(
                    {
                        "id": f"console-bench-{i}",
                        "watch": watch,
                        "kind": "volume_spike",
                        "severity": "critical" if i % 3 == 0 else "warning",
                        "summary": f"{watch}: {40 + i % 50} mentions in 5 min, about 6 expected",
                        "observed": 40 + i % 50,
                        "expected": 6.2,
                        "negative_share": 0.6,
                        "mention_count": 40 + i % 50,
                        "top_terms": ["recall", "kettle", "fire"],
                        "top_sources": ["rss", "bluesky"],
                        "samples": [
                            {
                                "id": f"rss:bench-{i}-{k}",
                                "source": "rss",
                                "url": f"https://news.example/{i}/{k}",
                                "title": f"Sample {k} of alert {i}",
                                "text": "A sample mention of the spike",
                                "sentiment": "negative",
                            }
                            for k in range(5)
                        ],
                        "started_at": raised - timedelta(minutes=5),
                        "raised_at": raised,
                    }
                )
            )
        await ArchiveStore(engine, retention=timedelta(days=400)).write_alerts(batch)
    finally:
        await engine.dispose()
    return {"mentions": int(total), "watches": watches}


def add_user(url: str) -> None:
    """``veille users add`` the benchmark's viewer account (the real command, in a child process)."""
    env = {**os.environ, "VEILLE_CONSOLE_PASSWORD": PASSWORD, "PYTHONPATH": f"{ROOT / 'shared'}:{ROOT}"}
    done = subprocess.run(
        [sys.executable, "-m", "veille_cli", "users", "add", USER, "--role", "viewer", "--database-url", url],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"console_bench: veille users add failed: {done.stderr.strip() or done.stdout.strip()}")


# ------------------------------------------------------------------------------------------ processes


def descendants(root: int) -> dict[int, str]:
    """Every process under ``root`` (pid -> command name)."""
    parents: dict[int, int] = {}
    names: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        pid = int(entry.name)
        names[pid] = stat[stat.index("(") + 1 : stat.rindex(")")]
        parents[pid] = int(stat[stat.rindex(")") + 2 :].split()[1])
    out = {}
    for pid in names:
        p = pid
        while p > 1:
            p = parents.get(p, 0)
            if p == root:
                out[pid] = names[pid]
                break
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process (0 when it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_by_group(labels: dict[int, str]) -> dict[str, float]:
    """CPU seconds per group of processes ({pid: group})."""
    out: dict[str, float] = {}
    for pid, group in labels.items():
        out[group] = out.get(group, 0.0) + cpu_seconds(pid)
    return out


def group_of(name: str, pid: int, console_pid: int) -> str:
    """The group a process's CPU is counted in."""
    if pid == console_pid:
        return "console"
    if name.startswith("nats-server"):
        return "nats-server"
    if "chrom" in name:
        return "chromium"
    if name in ("node", "playwright"):
        return "playwright driver"
    return "other"


class Console:
    """The console as a child process (``python -m services.console``) with its own health port."""

    def __init__(self, work: Path, nats_url: str, url: str, watches: list[str]) -> None:
        self.port, self.health_port = free_port(), free_port()
        config = work / "veille.yaml"
        lines = ["archive:", f"  database_url: {json.dumps(url)}", "watches:"]
        lines += [f"  - name: {w}\n    query: {json.dumps(w)}" for w in watches]
        config.write_text("\n".join(lines) + "\n", encoding="utf-8")
        self.env = {
            **os.environ,
            "PYTHONPATH": f"{ROOT / 'shared'}:{ROOT}",
            "VEILLE_NATS_URL": nats_url,
            "VEILLE_CONFIG": str(config),
            "VEILLE_DATA_DIR": str(work / "data"),
            "VEILLE_CONSOLE_HOST": "127.0.0.1",
            "VEILLE_CONSOLE_PORT": str(self.port),
            "VEILLE_HTTP_PORT": str(self.health_port),
            "VEILLE_LOG_LEVEL": "warning",
        }
        self.log = work / "console.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.base = f"http://127.0.0.1:{self.port}"

    async def start(self, timeout: float = 120.0) -> None:
        (Path(self.env["VEILLE_DATA_DIR"])).mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(  # noqa: ASYNC220 - started once, before any measurement
                [sys.executable, "-m", "services.console"],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise SystemExit(f"console_bench: the console exited ({self.log}):\n{self.log.read_text()[-2000:]}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(f"http://127.0.0.1:{self.health_port}/readyz") as r:
                        if r.status == 200:
                            return
                await asyncio.sleep(0.2)
        raise SystemExit(f"console_bench: the console was not ready within {timeout:.0f} s ({self.log})")

    async def metric(self, name: str) -> float:
        """One of the console's metrics (summed over its labels)."""
        async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{self.health_port}/metrics") as r:
            body = await r.text()
        return sum(float(line.rsplit(" ", 1)[1]) for line in body.splitlines() if line.startswith(name))

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)


# ------------------------------------------------------------------------------------------ pages


def pages(watch: str, alert_id: str, end: datetime | None) -> dict[str, str]:
    """The pages measured (name -> path). The overview's 24 h / 7 d / 30 d buttons look back from now: on a
    corpus that ended earlier (``end``, cached), the same spans ending at its end (the custom range)."""
    w = quote(watch, safe="")

    def span(days: int, name: str) -> str:
        if end is None:
            return f"/watches/{w}?range={name}"
        since = (end - timedelta(days=days)).strftime("%Y-%m-%dT%H:%M")
        return f"/watches/{w}?range=custom&since={since}&until={end.strftime('%Y-%m-%dT%H:%M')}"

    # the console keeps an overview's result 15 s for the same (watch, range): this one moves the range's
    # end back a minute at every load ({k}: the load's number), so each load is computed afresh
    anchor = end or datetime.now(UTC).replace(second=0, microsecond=0)
    uncached = (
        f"/watches/{w}?range=custom&since={{since{anchor.strftime('%Y-%m-%dT%H:%M')}-30d-{{k}}m}}"
        f"&until={{until{anchor.strftime('%Y-%m-%dT%H:%M')}-{{k}}m}}"
    )
    return {
        "overview 24 h": span(1, "24h"),
        "overview 7 d": span(7, "7d"),
        "overview 30 d": span(30, "30d"),
        "overview 30 d, not cached": uncached,
        "alerts": "/alerts",
        "alert detail": f"/alerts/{alert_id}",
        "search (3 terms)": f"/search?q={quote(QUERY)}",
        "search CSV export": f"/search?q={quote(QUERY)}&format=csv",
        "silences": "/silences",
        "live": f"/live/{w}",
    }


FLOORS = {"floor: static file": "/static/console.css", "floor: login page (no session)": "/login"}
MOVED = re.compile(r"\{(since|until)([0-9T:-]{16})(-30d)?-\{k\}m\}")


def moved(path: str, k: int) -> str:
    """``path`` for load number ``k``: each ``{sinceYYYY-MM-DDTHH:MM[-30d]-{k}m}`` / ``{until...}`` placeholder
    becomes that time, 30 days earlier when asked, minus ``k`` minutes."""

    def one(found: re.Match[str]) -> str:
        moment = datetime.strptime(found.group(2), "%Y-%m-%dT%H:%M") - timedelta(minutes=k)
        if found.group(3):
            moment -= timedelta(days=30)
        return moment.strftime("%Y-%m-%dT%H:%M")

    return MOVED.sub(one, path)


async def login(session: aiohttp.ClientSession, base: str) -> None:
    async with session.get(f"{base}/login") as r:
        found = CSRF.search(await r.text())
    if not found:
        raise SystemExit("console_bench: no CSRF token on the login page")
    form = {"name": USER, "password": PASSWORD, "next": "/alerts", "csrf": found.group(1)}
    async with session.post(f"{base}/login", data=form, allow_redirects=False) as r:
        if r.status not in (302, 303):
            raise SystemExit(f"console_bench: logging in as {USER} answered {r.status}")


async def http_loads(base: str, targets: dict[str, str], requests: int, cap_s: float) -> dict[str, Any]:
    """Each page ``requests`` times, interleaved round by round, with the session cookie (ms to the whole body).

    A page that has used ``cap_s`` seconds in all stops being fetched (its ``n`` says how many were)."""
    times: dict[str, list[float]] = {name: [] for name in targets}
    sizes: dict[str, int] = {}
    first: dict[str, float] = {}
    spent = dict.fromkeys(targets, 0.0)
    load_before = loadavg()
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        await login(session, base)
        anonymous = aiohttp.ClientSession()
        try:
            for name, path in targets.items():  # one warm-up each; also checks every page answers 200
                client = anonymous if name.startswith("floor") else session
                started = time.perf_counter()
                async with client.get(base + moved(path, 0), allow_redirects=False) as r:
                    body = await r.read()
                    if r.status != 200:
                        raise SystemExit(f"console_bench: {path} answered {r.status}: {body[:300]!r}")
                    sizes[name] = len(body)
                first[name] = round((time.perf_counter() - started) * 1000, 1)
            for k in range(requests):
                for name, path in targets.items():
                    if spent[name] > cap_s:
                        continue
                    client = anonymous if name.startswith("floor") else session
                    started = time.perf_counter()
                    async with client.get(base + moved(path, k + 1), allow_redirects=False) as r:
                        await r.read()
                    elapsed = time.perf_counter() - started
                    spent[name] += elapsed
                    times[name].append(elapsed * 1000)
        finally:
            await anonymous.close()
    return {
        "pages": {
            name: {**summary(v), "first": first[name], "path": targets[name], "bytes": sizes[name]}
            for name, v in times.items()
        },
        "load_before": load_before,
        "load_after": loadavg(),
    }


async def browser_loads(chromium: Any, base: str, targets: dict[str, str], loads: int, cap_s: float) -> dict[str, Any]:
    """Each page ``loads`` times in chromium, interleaved: ms from navigation start to the load event's end
    (a page stops being loaded once its loads have taken ``cap_s`` seconds in all)."""
    context = await chromium.new_context(locale="en-GB")
    page = await context.new_page()
    times: dict[str, list[float]] = {name: [] for name in targets}
    load_before = loadavg()
    try:
        await page.goto(f"{base}/login")
        await page.fill("input[name=name]", USER)
        await page.fill("input[name=password]", PASSWORD)
        await page.click("button[type=submit]")
        await page.wait_for_url(f"{base}/alerts")
        for _ in range(loads):
            for name, path in targets.items():
                if sum(times[name]) > cap_s * 1000:
                    continue
                await page.goto(base + path, wait_until="load")
                if page.url.split("?")[0].endswith("/login"):
                    raise SystemExit(f"console_bench: the browser was sent to the login page from {path}")
                end = await page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd")
                times[name].append(float(end))
    finally:
        await context.close()
    return {
        "pages": {name: {**summary(v), "path": targets[name]} for name, v in times.items()},
        "load_before": load_before,
        "load_after": loadavg(),
    }


async def overview_breakdown(url: str, watch: str, end: datetime, days: int, repeat: int = 3) -> dict[str, Any]:
    """Where the overview's time goes: the archive's calls it makes (services/archive/aggregate.py), timed
    alone in this process over the same span (median of ``repeat``, ms)."""
    from services.archive.aggregate import DIMENSIONS, top, volume
    from services.classifier.surges import detector_settings
    from veille.config import Watch

    engine = make_engine(make_url(url), write=False)
    settings = detector_settings(Watch(name=watch, query=watch))
    since = end - timedelta(days=days)
    parts: dict[str, list[float]] = {}
    try:
        for _ in range(repeat):
            calls: list[tuple[str, Any]] = [
                ("volume with the detector's baseline", volume(engine, watch, since, end, settings=settings)),
                ("volume alone", volume(engine, watch, since, end, settings=settings, baseline=False)),
            ]
            calls += [(f"top {d}", top(engine, d, since, end, watch=watch, limit=10)) for d in DIMENSIONS]
            for name, call in calls:
                started = time.perf_counter()
                await call
                parts.setdefault(name, []).append((time.perf_counter() - started) * 1000)
    finally:
        await engine.dispose()
    return {"days": days, "ms": {name: round(statistics.median(v), 1) for name, v in parts.items()}}


# ------------------------------------------------------------------------------------------ live


def live_mentions(watch: str, n: int, run: str) -> list[tuple[str, str, bytes]]:
    """``n`` classified mentions of ``watch`` as the classifier publishes them: (id, subject, JSON)."""
    import csv

    texts = []
    with (DATA / "en_tweets_dev.csv").open(encoding="utf-8", newline="") as handle:
        texts = [(row["text"], row["label_name"]) for row in csv.DictReader(handle)]
    out = []
    for i in range(n):
        body, sentiment = texts[i % len(texts)]
        source = SOURCES[i % len(SOURCES)]
        mid = f"{source}:live-{run}-{i}"
        now = datetime.now(UTC).isoformat()
        classified = MentionClassified.model_validate(
            {
                "mention": {
                    "id": mid,
                    "source": source,
                    "url": f"https://site{i % 50}.example/{run}/{i}",
                    "title": body[:80],
                    "text": body,
                    "site": f"site{i % 50}.example",
                    "lang": "en",
                    "ingested_at": now,
                    "published_at": now,
                },
                "lang": "en",
                "sentiment": sentiment,
                "sentiment_score": {"negative": -0.6, "neutral": 0.0, "positive": 0.6}[sentiment],
                "watches": [watch],
                "story_id": f"story-{run}-{i // 4}",
            }
        )
        out.append((mid, bus.classified_subject(source), classified.model_dump_json().encode()))
    return out


async def live(
    chromium: Any, console: Console, nats_url: str, watch: str, rate: float, duration: float, labels: dict[int, str]
) -> dict[str, Any]:
    """Publish ``rate`` mentions/s for ``duration`` s with the live page open; lag to each row in the DOM."""
    import nats

    total = int(rate * duration)
    run = str(int(time.time()))
    batch = live_mentions(watch, total, run)
    context = await chromium.new_context(locale="en-GB")
    await context.add_init_script(OBSERVER)
    page = await context.new_page()
    nc = await nats.connect(nats_url)
    published: dict[str, float] = {}
    try:
        js = nc.jetstream()
        await page.goto(f"{console.base}/login")
        await page.fill("input[name=name]", USER)
        await page.fill("input[name=password]", PASSWORD)
        await page.click("button[type=submit]")
        await page.wait_for_url(f"{console.base}/alerts")
        await page.goto(f"{console.base}/live/{quote(watch, safe='')}", wait_until="load")
        for _ in range(200):  # the EventSource is open once the console counts a live client
            if await console.metric("veille_console_live_clients") >= 1:
                break
            await asyncio.sleep(0.05)
        else:
            raise SystemExit("console_bench: the live page never opened its event stream")
        labels.update(
            {pid: group_of(name, pid, console.process.pid) for pid, name in descendants(os.getpid()).items()}  # type: ignore[union-attr]
        )
        dropped_before = await console.metric("veille_console_live_dropped_total")
        cpu_before, load_before, wall = cpu_by_group(labels), loadavg(), time.perf_counter()
        started = time.time()
        behind = 0.0
        inflight = asyncio.Semaphore(256)  # acks awaited concurrently: the publisher keeps the rate

        async def send(subject: str, data: bytes) -> None:
            try:
                await js.publish(subject, data)
            finally:
                inflight.release()

        sends = []
        for i, (mid, subject, data) in enumerate(batch):
            due = started + i / rate
            delay = due - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                behind = max(behind, -delay)
            await inflight.acquire()
            published[mid] = time.time() * 1000
            sends.append(asyncio.create_task(send(subject, data)))
        publish_s = time.time() - started
        await asyncio.gather(*sends)
        for _ in range(100):  # stragglers: up to 10 s after the last publication
            seen = await page.evaluate("Object.keys(window.__seen).length")
            if seen >= total:
                break
            await asyncio.sleep(0.1)
        seen_at: dict[str, float] = await page.evaluate("window.__seen")
        cpu_after, elapsed = cpu_by_group(labels), time.perf_counter() - wall
        dropped = await console.metric("veille_console_live_dropped_total") - dropped_before
        rows_kept = await page.evaluate("document.querySelectorAll('#live li').length")
    finally:
        await nc.close()
        await context.close()
    lags = [(published[m] - published[batch[0][0]], seen_at[m] - published[m]) for m in published if m in seen_at]
    values = [lag for _, lag in lags]
    first = [lag for t, lag in lags if t < 10_000]
    last = [lag for t, lag in lags if t >= (duration - 10) * 1000]
    slope = None
    if len(lags) > 2:
        xs, ys = [t / 1000 for t, _ in lags], values
        mx, my = statistics.fmean(xs), statistics.fmean(ys)
        sxx = sum((x - mx) ** 2 for x in xs)
        slope = round(sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx, 2) if sxx else None
    within = sum(1 for v in values if v <= 2000)
    cpu = {g: round(cpu_after.get(g, 0) - cpu_before.get(g, 0), 1) for g in cpu_after}
    return {
        "watch": watch,
        "target_per_s": rate,
        "duration_s": duration,
        "published": total,
        "achieved_per_s": round(total / publish_s, 1),
        "publisher_max_behind_ms": round(behind * 1000, 1),
        "appeared": len(values),
        "missing": total - len(values),
        "console_dropped": int(dropped),
        "rows_kept_on_page": rows_kept,
        "lag_ms": {
            "p50": pct(values, 0.5),
            "p95": pct(values, 0.95),
            "p99": pct(values, 0.99),
            "max": pct(values, 1.0),
        },
        "within_2s_share": round(within / total, 4) if total else None,
        "first_10s_lag_ms": {"p50": pct(first, 0.5), "p95": pct(first, 0.95)},
        "last_10s_lag_ms": {"p50": pct(last, 0.5), "p95": pct(last, 0.95)},
        "lag_slope_ms_per_s": slope,
        "kept_up": len(values) == total and (pct(values, 0.99) or 0) <= 2000,
        "cpu_s": cpu,
        "cpu_share_of_one_core": {g: round(v / elapsed, 2) for g, v in cpu.items()},
        "load_before": load_before,
        "load_after": loadavg(),
    }


# ------------------------------------------------------------------------------------------ main


def code_state() -> dict[str, Any]:
    """The commit measured, and the files of services/ and shared/ changed in the working tree beside it."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
        return done.stdout

    dirty = [line[3:] for line in git("status", "--short", "--", "services", "shared").splitlines() if line]
    return {"commit": git("rev-parse", "--short", "HEAD").strip(), "uncommitted": dirty}


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    check_data()
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"console_bench: {CHROMIUM} is missing (apt-get install chromium)")
    from playwright.async_api import async_playwright

    load_start = loadavg()
    built = time.perf_counter()
    if args.database_url:
        url, end = args.database_url, datetime.now(UTC)
    else:
        url, end = archive_url(args.n)
    archive_s = round(time.perf_counter() - built, 1)
    archive = await prepare_archive(url, args.alerts, end)
    # the overview's buttons when the corpus ends within the hour, else the same spans ending at its end
    anchor = None if datetime.now(UTC) - end < timedelta(hours=1) else end
    add_user(url)
    watch = args.watch or archive["watches"][0][0]
    names = [w for w, _ in archive["watches"][:50]]
    if watch not in names:
        names.append(watch)
    result: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "kind": "sqlite",
        "corpus_end": end.isoformat(timespec="seconds"),
        "overview_anchor": "now (the range buttons)" if anchor is None else "the corpus's end (custom range)",
        "archive_mentions": archive["mentions"],
        "archive_seconds": archive_s,
        "watch": watch,
        "watch_mentions_30d": dict(archive["watches"]).get(watch),
        "alerts": args.alerts,
        "load_start": load_start,
        "code": code_state(),
    }
    work = Path(tempfile.mkdtemp(prefix="veille-console-bench-"))
    nats_server = NatsServerProcess(store_dir=work / "nats", log_file=work / "nats.log")
    nats_server.start()
    console = Console(work, nats_server.url, url, names)
    try:
        import nats

        nc = await nats.connect(nats_server.url)
        await bus.ensure_topology(nc.jetstream())
        await nc.close()
        await console.start()
        targets = {**pages(watch, "console-bench-0", anchor), **FLOORS}
        print(f"console_bench: HTTP, {args.requests} rounds of {len(targets)} pages", flush=True)
        result["http"] = await http_loads(console.base, targets, args.requests, args.cap)
        print("console_bench: the overview's parts, 30 days", flush=True)
        result["overview_30d_parts"] = await overview_breakdown(url, watch, anchor or datetime.now(UTC), 30)
        async with async_playwright() as p:
            chromium = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            try:
                shown = {
                    k: v for k, v in pages(watch, "console-bench-0", anchor).items() if "CSV" not in k and "{" not in v
                }
                print(f"console_bench: browser, {args.browser_loads} rounds of {len(shown)} pages", flush=True)
                result["browser"] = await browser_loads(chromium, console.base, shown, args.browser_loads, args.cap)
                print(f"console_bench: live, {args.rate:.0f}/s for {args.duration:.0f} s", flush=True)
                labels = {nats_server.process.pid: "nats-server"} if nats_server.process else {}
                result["live"] = await live(chromium, console, nats_server.url, watch, args.rate, args.duration, labels)
                result["live_probes"] = []
                for rate in args.probe:
                    print(f"console_bench: live probe, {rate:.0f}/s for 10 s", flush=True)
                    result["live_probes"].append(
                        await live(chromium, console, nats_server.url, watch, rate, 10.0, labels)
                    )
            finally:
                await chromium.close()
    finally:
        console.stop()
        nats_server.stop()
        shutil.rmtree(work, ignore_errors=True)
    result["load_end"] = loadavg()
    return result


def markdown_section(result: dict[str, Any]) -> list[str]:
    """The console section of docs/benchmarks.md."""

    def f(v: Any) -> str:
        return "–" if v is None else f"{v:,.1f}"

    def la(v: list[float]) -> str:
        return " / ".join(f"{x:.1f}" for x in v)

    http, browser, lv = result["http"], result["browser"], result["live"]
    out = [
        SECTION,
        "",
        f"Command: `{result.get('command', 'PYTHONPATH=shared:. python bench/console_bench.py')}` ({result['when']}). "
        f"Archive: {result['archive_mentions']:,} mentions ({result['kind']}, `bench/archive_corpus.py`), "
        f"{result['alerts']} alerts; watch `{result['watch']}` ({result['watch_mentions_30d']:,} mentions in "
        f"30 days); the overview's spans end at {result['overview_anchor']}. "
        "The console runs as `python -m services.console` beside a nats-server; every request "
        "carries a viewer's session cookie (made with `veille users add`). Server: aiohttp, time to the whole "
        "body, pages interleaved round by round. Browser: Debian's chromium under Playwright, Navigation "
        "Timing `loadEventEnd`. Search: `" + QUERY + "`, no filter; the CSV export is that search's first "
        "10,000 hits at most. Code: commit "
        f"{result.get('code', {}).get('commit', '?')}"
        + (
            f" with uncommitted changes in {', '.join(result['code']['uncommitted'])}"
            if result.get("code", {}).get("uncommitted")
            else ""
        )
        + ".",
        "",
        "| page | server first ms | server p50 ms | server p95 ms | n | bytes | browser load p50 ms "
        "| browser load p95 ms | n |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, s in http["pages"].items():
        b = browser["pages"].get(name, {})
        out.append(
            f"| {name} | {f(s.get('first'))} | {f(s['p50'])} | {f(s['p95'])} | {s['n']} | {s['bytes']:,} | "
            f"{f(b.get('p50'))} | {f(b.get('p95'))} | {b.get('n', '')} |"
        )
    pages_only = {k: v for k, v in http["pages"].items() if not k.startswith("floor")}
    slow = [k for k, v in pages_only.items() if (v["p95"] or 0) >= 300]
    slow_browser = [k for k, v in browser["pages"].items() if (v["p95"] or 0) >= 300]
    out += [
        "",
        "Goal, page loads p95 < 300 ms: server side "
        + (f"**missed** by {', '.join(slow)}" if slow else "**met** by every page")
        + "; in the browser (load event) "
        + (f"**missed** by {', '.join(slow_browser)}" if slow_browser else "**met** by every page")
        + ". Goal, the live page keeping up with "
        + f"{lv['target_per_s']:,.0f} mentions/s and a mention shown within 2 s: "
        + ("**met**" if lv["kept_up"] else "**not met**")
        + f" ({lv['appeared']:,} of {lv['published']:,} shown, p99 {f(lv['lag_ms']['p99'])} ms).",
    ]
    parts = result.get("overview_30d_parts")
    if parts:
        out += [
            "",
            "Where the 30-day overview's time goes (the archive calls it makes, timed alone, median of 3, ms): "
            + ", ".join(f"{k} {v:,.0f}" for k, v in parts["ms"].items())
            + ".",
        ]
    lag = lv["lag_ms"]
    out += [
        "",
        f"Load average (1 / 5 / 15 min) on 2 cores: server phase {la(http['load_before'])} before, "
        f"{la(http['load_after'])} after; browser phase {la(browser['load_before'])} before, "
        f"{la(browser['load_after'])} after.",
        "",
        f"**Live page** (`/live/{lv['watch']}` in chromium): {lv['published']:,} classified mentions published "
        f"with JetStream at {lv['achieved_per_s']:,.0f}/s (target {lv['target_per_s']:,.0f}) for "
        f"{lv['duration_s']:.0f} s, all in that watch; time from publication to the mention's row entering the "
        "page (a MutationObserver on the same clock).",
        "",
        "| appeared | missing | dropped by the console | lag p50 ms | p95 | p99 | max | within 2 s | "
        "first 10 s p50 / p95 | last 10 s p50 / p95 | lag slope ms per s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|",
        f"| {lv['appeared']:,} | {lv['missing']:,} | {lv['console_dropped']:,} | {f(lag['p50'])} | {f(lag['p95'])} | "
        f"{f(lag['p99'])} | {f(lag['max'])} | {lv['within_2s_share'] * 100:.1f}% | "
        f"{f(lv['first_10s_lag_ms']['p50'])} / {f(lv['first_10s_lag_ms']['p95'])} | "
        f"{f(lv['last_10s_lag_ms']['p50'])} / {f(lv['last_10s_lag_ms']['p95'])} | {f(lv['lag_slope_ms_per_s'])} |",
        "",
        "CPU during the live phase (share of one core): "
        + ", ".join(f"{g} {v:.2f}" for g, v in sorted(lv["cpu_share_of_one_core"].items()))
        + f". Load average {la(lv['load_before'])} before, {la(lv['load_after'])} after.",
        "",
    ]
    for probe in result.get("live_probes", []):
        plag = probe["lag_ms"]
        out += [
            f"Ceiling probe: {probe['target_per_s']:,.0f}/s offered for 10 s ({probe['achieved_per_s']:,.0f}/s "
            f"achieved): {probe['appeared']:,} of {probe['published']:,} shown, {probe['console_dropped']:,} "
            f"dropped by the console's bounded queue, lag p50 {f(plag['p50'])} / p95 {f(plag['p95'])} / "
            f"p99 {f(plag['p99'])} ms; CPU "
            + ", ".join(f"{g} {v:.2f}" for g, v in sorted(probe["cpu_share_of_one_core"].items()))
            + f"; load {la(probe['load_before'])}.",
            "",
        ]
    return out


def write_doc(result: dict[str, Any], notes: list[str]) -> None:
    """Replace (or add, before "Other benchmarks") the console section of docs/benchmarks.md."""
    doc = DOC.read_text(encoding="utf-8")
    section = "\n".join(markdown_section(result) + notes).rstrip() + "\n\n"
    start = doc.find(SECTION)
    if start >= 0:
        end = doc.find("\n## ", start + len(SECTION))
        doc = doc[:start] + section + (doc[end + 1 :] if end >= 0 else "")
    else:
        at = doc.find("## Other benchmarks")
        doc = doc[:at] + section + doc[at:] if at >= 0 else doc.rstrip() + "\n\n" + section
    DOC.write_text(doc, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="mentions in the archive")
    parser.add_argument("--database-url", help="an existing SQLite archive instead of bench/archive_corpus.py's")
    parser.add_argument("--alerts", type=int, default=500, help="alerts added to the archive")
    parser.add_argument("--watch", help="the watch shown (default: the archive's busiest over 30 days)")
    parser.add_argument("--requests", type=int, default=50, help="HTTP requests per page")
    parser.add_argument(
        "--cap", type=float, default=90.0, help="seconds of requests (and of browser loads) per page at most"
    )
    parser.add_argument("--browser-loads", type=int, default=20, help="browser loads per page")
    parser.add_argument("--rate", type=float, default=200.0, help="mentions per second on the live page")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of live publication")
    parser.add_argument(
        "--probe",
        type=float,
        nargs="*",
        default=[600.0],
        help="higher rates (mentions/s) tried for 10 s each after the live run, to find the live page's ceiling",
    )
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--doc", action="store_true", help="also write the section of docs/benchmarks.md")
    args = parser.parse_args()
    result = asyncio.run(main_async(args))
    result["command"] = "PYTHONPATH=shared:. python bench/console_bench.py " + " ".join(sys.argv[1:])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print("\n".join(markdown_section(result)))
    if args.doc:
        write_doc(result, [])


if __name__ == "__main__":
    main()
