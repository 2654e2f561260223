"""Pure notifier logic without a broker: routes, group keys, grouping plans, quiet hours, silences, retries."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.notifier.delivery import RetryPolicy, parse_retry_after
from services.notifier.grouping import add_alert, build_notification, finalize, new_group, plan
from services.notifier.model import Target
from services.notifier.payload import alertmanager_body
from services.notifier.quiet import quiet_until
from services.notifier.routing import ResolvedRoute, group_key_for, match_routes
from services.notifier.signing import decode_secret, sign, verify
from services.notifier.silences import Silence
from tests.notifier.conftest import T0, make_alert
from veille.config import QuietHours, parse_config

TREE = parse_config(
    """
version: 1
receivers: [{name: default}, {name: crisis}, {name: fr-team}, {name: audit}]
route:
  receiver: default
  group_by: [watch]
  routes:
    - receiver: audit
      continue: true
    - receiver: crisis
      matchers: [severity="critical"]
      group_wait: 0s
    - receiver: fr-team
      matchers: [lang="fr", 'source=~"rss|bluesky"']
      routes:
        - matchers: [kind="volume_spike"]
          group_by: [watch, kind]
""",
    env={},
)


def test_routes_pick_the_first_matching_child_and_continue_goes_on() -> None:
    """`continue` on the audit route lets the critical route match too; children inherit settings."""
    routes = match_routes(TREE.route, make_alert(severity="critical"))
    assert [r.receiver for r in routes] == ["audit", "crisis"]
    assert routes[1].group_wait == timedelta(0) and routes[1].group_by == ("watch",)


def test_a_matching_continue_child_counts_as_a_match_as_in_alertmanager() -> None:
    """An English warning matches only the audit child: the parent is used only when no child matches."""
    assert [r.receiver for r in match_routes(TREE.route, make_alert())] == ["audit"]
    bare = parse_config("version: 1\nreceivers: [{name: d}]\nroute: {receiver: d}\n", env={})
    [root] = match_routes(bare.route, make_alert())
    assert root.receiver == "d" and root.group_by == ("watch", "kind") and root.group_wait == timedelta(seconds=30)


def test_nested_route_inherits_its_parents_receiver() -> None:
    """A French RSS spike lands on the nested route, under fr-team, grouped by watch and kind."""
    alert = make_alert(kind="volume_spike", lang="fr")
    fr = match_routes(TREE.route, alert)[1]
    assert fr.receiver == "fr-team" and fr.path == "root.2.0" and fr.group_by == ("watch", "kind")
    key, labels = group_key_for(fr, alert)
    assert labels == {"watch": "acme", "kind": "volume_spike"} and key.startswith("root.2.0:")


def _group(**timings: float) -> Any:
    route = ResolvedRoute("root", "default", ("watch",), timedelta(0), timedelta(minutes=5), timedelta(hours=4))
    state = new_group(Target("default", "webhook"), route, "k", {"watch": "acme"})
    return state.model_copy(update=timings)


def test_group_waits_then_sends_everything_pending_once() -> None:
    """Nothing is due before group_wait; then one notification carries both alerts; after it, nothing is due."""
    state = _group(group_wait=30.0)
    state, outcome = add_alert(state, make_alert("a"), T0)  # type: ignore[arg-type]
    assert outcome == "new"
    state, outcome = add_alert(state, make_alert("b"), T0 + timedelta(seconds=5))
    assert outcome == "grouped"
    assert add_alert(state, make_alert("b"), T0)[1] == "deduplicated"
    early = plan(state, T0 + timedelta(seconds=29), send_resolved=True, silences=[], quiet=None)
    assert early.send is None and early.due_at == T0 + timedelta(seconds=30)
    due = plan(state, T0 + timedelta(seconds=30), send_resolved=True, silences=[], quiet=None)
    assert due.send is not None and [a.id for a in due.send] == ["a", "b"]
    notification = build_notification(due.state, due.send, T0)  # type: ignore[arg-type]
    done = finalize(due.state, notification, T0 + timedelta(seconds=31))  # type: ignore[arg-type]
    assert finalize(done, notification, T0) == done  # idempotent
    after = plan(done, T0 + timedelta(hours=5), send_resolved=True, silences=[], quiet=None)
    assert after.send is None
    assert add_alert(after.state, make_alert("a"), T0)[1] == "deduplicated"  # type: ignore[arg-type]


def test_silenced_alert_is_suppressed_and_never_sent_later() -> None:
    """An alert matched by an active silence at flush time is suppressed for good."""
    state, _ = add_alert(_group(group_wait=0.0), make_alert("a"), T0)  # type: ignore[arg-type]
    muted = Silence.create(["watch=acme"], now=T0, duration=timedelta(hours=1))
    decision = plan(state, T0, send_resolved=True, silences=[muted], quiet=None)
    assert decision.send is None and decision.silenced == ["a"]
    later = plan(decision.state, T0 + timedelta(hours=2), send_resolved=True, silences=[], quiet=None)  # type: ignore[arg-type]
    assert later.send is None


def test_alert_resolved_before_anyone_was_told_is_dropped() -> None:
    """Firing then resolving within group_wait sends nothing at all."""
    state, _ = add_alert(_group(group_wait=30.0), make_alert("s", kind="volume_spike"), T0)  # type: ignore[arg-type]
    state, _ = add_alert(state, make_alert("s", kind="volume_spike", status="resolved"), T0)
    assert plan(state, T0 + timedelta(minutes=1), send_resolved=True, silences=[], quiet=None).send is None


PARIS_NIGHT = QuietHours(start="22:00", end="07:00", timezone="Europe/Paris", days=["mon", "tue"])


@pytest.mark.parametrize(
    ("now", "until"),
    [
        (datetime(2026, 3, 2, 20, 59, tzinfo=UTC), None),  # Monday 21:59 in Paris
        (datetime(2026, 3, 2, 21, 0, tzinfo=UTC), datetime(2026, 3, 3, 6, 0, tzinfo=UTC)),  # Monday 22:00
        (datetime(2026, 3, 3, 5, 59, tzinfo=UTC), datetime(2026, 3, 3, 6, 0, tzinfo=UTC)),  # Tuesday 06:59
        (datetime(2026, 3, 3, 6, 0, tzinfo=UTC), None),  # Tuesday 07:00
        (datetime(2026, 3, 4, 22, 0, tzinfo=UTC), None),  # Wednesday 23:00: not a quiet day
        (datetime(2026, 3, 30, 4, 0, tzinfo=UTC), None),  # 06:00 CEST, but the window began on a Sunday
        (datetime(2026, 3, 31, 4, 0, tzinfo=UTC), datetime(2026, 3, 31, 5, 0, tzinfo=UTC)),  # Tuesday, summer time
    ],
)
def test_quiet_hours_span_midnight_in_the_receivers_time_zone(now: datetime, until: datetime | None) -> None:
    """A 22:00–07:00 Paris window on Mondays and Tuesdays, across midnight and the DST change."""
    assert quiet_until(PARIS_NIGHT, now) == until


def test_signature_matches_the_standard_webhooks_example() -> None:
    """The signing code reproduces the Standard Webhooks specification's published example."""
    key = decode_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    header = sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}')
    assert header == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert verify(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}', f"v1,bad {header}")
    assert not verify(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265331, b'{"test": 2432232314}', header)


def test_backoff_grows_with_jitter_under_the_cap_and_retry_after_wins() -> None:
    """Delays stay within [d/2, d] for d = base·2^(n-1) capped; Retry-After replaces them up to a ceiling."""
    policy = RetryPolicy(base=1.0, cap=8.0, max_retry_after=60.0)
    rng = random.Random(1)
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0)]:
        delay = policy.delay(attempt, rng=rng)
        assert ceiling / 2 <= delay <= ceiling
    assert policy.delay(1, 30.0) == 30.0 and policy.delay(1, 3600.0) == 60.0
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", datetime(2015, 10, 21, 7, 28, tzinfo=UTC)) == 30.0
    assert parse_retry_after("soon") is None


def test_alertmanager_payload_has_the_version_4_shape() -> None:
    """The Alertmanager-compatible body carries version 4, groupKey, labels with alertname, and RFC 3339 times."""
    state, _ = add_alert(_group(group_wait=0.0), make_alert("a"), T0)  # type: ignore[arg-type]
    decision = plan(state, T0, send_resolved=True, silences=[], quiet=None)
    body = alertmanager_body(build_notification(decision.state, decision.send or [], T0))  # type: ignore[arg-type]
    assert body["version"] == "4" and body["status"] == "firing" and body["groupKey"] == "k"
    [alert] = body["alerts"]
    assert alert["labels"]["alertname"] == "negative_mention" and alert["labels"]["watch"] == "acme"
    assert alert["startsAt"] == "2026-03-02T09:00:00Z" and alert["endsAt"] == "0001-01-01T00:00:00Z"
    assert set(body) == {
        "version",
        "groupKey",
        "truncatedAlerts",
        "status",
        "receiver",
        "groupLabels",
        "commonLabels",
        "commonAnnotations",
        "externalURL",
        "alerts",
    }
