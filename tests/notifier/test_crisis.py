"""A crisis on a real nats-server under a controlled clock: a flood of negative mentions in one group.

Before groups were capped, every alert was kept in the group's one KV value: ~1 KB each, so the value
passed NATS's 1 MB limit after about 900 alerts and the next ones were retried, then dead-lettered.
"""

from __future__ import annotations

from nats.js import JetStreamContext

from services.notifier.grouping import MAX_GROUP_ALERTS, MAX_SEEN, seen_count
from services.notifier.model import GroupState
from tests.helpers.kv import live_kv_keys
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
from veille import bus
from veille.models import AlertRaised

BY_WATCH = """
  routes:
    - matchers: [watch="acme"]
      group_by: [watch]
      group_wait: 30s
      group_interval: 5m
"""
TEXT = "Acme's checkout has been down for hours and nobody answers the phone " * 7  # ~1 KB alerts
CRISIS = 1200


def mention(i: int) -> AlertRaised:
    return make_alert(f"alert-crisis-{i:05d}", text=TEXT)


async def group_values(js: JetStreamContext) -> list[bytes]:
    kv = await js.key_value(bus.NOTIFY_GROUPS.name)
    return [(await kv.get(key)).value or b"" for key in await live_kv_keys(js, bus.NOTIFY_GROUPS.name)]


async def test_a_crisis_group_stays_small_and_sends_one_notification_per_interval(
    js: JetStreamContext, receiver: ScriptedReceiver, notifier_factory: AppFactory
) -> None:
    """1,200 mentions: one notification listing 100 and 1,100 truncated; then a spike after the cap is listed."""
    clock = ManualClock()
    app = await notifier_factory(webhook_config(receiver.url(), route=BY_WATCH), clock=clock)
    assert len(mention(0).model_dump_json()) > 900
    for i in range(CRISIS):
        await publish_alert(js, mention(i))
    await flush(app, js, timeout=180)
    [value] = await group_values(js)
    assert len(value) < 250_000, f"group value is {len(value)} bytes"
    state = GroupState.model_validate_json(value)
    assert len(state.alerts) == MAX_GROUP_ALERTS and state.truncated == CRISIS - MAX_GROUP_ALERTS
    assert seen_count(state) <= MAX_SEEN
    assert suppressed(app, "truncated") == CRISIS - MAX_GROUP_ALERTS
    assert receiver.attempts == []

    clock.advance(seconds=31)
    await flush(app, js, timeout=180)
    [first] = receiver.hits
    data = first.json()["data"]
    validate_payload(first.json())
    assert [a["id"] for a in data["alerts"]] == [f"alert-crisis-{i:05d}" for i in range(MAX_GROUP_ALERTS)]
    assert data["truncated_alerts"] == CRISIS - MAX_GROUP_ALERTS and data["firing_count"] == CRISIS

    # Redeliveries of a listed and of a counted mention (same alert, new message id) change nothing.
    deduplicated = suppressed(app, "deduplicated")
    for i in (5, CRISIS - 1):
        payload = mention(i).model_dump_json().encode()
        await js.publish(bus.alert_subject("acme"), payload, headers={"Nats-Msg-Id": f"redelivered-{i}"})
    # The crisis goes on, and a volume spike is detected after the cap is reached again.
    for i in range(CRISIS, CRISIS + 150):
        await publish_alert(js, mention(i))
    spike = make_alert("alert-crisis-spike", kind="volume_spike", observed=3000.0, expected=40.0)
    await publish_alert(js, spike)
    clock.advance(minutes=4)
    await flush(app, js, timeout=180)
    assert suppressed(app, "deduplicated") == deduplicated + 2
    assert len(receiver.hits) == 1, "one notification per group_interval"
    clock.advance(minutes=1, seconds=1)
    await flush(app, js, timeout=180)
    first, second = receiver.hits
    data = second.json()["data"]
    validate_payload(second.json())
    listed = [a["id"] for a in data["alerts"]]
    assert listed == [f"alert-crisis-{i:05d}" for i in range(CRISIS, CRISIS + 99)] + ["alert-crisis-spike"]
    assert data["truncated_alerts"] == 51 and data["firing_count"] == 151  # 50 counted, 1 over the 100 listed

    clock.advance(minutes=30)
    await flush(app, js, timeout=180)
    assert len(receiver.hits) == 2  # mentions are told once; the spike repeats only after repeat_interval
    [value] = await group_values(js)
    assert len(value) < 100_000  # the told mentions left; the spike and the ids for deduplication remain
    dead = await js.stream_info(bus.DEADLETTER.name)
    assert dead.state.messages == 0
