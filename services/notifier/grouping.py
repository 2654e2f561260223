"""Grouping, as pure functions over :class:`GroupState`: add an alert, plan a flush, finalise a send.

Durability (why a restart never loses a pending group). The consumer acks a batch of alerts only
after each group it touched is recorded in the ``veille_notify_groups`` KV bucket (one
compare-and-set per group per batch, retried on conflict). From then on the group lives in NATS,
not in the process: a replica plans each group with :func:`plan` against the clock when
:func:`next_look` says its time has come (kept in memory for the groups it wrote or read), and
reads every group of the bucket at start and every ``notifier_rescan`` seconds, so a group whose
``group_wait`` ends while its notifier is down is flushed by another replica or the restarted one.
Nothing is held un-acked for minutes, so ``ack_wait`` and redelivery stay short and simple. A
redelivered alert finds itself already in the group and changes nothing (``deduplicated``).

Lifecycle of an alert in a group:
- firing, not yet notified: *pending*; the group is due ``group_wait`` after its first pending
  alert, then at most every ``group_interval`` while alerts keep arriving;
- notified while firing: *active*; the whole group is sent again every ``repeat_interval`` while
  any alert is active; an event alert (a single negative mention) leaves after one notification;
- resolved after being notified: pending again (a resolved notification) when the receiver has
  ``send_resolved``, then it leaves; a spike alert that never resolves leaves at ``ends_at`` or
  after :data:`MAX_FIRING_AGE`;
- matched by an active silence when the group is due: *suppressed*, and never sent later;
- when an alert leaves the group, a digest of ``<id>:<status>`` stays in ``recent`` for
  :data:`DEDUP_WINDOW`, so a redelivery of it is dropped (see below);
- inside the receiver's quiet hours the group waits for the window's end, unless it carries a
  critical firing alert and the quiet hours allow critical alerts through.

Bounded state (the whole group is one KV value, read, changed and written back for every alert, and
NATS refuses a value over its 1 MB ``max_payload``):
- a group keeps at most :data:`~services.notifier.model.MAX_GROUP_ALERTS` pending single-mention
  alerts in full; the ones beyond are *counted* (``truncated``): their number is pending like an
  alert (it makes the group due), is told in the next notification ("and N more") and is then
  cleared. Spike, resolved and critical alerts are never counted instead of kept. While a full
  notification is being sent, the alerts arriving get room of their own (``sending``), so the next
  notification lists examples too. If every kept single-mention alert of a group is silenced, the
  counted ones are taken as silenced too (they are of the same group; their labels are not kept);
- ``recent`` holds at most :data:`MAX_SEEN` digests, the oldest dropped first; the notifier moves
  them out of the value by the thousand (``veille_notify_seen`` bucket, one key each time, never
  rewritten, TTL :data:`DEDUP_WINDOW`), so a value carries about a thousand digests and one batch at
  most, and a crisis does not rewrite ten thousand digests with every alert. ``add_alert``
  checks those too (its ``seen`` argument).

Why :data:`DEDUP_WINDOW` is one hour: a re-publication of an alert is already dropped by the alerts
stream (``Nats-Msg-Id`` is the alert id, duplicate window 24 h), so the group only has to catch a
redelivery of the same stream message: an ack lost, a replica dying between recording and acking,
a handler failing after recording. JetStream redelivers a message at most ``max_deliver`` times,
``ack_wait`` apart, so that horizon is :data:`REDELIVERY_HORIZON` (120 s x 10 = 20 min); the window
is three times it. :data:`MAX_SEEN` bounds a group that receives more than that in the window: at
50 alerts/s it still covers the last 200 s, longer than ``ack_wait`` (the usual redelivery).
"""

from __future__ import annotations

import hashlib
from collections.abc import Container
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from services.notifier.model import (
    EVENT_KINDS,
    MAX_GROUP_ALERTS,
    AlertEntry,
    GroupState,
    Notification,
    Target,
    countable,
    notification_id,
    set_hash,
)
from services.notifier.quiet import quiet_until
from services.notifier.routing import ResolvedRoute
from services.notifier.silences import Silence, silenced_by
from veille import bus
from veille.config import QuietHours
from veille.models import AlertRaised

__all__ = [
    "DEDUP_WINDOW",
    "EVENT_KINDS",
    "MAX_FIRING_AGE",
    "MAX_GROUP_ALERTS",
    "MAX_SEEN",
    "REDELIVERY_HORIZON",
    "SEEN_SLICE",
    "AddOutcome",
    "FlushPlan",
    "add_alert",
    "add_alerts",
    "build_notification",
    "digest",
    "digests_of",
    "finalize",
    "is_due",
    "new_group",
    "next_look",
    "plan",
    "seen_count",
    "without_digests",
]

MAX_FIRING_AGE = timedelta(hours=24)
REDELIVERY_HORIZON = timedelta(seconds=max(c.ack_wait * c.max_deliver for c in bus.NOTIFIER_ALERT_CONSUMERS))
DEDUP_WINDOW = 3 * REDELIVERY_HORIZON
MAX_SEEN = 10_000
SEEN_SLICE = timedelta(minutes=5)
_DIGEST = 16  # hex characters of a digest in ``recent``: 64 bits

AddOutcome = str  # "new" | "grouped" | "truncated" | "updated" | "deduplicated" | "ignored"


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


def _copy(state: GroupState) -> GroupState:
    """A copy the transitions may change: its own containers, the (immutable) entries shared."""
    state = state.model_copy(update={"alerts": dict(state.alerts), "recent": list(state.recent)})
    if state.seen:  # a state written before ``recent``: fold its deduplication entries in
        legacy, state.seen = state.seen, {}
        for key, at in sorted(legacy.items(), key=lambda item: item[1]):
            _remember(state, key, at)
    return state


def digest(key: str) -> str:
    """The 64-bit hex digest of ``<alert id>:<status>`` kept for deduplication."""
    return hashlib.sha256(key.encode()).hexdigest()[:_DIGEST]


_digest = digest


def digests_of(state: GroupState) -> list[tuple[int, str]]:
    """Every digest ``recent`` holds, with the start of its slice."""
    return [(start, packed[i : i + _DIGEST]) for start, packed in state.recent for i in range(0, len(packed), _DIGEST)]


def without_digests(state: GroupState, known: Container[str]) -> GroupState:
    """``state`` with the digests in ``known`` taken out of ``recent`` (they are kept elsewhere)."""
    recent: list[tuple[int, str]] = []
    for start, packed in state.recent:
        kept = "".join(
            packed[i : i + _DIGEST] for i in range(0, len(packed), _DIGEST) if packed[i : i + _DIGEST] not in known
        )
        if kept:
            recent.append((start, kept))
    return state.model_copy(update={"recent": recent})


def _was_seen(state: GroupState, key: str) -> bool:
    digest = _digest(key)
    for _, packed in state.recent:
        at = packed.find(digest)
        while at != -1:
            if at % _DIGEST == 0:
                return True
            at = packed.find(digest, at + 1)
    return False


class _RecentIndex:
    """A state's ``recent`` as one batch of :func:`add_alerts` works on it: every digest in order, by number
    of copies, and the slices they belong to.

    An alert is looked up here instead of searching the packed slices (a group's value carries about a
    thousand digests, and each alert of a crisis was searched against all); the digests a batch
    remembers are appended here and the oldest over :data:`MAX_SEEN` dropped here as they would be from
    ``recent`` (so a digest dropped mid-batch is no longer found, as before), and ``recent`` is rebuilt
    once at the end of the batch (:meth:`finish`): appending to a packed slice per alert copied the whole
    slice each time."""

    __slots__ = ("digests", "head", "order", "slices")

    def __init__(self, state: GroupState) -> None:
        self.digests: dict[str, int] = {}
        self.order: list[str] = []
        self.slices: list[list[int]] = []  # [start, number of digests]
        for start, packed in state.recent:
            values = [packed[i : i + _DIGEST] for i in range(0, len(packed), _DIGEST)]
            self.order += values
            self.slices.append([start, len(values)])
            for value in values:
                self.digests[value] = self.digests.get(value, 0) + 1
        self.head = 0  # digests dropped from the front of ``order``

    @property
    def count(self) -> int:
        return len(self.order) - self.head

    def add(self, value: str, stamp: int) -> None:
        """Remember ``value`` at ``stamp`` in the newest slice (a new one once it is :data:`SEEN_SLICE` old)."""
        self.order.append(value)
        self.digests[value] = self.digests.get(value, 0) + 1
        if self.slices and stamp < self.slices[-1][0] + _SLICE_SECONDS:
            self.slices[-1][1] += 1
        else:
            self.slices.append([stamp, 1])
        for _ in range(self.count - MAX_SEEN):
            value = self.order[self.head]
            self.head += 1
            left = self.digests.get(value, 0) - 1
            if left > 0:
                self.digests[value] = left
            else:
                self.digests.pop(value, None)

    def finish(self, state: GroupState) -> None:
        """Write the digests kept back into ``state.recent``, one packed string per slice."""
        recent: list[tuple[int, str]] = []
        at = 0
        for start, size in self.slices:
            begin = max(at, self.head)
            at += size
            if at > begin:
                recent.append((start, "".join(self.order[begin:at])))
        state.recent = recent


_SLICE_SECONDS = SEEN_SLICE.total_seconds()


def _remember(
    state: GroupState, key: str, now: datetime, index: _RecentIndex | None = None, value: str | None = None
) -> None:
    """Add ``key`` (``<id>:<status>``) to the newest slice of ``recent``; drop the oldest over :data:`MAX_SEEN`.

    ``index``: the batch's index of ``recent``, where the digest goes (``recent`` itself is rebuilt from it at
    the end of the batch); ``value``: ``key``'s digest, when known.
    """
    digest = value or _digest(key)
    stamp = int(now.timestamp())
    if index is not None:
        index.add(digest, stamp)
        return
    if state.recent and stamp < state.recent[-1][0] + _SLICE_SECONDS:
        start, packed = state.recent[-1]
        state.recent[-1] = (start, packed + digest)
    else:
        state.recent.append((stamp, digest))
    excess = seen_count(state) - MAX_SEEN
    while excess > 0:
        start, packed = state.recent[0]
        if len(packed) // _DIGEST <= excess:
            del state.recent[0]
            excess -= len(packed) // _DIGEST
        else:
            state.recent[0] = (start, packed[excess * _DIGEST :])
            excess = 0


def seen_count(state: GroupState) -> int:
    """How many ``<id>:<status>`` the group remembers for deduplication."""
    return sum(len(packed) for _, packed in state.recent) // _DIGEST + len(state.seen)


def _pending_countable(state: GroupState) -> int:
    return sum(1 for e in state.alerts.values() if e.notified == "none" and countable(e.alert))


def _has_pending(state: GroupState) -> bool:
    return state.truncated > 0 or any(_is_pending(e) for e in state.alerts.values())


def _is_pending(entry: AlertEntry) -> bool:
    if entry.alert.status == "firing":
        return entry.notified == "none"
    return entry.notified == "firing"


def add_alerts(
    state: GroupState, alerts: list[AlertRaised], now: datetime, seen: Container[str] = ()
) -> tuple[GroupState, list[AddOutcome]]:
    """Record ``alerts`` in the group, in order (one copy of the state for the whole batch); see :func:`add_alert`."""
    state = _copy(state)
    pending = [_pending_countable(state)]  # kept up to date by _add: counting it per alert was O(n²)
    index = _RecentIndex(state)  # likewise: searching ``recent`` per alert was O(n²)
    outcomes = [_add(state, alert, now, seen, pending, index) for alert in alerts]
    index.finish(state)
    return state, outcomes


def add_alert(
    state: GroupState, alert: AlertRaised, now: datetime, seen: Container[str] = ()
) -> tuple[GroupState, AddOutcome]:
    """Record ``alert`` in the group; return the new state and what happened.

    ``seen`` holds digests (:func:`digest`) of ``<id>:<status>`` remembered outside the group's
    value (the notifier keeps them in the ``veille_notify_seen`` bucket once they leave ``recent``).

    ``new``: the first pending alert (starts ``group_wait``); ``grouped``: joins a pending
    notification; ``truncated``: joins it as a number only (the group holds its cap of single
    mentions); ``updated``: a known alert changed status; ``deduplicated``: already known as is;
    ``ignored``: a resolution for an alert the receiver was never told about.
    """
    state = _copy(state)
    return state, _add(state, alert, now, seen)


def _add(
    state: GroupState,
    alert: AlertRaised,
    now: datetime,
    seen: Container[str],
    pending: list[int] | None = None,
    index: _RecentIndex | None = None,
) -> AddOutcome:
    """:func:`add_alert` on a state it may change in place (``pending``: its pending countable alerts, kept;
    ``index``: its ``recent`` digests, kept)."""
    if pending is None:
        pending = [_pending_countable(state)]
    had_pending = state.truncated > 0 or pending[0] > 0 or _has_pending(state)
    entry = state.alerts.get(alert.id)
    key = f"{alert.id}:{alert.status}"
    if entry is not None and entry.alert.status == alert.status:
        return "deduplicated"
    value = _digest(key)
    if (seen and value in seen) or (value in index.digests if index is not None else _was_seen(state, key)):
        return "deduplicated"
    if entry is None:
        if alert.status == "resolved":
            return "ignored"
        if countable(alert) and pending[0] - state.sending >= MAX_GROUP_ALERTS:
            state.truncated += 1
            _remember(state, key, now, index, value)  # not kept: remembered so that a redelivery is not counted twice
            outcome = "truncated"
        else:
            state.alerts[alert.id] = AlertEntry(alert=alert, first_seen=now)
            pending[0] += countable(alert)
            outcome = "grouped" if had_pending else "new"
    elif alert.status == "resolved":
        if entry.notified != "firing":
            del state.alerts[alert.id]  # it fired and resolved before anyone was told: nothing to say
            _remember(state, f"{alert.id}:firing", now, index)
            _remember(state, f"{alert.id}:resolved", now, index)
            if not _has_pending(state):
                state.first_pending_at = None
            pending[0] = _pending_countable(state)
            return "updated"
        state.alerts[alert.id] = entry.model_copy(update={"alert": alert})
        outcome = "updated"
    else:  # fires again after resolving
        state.alerts[alert.id] = entry.model_copy(update={"alert": alert, "notified": "none"})
        outcome = "updated"
    if outcome == "updated":
        pending[0] = _pending_countable(state)
    if state.first_pending_at is None:
        state.first_pending_at = now
    return outcome


@dataclass
class FlushPlan:
    """What to do with a group now: write its state back, send some alerts, look again later."""

    state: GroupState | None
    changed: bool
    send: list[AlertRaised] | None = None
    due_at: datetime | None = None
    silenced: list[str] = field(default_factory=list)
    silenced_truncated: int = 0
    quiet_deferred: bool = False
    repeat: bool = False


def _expired(entry: AlertEntry, now: datetime, send_resolved: bool) -> bool:
    alert = entry.alert
    if alert.status == "resolved":
        return entry.notified != "firing" or not send_resolved
    if entry.notified == "none":
        return False
    if entry.notified in ("firing", "suppressed") and alert.kind in EVENT_KINDS:
        return True  # told (or silenced) once and for all; ``recent`` drops a redelivery
    if alert.ends_at is not None and alert.ends_at <= now:
        return True
    return alert.raised_at + MAX_FIRING_AGE <= now


def _forget(state: GroupState, alert_id: str, now: datetime) -> None:
    entry = state.alerts.pop(alert_id)
    _remember(state, f"{alert_id}:{entry.alert.status}", now)
    if entry.alert.status == "resolved":
        _remember(state, f"{alert_id}:firing", now)


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


def next_look(state: GroupState, now: datetime) -> datetime:
    """When :func:`plan` may next have something to do for this group: send, repeat, or clean up.

    The notifier keeps this per group in memory, so its tick plans only the groups whose time has
    come instead of reading every group's value.
    """
    times: list[datetime] = []
    due_at, _ = _due_at(state)
    if due_at is not None:
        times.append(max(due_at, state.quiet_until) if state.quiet_until else due_at)
    for entry in state.alerts.values():
        alert = entry.alert
        if alert.status == "resolved" or (entry.notified != "none" and alert.kind in EVENT_KINDS):
            if not _is_pending(entry):
                times.append(now)  # leaves at the next plan
            continue
        if entry.notified != "none":
            times.append(min(alert.ends_at or alert.raised_at + MAX_FIRING_AGE, alert.raised_at + MAX_FIRING_AGE))
    if state.recent:
        times.append(datetime.fromtimestamp(state.recent[0][0], tz=now.tzinfo) + DEDUP_WINDOW + SEEN_SLICE)
    if not state.alerts and not state.truncated and not state.recent:
        times.append(now)  # empty: deleted at the next plan
    return min(times) if times else now + MAX_FIRING_AGE


def is_due(state: GroupState, now: datetime) -> bool:
    """Whether the group has a notification (or a repeat) due at ``now``, before silences and quiet hours."""
    due_at, _ = _due_at(state)
    return due_at is not None and due_at <= now


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
    state = _copy(state)
    for alert_id in [k for k, e in state.alerts.items() if _expired(e, now, send_resolved)]:
        _forget(state, alert_id, now)
    oldest = (now - DEDUP_WINDOW - SEEN_SLICE).timestamp()  # a slice holds digests up to SEEN_SLICE after its start
    state.recent = [item for item in state.recent if item[0] > oldest]
    if not state.alerts and not state.recent and not state.truncated:
        return FlushPlan(state=None, changed=True)
    if not _has_pending(state):
        state.first_pending_at = None
    due_at, repeat = _due_at(state)
    if due_at is None or now < due_at:
        return FlushPlan(state=state, changed=state != original, due_at=due_at)

    silenced: list[str] = []
    countable_pending = countable_silenced = 0
    for alert_id, entry in list(state.alerts.items()):
        kept_countable = entry.notified == "none" and countable(entry.alert)
        countable_pending += kept_countable
        if silenced_by(entry.alert, silences, now) is None:
            continue
        if _is_pending(entry):
            silenced.append(alert_id)
            countable_silenced += kept_countable
            if entry.alert.status == "resolved":
                _forget(state, alert_id, now)
            else:
                state.alerts[alert_id] = entry.model_copy(update={"notified": "suppressed"})
        elif repeat and entry.notified == "firing":
            silenced.append(alert_id)
    silenced_truncated = 0
    if state.truncated and countable_pending and countable_silenced == countable_pending:
        silenced_truncated, state.truncated = state.truncated, 0  # counted alerts share the kept ones' fate
    pending = [e.alert for e in state.alerts.values() if _is_pending(e)]
    active = [
        e.alert
        for k, e in state.alerts.items()
        if e.notified == "firing" and e.alert.status == "firing" and k not in silenced
    ]
    if not pending and not state.truncated:
        state.first_pending_at = None
        if not repeat or not active:
            return FlushPlan(
                state=state, changed=state != original, silenced=silenced, silenced_truncated=silenced_truncated
            )

    until = quiet_until(quiet, now)
    bypass = (
        quiet is not None
        and quiet.critical_bypass
        and any(a.severity == "critical" and a.status == "firing" for a in [*pending, *active])
    )
    if until is not None and not bypass:
        newly = state.quiet_until != until
        state.quiet_until = until
        return FlushPlan(
            state=state,
            changed=state != original,
            due_at=until,
            silenced=silenced,
            silenced_truncated=silenced_truncated,
            quiet_deferred=newly,
        )
    state.quiet_until = None
    pending_ids = {a.id for a in pending}
    content = [a for a in pending if a.status == "firing"]
    content += [a for a in active if a.id not in pending_ids]
    content += [a for a in pending if a.status == "resolved"]
    full = sum(1 for a in pending if countable(a))
    if full >= MAX_GROUP_ALERTS:
        state.sending = max(state.sending, full)  # the alerts arriving while it is sent are kept, not counted
    return FlushPlan(
        state=state,
        changed=state != original,
        send=content,
        silenced=silenced,
        silenced_truncated=silenced_truncated,
        repeat=not pending and not state.truncated,
    )


def build_notification(state: GroupState, alerts: list[AlertRaised], now: datetime) -> Notification:
    """The notification for ``alerts`` of this group, with its deterministic id."""
    firing = state.truncated > 0 or any(a.status == "firing" for a in alerts)
    status: Literal["firing", "resolved"] = "firing" if firing else "resolved"
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
        truncated=state.truncated,
        created_at=now,
    )


def finalize(
    state: GroupState, notification: Notification, now: datetime, *, send_resolved: bool | None = None
) -> GroupState:
    """The group after ``notification`` was delivered (or dead-lettered): its alerts are told.

    The alerts it only counted are no longer pending (the ones counted since stay). Idempotent: a
    second call for the same notification (a replica finishing another's claim) changes nothing.
    With ``send_resolved`` (the receiver's), the alerts whose story is over leave the group in the
    same write, as the next :func:`plan` would have them leave (an event alert told, a resolution
    told): with each alert its own group, that next plan was one more KV write per alert.
    """
    if state.seq > notification.seq:
        return state
    state = _copy(state)
    for alert in notification.alerts:
        entry = state.alerts.get(alert.id)
        if entry is not None and entry.alert.status == alert.status:
            state.alerts[alert.id] = entry.model_copy(update={"notified": alert.status})
    state.truncated = max(0, state.truncated - notification.truncated)
    state.sending = 0
    state.seq = notification.seq + 1
    state.last_notified_at = now
    state.first_pending_at = now if _has_pending(state) else None
    if send_resolved is not None:
        for alert_id in [k for k, e in state.alerts.items() if _expired(e, now, send_resolved)]:
            _forget(state, alert_id, now)
        if not _has_pending(state):
            state.first_pending_at = None
    return state
