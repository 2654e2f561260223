"""The webhook path end to end: alert on JetStream → notifier → signed POST on a loopback receiver."""

from __future__ import annotations

import asyncio

from nats.js import JetStreamContext

from services.notifier.signing import decode_secret, verify
from tests.helpers.servers import verify_standard_webhook
from tests.notifier.conftest import (
    SECRET,
    AppFactory,
    ScriptedReceiver,
    make_alert,
    publish_alert,
    validate_payload,
    webhook_config,
)


async def test_alert_on_the_stream_reaches_the_webhook_signed(
    js: JetStreamContext, receiver: ScriptedReceiver, notifier_factory: AppFactory
) -> None:
    """An alert published on VEILLE_ALERTS is POSTed once, signed per Standard Webhooks, in the v1 schema."""
    app = await notifier_factory(webhook_config(receiver.url()), tick=0.2)
    await publish_alert(js, make_alert("alert-e2e", text="<b>Acme</b> is down\r\nBcc: x@evil"))
    [hit] = await receiver.wait_for(1)
    assert verify_standard_webhook(SECRET, hit.headers, hit.body)
    assert verify(
        decode_secret(SECRET),
        hit.headers["webhook-id"],
        int(hit.headers["webhook-timestamp"]),
        hit.body,
        hit.headers["webhook-signature"],
    )
    assert hit.headers["X-Team"] == "comms"
    body = hit.json()
    validate_payload(body)
    assert body["type"] == "veille.alerts.firing"
    assert body["data"]["alerts"][0]["id"] == "alert-e2e"
    assert body["data"]["alerts"][0]["samples"][0]["text"] == "<b>Acme</b> is down\r\nBcc: x@evil"
    assert hit.headers["webhook-id"] == body["data"]["notification_id"]
    await app.dispatcher.drain()
    await asyncio.sleep(0.5)  # a few ticks: nothing more is sent
    assert len(receiver.attempts) == 1
    assert app.notifier_metrics.notifications.labels("hook", "webhook", "sent")._value.get() == 1


async def test_redelivered_alert_is_not_sent_twice(
    js: JetStreamContext, receiver: ScriptedReceiver, notifier_factory: AppFactory
) -> None:
    """The same alert published twice under new message ids still yields one notification."""
    await notifier_factory(webhook_config(receiver.url()), tick=0.2)
    alert = make_alert("alert-dup")
    await publish_alert(js, alert)
    await receiver.wait_for(1)
    await js.publish("veille.alerts.acme", alert.model_dump_json().encode(), headers={"Nats-Msg-Id": "other-id"})
    await asyncio.sleep(1.0)
    assert len(receiver.attempts) == 1
