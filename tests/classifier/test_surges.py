"""Spike alerts from the classifier on a real nats-server, under a controlled clock."""

from __future__ import annotations

from nats.js import JetStreamContext

from services.classifier.surges import mention_terms
from tests.classifier.conftest import (
    END_MINUTES,
    SURGE_AT,
    SURGE_MINUTES,
    WIRE,
    Apps,
    alerts_in_stream,
    at,
    caught_up,
    classified_in_stream,
    publish_mentions,
    series,
    spikes,
)


async def test_a_surge_raises_one_explained_volume_spike_then_its_resolution(apps: Apps, js: JetStreamContext) -> None:
    """A ten-minute surge gives exactly one firing volume_spike that explains itself, then one resolution."""
    app = await apps.start()
    await publish_mentions(js, series())
    await caught_up(js)
    apps.clock.now = at(END_MINUTES + 30)
    await app.tick()
    alerts = await alerts_in_stream(js)
    volume = [a for a in alerts if a.kind == "volume_spike"]
    assert [a.status for a in volume] == ["firing", "resolved"], [a.summary for a in alerts]
    firing, resolved = volume
    assert firing.id == resolved.id
    assert at(SURGE_AT) <= firing.raised_at <= at(SURGE_AT + 5)
    assert at(SURGE_AT + SURGE_MINUTES) < resolved.ends_at <= at(END_MINUTES)  # type: ignore[operator]
    assert firing.observed is not None and firing.expected is not None
    assert firing.observed >= 2 * firing.expected
    assert firing.statistic is not None and firing.threshold is not None
    assert firing.statistic >= firing.threshold
    assert firing.severity in ("warning", "critical")
    assert "mentions of acme in" in firing.summary and "expected" in firing.summary
    assert len(set(firing.top_terms) & set(mention_terms(WIRE))) >= 6, firing.top_terms
    assert "acme" not in firing.top_terms
    assert firing.top_sources and firing.top_sources[0].startswith("news")
    assert 1 <= len(firing.samples) <= 5
    assert all(s.url and s.url.startswith("https://") for s in firing.samples)
    assert firing.negative_share is not None and 0.0 <= firing.negative_share <= 1.0
    assert firing.mention_count >= firing.observed
    assert 1 <= firing.story_count < firing.mention_count

    # Ticking again, later, raises nothing new.
    apps.clock.now = at(END_MINUTES + 90)
    assert await app.tick() == []
    assert spikes(await alerts_in_stream(js)) == spikes(alerts)


async def test_syndicated_copies_share_one_story_id_and_the_alert_counts_stories(
    apps: Apps, js: JetStreamContext
) -> None:
    """Every copy of the wire story gets one story id, and the alert counts it once among distinct stories."""
    app = await apps.start()
    await publish_mentions(js, series())
    await caught_up(js)
    apps.clock.now = at(END_MINUTES + 30)
    await app.tick()
    classified = await classified_in_stream(js)
    wire = {c.story_id for c in classified if c.mention.id.startswith("wire:")}
    assert len(wire) == 1
    others = [c.story_id for c in classified if not c.mention.id.startswith("wire:")]
    assert len(set(others)) == len(others), "distinct posts are distinct stories"
    firing = next(a for a in await alerts_in_stream(js) if a.kind == "volume_spike")
    window = [c for c in classified if firing.started_at <= c.mention.ingested_at < firing.raised_at]
    assert firing.mention_count == len(window)
    assert firing.story_count == len({c.story_id for c in window})
    assert f"{firing.story_count} stories" in firing.summary
