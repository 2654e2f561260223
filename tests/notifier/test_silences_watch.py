"""Silences held in memory from a KV watch (no read of the bucket per batch), on a real nats-server.

The silences are written as ``veille silence add`` and the console write them (``SilenceStore.put`` on
their own connection); the notifier learns of each through its watch of the ``veille_silences`` bucket.
Propagation is asynchronous (milliseconds): the tests wait until the notifier holds a change before
publishing the alert it concerns, as an operator's silence precedes the alerts it is meant to stop.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from nats.js import JetStreamContext

from services.notifier.app import NotifierApp
from services.notifier.silences import Silence, SilenceStore
from tests.notifier.conftest import (
    AppFactory,
    ManualClock,
    ScriptedReceiver,
    flush,
    make_alert,
    publish_alert,
    suppressed,
    webhook_config,
)
from veille.models import utcnow
from veille.natsserver import NatsServerProcess


def count_bucket_reads(app: NotifierApp) -> list[int]:
    """Count the notifier's reads of the whole silences bucket from now on."""
    store = app.dispatcher.silences
    reads = [0]
    read_all = store.all

    async def counted() -> list[Silence]:
        reads[0] += 1
        return await read_all()

    store.all = counted  # type: ignore[method-assign]
    return reads


async def held_ids(app: NotifierApp) -> set[str]:
    return {s.id for s in await app.dispatcher.silences.held()}


async def until_held(app: NotifierApp, silence_id: str, *, held: bool = True, timeout: float = 10.0) -> None:
    """Wait until the notifier's watch has brought (or dropped) ``silence_id``."""
    deadline = asyncio.get_running_loop().time() + timeout
    while (silence_id in await held_ids(app)) != held:
        assert asyncio.get_running_loop().time() < deadline, f"silence {silence_id} never {'held' if held else 'gone'}"
        await asyncio.sleep(0.01)


async def test_a_silence_added_while_running_stops_the_next_alert_and_its_expiry_lets_them_through(
    js: JetStreamContext, receiver: ScriptedReceiver, notifier_factory: AppFactory
) -> None:
    clock = ManualClock(utcnow())
    app = await notifier_factory(webhook_config(receiver.url()), clock=clock)
    reads = count_bucket_reads(app)
    store = await SilenceStore.open(js)

    await publish_alert(js, make_alert("w1", watch="acme"))
    await flush(app, js)
    assert len(receiver.hits) == 1

    muted = Silence.create(["watch=acme"], now=clock(), duration=timedelta(hours=1), comment="outage")
    await store.put(muted)
    await until_held(app, muted.id)
    await publish_alert(js, make_alert("w2", watch="acme"))
    clock.advance(minutes=6)  # past the group's group_interval
    await flush(app, js)
    assert len(receiver.hits) == 1 and suppressed(app, "silenced") == 1

    await store.expire(muted.id, clock())
    await until_held(app, muted.id, held=False)  # ended: not held any more (memory stays bounded)
    await publish_alert(js, make_alert("w3", watch="acme"))
    clock.advance(minutes=6)
    await flush(app, js)
    assert [h.json()["data"]["alerts"][0]["id"] for h in receiver.hits] == ["w1", "w3"]  # w2 stays muted
    assert reads[0] == 0, "the groups were planned against the silences held, without reading the bucket"


async def test_a_notifier_started_with_silences_stored_honours_them(
    js: JetStreamContext, receiver: ScriptedReceiver, notifier_factory: AppFactory
) -> None:
    clock = ManualClock(utcnow())
    store = await SilenceStore.open(js)
    muted = Silence.create(["watch=acme"], now=clock(), duration=timedelta(hours=1))
    await store.put(muted)
    pending = Silence.create(["watch=globex"], now=clock() + timedelta(hours=1), duration=timedelta(hours=1))
    await store.put(pending)  # starts in an hour: held, not yet muting
    await store.kv.put("sil_garbage", b"not a silence")  # unreadable: skipped (logged), never a crash

    app = await notifier_factory(webhook_config(receiver.url()), clock=clock)
    reads = count_bucket_reads(app)
    assert await held_ids(app) == {muted.id, pending.id}
    await publish_alert(js, make_alert("s1", watch="acme"))
    await publish_alert(js, make_alert("s2", watch="globex"))
    await flush(app, js)
    assert [h.json()["data"]["alerts"][0]["id"] for h in receiver.hits] == ["s2"]
    assert suppressed(app, "silenced") == 1

    await store.kv.delete(muted.id)  # deleted from the bucket: lifted
    await until_held(app, muted.id, held=False)
    clock.advance(hours=1, minutes=1)  # the pending one now holds: globex muted, acme flows
    await publish_alert(js, make_alert("s3", watch="acme"))
    await publish_alert(js, make_alert("s4", watch="globex"))
    await flush(app, js)
    assert [h.json()["data"]["alerts"][0]["id"] for h in receiver.hits] == ["s2", "s3"]
    assert reads[0] == 0


async def test_a_silence_added_after_nats_server_restarted_holds(
    js: JetStreamContext, receiver: ScriptedReceiver, notifier_factory: AppFactory, nats_server: NatsServerProcess
) -> None:
    """nats-server restarted on its store (the notifier's watch consumer is gone with it; nats-py reconnects
    without telling the watch): a silence added afterwards still stops the next matching alert, at once."""
    clock = ManualClock(utcnow())
    app = await notifier_factory(webhook_config(receiver.url()), clock=clock)
    nats_server.stop()
    await asyncio.sleep(0.5)
    nats_server.start()
    store = await SilenceStore.open(js)
    deadline = asyncio.get_running_loop().time() + 20
    while True:  # every client reconnected (the test's own js included)
        try:
            muted = Silence.create(["watch=acme"], now=clock(), duration=timedelta(hours=1))
            await store.put(muted)
            break
        except Exception:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.2)
    while not app.broker.connection.is_connected:
        assert asyncio.get_running_loop().time() < deadline, "the notifier never reconnected"
        await asyncio.sleep(0.05)
    await publish_alert(js, make_alert("r1", watch="acme"))
    await publish_alert(js, make_alert("r2", watch="globex"))
    await flush(app, js, timeout=20)
    assert [h.json()["data"]["alerts"][0]["id"] for h in receiver.hits] == ["r2"]
    assert suppressed(app, "silenced") == 1
