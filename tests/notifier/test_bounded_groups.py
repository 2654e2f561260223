"""A group's state stays bounded in a crisis: the cap on kept alerts, counted alerts, the deduplication window.

Pure grouping functions under a controlled clock (no broker): what a user would notice is the
notification (how many alerts listed, how many said to be left out, which ones) and that a
redelivered alert is still told once.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import jsonschema

from services.notifier.grouping import (
    DEDUP_WINDOW,
    MAX_GROUP_ALERTS,
    MAX_SEEN,
    REDELIVERY_HORIZON,
    SEEN_SLICE,
    add_alert,
    build_notification,
    finalize,
    new_group,
    plan,
    seen_count,
)
from services.notifier.integrations.email import render_email
from services.notifier.integrations.slack import slack_message
from services.notifier.integrations.teams import teams_message
from services.notifier.model import GroupState, Notification, Target
from services.notifier.payload import alertmanager_body, veille_body
from services.notifier.routing import ResolvedRoute
from services.notifier.silences import Silence
from tests.notifier.conftest import SCHEMA, T0, make_alert
from veille import bus
from veille.config import EmailReceiver
from veille.models import AlertRaised

INTERVAL = timedelta(minutes=5)
EMAIL = EmailReceiver.model_validate({"smarthost": "localhost:25", "sender": "v@example.org", "to": ["a@b.c"]})


def group() -> GroupState:
    """An empty group: group_wait 30 s, group_interval 5 min, repeat_interval 4 h."""
    route = ResolvedRoute("root", "hook", ("watch",), timedelta(seconds=30), INTERVAL, timedelta(hours=4))
    return new_group(Target("hook", "webhook"), route, "k", {"watch": "acme"})


def mention(i: int) -> AlertRaised:
    return make_alert(f"alert-m{i:05d}")


def add_all(state: GroupState, alerts: list[AlertRaised], now: datetime) -> tuple[GroupState, list[str]]:
    outcomes = []
    for alert in alerts:
        state, outcome = add_alert(state, alert, now)
        outcomes.append(outcome)
    return state, outcomes


def send(state: GroupState, now: datetime, silences: list[Silence] | None = None) -> tuple[GroupState, Notification]:
    """Plan the group at ``now``; it must send: return its state and the notification (not finalised)."""
    decision = plan(state, now, send_resolved=True, silences=silences or [], quiet=None)
    assert decision.state is not None and decision.send is not None, decision
    return decision.state, build_notification(decision.state, decision.send, now)


def test_the_dedup_window_covers_the_notifier_consumers_redelivery_horizon() -> None:
    """Redeliveries come at most max_deliver times, ack_wait apart; re-publications are the stream's job."""
    for consumer in bus.NOTIFIER_ALERT_CONSUMERS:  # one per partition, and the legacy one
        assert timedelta(seconds=consumer.ack_wait * consumer.max_deliver) <= REDELIVERY_HORIZON
        assert 50 * consumer.ack_wait <= MAX_SEEN  # a 50 alerts/s crisis still catches a redelivery after ack_wait
    assert REDELIVERY_HORIZON < DEDUP_WINDOW <= timedelta(seconds=bus.ALERTS.duplicate_window)


def test_a_crisis_keeps_the_cap_in_full_counts_the_rest_and_tells_them_in_one_notification() -> None:
    """5,000 negative mentions in one group: 100 kept, 4,900 counted; one notification lists 100 and says 4,900 more."""
    state, outcomes = add_all(group(), [mention(i) for i in range(5000)], T0)
    assert outcomes.count("truncated") == 4900 and len(state.alerts) == MAX_GROUP_ALERTS
    assert len(state.dump()) < 250_000  # 5.5 MB if every alert were kept; NATS refuses a value over 1 MB
    assert plan(state, T0 + timedelta(seconds=29), send_resolved=True, silences=[], quiet=None).send is None

    state, notification = send(state, T0 + timedelta(seconds=30))
    body = veille_body(notification)
    jsonschema.validate(body, SCHEMA)
    assert [a["id"] for a in body["data"]["alerts"]] == [f"alert-m{i:05d}" for i in range(100)]  # stream order
    assert body["data"]["truncated_alerts"] == 4900 and body["data"]["firing_count"] == 5000
    am = alertmanager_body(notification)
    assert len(am["alerts"]) == 100 and am["truncatedAlerts"] == 4900
    subject, text, _ = render_email(EMAIL, notification)
    assert "(+4,999 more)" in subject and "…and 4,980 more alert(s)." in text  # email lists 20
    assert "…and 4,995 more alert(s)" in json.dumps(slack_message(notification), ensure_ascii=False)  # Slack 5

    state = finalize(state, notification, T0 + timedelta(seconds=31))
    assert state.truncated == 0, "counted alerts are cleared once told"
    assert plan(state, T0 + timedelta(hours=3), send_resolved=True, silences=[], quiet=None).send is None
    assert add_alert(state, mention(4999), T0 + timedelta(minutes=10))[1] == "deduplicated"
    assert add_alert(state, mention(7), T0 + timedelta(minutes=10))[1] == "deduplicated"


def test_a_group_with_only_counted_alerts_is_still_due() -> None:
    """Counted alerts are pending like kept ones: they make the group due, and a notification tells them."""
    state, _ = add_all(group(), [mention(i) for i in range(MAX_GROUP_ALERTS + 3)], T0)
    state = state.model_copy(update={"alerts": {}})  # as if the kept ones had gone (they cannot, normally)
    decision = plan(state, T0 + timedelta(seconds=30), send_resolved=True, silences=[], quiet=None)
    assert decision.send == [] and decision.state is not None
    notification = build_notification(decision.state, decision.send, T0)
    assert notification.status == "firing" and notification.truncated == 3
    jsonschema.validate(veille_body(notification), SCHEMA)
    assert "3 alert(s), not listed" in slack_message(notification)["text"]


def test_a_spike_after_the_cap_is_kept_and_listed_everywhere() -> None:
    """A volume spike and a critical mention arriving after 300 mentions are in every rendering of the notification."""
    mentions = [mention(i) for i in range(300)]
    spike = make_alert("alert-spike", kind="volume_spike", observed=900.0, expected=40.0, text="surge")
    critical = make_alert("alert-critical", severity="critical", text="critical mention")
    state, outcomes = add_all(group(), [*mentions, spike, critical], T0)
    assert outcomes[-2:] == ["grouped", "grouped"] and state.truncated == 200
    _, notification = send(state, T0 + timedelta(seconds=30))
    assert notification.alert_count == 302

    body = veille_body(notification)
    listed = [a["id"] for a in body["data"]["alerts"]]
    assert len(listed) == 100 and listed[-2:] == ["alert-spike", "alert-critical"]
    assert body["data"]["truncated_alerts"] == 202 and body["data"]["firing_count"] == 302
    jsonschema.validate(body, SCHEMA)
    am = alertmanager_body(notification)
    assert "volume_spike" in [a["labels"]["alertname"] for a in am["alerts"]] and am["truncatedAlerts"] == 202

    slack = json.dumps(slack_message(notification), ensure_ascii=False)
    assert "surge" in slack and "critical mention" in slack and "…and 297 more alert(s)" in slack
    teams = json.dumps(teams_message(notification), ensure_ascii=False)
    assert "surge" in teams and "…and 297 more alert(s)" in teams
    subject, text, html = render_email(EMAIL, notification)
    assert "(+301 more)" in subject
    assert "surge" in text and "…and 282 more alert(s)." in text and "…and 282 more alert(s)." in html


def test_alerts_arriving_while_a_full_notification_is_sent_are_kept_for_the_next_one() -> None:
    """The next notification lists examples too: arrivals during a send get their own room, then are counted."""
    state, _ = add_all(group(), [mention(i) for i in range(150)], T0)
    state, first = send(state, T0 + timedelta(seconds=30))
    assert len(first.alerts) == 100 and first.truncated == 50
    # the receiver is slow: 130 more mentions arrive before the notification is marked sent
    state, outcomes = add_all(state, [mention(i) for i in range(150, 280)], T0 + timedelta(seconds=40))
    assert outcomes.count("truncated") == 30
    state = finalize(state, first, T0 + timedelta(seconds=50))
    assert state.truncated == 30 and state.sending == 0
    assert plan(state, T0 + timedelta(minutes=5), send_resolved=True, silences=[], quiet=None).send is None
    _, second = send(state, T0 + timedelta(seconds=50) + INTERVAL)
    assert [a.id for a in second.alerts] == [f"alert-m{i:05d}" for i in range(150, 250)] and second.truncated == 30


def test_a_redelivered_alert_within_the_window_is_deduplicated_and_after_it_is_new() -> None:
    """Told, gone from the group, then delivered again: dropped within DEDUP_WINDOW, a new alert after it."""
    state, _ = add_alert(group(), mention(1), T0)
    state, notification = send(state, T0 + timedelta(seconds=30))
    state = finalize(state, notification, T0 + timedelta(seconds=31))
    gone_at = T0 + timedelta(minutes=1)
    left = plan(state, gone_at, send_resolved=True, silences=[], quiet=None).state
    assert left is not None and left.alerts == {}  # the mention left after one notification
    within = gone_at + DEDUP_WINDOW - timedelta(seconds=1)
    assert add_alert(left, mention(1), within)[1] == "deduplicated"
    after = gone_at + DEDUP_WINDOW + SEEN_SLICE
    assert plan(left, after, send_resolved=True, silences=[], quiet=None).state is None  # nothing left: deleted
    assert add_alert(group(), mention(1), after)[1] == "new"


def test_seen_never_outgrows_its_cap_and_drops_the_oldest() -> None:
    """A flood over the cap: at most MAX_SEEN ids remembered; the oldest counted id is forgotten first."""
    count = MAX_GROUP_ALERTS + MAX_SEEN + 500
    state, outcomes = add_all(group(), [mention(i) for i in range(count)], T0)
    assert outcomes.count("truncated") == count - MAX_GROUP_ALERTS
    assert seen_count(state) == MAX_SEEN
    assert len(state.dump()) < 400_000
    assert add_alert(state, mention(count - 1), T0)[1] == "deduplicated"  # recent: remembered
    assert add_alert(state, mention(MAX_GROUP_ALERTS), T0)[1] == "truncated"  # oldest counted: forgotten


def test_silencing_every_kept_mention_silences_the_counted_ones_too() -> None:
    """Counted alerts carry no labels of their own: when all the kept mentions are muted, so are they."""
    state, _ = add_all(group(), [mention(i) for i in range(120)], T0)
    muted = Silence.create(["watch=acme"], now=T0, duration=timedelta(hours=1))
    decision = plan(state, T0 + timedelta(seconds=30), send_resolved=True, silences=[muted], quiet=None)
    assert decision.send is None and len(decision.silenced) == 100 and decision.silenced_truncated == 20
    assert decision.state is not None and decision.state.truncated == 0
    after = plan(decision.state, T0 + timedelta(hours=2), send_resolved=True, silences=[], quiet=None)
    assert after.send is None and after.state is not None and after.state.alerts == {}


def test_a_group_stored_before_the_cap_keeps_deduplicating() -> None:
    """A state written by the previous version (ids in `seen` with times) still drops a redelivery, then is compact."""
    old = group().model_dump(mode="json")
    old["seen"] = {"alert-m00001:firing": T0.isoformat()}
    state = GroupState.model_validate_json(json.dumps(old))
    assert add_alert(state, mention(1), T0 + timedelta(minutes=5))[1] == "deduplicated"
    cleaned = plan(state, T0 + timedelta(minutes=5), send_resolved=True, silences=[], quiet=None)
    assert cleaned.changed and cleaned.state is not None and cleaned.state.seen == {} and seen_count(cleaned.state) == 1
