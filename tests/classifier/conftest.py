"""Helpers for classifier tests: a controlled clock, a synthetic mention series, stream readers."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from nats.js import JetStreamContext

from services.classifier.app import ClassifierApp, create_app
from veille import bus
from veille.config import VeilleConfig, parse_config
from veille.models import AlertRaised, MentionClassified, MentionIngested
from veille.natsserver import NatsServerProcess
from veille.settings import ServiceSettings

T0 = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
"""Start of the synthetic series (a Monday)."""
SURGE_AT = 120
"""Minute at which the surge starts."""
SURGE_MINUTES = 10
END_MINUTES = 180

CONFIG = """\
version: 1
watches:
  - name: acme
    query: '"acme corp" OR acme'
    negative_alerts: false
    spike:
      bucket: 60
      daily_slot: 3600
      warmup: 3600
      scales: [300, 900]
      resolve_after: 300
      refire_after: 600
      severity_window: 300
      weekly: false
"""

WORDS = (  # noqa: SIM905
    "quarterly results customers product launch store city team market price report update partner "
    "investors analysts delivery service review shipping factory engineers design software hardware "
    "contract supplier region growth strategy meeting conference award interview podcast"
).split()

WIRE = (
    "Acme Corp recalls two million exploding widgets after a fire destroyed its main factory in Springfield, "
    "regulators open an inquiry into the company's safety record and customers demand refunds"
)


@dataclass
class Clock:
    """A clock the test sets by hand."""

    now: datetime = T0

    def __call__(self) -> datetime:
        """Return the time the test set."""
        return self.now


def series(
    *, start: datetime = T0, minutes: int = END_MINUTES, surge_at: int | None = SURGE_AT, seed: int = 7
) -> list[MentionIngested]:
    """A deterministic series: about 3 distinct mentions a minute, and a syndicated story's surge."""
    rng = random.Random(seed)
    out: list[MentionIngested] = []
    for minute in range(minutes):
        base = start + timedelta(minutes=minute)
        n = rng.choice((2, 3, 3, 4))
        for i in range(n):
            words = " ".join(rng.sample(WORDS, 8))
            out.append(
                MentionIngested(
                    id=f"rss:{minute}:{i}",
                    source="rss",
                    url=f"https://blog{rng.randrange(50)}.example/posts/{minute}-{i}",
                    site=f"blog{rng.randrange(50)}.example",
                    title=f"Acme {words}",
                    text=f"Acme {' '.join(rng.sample(WORDS, 12))} number {minute * 10 + i}",
                    lang="en",
                    ingested_at=base + timedelta(seconds=i * 10 + 1),
                )
            )
        if surge_at is not None and surge_at <= minute < surge_at + SURGE_MINUTES:
            for i in range(40):
                out.append(
                    MentionIngested(
                        id=f"wire:{minute}:{i}",
                        source="rss",
                        url=f"https://news{i}.example/wire/acme-recall-{minute}",
                        site=f"news{i % 12}.example",
                        title="Acme Corp recalls exploding widgets",
                        text=WIRE if i % 2 else f"{WIRE} (updated)",
                        lang="en",
                        ingested_at=base + timedelta(seconds=1 + i),
                    )
                )
    out.sort(key=lambda m: m.ingested_at)
    return out


async def publish_mentions(js: JetStreamContext, mentions: list[MentionIngested]) -> None:
    """Publish raw mentions as an ingestor would (subject by source, Nats-Msg-Id = mention id)."""
    futures = [
        await js.publish_async(
            bus.mention_subject(m.source), m.model_dump_json().encode(), headers={"Nats-Msg-Id": m.id}
        )
        for m in mentions
    ]
    await asyncio.gather(*futures)


async def caught_up(js: JetStreamContext, timeout: float = 30.0) -> None:
    """Wait until the classifier's durable consumer has every mention delivered and acked."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    consumer = bus.CLASSIFIER_CONSUMER
    while True:
        info = await js.consumer_info(consumer.stream, consumer.durable)
        if info.num_pending == 0 and info.num_ack_pending == 0:
            return
        if loop.time() > deadline:
            pending, unacked = info.num_pending, info.num_ack_pending
            raise AssertionError(f"classifier not caught up: {pending} pending, {unacked} unacked")
        await asyncio.sleep(0.05)


async def read_stream(js: JetStreamContext, subject: str, stream: str) -> list[bytes]:
    """Every message currently in ``stream`` on ``subject``, in order."""
    info = await js.stream_info(stream)
    total = info.state.messages
    if total == 0:
        return []
    sub = await js.pull_subscribe(subject, stream=stream)
    out: list[bytes] = []
    try:
        while len(out) < total:
            try:
                msgs = await sub.fetch(min(500, total - len(out)), timeout=2)
            except TimeoutError:
                break
            for msg in msgs:
                out.append(msg.data)
                await msg.ack()
    finally:
        await sub.unsubscribe()
    return out


async def alerts_in_stream(js: JetStreamContext) -> list[AlertRaised]:
    """Every alert in the alerts stream, in order."""
    return [AlertRaised.model_validate_json(d) for d in await read_stream(js, "veille.alerts.>", bus.ALERTS.name)]


async def classified_in_stream(js: JetStreamContext) -> list[MentionClassified]:
    """Every classified mention in its stream, in order."""
    raw = await read_stream(js, "veille.mentions.classified.>", bus.CLASSIFIED.name)
    return [MentionClassified.model_validate_json(d) for d in raw]


@dataclass
class Apps:
    """Builds classifier apps on the test server and stops them at the end."""

    url: str
    config: VeilleConfig
    clock: Clock = field(default_factory=Clock)
    started: list[ClassifierApp] = field(default_factory=list)

    async def start(self, **options: Any) -> ClassifierApp:
        """Start one classifier replica (no background ticks: the test calls ``tick``)."""
        options.setdefault("tick_interval", None)
        options.setdefault("grace", timedelta(seconds=5))
        app = create_app(ServiceSettings(nats_url=self.url), config=self.config, clock=self.clock, **options)
        await app.start()
        self.started.append(app)
        return app

    async def stop(self, app: ClassifierApp) -> None:
        """Stop one replica."""
        await app.stop()
        self.started.remove(app)


@pytest.fixture
async def apps(nats_server: NatsServerProcess, js: JetStreamContext, tmp_path: Path) -> AsyncIterator[Apps]:
    """Classifier replicas on the test server with :data:`CONFIG` and a controlled clock."""
    made = Apps(nats_server.url, parse_config(CONFIG))
    try:
        yield made
    finally:
        for app in list(made.started):
            await app.stop()


def at(minute: float) -> datetime:
    """The time ``minute`` minutes into the series."""
    return T0 + timedelta(minutes=minute)


Predicate = Callable[[AlertRaised], bool]


def spikes(alerts: list[AlertRaised], kind: str = "volume_spike") -> list[tuple[str, str]]:
    """(id, status) of the alerts of ``kind``."""
    return [(a.id, a.status) for a in alerts if a.kind == kind]
