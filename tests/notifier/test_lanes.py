"""Partitions record side by side, and a told single-alert group is emptied by the write that finalises it.

On a real nats-server, with the notifier's own consumers and a loopback webhook receiver. What a user
would notice: a watch whose group is slow to record (a KV write that takes its time) does not hold
back the alerts of a watch on another partition of the alerts stream; and what the notifier costs the
NATS server: how many times a single-alert group (``group_by: ["..."]``, each alert its own group) is
written from its creation to the end of its notification (counted on the bucket's stream itself).
"""

from __future__ import annotations

import asyncio

import pytest
from nats.js import JetStreamContext

from services.notifier.dispatcher import Dispatcher, _GroupWork
from services.notifier.model import GroupState
from tests.helpers.kv import live_kv_keys
from tests.notifier.conftest import AppFactory, ScriptedReceiver, make_alert, publish_alert, settled, webhook_config
from veille import bus

PER_ALERT = """
  routes:
    - matchers: [kind="negative_mention"]
      group_by: ["..."]
      group_wait: 0s
"""


async def test_a_partition_slow_to_record_does_not_hold_back_another(
    js: JetStreamContext, receiver: ScriptedReceiver, notifier_factory: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """acme's group write hangs; globex (another partition) is notified meanwhile; acme is once it is released."""
    assert bus.alert_partition("acme") != bus.alert_partition("globex")
    release = asyncio.Event()
    record_group = Dispatcher._record_group

    async def slow_for_acme(self: Dispatcher, key: str, work: _GroupWork, now: object) -> bool:
        if work.alerts[0].watch == "acme":
            await release.wait()
        return await record_group(self, key, work, now)  # type: ignore[arg-type]

    monkeypatch.setattr(Dispatcher, "_record_group", slow_for_acme)
    await notifier_factory(webhook_config(receiver.url()))
    await publish_alert(js, make_alert("lane-acme-1", watch="acme"))
    await asyncio.sleep(0.3)  # acme's batch is taken first and hangs in its write
    await publish_alert(js, make_alert("lane-globex-1", watch="globex"))
    try:
        # before: one lock for every partition's batches, so globex waited behind acme (15 s, then this failed)
        [hit] = await receiver.wait_for(1)
        assert [a["id"] for a in hit.json()["data"]["alerts"]] == ["lane-globex-1"]
    finally:
        release.set()
    hits = await receiver.wait_for(2)
    assert sorted(a["id"] for h in hits for a in h.json()["data"]["alerts"]) == ["lane-acme-1", "lane-globex-1"]


async def test_a_told_single_alert_group_is_emptied_by_its_final_write(
    js: JetStreamContext, receiver: ScriptedReceiver, notifier_factory: AppFactory
) -> None:
    """Each alert its own group: created, then finalised with the told alert gone (its digest kept): two writes."""
    app = await notifier_factory(webhook_config(receiver.url(), route=PER_ALERT))
    await publish_alert(js, make_alert("single-1"))
    await settled(js)
    await receiver.wait_for(1)
    await app.dispatcher.drain()
    kv = await js.key_value(bus.NOTIFY_GROUPS.name)
    [key] = await live_kv_keys(js, bus.NOTIFY_GROUPS.name)
    entry = await kv.get(key)
    state = GroupState.model_validate_json(entry.value or b"")
    # before: the told event alert stayed in the group until the next plan wrote the group a third time
    assert state.alerts == {} and state.seq == 1 and state.recent, state
    info = await js.stream_info(f"KV_{bus.NOTIFY_GROUPS.name}")
    assert info.state.messages == 1 and entry.revision == 2  # one key, written twice: created, finalised
    # a redelivery of the told alert is still dropped (its digest is in the group)
    before = len(receiver.hits)
    await app.dispatcher.record(make_alert("single-1"))
    await app.flush_due(wait=True)
    assert len(receiver.hits) == before
