"""The notifier at Alertmanager's scale: batches, one write per group per batch, no scan of every group per tick.

On a real nats-server. What a user would notice is the notification (exactly once, every alert
counted) and what the notifier costs the NATS server: how many times a group's value is rewritten
in a burst, and how many reads an idle notifier makes. Both are counted on the server itself (the
bucket's stream sequence; a plain subscriber on the JetStream API subjects, which sees every request).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any

import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from services.notifier import dispatcher
from services.notifier.app import NotifierApp, NotifierSettings, create_app
from services.notifier.grouping import MAX_GROUP_ALERTS, add_alert, digest, seen_count
from services.notifier.model import GroupState
from tests.helpers.kv import live_kv_keys
from tests.notifier.conftest import (
    ManualClock,
    ScriptedReceiver,
    make_alert,
    publish_alert,
    settled,
    suppressed,
    webhook_config,
)
from veille import bus
from veille.natsserver import NatsServerProcess

GROUPS_STREAM = f"KV_{bus.NOTIFY_GROUPS.name}"
BURST = 3000
WAITING = """
  routes:
    - matchers: [watch="acme"]
      group_by: [watch]
      group_wait: 30s
"""


async def _group(js: JetStreamContext) -> GroupState:
    kv = await js.key_value(bus.NOTIFY_GROUPS.name)
    [key] = await live_kv_keys(js, bus.NOTIFY_GROUPS.name)
    return GroupState.model_validate_json((await kv.get(key)).value or b"")


async def test_a_burst_into_one_group_is_written_once_per_batch_and_redeliveries_stay_deduplicated(
    js: JetStreamContext, receiver: ScriptedReceiver, nats_server: NatsServerProcess
) -> None:
    """3,000 mentions waiting on the stream: the group is rewritten a few times, not 3,000; dedup survives a restart."""
    for i in range(BURST):
        await publish_alert(js, make_alert(f"alert-burst-{i:05d}"))
    settings = NotifierSettings(nats_url=nats_server.url, instance="replica-a", notifier_tick=0)
    app = create_app(settings, config=webhook_config(receiver.url(), route=WAITING))
    await app.start()
    try:
        await settled(js, timeout=120)
        writes = (await js.stream_info(GROUPS_STREAM)).state.last_seq
        # Before: one compare-and-set of the whole group per alert (3,000 writes).
        assert writes <= BURST // 100, f"the group was written {writes} times for {BURST} alerts"
        state = await _group(js)
        assert len(state.alerts) == MAX_GROUP_ALERTS and state.truncated == BURST - MAX_GROUP_ALERTS
        # Before: the 2,900 counted alerts' digests lived in the group's value, rewritten with it.
        assert seen_count(state) <= dispatcher.SPILL_AT + settings.notifier_batch
    finally:
        await app.stop()

    # A fresh replica (nothing in memory): counted and kept alerts delivered again under new message ids
    # change nothing, whichever batch they were counted in.
    again = create_app(settings, config=webhook_config(receiver.url(), route=WAITING))
    await again.start()
    try:
        for i in (5, 150, 1500, BURST - 1):
            payload = make_alert(f"alert-burst-{i:05d}").model_dump_json().encode()
            await js.publish(bus.alert_subject("acme"), payload, headers={"Nats-Msg-Id": f"again-{i}"})
        await settled(js, timeout=60)
        assert suppressed(again, "deduplicated") == 4
        state = await _group(js)
        assert state.truncated == BURST - MAX_GROUP_ALERTS
    finally:
        await again.stop()


PER_ALERT = """
  routes:
    - matchers: [watch=~".*"]
      group_by: ["..."]
      group_wait: 1h
"""


async def test_an_idle_notifier_reads_no_group_per_tick_and_reads_directly(
    js: JetStreamContext, nc: NatsClient, receiver: ScriptedReceiver, nats_server: NatsServerProcess
) -> None:
    """30 waiting groups, a tick every 20 ms: no group is read until one is due; then it is sent on time."""
    clock = ManualClock()
    settings = NotifierSettings(
        nats_url=nats_server.url, instance="replica-a", notifier_tick=0.02, notifier_rescan=3600
    )
    app = create_app(settings, config=webhook_config(receiver.url(), route=PER_ALERT), clock=clock)
    await app.start()
    try:
        for i in range(30):
            await publish_alert(js, make_alert(f"alert-idle-{i:02d}"))
        await settled(js)
        direct: list[str] = []
        indirect: list[str] = []

        async def on_direct(msg: Msg) -> None:
            direct.append(msg.subject)

        async def on_indirect(msg: Msg) -> None:
            indirect.append(msg.subject)

        sub_direct = await nc.subscribe(f"$JS.API.DIRECT.GET.{GROUPS_STREAM}.>", cb=on_direct)
        sub_indirect = await nc.subscribe(f"$JS.API.STREAM.MSG.GET.{GROUPS_STREAM}", cb=on_indirect)
        await nc.flush()
        await asyncio.sleep(1.0)  # about 50 ticks
        # Before: every tick read all 30 groups (about 1,500 reads here).
        assert direct == [] and indirect == [], f"{len(direct) + len(indirect)} group reads while nothing was due"

        clock.advance(hours=1, seconds=1)
        hits = await receiver.wait_for(30, timeout=30)
        assert sorted(h.json()["data"]["alerts"][0]["id"] for h in hits) == [f"alert-idle-{i:02d}" for i in range(30)]
        await app.dispatcher.drain()
        await nc.flush()
        # The due groups, written last by this replica (each of one alert, so of one partition), were planned
        # from memory; any read of a group is a direct get (the raw value, no JSON + base64 envelope).
        assert len(direct) <= 30 and indirect == []
        await sub_direct.unsubscribe()
        await sub_indirect.unsubscribe()
    finally:
        await app.stop()


async def test_a_replica_keeps_a_bounded_number_of_groups_in_memory_and_still_sends_them_all(
    js: JetStreamContext, receiver: ScriptedReceiver, nats_server: NatsServerProcess, monkeypatch: Any
) -> None:
    """40 groups with room for 10 parsed states: every group is still told once; memory holds at most 10."""
    monkeypatch.setattr(dispatcher, "MAX_CACHED_GROUPS", 10)
    clock = ManualClock()
    settings = NotifierSettings(nats_url=nats_server.url, instance="replica-a", notifier_tick=0.02)
    app = create_app(settings, config=webhook_config(receiver.url(), route=PER_ALERT), clock=clock)
    await app.start()
    try:
        for i in range(40):
            await publish_alert(js, make_alert(f"alert-many-{i:02d}"))
        await settled(js)
        assert len(app.dispatcher._cache) <= 10
        clock.advance(hours=1, seconds=1)
        hits = await receiver.wait_for(40, timeout=60)
        assert sorted(h.json()["data"]["alerts"][0]["id"] for h in hits) == [f"alert-many-{i:02d}" for i in range(40)]
        await app.dispatcher.drain()
        assert len(app.dispatcher._cache) <= 10
    finally:
        await app.stop()


@contextlib.asynccontextmanager
async def _one_group(
    js: JetStreamContext, receiver: ScriptedReceiver, nats_server: NatsServerProcess, instance: str, alert_id: str
) -> AsyncIterator[tuple[NotifierApp, str]]:
    """A started notifier whose one waiting group holds ``alert_id``, and that group's key; stopped on the way out."""
    settings = NotifierSettings(nats_url=nats_server.url, instance=instance, notifier_tick=0)
    app = create_app(settings, config=webhook_config(receiver.url(), route=WAITING))
    await app.start()
    try:
        await app.dispatcher.record(make_alert(alert_id))
        [key] = await live_kv_keys(js, bus.NOTIFY_GROUPS.name)
        yield app, key
    finally:
        await app.stop()


def _before_next_update(app: NotifierApp, monkeypatch: Any, before: Callable[[], Awaitable[None]]) -> list[int]:
    """Run ``before`` as the group bucket's next update is made (a batch's write), then make it; the list returned
    gets the revision that update was made over."""
    update = app.dispatcher.groups.update
    raced: list[int] = []

    async def racing_update(*args: Any, **kwargs: Any) -> Any:
        if not raced:
            raced.append(kwargs["last"])
            await before()
        return await update(*args, **kwargs)

    monkeypatch.setattr(app.dispatcher.groups, "update", racing_update)
    return raced


async def test_a_batch_whose_write_lost_to_the_same_replicas_write_retries_from_it_without_reading_kv(
    js: JetStreamContext, receiver: ScriptedReceiver, nats_server: NatsServerProcess, monkeypatch: Any
) -> None:
    """The group is rewritten by this replica (a flush, say) while a batch is applied: its retry reads nothing."""
    async with _one_group(js, receiver, nats_server, "replica-a", "alert-race-1") as (app, key):
        kept = app.dispatcher
        get = kept.groups.get
        reads: list[str] = []

        async def counted_get(*args: Any, **kwargs: Any) -> Any:
            reads.append(args[0])
            return await get(*args, **kwargs)

        def add_third(state: GroupState | None) -> tuple[GroupState | None, str]:
            assert state is not None
            return add_alert(state, make_alert("alert-race-3"), kept.clock())[0], "added"

        async def own_write() -> None:  # the batch's write: the replica's own write of the same group lands first
            await kept._update(key, add_third)

        raced = _before_next_update(app, monkeypatch, own_write)
        monkeypatch.setattr(kept.groups, "get", counted_get)
        await kept.record(make_alert("alert-race-2"))
        # before: the refused compare-and-set dropped what this replica had just written and read the group again
        assert raced and reads == []
        entry = await get(key)
        state = GroupState.model_validate_json(entry.value or b"")
        assert sorted(state.alerts) == ["alert-race-1", "alert-race-2", "alert-race-3"]


async def _another_replica_moves_a_digest(js: JetStreamContext, clock: datetime, key: str, alert_id: str) -> None:
    """What another replica's group write may do: the digest of ``alert_id`` moved to the seen bucket, the group
    rewritten (the same value at a new revision is enough to refuse a compare-and-set over the old one)."""
    groups = await js.key_value(bus.NOTIFY_GROUPS.name)
    seen = await js.key_value(bus.NOTIFY_SEEN.name)
    spilled = f"{int(clock.timestamp())} {digest(alert_id + ':firing')}"
    await seen.put(f"{key}.{uuid.uuid4().hex[:16]}", spilled.encode())
    entry = await groups.get(key)
    await groups.update(key, entry.value or b"", last=entry.revision)


@pytest.mark.parametrize("when", ["while_the_batch_is_applied", "before_the_batch"])
async def test_an_alert_another_replica_moved_to_the_seen_bucket_stays_deduplicated_after_this_replica_reads_the_group(
    js: JetStreamContext,
    receiver: ScriptedReceiver,
    nats_server: NatsServerProcess,
    monkeypatch: Any,
    when: str,
) -> None:
    """Replica B knows group g; replica A writes g, moving alert-x's digest to the seen bucket; B reads A's write
    (its flush, say), then alert-x is redelivered to B: it is recognised, not grouped again to be told twice."""
    async with _one_group(js, receiver, nats_server, "replica-b", "alert-1") as (app, key):
        kept = app.dispatcher

        async def other_write_read() -> None:
            await _another_replica_moves_a_digest(js, kept.clock(), key, "alert-x")
            await kept._get(key)

        if when == "before_the_batch":
            await other_write_read()
        else:  # B's batch write: A writes first, and B reads A's write
            _before_next_update(app, monkeypatch, other_write_read)
        await kept.record_batch([make_alert("alert-x"), make_alert("alert-2")])
        state = GroupState.model_validate_json((await kept.groups.get(key)).value or b"")
        # before: "while": the refused write retried from the group B had read, with B's old seen digests;
        # "before": no write was refused, and B's seen digests were never read again
        assert sorted(state.alerts) == ["alert-1", "alert-2"]
        assert suppressed(app, "deduplicated") == 1
