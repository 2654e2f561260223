"""veille.consumerlag reports how many messages wait for each durable consumer, from JetStream itself."""

from __future__ import annotations

import asyncio

import pytest
from nats.js import JetStreamContext
from prometheus_client import CollectorRegistry, generate_latest

from veille import bus
from veille.consumerlag import ConsumerLagMonitor

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


async def test_pending_messages_are_exported_per_consumer(js: JetStreamContext) -> None:
    """After five mentions are published, the classifier's consumer shows five pending, the notifier's none."""
    for n in range(5):
        await js.publish(bus.mention_subject("rss"), b"{}", headers={"Nats-Msg-Id": f"m{n}"})
    registry = CollectorRegistry()
    monitor = ConsumerLagMonitor("classifier", registry, [bus.CLASSIFIER_CONSUMER, bus.NOTIFIER_CONSUMER])
    await monitor.refresh(js)
    labels = {"service": "classifier", "stream": bus.MENTIONS.name, "consumer": "classifier"}
    assert registry.get_sample_value("veille_consumer_pending_messages", labels) == 5
    assert registry.get_sample_value("veille_consumer_ack_pending_messages", labels) == 0
    notifier = {"service": "classifier", "stream": bus.ALERTS.name, "consumer": "notifier"}
    assert registry.get_sample_value("veille_consumer_pending_messages", notifier) == 0


async def test_families_are_exported_before_the_first_reading_and_survive_a_missing_consumer(
    js: JetStreamContext,
) -> None:
    """The metric families show on /metrics from the start; a consumer that does not exist is skipped."""
    registry = CollectorRegistry()
    missing = bus.Consumer("VEILLE_MENTIONS", "no-such-consumer", "veille.mentions.ingested.>")
    monitor = ConsumerLagMonitor("probe", registry, [missing, bus.CLASSIFIER_CONSUMER], interval=0.05)
    text = generate_latest(registry).decode()
    assert "# TYPE veille_consumer_pending_messages gauge" in text
    monitor.start(js)
    labels = {"service": "probe", "stream": bus.MENTIONS.name, "consumer": "classifier"}
    for _ in range(100):
        if registry.get_sample_value("veille_consumer_pending_messages", labels) is not None:
            break
        await asyncio.sleep(0.05)
    await monitor.stop()
    assert registry.get_sample_value("veille_consumer_pending_messages", labels) == 0
    assert (
        registry.get_sample_value("veille_consumer_pending_messages", {**labels, "consumer": "no-such-consumer"})
        is None
    )
