"""Order within a group: alerts are told in the order of the alert stream, whatever the fetch batching."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from nats.js import JetStreamContext

from services.notifier.dispatcher import Dispatcher
from tests.notifier.conftest import (
    AppFactory,
    ManualClock,
    ScriptedReceiver,
    make_alert,
    publish_alert,
    settled,
    webhook_config,
)
from veille.models import AlertRaised

BURST = 8


async def test_a_burst_in_one_group_is_told_in_stream_order(
    js: JetStreamContext, receiver: ScriptedReceiver, notifier_factory: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Alerts of one group waiting on the stream, the first one slow to record, reach the receiver in stream order."""
    ids = [f"order-{i:02d}" for i in range(BURST)]
    for alert_id in ids:  # all on the stream before the notifier starts: one fetch can take them all
        await publish_alert(js, make_alert(alert_id))

    # The first alert's recording is slow (a KV round trip that takes its time): it waits until a
    # later alert of the same group has been recorded, or one second if none can be meanwhile.
    later_recorded = asyncio.Event()
    record = Dispatcher.record

    async def slow_first_record(self: Dispatcher, alert: AlertRaised) -> list[str]:
        if alert.id == ids[0]:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(later_recorded.wait(), 1.0)
        keys = await record(self, alert)
        if alert.id != ids[0]:
            later_recorded.set()
        return keys

    monkeypatch.setattr(Dispatcher, "record", slow_first_record)
    clock = ManualClock()
    app = await notifier_factory(webhook_config(receiver.url()), clock=clock)

    told: list[str] = []
    for _ in range(BURST + 1):  # each round: every alert recorded, the group flushed, group_interval passes
        await settled(js)
        await app.flush_due(wait=True)
        told = [alert["id"] for hit in receiver.hits for alert in hit.json()["data"]["alerts"]]
        if len(told) >= BURST:
            break
        clock.advance(minutes=6)
    assert told == ids
