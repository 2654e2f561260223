"""Grouping, as pure functions over :class:`GroupState`: add an alert, plan a flush, finalise a send.

Durability (why a restart never loses a pending group). The subscriber acks an alert only after it
is recorded in its group's state in the ``veille_notify_groups`` KV bucket (a compare-and-set
update, retried on conflict). From then on the group lives in NATS, not in the process: every
replica scans the bucket on each tick and plans each group with :func:`plan` against the clock,
so a group whose ``group_wait`` ends while its notifier is down is flushed by whichever replica
looks next (or by the restarted one). Nothing is held un-acked for minutes, so ``ack_wait`` and
redelivery stay short and simple. A redelivered alert finds itself already in the group and changes
nothing (``deduplicated``).

Lifecycle of an alert in a group:
- firing, not yet notified: *pending*; the group is due ``group_wait`` after its first pending
  alert, then at most every ``group_interval`` while alerts keep arriving;
- notified while firing: *active*; the whole group is sent again every ``repeat_interval`` while
  any alert is active; an event alert (a single negative mention) leaves after one notification;
- resolved after being notified: pending again (a resolved notification) when the receiver has
  ``send_resolved``, then it leaves; a spike alert that never resolves leaves at ``ends_at`` or
  after :data:`MAX_FIRING_AGE`;
- matched by an active silence when the group is due: *suppressed*, and never sent later;
- when an alert leaves the group, ``<id>:<status>`` stays in ``seen`` for :data:`DEDUP_WINDOW`
  (the alerts stream's duplicate window), so a late redelivery or replay of it is dropped;
- inside the receiver's quiet hours the group waits for the window's end, unless it carries a
  critical firing alert and the quiet hours allow critical alerts through.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from services.notifier.model import AlertEntry, GroupState, Notification, Target, notification_id, set_hash
from services.notifier.quiet import quiet_until
from services.notifier.routing import ResolvedRoute
from services.notifier.silences import Silence, silenced_by
from veille.config import QuietHours
from veille.models import AlertRaised

__all__ = [
    "DEDUP_WINDOW",
    "EVENT_KINDS",
    "MAX_FIRING_AGE",
    "AddOutcome",
    "FlushPlan",
    "add_alert",
    "build_notification",
    "finalize",
    "new_group",
    "plan",
]

EVENT_KINDS = frozenset({"negative_mention"})
MAX_FIRING_AGE = timedelta(hours=24)
DEDUP_WINDOW = timedelta(hours=24)

AddOutcome = str  # "new" | "grouped" | "updated" | "deduplicated" | "ignored"


def new_group(target: Target, route: ResolvedRoute, group_key: str, group_labels: dict[str, str]) -> GroupState:
    """An empty group for ``target`` with the route's timings."""
    return GroupState(
        target=target.id,
        receiver=target.receiver,
        integration=target.kind,
        group_key=group_key,
        group_labels=group_labels,
        group_wait=route.group_wait.total_seconds(),
        group_interval=route.group_interval.total_seconds(),
        repeat_interval=route.repeat_interval.total_seconds(),
    )


def _has_pending(state: GroupState) -> bool:
    return any(_is_pending(e) for e in state.alerts.values())


def _is_pending(entry: AlertEntry) -> bool:
    if entry.alert.status == "firing":
        return entry.notified == "none"
    return entry.notified == "firing"


def add_alert(state: GroupState, alert: AlertRaised, now: datetime) -> tuple[GroupState, AddOutcome]:
    """Record ``alert`` in the group; return the new state and what happened.

    ``new``: the first pending alert (starts ``group_wait``); ``grouped``: joins a pending
    notification; ``updated``: a known alert changed status; ``deduplicated``: already known as is;
    ``ignored``: a resolution for an alert the receiver was never told about.
    """
    state = state.model_copy(deep=True)
    had_pending = _has_pending(state)
    entry = state.alerts.get(alert.id)
    if (entry is not None and entry.alert.status == alert.status) or f"{alert.id}:{alert.status}" in state.seen:
        return state, "deduplicated"
    if entry is None:
        if alert.status == "resolved":
            return state, "ignored"
        state.alerts[alert.id] = AlertEntry(alert=alert, first_seen=now)
        outcome = "grouped" if had_pending else "new"
    elif alert.status == "resolved":
        if entry.notified != "firing":
            del state.alerts[alert.id]  # it fired and resolved before anyone was told: nothing to say
            state.seen[f"{alert.id}:firing"] = state.seen[f"{alert.id}:resolved"] = now
            if not _has_pending(state):
                state.first_pending_at = None
            return state, "updated"
        state.alerts[alert.id] = entry.model_copy(update={"alert": alert})
        outcome = "updated"
    else:  # fires again after resolving
        state.alerts[alert.id] = entry.model_copy(update={"alert": alert, "notified": "none"})
        outcome = "updated"
    if state.first_pending_at is None:
        state.first_pending_at = now
    return state, outcome


@dataclass
class FlushPlan:
    """What to do with a group now: write its state back, send some alerts, look again later."""

    state: GroupState | None
    changed: bool
    send: list[AlertRaised] | None = None
    due_at: datetime | None = None
    silenced: list[str] = field(default_factory=list)
    quiet_deferred: bool = False
    repeat: bool = False


def _expired(entry: AlertEntry, now: datetime, send_resolved: bool) -> bool:
    alert = entry.alert
    if alert.status == "resolved":
        return entry.notified != "firing" or not send_resolved
    if entry.notified == "none":
        return False
    if entry.notified == "firing" and alert.kind in EVENT_KINDS:
        return True
    if alert.ends_at is not None and alert.ends_at <= now:
        return True
    return alert.raised_at + MAX_FIRING_AGE <= now


def _forget(state: GroupState, alert_id: str, now: datetime) -> None:
    entry = state.alerts.pop(alert_id)
    state.seen[f"{alert_id}:{entry.alert.status}"] = now
    if entry.alert.status == "resolved":
        state.seen[f"{alert_id}:firing"] = now


def _due_at(state: GroupState) -> tuple[datetime | None, bool]:
    if _has_pending(state):
        assert state.first_pending_at is not None
        wait_end = state.first_pending_at + timedelta(seconds=state.group_wait)
        if state.last_notified_at is None:
            return wait_end, False
        return max(wait_end, state.last_notified_at + timedelta(seconds=state.group_interval)), False
    active = any(e.notified == "firing" and e.alert.status == "firing" for e in state.alerts.values())
    if active and state.last_notified_at is not None:
        return state.last_notified_at + timedelta(seconds=state.repeat_interval), True
    return None, False


def plan(
    state: GroupState,
    now: datetime,
    *,
    send_resolved: bool,
    silences: list[Silence],
    quiet: QuietHours | None,
) -> FlushPlan:
    """Decide what a group needs at ``now``: nothing yet, a state clean-up, or a notification."""
    original = state
    state = state.model_copy(deep=True)
    for alert_id in [k for k, e in state.alerts.items() if _expired(e, now, send_resolved)]:
        _forget(state, alert_id, now)
    state.seen = {k: t for k, t in state.seen.items() if t + DEDUP_WINDOW > now}
    if not state.alerts and not state.seen:
        return FlushPlan(state=None, changed=True)
    if not _has_pending(state):
        state.first_pending_at = None
    due_at, repeat = _due_at(state)
    if due_at is None or now < due_at:
        return FlushPlan(state=state, changed=state != original, due_at=due_at)

    silenced: list[str] = []
    for alert_id, entry in list(state.alerts.items()):
        if silenced_by(entry.alert, silences, now) is None:
            continue
        if _is_pending(entry):
            silenced.append(alert_id)
            if entry.alert.status == "resolved":
                _forget(state, alert_id, now)
            else:
                state.alerts[alert_id] = entry.model_copy(update={"notified": "suppressed"})
        elif repeat and entry.notified == "firing":
            silenced.append(alert_id)
    pending = [e.alert for e in state.alerts.values() if _is_pending(e)]
    active = [
        e.alert
        for k, e in state.alerts.items()
        if e.notified == "firing" and e.alert.status == "firing" and k not in silenced
    ]
    if not pending:
        state.first_pending_at = None
        if not repeat or not active:
            return FlushPlan(state=state, changed=state != original, silenced=silenced)

    until = quiet_until(quiet, now)
    bypass = (
        quiet is not None
        and quiet.critical_bypass
        and any(a.severity == "critical" and a.status == "firing" for a in [*pending, *active])
    )
    if until is not None and not bypass:
        newly = state.quiet_until != until
        state.quiet_until = until
        return FlushPlan(state=state, changed=state != original, due_at=until, silenced=silenced, quiet_deferred=newly)
    state.quiet_until = None
    pending_ids = {a.id for a in pending}
    content = [a for a in pending if a.status == "firing"]
    content += [a for a in active if a.id not in pending_ids]
    content += [a for a in pending if a.status == "resolved"]
    return FlushPlan(state=state, changed=state != original, send=content, silenced=silenced, repeat=not pending)


def build_notification(state: GroupState, alerts: list[AlertRaised], now: datetime) -> Notification:
    """The notification for ``alerts`` of this group, with its deterministic id."""
    status: Literal["firing", "resolved"] = "firing" if any(a.status == "firing" for a in alerts) else "resolved"
    return Notification(
        id=notification_id(state.target, state.group_key, state.seq, set_hash(alerts)),
        target=state.target,
        receiver=state.receiver,
        integration=state.integration,
        group_key=state.group_key,
        group_labels=state.group_labels,
        status=status,
        seq=state.seq,
        alerts=alerts,
        created_at=now,
    )


def finalize(state: GroupState, notification: Notification, now: datetime) -> GroupState:
    """The group after ``notification`` was delivered (or dead-lettered): its alerts are told.

    Idempotent: a second call for the same notification (a replica finishing another's claim)
    changes nothing.
    """
    if state.seq > notification.seq:
        return state
    state = state.model_copy(deep=True)
    for alert in notification.alerts:
        entry = state.alerts.get(alert.id)
        if entry is not None and entry.alert.status == alert.status:
            state.alerts[alert.id] = entry.model_copy(update={"notified": alert.status})
    state.seq = notification.seq + 1
    state.last_notified_at = now
    state.first_pending_at = now if _has_pending(state) else None
    return state
