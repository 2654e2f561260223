"""Grouping, silences, quiet hours and resolutions on a real nats-server, under a controlled clock."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from click.testing import CliRunner
from nats.js import JetStreamContext

from tests.notifier.conftest import (
    AppFactory,
    ManualClock,
    ScriptedReceiver,
    flush,
    make_alert,
    publish_alert,
    suppressed,
    validate_payload,
    webhook_config,
)
from veille.models import utcnow
from veille.natsserver import NatsServerProcess
from veille_cli.silence_cmd import silence

GROUPED_ROUTE = """
  routes:
    - matchers: [watch="acme"]
      group_wait: 30s
      group_interval: 5m
"""


async def test_alerts_are_grouped_until_group_wait_then_group_interval(
    js: JetStreamContext, receiver: ScriptedReceiver, notifier_factory: AppFactory
) -> None:
    """Two alerts within group_wait make one notification; a third waits for group_interval."""
    clock = ManualClock()
    app = await notifier_factory(webhook_config(receiver.url(), route=GROUPED_ROUTE), clock=clock)
    await publish_alert(js, make_alert("a1"))
    await publish_alert(js, make_alert("a2"))
    await flush(app, js)
    assert receiver.attempts == []
    clock.advance(seconds=31)
    await flush(app, js)
    [first] = receiver.hits
    assert [a["id"] for a in first.json()["data"]["alerts"]] == ["a1", "a2"]
    assert suppressed(app, "grouped") == 1

    clock.advance(seconds=10)
    await publish_alert(js, make_alert("a3"))
    await flush(app, js)
    clock.advance(minutes=2)
    await flush(app, js)
    assert len(receiver.hits) == 1  # group_interval (5m since the last notification) not over
    clock.advance(minutes=3)
    await flush(app, js)
    assert len(receiver.hits) == 2
    assert [a["id"] for a in receiver.hits[1].json()["data"]["alerts"]] == ["a3"]
    clock.advance(hours=5)
    await flush(app, js)
    assert len(receiver.hits) == 2  # single-mention alerts are not repeated


async def test_silence_from_the_command_line_mutes_matching_alerts_for_every_replica(
    js: JetStreamContext, receiver: ScriptedReceiver, notifier_factory: AppFactory, nats_server: NatsServerProcess
) -> None:
    """`veille silence add watch=acme` mutes acme, not globex; after `expire`, acme alerts flow again."""
    clock = ManualClock(utcnow())
    app = await notifier_factory(webhook_config(receiver.url()), clock=clock)
    runner = CliRunner()
    url = ["--nats-url", nats_server.url]
    added = await asyncio.to_thread(
        runner.invoke, silence, ["add", "watch=acme", "--for", "2h", "--comment", "known outage", *url]
    )
    assert added.exit_code == 0, added.output
    silence_id = added.stdout.strip().splitlines()[0]
    assert silence_id.startswith("sil_")
    clock.now = utcnow()

    await publish_alert(js, make_alert("s1", watch="acme"))
    await publish_alert(js, make_alert("s2", watch="globex"))
    await flush(app, js)
    assert [h.json()["data"]["alerts"][0]["id"] for h in receiver.hits] == ["s2"]
    assert suppressed(app, "silenced") == 1

    listed = await asyncio.to_thread(runner.invoke, silence, ["list", *url])
    assert silence_id in listed.output and "known outage" in listed.output and "active" in listed.output
    expired = await asyncio.to_thread(runner.invoke, silence, ["expire", silence_id, *url])
    assert expired.exit_code == 0 and f"expired {silence_id}" in expired.output
    clock.now = utcnow()
    assert "no silences" in (await asyncio.to_thread(runner.invoke, silence, ["list", *url])).output

    await publish_alert(js, make_alert("s3", watch="acme"))
    clock.advance(minutes=6)
    await flush(app, js)
    assert [h.json()["data"]["alerts"][0]["id"] for h in receiver.hits] == ["s2", "s3"]  # s1 stays muted
    bad = await asyncio.to_thread(runner.invoke, silence, ["add", "watch=~(", "--for", "1h", *url])
    assert bad.exit_code != 0 and "regular expression" in bad.output


QUIET = """
    quiet_hours:
      start: "22:00"
      end: "07:00"
      timezone: Europe/Paris
      critical_bypass: true
"""


async def test_quiet_hours_hold_warnings_until_morning_but_let_critical_through(
    js: JetStreamContext, receiver: ScriptedReceiver, notifier_factory: AppFactory
) -> None:
    """At 23:00 in Paris a warning waits until 07:00 while a critical alert goes out at once."""
    clock = ManualClock(datetime(2026, 3, 2, 22, 0, tzinfo=UTC))  # 23:00 in Paris (UTC+1)
    app = await notifier_factory(webhook_config(receiver.url(), receiver_opts=QUIET), clock=clock)
    await publish_alert(js, make_alert("q1", severity="warning"))
    await flush(app, js)
    assert receiver.hits == []
    assert suppressed(app, "quiet_hours") == 1
    await publish_alert(js, make_alert("q2", watch="globex", severity="critical"))
    await flush(app, js)
    assert [h.json()["data"]["alerts"][0]["id"] for h in receiver.hits] == ["q2"]
    clock.advance(hours=7, minutes=59)  # 06:59 in Paris
    await flush(app, js)
    assert len(receiver.hits) == 1
    assert suppressed(app, "quiet_hours") == 1  # counted once per held notification
    clock.advance(minutes=2)  # 07:01
    await flush(app, js)
    assert [h.json()["data"]["alerts"][0]["id"] for h in receiver.hits] == ["q2", "q1"]


async def test_resolved_alert_sends_a_resolved_notification(
    js: JetStreamContext, receiver: ScriptedReceiver, notifier_factory: AppFactory
) -> None:
    """A spike that fires then resolves gives a firing and then a resolved notification, both in schema."""
    clock = ManualClock()
    app = await notifier_factory(webhook_config(receiver.url()), clock=clock)
    spike = make_alert("spike-1", kind="volume_spike", observed=120.0, expected=20.0)
    await publish_alert(js, spike)
    await flush(app, js)
    clock.advance(minutes=1)
    await publish_alert(js, spike.model_copy(update={"status": "resolved"}))
    await flush(app, js)
    assert len(receiver.hits) == 1  # group_interval not over yet
    clock.advance(minutes=5)
    await flush(app, js)
    firing, resolved = (h.json() for h in receiver.hits)
    assert firing["type"] == "veille.alerts.firing" and resolved["type"] == "veille.alerts.resolved"
    assert resolved["data"]["alerts"][0]["status"] == "resolved"
    assert firing["data"]["notification_id"] != resolved["data"]["notification_id"]
    for body in (firing, resolved):
        validate_payload(body)
    clock.advance(hours=5)
    await flush(app, js)
    assert len(receiver.hits) == 2


async def test_firing_spike_is_repeated_after_repeat_interval(
    js: JetStreamContext, receiver: ScriptedReceiver, notifier_factory: AppFactory
) -> None:
    """A spike still firing is notified again after repeat_interval, with a new notification id."""
    clock = ManualClock()
    app = await notifier_factory(webhook_config(receiver.url()), clock=clock)
    await publish_alert(js, make_alert("spike-2", kind="volume_spike"))
    await flush(app, js)
    clock.advance(hours=3, minutes=59)
    await flush(app, js)
    assert len(receiver.hits) == 1
    clock.advance(minutes=2)
    await flush(app, js)
    assert len(receiver.hits) == 2
    assert receiver.hits[0].headers["webhook-id"] != receiver.hits[1].headers["webhook-id"]
