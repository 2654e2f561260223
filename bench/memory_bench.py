"""Memory of each service under an hour (or ``--duration`` seconds) of simulated traffic with 1,000 watches.

Runs nats-server, the classifier and the notifier as ``veille up`` runs them, with 1,000 realistic
watch queries (the query benchmark's generator), and publishes mentions at ``--rate`` per second for
``--duration`` seconds of wall time. Simulated time runs ``--accel`` times faster than the wall clock:
each mention's ``ingested_at`` advances ``accel`` seconds per second and ends at "now", so the
classifier's per-watch buckets, KV counters and detector steps go through ``duration x accel``
seconds of traffic (the default 120 s x 30 is one simulated hour). The resident set size of each
service is sampled from ``/proc`` every ``--sample`` seconds (a service's worker processes included).

Hostile peers run beside the honest traffic (``--no-hostile`` leaves them out): three more webhook
receivers get every alert (grouped by kind, told every 10 s), one answering an endless body, one
trickling a byte a second, one redirecting to another host; and ingest-rss polls a hostile feed
(100,000 attributes in one element, about 1 MB: quadratic for feedparser) beside a large honest one
(3,000 entries). Their memory must stay as flat as the honest services', and the report counts what
each hostile peer managed to send.

Writes ``bench/results/memory.json``. Usage::

    PYTHONPATH=shared:. python bench/memory_bench.py [--duration 120] [--accel 30] [--rate 300]
    PYTHONPATH=shared:. python bench/memory_bench.py --duration 3600 --accel 1   # a real hour
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import re
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "shared"), str(ROOT), str(ROOT / "bench")]

import nats  # noqa: E402
from aiohttp import web  # noqa: E402
from e2e_bench import Sink  # noqa: E402
from query_bench import DEFAULT_DATA, build_posts, build_watches, load_tweets  # noqa: E402

from tests.faults.harness import SECRET, Stack  # noqa: E402
from veille import bus  # noqa: E402
from veille.models import MentionIngested  # noqa: E402
from veille.natsserver import NatsServerProcess, free_port  # noqa: E402

OUT = ROOT / "bench" / "results" / "memory.json"


def _descendants(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                out += [int(child), *_descendants(int(child))]
    except OSError:
        pass
    return out


def rss_mb(pid: int) -> float | None:
    """Resident set size of ``pid`` and its descendants (worker pools) in MiB (None if it is gone)."""
    total = 0.0
    for i, one in enumerate([pid, *_descendants(pid)]):
        try:
            for line in Path(f"/proc/{one}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
        except OSError:
            if i == 0:
                return None
    return total


def write_config(path: Path, watches: dict[str, str], hook_url: str, hostile: Hostile | None = None) -> None:
    """The 1,000 watches and one webhook receiver grouping by watch and kind (plus the hostile peers)."""
    lines = ["version: 1", "watches:"]
    for raw, query in watches.items():
        name = re.sub(r"[^A-Za-z0-9_.-]", "-", raw)[:64]
        lines += [f"  - name: {json.dumps(name)}", f"    query: {json.dumps(query, ensure_ascii=False)}"]
    if hostile is not None:
        lines += [
            "sources:",
            "  rss:",
            "    interval: 20s",
            "    feeds:",
            f"      - url: {hostile.url('/feeds/hostile.xml')}",
            "        name: hostile",
            f"      - url: {hostile.url('/feeds/big.xml')}",
            "        name: big",
        ]
    lines += [
        "receivers:",
        "  - name: crm",
        "    webhook:",
        f"      - url: {hook_url}",
        f"        secret: {SECRET}",
    ]
    hostile_receivers = ("endless", "trickle", "redirect") if hostile is not None else ()
    for name in hostile_receivers:
        assert hostile is not None
        lines += [
            f"  - name: {name}",
            "    webhook:",
            f"      - url: {hostile.url('/hooks/' + name)}",
            f"        secret: {SECRET}",
            "        timeout: 5s",
        ]
    lines += [
        "route:",
        "  receiver: crm",
        "  group_by: [watch, kind]",
        "  group_wait: 30s",
        "  group_interval: 5m",
    ]
    if hostile_receivers:
        # Each hostile receiver gets every alert in a few groups (by kind), told every 10 s: many hostile
        # deliveries, without multiplying the notifier's groups by four (its scale is another benchmark's).
        lines.append("  routes:")
        for name in hostile_receivers:
            lines += [
                f"    - receiver: {name}",
                "      continue: true",
                "      group_by: [kind]",
                "      group_wait: 5s",
                "      group_interval: 10s",
            ]
        lines += ["    - receiver: crm"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


class Hostile:
    """Loopback peers that attack the services: three webhook receivers and two RSS feeds.

    ``/hooks/endless`` answers 200 with a body that never ends (up to 1 GiB per request), ``/hooks/trickle``
    answers 200 and then one byte a second, ``/hooks/redirect`` answers 307 to another host (``/stolen``
    counts what followed it); ``/feeds/hostile.xml`` is one element with 100,000 attributes and
    ``/feeds/big.xml`` an honest feed of 3,000 entries.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.bytes_sent: Counter[str] = Counter()
        self.requests: Counter[str] = Counter()
        attrs = " ".join(f'a{i}="{i}"' for i in range(100_000))
        self.hostile_feed = (
            '<?xml version="1.0"?><rss version="2.0"><channel><title>h</title>'
            f"<item {attrs}><title>hostile</title><link>http://127.0.0.1/x</link></item>"
            "</channel></rss>"
        ).encode()
        items = "".join(
            f"<item><title>Item {i}</title><link>http://127.0.0.1/big/{i}</link><guid>big-{i}</guid>"
            f"<description>An honest entry number {i}</description></item>"
            for i in range(3000)
        )
        head = '<?xml version="1.0"?><rss version="2.0"><channel><title>b</title>'
        self.big_feed = f"{head}{items}</channel></rss>".encode()

    def url(self, path: str) -> str:
        """The address of one of the peers."""
        return f"http://127.0.0.1:{self.port}{path}"

    async def _endless(self, request: web.Request) -> web.StreamResponse:
        self.requests["endless"] += 1
        await request.read()
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        await response.prepare(request)
        chunk = b" " * 65536
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            while self.bytes_sent["endless"] < (1 << 30) * self.requests["endless"]:
                await response.write(chunk)
                self.bytes_sent["endless"] += len(chunk)
        return response

    async def _trickle(self, request: web.Request) -> web.StreamResponse:
        self.requests["trickle"] += 1
        await request.read()
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        await response.prepare(request)
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            for _ in range(600):
                await response.write(b" ")
                self.bytes_sent["trickle"] += 1
                await asyncio.sleep(1.0)
        return response

    async def _redirect(self, request: web.Request) -> web.Response:
        self.requests["redirect"] += 1
        await request.read()
        return web.Response(status=307, headers={"Location": f"http://localhost:{self.port}/stolen"})

    async def _stolen(self, request: web.Request) -> web.Response:
        self.requests["stolen"] += 1
        await request.read()
        return web.json_response({"ok": True})

    async def _feed(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.requests[f"feed-{name}"] += 1
        body = self.hostile_feed if name == "hostile" else self.big_feed
        return web.Response(body=body, content_type="application/rss+xml")

    async def start(self) -> None:
        """Serve the peers on 127.0.0.1."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/hooks/endless", self._endless)
        app.router.add_post("/hooks/trickle", self._trickle)
        app.router.add_post("/hooks/redirect", self._redirect)
        app.router.add_route("*", "/stolen", self._stolen)
        app.router.add_get("/feeds/{name}.xml", self._feed)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        """Stop serving."""
        await self.runner.cleanup()


def slope_mb_per_hour(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, MiB) points, in MiB per hour."""
    if len(points) < 3:
        return None
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    var = sum((x - mx) ** 2 for x, _ in points)
    if var == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in points) / var * 3600


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the traffic, sample memory, return the figures."""
    rng = random.Random(args.seed)
    watches = build_watches(args.watches, rng)
    docs = build_posts(20_000, load_tweets(DEFAULT_DATA), rng)
    tmp = Path(tempfile.mkdtemp(prefix="veille-memory-"))
    server = NatsServerProcess(store_dir=tmp / "store", log_file=tmp / "nats.log")
    server.start()
    sink = Sink()
    await sink.start()
    hostile = Hostile() if args.hostile else None
    if hostile is not None:
        await hostile.start()
    write_config(tmp / "veille.yaml", watches, sink.url, hostile)
    nc = await nats.connect(server.url, max_reconnect_attempts=-1)
    js = nc.jetstream()
    await bus.ensure_topology(js)
    stack = Stack([server.url], tmp / "veille.yaml", tmp)
    names = ["classifier", "notifier", *(["ingest-rss"] if hostile is not None else [])]
    await stack.start(names)
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in [*names, "nats-server"]}
    sim_span = timedelta(seconds=args.duration * args.accel)
    sim_start = datetime.now(UTC) - sim_span
    published = 0
    started = time.perf_counter()
    next_sample = started
    pending: set[asyncio.Task[Any]] = set()
    try:
        while (elapsed := time.perf_counter() - started) < args.duration:
            due = int(elapsed * args.rate)
            while published < due:
                doc = docs[published % len(docs)]
                mention = MentionIngested(
                    id=f"mem:{published}",
                    source=doc.source,
                    text=doc.text,
                    title=doc.title,
                    url=doc.url,  # type: ignore[arg-type]
                    site=doc.site,
                    author=doc.author,
                    lang=doc.lang or None,
                    ingested_at=sim_start + timedelta(seconds=elapsed * args.accel),
                )
                task = asyncio.create_task(
                    js.publish(
                        bus.mention_subject(mention.source),
                        mention.model_dump_json().encode(),
                        headers={"Nats-Msg-Id": mention.id},
                    )
                )
                pending.add(task)
                task.add_done_callback(pending.discard)
                published += 1
            if time.perf_counter() >= next_sample:
                for name, child in stack.children().items():
                    if child.process is not None and (mb := rss_mb(child.process.pid)) is not None:
                        samples[name].append((elapsed, mb))
                if server.process is not None and (mb := rss_mb(server.process.pid)) is not None:
                    samples["nats-server"].append((elapsed, mb))
                next_sample += args.sample
            await asyncio.sleep(0.01)
        await asyncio.gather(*pending)
        info = await js.consumer_info(bus.CLASSIFIER_CONSUMER.stream, bus.CLASSIFIER_CONSUMER.durable)
        lag = info.num_pending
        classified = (await js.stream_info(bus.CLASSIFIED.name)).state.messages
    finally:
        await stack.stop()
        await nc.close()
        await sink.stop()
        if hostile is not None:
            await hostile.stop()
        server.stop()
    out: dict[str, Any] = {
        "duration_s": args.duration,
        "accel": args.accel,
        "simulated_hours": round(args.duration * args.accel / 3600, 2),
        "watches": len(watches),
        "rate_per_s": args.rate,
        "published": published,
        "classified": classified,
        "classifier_lag_at_end": lag,
        "honest_webhook_requests": sink.requests,
        "services": {},
    }
    if hostile is not None:
        out["hostile"] = {
            "requests": dict(hostile.requests),
            "bytes_offered": dict(hostile.bytes_sent),
            "followed_redirects": hostile.requests["stolen"],
        }
    for name, points in samples.items():
        if not points:
            continue
        warm = [p for p in points if p[0] >= args.duration * 0.2]
        second_half = [p for p in points if p[0] >= args.duration / 2]
        out["services"][name] = {
            "rss_mb_start": round(points[0][1], 1),
            "rss_mb_after_warmup": round(warm[0][1], 1) if warm else None,
            "rss_mb_end": round(points[-1][1], 1),
            "rss_mb_max": round(max(v for _, v in points), 1),
            "growth_after_warmup_mb": round(points[-1][1] - warm[0][1], 1) if warm else None,
            "slope_second_half_mb_per_hour": (
                round(s, 1) if (s := slope_mb_per_hour(second_half)) is not None else None
            ),
            "samples": [(round(t, 1), round(v, 1)) for t, v in points],
        }
    return out


def main() -> None:
    """Run the memory benchmark and write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=120.0, help="wall-clock seconds of traffic")
    parser.add_argument("--accel", type=float, default=30.0, help="simulated seconds per wall-clock second")
    parser.add_argument("--rate", type=float, default=300.0, help="mentions per wall-clock second")
    parser.add_argument("--watches", type=int, default=1000)
    parser.add_argument("--sample", type=float, default=5.0, help="seconds between memory samples")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument(
        "--no-hostile", dest="hostile", action="store_false", help="leave out the hostile receivers and feeds"
    )
    args = parser.parse_args()
    result = asyncio.run(run(args))
    for name, figures in result["services"].items():
        print(
            f"{name:>12}: {figures['rss_mb_start']} -> {figures['rss_mb_end']} MiB "
            f"(after warm-up {figures['rss_mb_after_warmup']}, slope {figures['slope_second_half_mb_per_hour']} MiB/h)"
        )
    if "hostile" in result:
        print(f"     hostile: {result['hostile']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
