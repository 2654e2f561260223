"""kill -9 of the classifier, then of the notifier, in the middle of 10,000 mentions, on real processes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.faults.harness import (
    Receiver,
    Stack,
    audit_output,
    connect,
    consumer_drained,
    eventually,
    make_mentions,
    notifier_drained,
    publish_all,
    stream_count,
    write_config,
)
from veille import bus
from veille.natsserver import NatsServerProcess

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

MENTIONS = 10_000


async def test_kill_9_classifier_then_notifier_loses_nothing_and_repeats_nothing(
    nats_server: NatsServerProcess, tmp_path: Path
) -> None:
    """After kill -9 of each service mid-stream, each mention is classified once and each alert sent once."""
    receiver = Receiver()
    await receiver.start()
    config = write_config(tmp_path / "veille.yaml", receiver.url)
    stack = Stack([nats_server.url], config, tmp_path)
    nc = await connect([nats_server.url])
    js = nc.jetstream()
    await bus.ensure_topology(js)
    await stack.start(["classifier", "notifier"])
    try:
        mentions = make_mentions(MENTIONS, seed=11)
        publishing = asyncio.create_task(publish_all(js, mentions))

        async def classified_at_least(n: int) -> bool:
            return await stream_count(js, bus.CLASSIFIED.name) >= n

        await eventually(lambda: classified_at_least(MENTIONS // 4), timeout=120, what="a quarter classified")
        await stack.kill("classifier")
        await eventually(lambda: classified_at_least(MENTIONS // 2), timeout=120, what="half classified")
        await eventually(lambda: len(receiver.deliveries) >= 3, timeout=60, what="some webhooks")
        await stack.kill("notifier")
        assert await publishing == MENTIONS

        await eventually(lambda: classified_at_least(MENTIONS), timeout=120, what="every mention classified")
        # Mentions and alerts in flight at the kills come back after the consumers' ack_wait (30 s).
        await eventually(
            lambda: consumer_drained(js, bus.CLASSIFIER_CONSUMER), timeout=90, what="classifier consumer drained"
        )
        await eventually(lambda: notifier_drained(js), timeout=200, what="notifier consumer drained")
        audit = await audit_output(js, receiver, {})
        await eventually(
            lambda: audit.firing_alert_ids <= set(receiver.firing_alerts()),
            timeout=150,  # a notification claimed at the kill is resent once its 60 s lease runs out
            what="every alert delivered",
        )
        await asyncio.sleep(3)  # room for a wrong second sending
        audit = await audit_output(js, receiver, {})
    finally:
        await stack.stop()
        await nc.close()
        await receiver.stop()

    assert stack.deaths("classifier") == 1 and stack.deaths("notifier") == 1
    assert audit.classified_total == MENTIONS, audit.summary()
    assert audit.classified_ids == {m.id for m in mentions}, audit.summary()
    assert audit.alerts_total == audit.alerts_distinct, audit.summary()
    negative = {a for a in audit.firing_alert_ids if a in audit.expected_alerts}
    assert negative == audit.expected_alerts, audit.summary()
    assert len(audit.expected_alerts) > 100, "the load raises enough alerts to mean something"
    assert receiver.truncated() == 0
    assert set(audit.delivered) == audit.firing_alert_ids, audit.summary()
    twice = {a: ids for a, ids in audit.delivered.items() if len(ids) > 1}
    assert not twice, f"alerts in more than one notification: {list(twice.items())[:3]}"
    # A notification whose POST succeeded just before the kill may be resent with the same
    # webhook-id (the receiver's idempotency key); at most the one in flight in each group (groups
    # are told concurrently, each one notification at a time).
    assert audit.most_repeats_in_one_group <= 1, audit.summary()
