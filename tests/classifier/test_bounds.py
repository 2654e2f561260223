"""Hostile values on the bus against the classifier: implausible times and unbounded label values."""

from __future__ import annotations

import json

import pytest
from nats.js import JetStreamContext
from prometheus_client import CollectorRegistry

from tests.classifier.conftest import (
    END_MINUTES,
    SURGE_AT,
    Apps,
    alerts_in_stream,
    at,
    caught_up,
    publish_mentions,
    series,
)
from veille import bus


def _value(registry: CollectorRegistry, name: str, labels: dict[str, str]) -> float:
    return registry.get_sample_value(name, labels) or 0.0


@pytest.mark.parametrize(
    "ingested_at", ["2016-03-02T00:00:00+00:00", "0001-01-01T00:00:00+00:00", "9999-12-31T23:59:59+00:00"]
)
async def test_an_implausible_ingested_at_does_not_stall_a_new_watchs_detector(
    apps: Apps, js: JetStreamContext, ingested_at: str
) -> None:
    """A first mention ingested in 2016, year 1 or year 9999 is counted as implausible; a later surge still fires."""
    app = await apps.start()
    registry = app.metrics.registry
    bad = {"id": "rss:bad-time", "source": "rss", "text": "Acme quarterly report", "ingested_at": ingested_at}
    await js.publish(bus.mention_subject("rss"), json.dumps(bad).encode(), headers={"Nats-Msg-Id": "rss:bad-time"})
    await caught_up(js)
    assert app.detection is not None
    await app.detection.flush()

    await publish_mentions(js, series())
    await caught_up(js)
    apps.clock.now = at(END_MINUTES + 30)
    for _ in range(3):
        await app.tick()
    volume = [a for a in await alerts_in_stream(js) if a.kind == "volume_spike" and a.status == "firing"]
    assert len(volume) == 1, [a.summary for a in volume]
    assert at(SURGE_AT) <= volume[0].raised_at <= at(SURGE_AT + 5)
    past = _value(registry, "veille_spike_implausible_times_total", {"bound": "past"})
    future = _value(registry, "veille_spike_implausible_times_total", {"bound": "future"})
    clamped = _value(
        registry, "veille_message_fields_bounded_total", {"field": "mention.ingested_at", "action": "clamped"}
    )
    if ingested_at.startswith("2016"):
        assert past == 1
    else:  # replaced by the time it was read, which is ahead of this test's clock
        assert clamped >= 1 and future >= 1


async def test_three_thousand_distinct_sources_make_a_bounded_number_of_series(
    apps: Apps, js: JetStreamContext
) -> None:
    """3,000 mentions with 3,000 distinct ``source`` values and languages add a handful of metric series, not 3,000."""
    app = await apps.start()
    registry = app.metrics.registry
    futures = []
    for i in range(3000):
        body = {"id": f"src{i}:1", "source": f"src{i}", "lang": f"q{i % 500}", "text": f"Acme report number {i}"}
        futures.append(
            await js.publish_async(
                bus.mention_subject(f"src{i}"), json.dumps(body).encode(), headers={"Nats-Msg-Id": body["id"]}
            )
        )
    for future in futures:
        await future
    await caught_up(js, timeout=120)

    classified = [
        sample
        for metric in registry.collect()
        if metric.name == "veille_mentions_classified"
        for sample in metric.samples
        if sample.name.endswith("_total")
    ]
    assert len(classified) <= 30, sorted({s.labels["source"] for s in classified})[:10]
    assert sum(s.value for s in classified) == 3000
    assert sum(s.value for s in classified if s.labels["source"] == "other") == 3000
    assert sum(len(metric.samples) for metric in registry.collect()) < 400
