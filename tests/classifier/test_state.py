"""Detector state lives in KV: a restarted classifier and several replicas raise each alert once."""

from __future__ import annotations

import asyncio
import json

from nats.js import JetStreamContext

from services.classifier.backtest import WatchReplay
from services.classifier.detection import state_key
from services.classifier.logic import Classifier
from services.classifier.surges import mention_terms
from tests.classifier.conftest import (
    CONFIG,
    END_MINUTES,
    SURGE_AT,
    Apps,
    alerts_in_stream,
    at,
    caught_up,
    publish_mentions,
    series,
    spikes,
)
from veille import bus
from veille.config import parse_config
from veille.language import detect_language
from veille.models import AlertRaised


def offline_alerts() -> list[AlertRaised]:
    """The alerts of the series computed offline, by the backtest's replay of the same code."""
    config = parse_config(CONFIG)
    classifier = Classifier(config, lambda text, lang: ("neutral", 0.0), detect_language)
    replay = WatchReplay(config.watches[0])
    for mention in series():
        found = classifier.classify(mention)
        replay.add(found.mention, mention_terms(found.body))
    return replay.finish(until=at(END_MINUTES + 30)).alerts


def key(alerts: list[AlertRaised]) -> list[tuple[str, str, str, float | None, float | None]]:
    """What must agree between runs: id, kind, status, observed and expected."""
    return [(a.id, a.kind, a.status, a.observed, a.expected) for a in alerts if a.kind == "volume_spike"]


async def test_a_restart_mid_series_continues_from_kv_without_raising_again(apps: Apps, js: JetStreamContext) -> None:
    """Stopped just after the surge fired, a new classifier resolves it from KV state and never re-raises it."""
    mentions = series()
    first = [m for m in mentions if m.ingested_at < at(SURGE_AT + 3)]
    rest = mentions[len(first) :]
    app = await apps.start()
    await publish_mentions(js, first)
    await caught_up(js)
    apps.clock.now = at(SURGE_AT + 3) + app.grace
    await app.tick()
    assert [s for _, s in spikes(await alerts_in_stream(js))] == ["firing"]
    await apps.stop(app)

    again = await apps.start()
    # The new process replays nothing it already stepped: ticking at the same time raises nothing.
    assert await again.tick() == []
    await publish_mentions(js, rest)
    await caught_up(js)
    apps.clock.now = at(END_MINUTES + 30)
    await again.tick()
    alerts = await alerts_in_stream(js)
    assert [s for _, s in spikes(alerts)] == ["firing", "resolved"]
    assert len({i for i, _ in spikes(alerts)}) == 1
    assert key(alerts) == key(offline_alerts())


async def test_two_replicas_raise_the_same_alerts_as_one(apps: Apps, js: JetStreamContext) -> None:
    """Two replicas sharing the durable consumer, ticking concurrently, raise exactly the single-process alerts."""
    one, two = await apps.start(), await apps.start()
    mentions = series()
    for minute in range(0, END_MINUTES + 30, 15):
        batch = [m for m in mentions if at(minute - 15) <= m.ingested_at < at(minute)]
        await publish_mentions(js, batch)
        await caught_up(js)
        apps.clock.now = at(minute)
        await asyncio.gather(one.tick(), two.tick())
    counted = [r.detection_metrics.flushes._value.get() for r in (one, two)]
    assert all(c > 0 for c in counted), "both replicas counted mentions"
    alerts = await alerts_in_stream(js)
    assert key(alerts) == key(offline_alerts())
    assert [s for _, s in spikes(alerts)] == ["firing", "resolved"]


async def test_alerts_decided_before_a_crash_are_published_by_the_next_tick(apps: Apps, js: JetStreamContext) -> None:
    """If a replica dies after committing a step but before publishing, the outbox is published once by another."""
    crashing, healthy = await apps.start(), await apps.start()

    async def die(alert: AlertRaised) -> None:
        raise ConnectionError("killed between the KV commit and the publish")

    crashing.detection.publish = die  # type: ignore[union-attr]
    await publish_mentions(js, series())
    await caught_up(js)
    apps.clock.now = at(END_MINUTES + 30)
    try:
        await crashing.tick()
    except ConnectionError:
        pass
    else:
        raise AssertionError("the crashing replica should have failed to publish")
    assert spikes(await alerts_in_stream(js)) == []
    await healthy.tick()
    await healthy.tick()
    alerts = await alerts_in_stream(js)
    assert key(alerts) == key(offline_alerts())


async def test_a_replica_flushing_earlier_buckets_moves_the_start_back(apps: Apps, js: JetStreamContext) -> None:
    """Replicas flush concurrently: counts of buckets before the one the state was created at still count."""
    early, late = await apps.start(), await apps.start()
    config = parse_config(CONFIG)
    classifier = Classifier(config, lambda text, lang: ("neutral", 0.0), detect_language)
    mentions = series()
    first = next(m for m in mentions if m.ingested_at >= at(0))
    later = next(m for m in mentions if m.ingested_at >= at(9))

    def record(app: object, mention: object) -> None:
        found = classifier.classify(mention)  # type: ignore[arg-type]
        app.detection.record(found.mention, mention_terms(found.body))  # type: ignore[attr-defined]

    record(late, later)
    await late.detection.flush()  # type: ignore[union-attr]
    record(early, first)
    await early.detection.flush()  # type: ignore[union-attr]

    kv = await js.key_value(bus.DETECTOR.name)
    state = json.loads((await kv.get(state_key("acme"))).value or b"{}")
    assert state["surges"]["next_bucket"] == at(0).isoformat()
