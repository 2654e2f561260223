"""Delivery on real parts: retries, Retry-After, non-retryable 4xx, dead letters and replay, isolation."""

from __future__ import annotations

import asyncio
import json

from click.testing import CliRunner
from nats.js import JetStreamContext

from services.notifier.model import Notification
from tests.notifier.conftest import (
    AppFactory,
    RecordingSleep,
    ScriptedReceiver,
    make_alert,
    publish_alert,
    webhook_config,
)
from veille.natsserver import NatsServerProcess
from veille_cli.dlq_cmd import DeadLetterEntry, dlq, list_dead_letters


async def wait_dead_letters(js: JetStreamContext, count: int, timeout: float = 15.0) -> list[DeadLetterEntry]:
    """Poll the dead-letter stream until ``count`` notification entries are there."""
    deadline = asyncio.get_running_loop().time() + timeout
    entries = await list_dead_letters(js, service="notifier", kind="notification")
    while len(entries) < count and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
        entries = await list_dead_letters(js, service="notifier", kind="notification")
    assert len(entries) >= count, f"expected {count} dead letters, got {len(entries)}"
    return entries


async def test_receiver_failing_twice_then_succeeding_gets_one_notification(
    js: JetStreamContext, receiver: ScriptedReceiver, notifier_factory: AppFactory
) -> None:
    """Two 503s then a 200: three attempts with the same webhook-id, one delivery, two retries counted."""
    receiver.script = [503, 503, 200]
    sleep = RecordingSleep()
    app = await notifier_factory(webhook_config(receiver.url()), sleep=sleep)
    await publish_alert(js, make_alert("alert-retry"))
    [hit] = await receiver.wait_for(1)
    await app.dispatcher.drain()
    attempts = await receiver.wait_for(3, attempts=True)
    assert len({a.headers["webhook-id"] for a in attempts}) == 1
    assert attempts[0].body == hit.body  # the same bytes on every attempt
    assert len(sleep.delays) == 2 and all(d > 0 for d in sleep.delays)
    metrics = app.notifier_metrics
    assert metrics.retries.labels("hook", "webhook")._value.get() == 2
    assert metrics.notifications.labels("hook", "webhook", "sent")._value.get() == 1


async def test_retry_after_is_honoured(
    js: JetStreamContext, receiver: ScriptedReceiver, notifier_factory: AppFactory
) -> None:
    """A 429 with Retry-After: 7 makes the notifier wait exactly 7 seconds before the next attempt."""
    receiver.script = [(429, {"Retry-After": "7"}), (503, {"Retry-After": "2"}), 200]
    sleep = RecordingSleep()
    await notifier_factory(webhook_config(receiver.url()), sleep=sleep)
    await publish_alert(js, make_alert("alert-429"))
    await receiver.wait_for(1)
    assert sleep.delays == [7.0, 2.0]


async def test_client_error_is_not_retried_and_dead_lettered(
    js: JetStreamContext, receiver: ScriptedReceiver, notifier_factory: AppFactory
) -> None:
    """A 400 is final: one attempt, then a dead letter naming the receiver and the status."""
    receiver.always = 400
    app = await notifier_factory(webhook_config(receiver.url()), sleep=RecordingSleep())
    await publish_alert(js, make_alert("alert-400"))
    [entry] = await wait_dead_letters(js, 1)
    assert len(receiver.attempts) == 1
    assert entry.letter.receiver == "hook.webhook.0"
    assert "not retryable" in entry.letter.reason and "400" in entry.letter.reason
    assert app.notifier_metrics.dead_letters.labels("hook", "webhook")._value.get() == 1


async def test_receiver_down_for_good_is_dead_lettered_then_replayed(
    js: JetStreamContext, receiver: ScriptedReceiver, notifier_factory: AppFactory, nats_server: NatsServerProcess
) -> None:
    """After the last attempt the notification is a dead letter; `dlq replay` delivers it once, same id."""
    receiver.always = 503
    await notifier_factory(webhook_config(receiver.url()), sleep=RecordingSleep(), max_attempts=3)
    await publish_alert(js, make_alert("alert-down"))
    [entry] = await wait_dead_letters(js, 1)
    assert len(receiver.attempts) == 3
    assert entry.letter.attempts == 3 and "gave up after 3 attempt(s)" in entry.letter.reason
    failed_id = receiver.attempts[0].headers["webhook-id"]
    url = ["--nats-url", nats_server.url]
    listed = await asyncio.to_thread(CliRunner().invoke, dlq, ["list", *url])
    assert listed.exit_code == 0 and f"{entry.seq}" in listed.output and "hook.webhook.0" in listed.output

    receiver.always = None  # the receiver is back
    replayed = await asyncio.to_thread(CliRunner().invoke, dlq, ["replay", str(entry.seq), *url])
    assert replayed.exit_code == 0 and f"replayed {entry.seq}" in replayed.output
    [hit] = await receiver.wait_for(1)
    assert hit.headers["webhook-id"] == failed_id
    assert json.loads(hit.body)["data"]["alerts"][0]["id"] == "alert-down"
    assert await list_dead_letters(js, service="notifier", kind="notification") == []
    await asyncio.sleep(0.5)
    assert len(receiver.hits) == 1
    Notification.model_validate_json(__import__("base64").b64decode(entry.letter.payload))


async def test_slow_receiver_does_not_delay_another(
    js: JetStreamContext, receiver: ScriptedReceiver, notifier_factory: AppFactory
) -> None:
    """While one receiver holds its request open, another receiver's notification goes through."""
    slow = ScriptedReceiver(hold=asyncio.Event())
    await slow.start()
    try:
        extra = f"""
  - name: slow
    webhook:
      - url: {slow.url()}
"""
        route = """
  routes:
    - receiver: slow
      matchers: [watch="globex"]
"""
        await notifier_factory(webhook_config(receiver.url(), receivers_extra=extra, route=route))
        await publish_alert(js, make_alert("alert-slow", watch="globex"))
        await slow.wait_for(1, attempts=True)  # the slow receiver is now holding a request
        await publish_alert(js, make_alert("alert-fast", watch="acme"))
        [hit] = await receiver.wait_for(1)
        assert hit.json()["data"]["alerts"][0]["id"] == "alert-fast"
        assert slow.hits == []
        slow.hold.set()  # type: ignore[union-attr]
        await slow.wait_for(1)
    finally:
        if slow.hold is not None:
            slow.hold.set()
        await slow.stop()
