"""Notifier replicas that share the alerts stream's partitions (services/notifier/partitions.py), on a real nats-server.

Two replicas each send some groups' notifications and none twice; a replica started later gets a
share; a replica killed -9 in the middle of a backlog loses its partitions to the other, which
notifies every alert, repeating at most the one notification per group that was in flight.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from nats.js import JetStreamContext
from nats.js.api import StreamConfig

from services.notifier.app import NotifierApp
from services.notifier.partitions import LEGACY, PARTITIONS
from tests.notifier.conftest import (
    SECRET,
    AppFactory,
    Hit,
    ScriptedReceiver,
    make_alert,
    publish_alert,
    settled,
)
from veille import bus
from veille.config import VeilleConfig, parse_config
from veille.natsserver import NatsServerProcess

REPO = Path(__file__).resolve().parents[2]
WATCHES = [f"w{i:02d}" for i in range(32)]


def _config_text(url: str) -> str:
    watches = "\n".join(f"  - {{name: {w}, query: {w}}}" for w in WATCHES)
    return f"""
version: 1
watches:
{watches}
receivers:
  - name: hook
    webhook:
      - url: {url}
        secret: {SECRET}
route:
  receiver: hook
  group_by: [watch]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 4h
"""


def _config(url: str) -> VeilleConfig:
    return parse_config(_config_text(url), env={})


def _sent(app: NotifierApp) -> float:
    return float(app.notifier_metrics.notifications.labels("hook", "webhook", "sent")._value.get())


def _told(hits: list[Hit]) -> dict[str, set[str]]:
    """Alert id -> the notification ids (webhook-id) that carried it."""
    out: dict[str, set[str]] = defaultdict(set)
    for hit in hits:
        for alert in hit.json()["data"]["alerts"]:
            out[alert["id"]].add(hit.headers["webhook-id"])
    return out


async def _eventually(check: object, timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = check() if callable(check) else check
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def test_the_stream_stores_each_alert_on_the_partition_of_its_watch(js: JetStreamContext) -> None:
    """nats-server's subject transform and veille.bus.alert_partition agree on every watch's partition."""
    await bus.ensure_topology(js)
    for watch in [*WATCHES, "Acme Corp", "société"]:
        ack = await js.publish(bus.alert_subject(watch), b"{}", headers={"Nats-Msg-Id": f"p-{watch}"})
        stored = await js.get_msg(bus.ALERTS.name, ack.seq)
        assert stored.subject == f"{bus.alert_subject(watch)}.{bus.alert_partition(watch)}"
    assert len({bus.alert_partition(w) for w in WATCHES}) > bus.NOTIFIER_PARTITIONS // 2  # spread, not lumped


async def test_an_alert_stored_before_the_upgrade_is_still_notified_through_the_legacy_consumer(
    nats_server: NatsServerProcess, receiver: ScriptedReceiver, notifier_factory: AppFactory
) -> None:
    """An alerts stream made before partitions holds one alert: the upgraded notifier notifies it and the new ones."""
    import nats

    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        old = bus.ALERTS.config()
        old.subject_transform = None
        await js.add_stream(old)  # as the previous version created it: no transform
        await js.add_consumer(bus.ALERTS.name, bus.Consumer(bus.ALERTS.name, "notifier", "veille.alerts.>").config())
        await publish_alert(js, make_alert("before-upgrade", watch="w01"))
        app = await notifier_factory(_config(receiver.url()), instance="upgraded", tick=0.05)
        info = await js.stream_info(bus.ALERTS.name)
        assert isinstance(info.config, StreamConfig) and info.config.subject_transform is not None
        await publish_alert(js, make_alert("after-upgrade", watch="w01"))
        await _eventually(lambda: len(_told(receiver.hits)) == 2, 15, "both alerts notified")
        await settled(js)
        await app.dispatcher.drain()
        told = _told(receiver.hits)
        assert sorted(told) == ["after-upgrade", "before-upgrade"]
        assert all(len(n) == 1 for n in told.values())
        legacy = await js.consumer_info(bus.ALERTS.name, bus.NOTIFIER_CONSUMER.durable)
        assert legacy.config.filter_subject == "veille.alerts.*"  # narrowed to the alerts stored before
    finally:
        await nc.close()


async def test_two_replicas_share_the_partitions_and_send_each_alert_once(
    js: JetStreamContext, receiver: ScriptedReceiver, notifier_factory: AppFactory
) -> None:
    """Two replicas hold disjoint halves of the partitions; each sends its groups' notifications, none twice."""
    config = _config(receiver.url())
    a = await notifier_factory(config, instance="replica-a", tick=0.05, partition_lease=1.0)
    b = await notifier_factory(config, instance="replica-b", tick=0.05, partition_lease=1.0)
    assert a.leases is not None and b.leases is not None
    await _eventually(
        lambda: len(a.leases.owned) + len(b.leases.owned) == PARTITIONS and len(b.leases.owned) > 0,  # type: ignore[union-attr]
        30,
        "the partitions split between the replicas",
    )
    assert set(a.leases.owned).isdisjoint(b.leases.owned)
    assert abs(len(a.leases.owned) - len(b.leases.owned)) <= 1
    ids = [f"s{i:03d}" for i in range(len(WATCHES) * 5)]
    for index, alert_id in enumerate(ids):
        await publish_alert(js, make_alert(alert_id, watch=WATCHES[index % len(WATCHES)]))
    await settled(js, timeout=30)
    await _eventually(lambda: set(_told(receiver.hits)) == set(ids), 30, "every alert notified")
    await asyncio.gather(a.dispatcher.drain(), b.dispatcher.drain())
    await asyncio.sleep(0.5)  # more ticks on both: nothing more is sent
    told = _told(receiver.hits)
    assert all(len(notifications) == 1 for notifications in told.values()), "an alert was notified twice"
    assert len({h.headers["webhook-id"] for h in receiver.hits}) == len(receiver.hits)
    assert _sent(a) > 0 and _sent(b) > 0, "both replicas sent notifications"
    assert _sent(a) + _sent(b) == len(receiver.hits)
    # Each group's notifications come from the replica holding its watch's partition.
    watches = [hit.json()["data"]["group_labels"]["watch"] for hit in receiver.hits]
    assert _sent(a) == sum(1 for w in watches if bus.alert_partition(w) in a.leases.owned)
    assert _sent(b) == sum(1 for w in watches if bus.alert_partition(w) in b.leases.owned)


async def test_a_replica_started_later_gets_a_share(
    js: JetStreamContext, receiver: ScriptedReceiver, notifier_factory: AppFactory
) -> None:
    """One replica holds all partitions; a second one started later takes half of them and sends their alerts."""
    config = _config(receiver.url())
    a = await notifier_factory(config, instance="first", tick=0.05, partition_lease=1.0)
    assert a.leases is not None and set(a.leases.owned) == set(range(PARTITIONS))  # alone: everything, at once
    for index in range(len(WATCHES)):
        await publish_alert(js, make_alert(f"early{index}", watch=WATCHES[index]))
    await receiver.wait_for(len(WATCHES))
    b = await notifier_factory(config, instance="second", tick=0.05, partition_lease=1.0)
    assert b.leases is not None
    await _eventually(lambda: len(b.leases.owned) >= PARTITIONS // 2, 30, "the late replica's share")  # type: ignore[union-attr]
    assert set(a.leases.owned).isdisjoint(b.leases.owned) and len(a.leases.owned) <= PARTITIONS - PARTITIONS // 2
    sent_before = _sent(b)
    for index in range(len(WATCHES)):
        await publish_alert(js, make_alert(f"late{index}", watch=WATCHES[index]))
    await _eventually(lambda: len(_told(receiver.hits)) == 2 * len(WATCHES), 30, "every alert notified")
    assert _sent(b) > sent_before, "the late replica sent its partitions' alerts"
    assert all(len(n) == 1 for n in _told(receiver.hits).values())
    # Its consumers are the partitions it holds: their alerts were acked by it.
    for partition in b.leases.owned:
        if partition == LEGACY:
            continue
        info = await js.consumer_info(bus.ALERTS.name, bus.notifier_partition_consumer(partition).durable)
        assert info.num_pending == 0 and info.num_ack_pending == 0


def _spawn(nats_url: str, config: Path, tmp: Path, instance: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PYTHONPATH": f"{REPO / 'shared'}:{REPO}",
        "VEILLE_NATS_URL": nats_url,
        "VEILLE_CONFIG": str(config),
        "VEILLE_INSTANCE": instance,
        "VEILLE_NOTIFIER_LEASE": "2",
        "VEILLE_NOTIFIER_PARTITION_LEASE": "2",
        "VEILLE_NOTIFIER_TICK": "0.05",
        "VEILLE_NOTIFIER_BATCH": "50",
        "VEILLE_HTTP_PORT": "0",
        "VEILLE_LOG_FORMAT": "json",
    }
    log = (tmp / f"{instance}.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "services.notifier"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
    )


async def test_a_replica_killed_mid_batch_loses_its_partitions_and_every_alert_is_notified(
    js: JetStreamContext,
    receiver: ScriptedReceiver,
    notifier_factory: AppFactory,
    nats_server: NatsServerProcess,
    tmp_path: Path,
) -> None:
    """SIGKILL a replica while it holds fetched, unacked alerts: the other takes its partitions, notifies all.

    At most one notification per group is repeated (the one in flight at the kill, same webhook-id).
    """
    config_path = tmp_path / "veille.yaml"
    config_path.write_text(_config_text(receiver.url()))
    survivor = await notifier_factory(
        _config(receiver.url()), instance="survivor", tick=0.05, partition_lease=2.0, lease=2.0
    )
    assert survivor.leases is not None
    victim = _spawn(nats_server.url, config_path, tmp_path, "victim")
    try:
        await _eventually(lambda: len(survivor.leases.owned) <= PARTITIONS // 2 + 1, 60, "the victim's share")  # type: ignore[union-attr]
        theirs = sorted(set(range(bus.NOTIFIER_PARTITIONS)) - set(survivor.leases.owned))
        assert theirs, "the victim holds partitions"
        victim_watches = [w for w in WATCHES if bus.alert_partition(w) in theirs]
        ids = [f"k{round_:02d}-{watch}" for round_ in range(60) for watch in WATCHES]

        async def publish() -> None:  # a stream of alerts on every partition, the victim's included
            for alert_id in ids:
                await publish_alert(js, make_alert(alert_id, watch=alert_id.split("-", 1)[1]))

        async def victim_mid_batch() -> bool:
            for partition in theirs:
                info = await js.consumer_info(bus.ALERTS.name, bus.notifier_partition_consumer(partition).durable)
                if info.num_ack_pending > 0:
                    return True
            return False

        async def victim_frozen_mid_batch() -> bool:
            # Frozen first (SIGSTOP), so that it cannot ack between the check and the kill; let go and retry
            # when it held nothing unacked at that instant.
            if not await victim_mid_batch():
                return False
            victim.send_signal(signal.SIGSTOP)
            if await victim_mid_batch():
                return True
            victim.send_signal(signal.SIGCONT)
            return False

        publishing = asyncio.create_task(publish())
        await _eventually(victim_frozen_mid_batch, 60, "the victim holding fetched, unacked alerts of its partitions")
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
        await publishing
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait(timeout=10)
    await _eventually(
        lambda: set(survivor.leases.owned) == set(range(PARTITIONS)),  # type: ignore[union-attr]
        30,
        "the survivor taking every partition",
    )
    # What the victim held unacked comes back after the partition consumers' ack_wait (30 s).
    await _eventually(lambda: set(_told(receiver.hits)) == set(ids), 120, "every alert notified")
    await settled(js, timeout=60)
    await survivor.dispatcher.drain()
    told = _told(receiver.hits)
    assert all(len(notifications) == 1 for notifications in told.values()), "an alert was in two notifications"
    repeats: dict[str, int] = defaultdict(int)
    seen: set[str] = set()
    for hit in receiver.hits:
        webhook_id = hit.headers["webhook-id"]
        if webhook_id in seen:
            repeats[hit.json()["data"]["group_labels"]["watch"]] += 1
        seen.add(webhook_id)
    assert all(count <= 1 for count in repeats.values()), f"more than one repeat in a group: {dict(repeats)}"
    assert set(repeats) <= set(victim_watches), "only the dead replica's groups may repeat"
    deliveries = 0
    for partition in theirs:
        info = await js.consumer_info(bus.ALERTS.name, bus.notifier_partition_consumer(partition).durable)
        deliveries += info.delivered.consumer_seq
    victim_alerts = sum(1 for alert_id in ids if bus.alert_partition(alert_id.split("-", 1)[1]) in theirs)
    assert deliveries > victim_alerts, "the victim died holding alerts it had fetched and not acked (redelivered)"
