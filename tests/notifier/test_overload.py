"""A notifier under a backlog it cannot clear at once, on a real nats-server and a real loopback webhook.

What a user notices: every alert is notified exactly once, the replica keeps the partitions it holds
(a lost lease stops its consumers and hands its groups to nobody until it takes them back), and the
NATS server is not asked again and again about groups the notifier already knows.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from services.notifier.partitions import PARTITIONS, PartitionLeases
from tests.helpers.kv import live_kv_keys
from tests.notifier.conftest import AppFactory, ScriptedReceiver, make_alert, publish_alert, settled, webhook_config
from veille import bus

GROUPS_STREAM = f"KV_{bus.NOTIFY_GROUPS.name}"
WATCHES = [f"brand{i}" for i in range(8)]
# Each alert its own group, sent at once: what bench/e2e_bench.py's latency runs configure.
PER_ALERT = """
  routes:
    - matchers: [watch=~".*"]
      group_by: ["..."]
      group_wait: 0s
      group_interval: 1s
"""


def _alert_ids(receiver: ScriptedReceiver) -> list[str]:
    return [alert["id"] for hit in receiver.hits for alert in hit.json()["data"]["alerts"]]


async def test_a_large_backlog_of_single_alert_groups_keeps_the_leases_and_notifies_each_alert_once(
    js: JetStreamContext, receiver: ScriptedReceiver, notifier_factory: AppFactory, monkeypatch: Any
) -> None:
    """2,000 alerts waiting, each its own group, partition leases of 1.5 s renewed every 0.5 s: none is lost.

    Before, the backlog started 2,000 flushes at once (thousands of KV requests and webhook POSTs in
    flight on one event loop); the renewals waited behind them past the lease and the partitions went.
    """
    lost: list[tuple[int, str]] = []
    original = PartitionLeases._lost

    def record_loss(self: PartitionLeases, partition: int, reason: str) -> None:
        lost.append((partition, reason))
        original(self, partition, reason)

    monkeypatch.setattr(PartitionLeases, "_lost", record_loss)
    n = 2000
    sem = asyncio.Semaphore(200)

    async def one(i: int) -> None:
        async with sem:
            await publish_alert(js, make_alert(f"alert-backlog-{i:05d}", watch=WATCHES[i % len(WATCHES)]))

    await asyncio.gather(*(one(i) for i in range(n)))
    app = await notifier_factory(webhook_config(receiver.url(), route=PER_ALERT), tick=0.05, partition_lease=1.5)
    await receiver.wait_for(n, timeout=240)
    await settled(js, timeout=60)
    await app.dispatcher.drain()
    ids = _alert_ids(receiver)
    assert len(ids) == n and len(set(ids)) == n, f"{len(ids)} notified, {len(set(ids))} distinct, of {n}"
    assert lost == [], f"partitions lost under the backlog: {lost[:5]}"
    assert app.leases is not None and len(app.leases.owned) == PARTITIONS


@pytest.mark.parametrize("groups", [60])
async def test_single_alert_groups_are_recorded_sent_and_rescanned_without_reading_them_back(
    js: JetStreamContext, nc: NatsClient, receiver: ScriptedReceiver, notifier_factory: AppFactory, groups: int
) -> None:
    """Groups of one alert each: created, planned, sent, finalised and rescanned (every 0.1 s) with no group read.

    Before, each new group was read before being created (a miss), read again to be planned, and every
    rescan (10 s by default) read and planned every group of the bucket; with each alert its own group
    (each kept an hour to drop redeliveries) that was an hour of groups read every 10 s.
    """
    reads: list[str] = []

    async def on_read(msg: Msg) -> None:
        reads.append(msg.subject)

    subs = [
        await nc.subscribe(f"$JS.API.DIRECT.GET.{GROUPS_STREAM}.>", cb=on_read),
        await nc.subscribe(f"$JS.API.STREAM.MSG.GET.{GROUPS_STREAM}", cb=on_read),
    ]
    await nc.flush()
    app = await notifier_factory(webhook_config(receiver.url(), route=PER_ALERT), tick=0.02)
    app.settings = app.settings.model_copy(update={"notifier_rescan": 0.1})
    for i in range(groups):
        await publish_alert(js, make_alert(f"alert-known-{i:03d}", watch=WATCHES[i % len(WATCHES)]))
    await receiver.wait_for(groups, timeout=30)
    await settled(js)
    await app.dispatcher.drain()
    await asyncio.sleep(1.0)  # about ten rescans
    await nc.flush()
    for sub in subs:
        await sub.unsubscribe()
    groups_kept = await live_kv_keys(js, bus.NOTIFY_GROUPS.name)  # read after: its direct gets are not the notifier's
    assert len(groups_kept) == groups  # each kept (its digest) for the deduplication window
    assert reads == [], f"{len(reads)} group reads for {groups} single-alert groups sent and rescanned ten times"
    assert sorted(_alert_ids(receiver)) == [f"alert-known-{i:03d}" for i in range(groups)]


async def test_a_delivery_ending_after_its_partition_was_lost_leaves_no_copy_to_plan_from_when_it_comes_back(
    js: JetStreamContext, nc: NatsClient, receiver: ScriptedReceiver, notifier_factory: AppFactory
) -> None:
    """A lease moves away while a POST is in flight, then comes back: the group is read again from KV.

    Meanwhile its new owner may have recorded alerts in it. Before, the delivery's final write put the
    group back in this replica's memory as one it alone writes, due hours later: when the partition came
    back, the rescan skipped it and the owner's alerts waited for that stale time.
    """
    receiver.hold = asyncio.Event()
    app = await notifier_factory(webhook_config(receiver.url(), route=PER_ALERT), tick=0.02)
    app.settings = app.settings.model_copy(update={"notifier_rescan": 0.1})
    await publish_alert(js, make_alert("alert-moved", watch=WATCHES[0]))
    await receiver.wait_for(1, attempts=True)  # the POST is in flight
    [key] = await live_kv_keys(js, bus.NOTIFY_GROUPS.name)
    partition = app.dispatcher._partition_of[key]
    held = app.dispatcher.owns
    app.dispatcher.owns = lambda p: p != partition and held(p)  # the lease went to another replica
    app.dispatcher.forget_partition(partition)
    receiver.hold.set()
    await receiver.wait_for(1)
    await app.dispatcher.drain()  # the final write of that delivery is done

    reads: list[str] = []

    async def on_read(msg: Msg) -> None:
        reads.append(msg.subject)

    sub = await nc.subscribe(f"$JS.API.DIRECT.GET.{GROUPS_STREAM}.>", cb=on_read)
    await nc.flush()
    app.dispatcher.owns = held  # the partition is back
    await asyncio.sleep(0.5)  # a few rescans
    await nc.flush()
    await sub.unsubscribe()
    assert any(subject.endswith(key) for subject in reads), reads
