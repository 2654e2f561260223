"""The notifier's own data: integration targets, notifications, group state (pydantic, JSON in KV)."""

from __future__ import annotations

import hashlib
import json
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from veille.models import AlertRaised

__all__ = [
    "EVENT_KINDS",
    "MAX_GROUP_ALERTS",
    "AlertEntry",
    "Clock",
    "GroupState",
    "IntegrationKind",
    "Notification",
    "Target",
    "countable",
    "group_key_hash",
    "kv_keys",
    "notification_id",
    "set_hash",
]

IntegrationKind = Literal["email", "webhook", "slack", "teams", "alertmanager"]
Clock = Callable[[], datetime]

EVENT_KINDS = frozenset({"negative_mention"})
MAX_GROUP_ALERTS = 100
"""The most alerts a group keeps in full while they wait, and a webhook lists (Alertmanager's
``max_alerts``). A group's firing ``negative_mention`` alerts beyond it are counted, not kept, and
notifications say how many were left out (``truncated_alerts``, ``truncatedAlerts``, "and N more")."""


def countable(alert: AlertRaised) -> bool:
    """Whether ``alert`` may be told as a number rather than in full: a firing, non-critical event alert.

    Spike alerts (few, and they resolve), resolutions and critical alerts are always kept and listed.
    """
    return alert.kind in EVENT_KINDS and alert.status == "firing" and alert.severity != "critical"


@dataclass(frozen=True, order=True)
class Target:
    """One integration of a receiver (its second webhook, say): the unit that is grouped and logged."""

    receiver: str
    kind: IntegrationKind
    index: int = 0

    @property
    def id(self) -> str:
        """Stable identifier, safe in KV keys and subjects: ``crm.webhook.0``."""
        return f"{self.receiver}.{self.kind}.{self.index}"


async def kv_keys(js: Any, bucket: str) -> list[str]:
    """Keys of a KV bucket (deleted ones included) from one stream-info request.

    ``KeyValue.keys()`` creates a consumer per call, too costly for a scan every second on every
    replica; the stream's per-subject state answers the same question without one (the server
    returns up to 100,000 subjects, far more groups than a notifier holds).
    """
    prefix = f"$KV.{bucket}."
    info = await js.stream_info(f"KV_{bucket}", subjects_filter=f"{prefix}>")
    return sorted(subject.removeprefix(prefix) for subject in (info.state.subjects or {}))


def group_key_hash(group_key: str) -> str:
    """Short hex digest of a group key, used in KV keys."""
    return hashlib.sha256(group_key.encode()).hexdigest()[:20]


def set_hash(alerts: list[AlertRaised]) -> str:
    """Digest of a set of alerts and their status: equal sets notify the same thing."""
    items = sorted(f"{a.id}:{a.status}" for a in alerts)
    return hashlib.sha256("\n".join(items).encode()).hexdigest()[:24]


def notification_id(target: str, group_key: str, seq: int, alerts_hash: str) -> str:
    """Deterministic notification id (also the ``webhook-id``): stable across retries, restarts and replicas."""
    digest = hashlib.sha256(f"{target}\x1f{group_key}\x1f{seq}\x1f{alerts_hash}".encode()).hexdigest()[:26]
    return f"msg_{digest}"


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Notification(_Model):
    """One message to one integration: a group's alerts at one moment. Sent as is, retried as is."""

    schema_version: Literal[1] = 1
    id: str
    target: str
    receiver: str
    integration: IntegrationKind
    group_key: str
    group_labels: dict[str, str] = Field(default_factory=dict)
    status: Literal["firing", "resolved"]
    seq: int = Field(description="Position of this notification in its group's history.")
    alerts: list[AlertRaised]
    truncated: int = Field(
        default=0,
        ge=0,
        description="Firing negative_mention alerts of the group counted but not kept (over the group's cap).",
    )
    created_at: datetime
    replay: int = Field(default=0, description="How many times `veille dlq replay` sent it back.")

    @property
    def alert_count(self) -> int:
        """Every alert the notification tells of: the ones it carries and the ones only counted."""
        return len(self.alerts) + self.truncated

    @property
    def firing(self) -> list[AlertRaised]:
        """The alerts still firing."""
        return [a for a in self.alerts if a.status == "firing"]

    @property
    def resolved(self) -> list[AlertRaised]:
        """The alerts that resolved."""
        return [a for a in self.alerts if a.status == "resolved"]

    def listed(self, limit: int) -> tuple[list[AlertRaised], int]:
        """At most ``limit`` of the alerts to show, in order, and how many are left out (counted ones too).

        Countable alerts (single negative mentions) are the ones left out, from the end: a spike, a
        resolution or a critical alert is shown even when it came after a flood of mentions.
        """
        alerts = self.alerts
        if len(alerts) > limit:
            shown = [i for i, a in enumerate(alerts) if not countable(a)][:limit]
            room = limit - len(shown)
            shown += [i for i, a in enumerate(alerts) if countable(a)][:room]
            alerts = [alerts[i] for i in sorted(shown)]
        return alerts, self.alert_count - len(alerts)

    def common_labels(self) -> dict[str, str]:
        """Labels every alert of the notification shares."""
        label_sets = [alert_labels(a) for a in self.alerts]
        if not label_sets:
            return {}
        common = dict(label_sets[0])
        for labels in label_sets[1:]:
            common = {k: v for k, v in common.items() if labels.get(k) == v}
        return common


def alert_labels(alert: AlertRaised) -> dict[str, str]:
    """The labels routes, group_by and silences match on: watch, kind, severity, lang, source, and the alert's own."""
    labels = dict(alert.labels)
    labels.update(
        {
            "watch": alert.watch,
            "kind": alert.kind,
            "severity": alert.severity,
            "lang": alert.lang or "",
            "language": alert.lang or "",
            "source": alert.source or "",
        }
    )
    return labels


def alert_labels_key(alert: AlertRaised) -> tuple[Any, ...]:
    """A hashable key equal for two alerts exactly when :func:`alert_labels` is: the fields it reads, without
    building and sorting the labels (the dispatcher remembers an alert's routes by it)."""
    labels = tuple(sorted(alert.labels.items())) if alert.labels else ()
    return (alert.watch, alert.kind, alert.severity, alert.lang, alert.source, labels)


Notified = Literal["none", "firing", "resolved", "suppressed"]


class AlertEntry(_Model):
    """An alert inside a group, with what its receiver was last told about it.

    Frozen: a change is a new entry (``model_copy(update=...)``), so :meth:`GroupState.dump` may reuse the
    JSON of an entry it has already written. Nothing may change an entry's alert in place either (its
    ``labels``, ``top_terms`` and ``samples`` are a dict and lists): a changed alert is a new entry."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    alert: AlertRaised
    notified: Notified = "none"
    first_seen: datetime


class GroupState(_Model):
    """The durable state of one group for one integration, kept in the ``veille_notify_groups`` bucket."""

    schema_version: Literal[1] = 1
    target: str
    receiver: str
    integration: IntegrationKind
    group_key: str
    group_labels: dict[str, str] = Field(default_factory=dict)
    group_wait: float
    group_interval: float
    repeat_interval: float
    alerts: dict[str, AlertEntry] = Field(default_factory=dict)
    first_pending_at: datetime | None = None
    last_notified_at: datetime | None = None
    seq: int = 0
    quiet_until: datetime | None = Field(default=None, description="Set while quiet hours hold the group back.")
    partition: int | None = Field(
        default=None,
        description="Partition of the alerts stream the group belongs to (its first alert's watch); the replica "
        "holding it flushes the group. None: recorded before partitions (the legacy partition's holder).",
    )
    truncated: int = Field(
        default=0,
        ge=0,
        description="Firing negative_mention alerts that arrived over MAX_GROUP_ALERTS: counted, not kept; "
        "pending until a notification tells their number.",
    )
    sending: int = Field(
        default=0,
        ge=0,
        description="Countable alerts carried by the notification being sent, when it was full; they do not "
        "take room from the alerts arriving meanwhile.",
    )
    recent: list[tuple[int, str]] = Field(
        default_factory=list,
        description="Deduplication: digests of '<alert id>:<status>' of alerts that left the group or were only "
        "counted, as [slice start (Unix seconds), 16-hex digests back to back], oldest first.",
    )
    seen: dict[str, datetime] = Field(
        default_factory=dict, description="Former form of `recent` ('<alert id>:<status>' -> time), folded into it."
    )

    def dump(self) -> bytes:
        """Serialise for KV: the JSON of :meth:`model_dump_json`, ``alerts`` last, each entry's JSON reused.

        A group is written after every batch that touches it and after every notification, and most of its
        (up to :data:`MAX_GROUP_ALERTS`) entries have not changed since the last write: serialising them
        again was most of a write's CPU (``docs/benchmarks.md``, notifier).
        """
        if not self.alerts:
            return self.model_dump_json().encode()
        head = self.model_dump_json(exclude={"alerts"})
        body = ",".join([_entry_json(key, entry) for key, entry in self.alerts.items()])
        return f'{head[:-1]},"alerts":{{{body}}}}}'.encode()


_ENTRY_JSON: dict[int, tuple[weakref.ref[AlertEntry], str, str]] = {}
"""``id(entry)`` -> (the entry, weakly, its key, ``"key":{entry JSON}``), for the entries alive.

Held weakly and dropped when the entry is freed, so the table holds the JSON of no more entries than the
groups in memory hold (a fixed-size table emptied when full missed on every entry once a few dozen full
groups were written in turn, found in review). An entry's id cannot be reused while it is listed, and a
listed entry is the same object (the weak reference is checked)."""


def _entry_json(key: str, entry: AlertEntry) -> str:
    ident = id(entry)
    cached = _ENTRY_JSON.get(ident)
    if cached is not None and cached[0]() is entry and cached[1] == key:
        return cached[2]
    fragment = f"{json.dumps(key, ensure_ascii=False)}:{entry.model_dump_json()}"
    _ENTRY_JSON[ident] = (weakref.ref(entry, lambda _ref: _forget_entry(ident, _ref)), key, fragment)
    return fragment


def _forget_entry(ident: int, ref: weakref.ref[AlertEntry]) -> None:
    cached = _ENTRY_JSON.get(ident)
    if cached is not None and cached[0] is ref:  # not a newer entry that took the same id since
        del _ENTRY_JSON[ident]


def dumps(value: object) -> bytes:
    """Compact JSON bytes."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()
